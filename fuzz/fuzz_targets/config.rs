//! The configuration parser: any input is accepted or refused with a
//! field name, never a panic.
#![no_main]

use jwt_jwks::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Config::parse(data) {
        assert!(!e.field.is_empty());
    }
});
