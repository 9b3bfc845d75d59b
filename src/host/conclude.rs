//! Carrying out a verdict: the grant's headers and property set and the
//! request resumed, or the refusal sent; paused requests finished from
//! another context.
#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, MapType};

use crate::engine::{Engine, Pending, Verdict};
use crate::host::reply::send;
use crate::host::upstream::strip_token;
use crate::metrics::{Metric, Metrics};
use crate::response;
use crate::token::find::Source;

/// Carries out a verdict for the current (effective) request. `source`:
/// where its token was found (`None` when it has none; only refusals).
pub(crate) fn conclude(
    e: &Engine,
    m: &dyn Metrics,
    verdict: &Verdict,
    source: Option<&Source>,
    grpc: bool,
    resume: bool,
) -> Action {
    let cfg = e.config();
    match verdict {
        Verdict::Allow(grant) => {
            m.incr(Metric::Allowed);
            if let Some(source) = source {
                strip_token(cfg, source, e.host_is_envoy(), grant.strip_token);
            }
            for (name, value) in &grant.headers {
                if let Err(e) =
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                {
                    log::warn!("jwt_jwks: setting {name} failed: {e:?}");
                }
            }
            if let (Some(identity), Some(prop)) = (&grant.identity, &cfg.identity_property) {
                if let Err(e) =
                    hostcalls::set_property(vec![prop.as_str()], Some(identity.as_bytes()))
                {
                    log::warn!("jwt_jwks: setting property {prop} failed: {e:?}");
                }
            }
            if resume {
                if let Err(e) = hostcalls::resume_http_request() {
                    log::warn!("jwt_jwks: resuming a request failed: {e:?}");
                }
            }
            Action::Continue
        }
        Verdict::Deny(r) => {
            m.incr(Metric::Denied(r.metric()));
            send(&response::refusal(r, &cfg.realm, grpc));
            Action::Pause
        }
        Verdict::Wait { .. } => Action::Pause,
    }
}

/// Finishes paused requests decided elsewhere; returns to `home` after.
pub(crate) fn finish_waiters(
    engine: &Engine,
    m: &dyn Metrics,
    finals: Vec<(Pending, Verdict)>,
    home: u32,
) {
    if finals.is_empty() {
        return;
    }
    for (w, v) in finals {
        if hostcalls::set_effective_context(w.context_id).is_err() {
            continue; // the request is gone
        }
        conclude(engine, m, &v, Some(&w.source), w.grpc, true);
    }
    let _ = hostcalls::set_effective_context(home);
}
