//! Changes to the request on its way upstream: a header kept from it, the
//! token removed when it must not be forwarded.
#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use crate::config::Config;
use crate::token::find::{self, Source};

/// Keeps a request header's value from the upstream. Envoy removes it.
/// ngx_wasm_module (Kong) "removes" a header by unhashing it and nginx's
/// proxy still forwards it (and a later set adds a second copy), so there
/// the value is emptied in place instead: the upstream sees it empty, and a
/// later set replaces it.
pub(crate) fn drop_header(name: &str, envoy: bool) -> Result<(), Status> {
    let value = if envoy { None } else { Some("") };
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
}

/// Removes the token from where it was found, when it must not go upstream.
pub(crate) fn strip_token(cfg: &Config, source: &Source, envoy: bool) {
    if cfg.forward_token {
        return;
    }
    let result = match source {
        Source::Header(name) => drop_header(name, envoy),
        Source::Query(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path") {
                Ok(Some(path)) => {
                    let stripped = find::path_without_param(&path, name);
                    hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        ":path",
                        Some(&stripped),
                    )
                }
                other => other.map(drop),
            }
        }
        Source::Cookie(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "cookie") {
                Ok(Some(value)) => match find::cookie_without(&value, name) {
                    Some(kept) => hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        "cookie",
                        Some(&kept),
                    ),
                    None => drop_header("cookie", envoy),
                },
                other => other.map(drop),
            }
        }
    };
    if let Err(e) = result {
        log::warn!("jwt_jwks: removing the token before the upstream failed: {e:?}");
    }
}
