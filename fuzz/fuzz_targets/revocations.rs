//! Revocation documents: any bytes, never a panic; what loads round-trips
//! through the shared form, indexes, and answers a lookup.
#![no_main]

use jwt_jwks::revoke::entry;
use jwt_jwks::revoke::index::{Index, SubjectRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = entry::parse_document(data, 64) {
        assert!(list.len() <= 64);
        let stored = entry::write_stored(&list, 1).expect("entries serialize");
        let again = entry::read_stored(Some(&stored));
        assert_eq!(again, list, "the shared form reads back the same entries");
        let ix = Index::build(&list, 1_800_000_000);
        let s = SubjectRef {
            iss: Some("i"),
            sub: Some("s"),
            client: Some("c"),
            sid: Some("x"),
            jti: Some("j"),
            iat: Some(1_799_999_000),
            status: None,
        };
        let _ = ix.check(&s, 1_800_000_000);
    }
});
