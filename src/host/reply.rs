//! Sending a local reply (HTTP or gRPC) built by `response`.
#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::GrpcStatusCode;

use crate::response::LocalReply;

pub(crate) fn send(reply: &LocalReply) {
    let result = match reply.grpc_status {
        Some(code) => {
            let status = match code {
                3 => GrpcStatusCode::InvalidArgument,
                7 => GrpcStatusCode::PermissionDenied,
                14 => GrpcStatusCode::Unavailable,
                _ => GrpcStatusCode::Unauthenticated,
            };
            let meta: Vec<(&str, &[u8])> = reply
                .headers
                .iter()
                .filter(|(k, _)| k == "www-authenticate")
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let msg = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                });
            hostcalls::send_grpc_response(status, msg.as_deref(), meta)
        }
        None => {
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            hostcalls::send_http_response(reply.status as u32, headers, Some(reply.body.as_bytes()))
        }
    };
    if let Err(e) = result {
        log::error!("jwt_jwks: sending a local reply failed: {e:?}");
    }
}
