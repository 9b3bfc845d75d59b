//! The host's clock.
#![forbid(unsafe_code)]

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;

pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        // Not `as_millis` (a u128 division, a library call in wasm32).
        .map_or(0, |d| {
            d.as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_millis()))
        })
}
