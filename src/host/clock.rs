//! The host's clock.
#![forbid(unsafe_code)]

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;

pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}
