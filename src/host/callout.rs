//! The JWKS callout: sent from the calling context, and its answer read
//! (never a read the host could answer with a status the SDK panics on).
#![forbid(unsafe_code)]

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::{BufferType, MapType};

use crate::engine::Engine;
use crate::host::clock::now_ms;
use crate::host::store::HostStore;
use crate::keys::freshness::CacheHeaders;
use crate::keys::refresh::{Answer, Doc};
use crate::metrics::{Metric, Metrics};

/// A callout in flight: its token, the provider, the document.
pub(crate) type Sent = (u32, usize, Doc);

/// Sends the next callout for `idx` from the calling context: for a key
/// set (`Doc::Jwks`) the metadata when due, else the JWKS; or its
/// revocation list (`Doc::Revocations`), or a status list.
pub(crate) fn dispatch(
    ctx: &dyn Context,
    engine: &mut Engine,
    m: &dyn Metrics,
    idx: usize,
    doc: Doc,
) -> Option<Sent> {
    let c = engine.callout(&HostStore, idx, doc, now_ms())?;
    let (upstream, timeout_ms) = (c.upstream.as_str(), c.timeout_ms);
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match ctx.dispatch_http_call(
        upstream,
        headers,
        c.body.as_deref(),
        vec![],
        Duration::from_millis(timeout_ms),
    ) {
        Ok(token) => {
            m.incr(match c.doc {
                Doc::Jwks => Metric::FetchSent,
                Doc::Discovery => Metric::DiscoverySent,
                Doc::Revocations => Metric::RevocationFetchSent,
                Doc::StatusList(_) => Metric::StatusListFetchSent,
                Doc::Introspection(_) => Metric::IntrospectionCalls,
            });
            Some((token, idx, c.doc))
        }
        Err(e) => {
            engine.fetch_not_sent(
                &HostStore,
                m,
                now_ms(),
                idx,
                c.doc,
                &format!("{e:?} (is '{upstream}' a known upstream?)"),
            );
            None
        }
    }
}

/// One header of the callout's answer, as text; never panics on bytes.
fn answer_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Reads a callout's answer (the body only if within the size limit). A
/// callout that failed after it started (reset mid-body, oversized answer)
/// arrives with no headers: then no header map exists, and Envoy answers
/// a read with a status the SDK would panic on, so none is read.
/// Returns the follow-up callout it sent (the JWKS after good metadata).
pub(crate) fn read_answer(
    ctx: &dyn Context,
    engine: &mut Engine,
    m: &dyn Metrics,
    (idx, doc): (usize, Doc),
    num_headers: usize,
    body_size: usize,
) -> Option<Sent> {
    let (status, dispatch_status) = if num_headers == 0 {
        // ngx_wasm_module reports a failed callout with no headers but a
        // readable `:dispatch_status`; on Envoy reading it makes the SDK
        // panic, so it is read only on a host known not to be Envoy.
        let dispatch_status = if engine.host_known() && !engine.host_is_envoy() {
            answer_header(":dispatch_status")
        } else {
            None
        };
        (None, dispatch_status)
    } else {
        let status = answer_header(":status").and_then(|s| s.trim().parse::<u16>().ok());
        (status, answer_header(":dispatch_status"))
    };
    let body = if status == Some(200) && engine.body_allowed(idx, doc, body_size) {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
    } else {
        None
    };
    let header = |name: &str| {
        if num_headers == 0 {
            None
        } else {
            answer_header(name)
        }
    };
    let answer = Answer {
        status,
        dispatch_status,
        body_size,
        body: body.as_deref(),
        cache: CacheHeaders {
            cache_control: header("cache-control"),
            expires: header("expires"),
            date: header("date"),
            age: header("age"),
        },
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    let outcome = engine.fetch_done(&HostStore, m, now_ms(), idx, doc, &answer)?;
    if outcome.follow_up() {
        dispatch(ctx, engine, m, idx, Doc::Jwks)
    } else {
        None
    }
}
