//! Status List Tokens and a token's status reference: any bytes, never a
//! panic; an accepted list stays within the size limit, reads back from
//! its shared form, and answers a lookup at any index.
#![no_main]

use jwt_jwks::revoke::status::{self, StatusList};
use jwt_jwks::token::jose;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = status::reference(text);
    let mut scratch = jose::Scratch::default();
    if let Ok(d) = jose::decode(text, &mut scratch) {
        if let Ok(a) = status::accept(&d, "https://l/1", 1_800_000_000, MAX) {
            assert!(a.list.bytes.len() <= MAX);
            let back = StatusList::from_stored(&a.list.to_stored());
            assert_eq!(back.as_ref(), Some(&a.list));
            for idx in [0, 1, a.list.len().saturating_sub(1), a.list.len(), u64::MAX] {
                let got = a.list.get(idx);
                assert_eq!(got.is_some(), idx < a.list.len());
                assert!(got.is_none_or(|v| u16::from(v) < 1 << a.list.bits));
            }
        }
    }
});
