//! Wycheproof primitive-level RSA vectors (`tests/vectors/wycheproof/`)
//! run straight against `jwt_jwks::crypto::rsa`.
//!
//! Groups whose parameters JWS uses (PKCS#1 v1.5 with SHA-256/384/512; PSS
//! with MGF1 over the same hash and sLen = hLen, RFC 7518 section 3.5) are
//! checked vector by vector: `valid` must verify, `invalid` must not.
//!
//! `acceptable`: the only ones in these files are PKCS#1 v1.5 signatures
//! whose DigestInfo omits the NULL parameters (flag `MissingNull`). They
//! must FAIL here: the verifier compares against the one encoding RFC 8017
//! section 9.2 prescribes (with NULL), which is what JWS signers produce;
//! accepting a second encoding would only widen what an attacker can use.
//! Any other kind of `acceptable` vector makes the test fail, so that a new
//! file forces a decision.
//!
//! Groups with parameters JWS never uses (PSS with sLen != hLen, an MGF1
//! hash other than the message hash, or SHA-1/SHA-224) are refused by
//! construction: the API has no way to ask for them. Where the hash is one
//! we have, the vectors are run with our fixed parameters and every one,
//! `valid` included, must fail; where it is not, there is nothing to call.
//! Both are counted. One vector of the sLen = 0 file is a signature with
//! sLen = 32 (`SIGNED_WITH_JWS_PARAMS`) and must verify.
//!
//! Each signature is also checked under the other scheme: only vectors
//! flagged `WrongPrimitive` (a signature of the other scheme by the same key)
//! may verify there, and the count of those that do is pinned.

use std::collections::BTreeMap;

mod common;

use common::hex;
use jwt_jwks::crypto::rsa::{Hash, RsaKey};
use serde_json::Value;

const PKCS1_FILES: &[&str] = &[
    "rsa_signature_2048_sha256_test.json",
    "rsa_signature_2048_sha384_test.json",
    "rsa_signature_2048_sha512_test.json",
    "rsa_signature_3072_sha256_test.json",
    "rsa_signature_3072_sha384_test.json",
    "rsa_signature_3072_sha512_test.json",
    "rsa_signature_4096_sha256_test.json",
    "rsa_signature_4096_sha384_test.json",
    "rsa_signature_4096_sha512_test.json",
];

const PSS_FILES: &[&str] = &[
    "rsa_pss_2048_sha256_mgf1_0_test.json",
    "rsa_pss_2048_sha256_mgf1_32_test.json",
    "rsa_pss_2048_sha384_mgf1_48_test.json",
    "rsa_pss_3072_sha256_mgf1_32_test.json",
    "rsa_pss_4096_sha384_mgf1_48_test.json",
    "rsa_pss_4096_sha512_mgf1_64_test.json",
    "rsa_pss_misc_test.json",
];

/// Vectors in groups with non-JWS parameters that are nevertheless
/// signatures with JWS parameters, so they must verify here.
const SIGNED_WITH_JWS_PARAMS: &[(&str, u64)] = &[
    // "s_len changed to 32": a SHA-256 signature with sLen 32 = hLen in the
    // sLen 0 file (invalid there, a valid PS256 signature here).
    ("rsa_pss_2048_sha256_mgf1_0_test.json", 69),
];

fn has_flag(t: &Value, flag: &str) -> bool {
    t["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .any(|f| f == flag)
}

fn load(file: &str) -> Value {
    let doc = common::wycheproof(file);
    let groups = doc["testGroups"].as_array().expect("testGroups");
    let total: usize = groups
        .iter()
        .map(|g| g["tests"].as_array().expect("tests").len())
        .sum();
    assert_eq!(
        Some(total as u64),
        doc["numberOfTests"].as_u64(),
        "{file}: test count"
    );
    doc
}

fn hash_of(name: &str) -> Option<Hash> {
    match name {
        "SHA-256" => Some(Hash::Sha256),
        "SHA-384" => Some(Hash::Sha384),
        "SHA-512" => Some(Hash::Sha512),
        _ => None,
    }
}

fn key_of(group: &Value) -> RsaKey {
    let pk = &group["publicKey"];
    let n = hex(pk["modulus"].as_str().expect("modulus"));
    let e = hex(pk["publicExponent"].as_str().expect("publicExponent"));
    let key = RsaKey::new(&n, &e).expect("Wycheproof key loads");
    assert_eq!(
        Some(key.bits() as u64),
        group["keySize"].as_u64(),
        "key size"
    );
    key
}

#[derive(Default, Debug)]
struct Counts {
    valid_verified: usize,
    invalid_rejected: usize,
    acceptable_rejected: usize,
    /// Vectors of groups with non-JWS parameters, run with our fixed
    /// parameters and refused (valid ones included).
    params_refused_run: usize,
    /// Of those, vectors Wycheproof calls valid.
    params_refused_valid: usize,
    /// Vectors whose hash the API cannot even name (SHA-1, SHA-224).
    params_unnameable: usize,
    /// Vectors of such groups listed in `SIGNED_WITH_JWS_PARAMS`: verified.
    signed_with_jws_params: usize,
    /// `WrongPrimitive` vectors (a signature of the other scheme by the same
    /// key) that verify under the other scheme, as they should.
    other_scheme_verified: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.valid_verified
            + self.invalid_rejected
            + self.acceptable_rejected
            + self.params_refused_run
            + self.params_unnameable
            + self.signed_with_jws_params
    }
}

/// Checks one vector whose parameters JWS uses.
fn check(counts: &mut Counts, file: &str, t: &Value, ok: bool) {
    let id = t["tcId"].as_u64().expect("tcId");
    let flags: Vec<&str> = t["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f.as_str().expect("flag"))
        .collect();
    match t["result"].as_str().expect("result") {
        "valid" => {
            assert!(ok, "{file} tcId {id}: valid vector refused ({flags:?})");
            counts.valid_verified += 1;
        }
        "invalid" => {
            assert!(!ok, "{file} tcId {id}: invalid vector accepted ({flags:?})");
            counts.invalid_rejected += 1;
        }
        "acceptable" => {
            assert_eq!(
                flags,
                ["MissingNull"],
                "{file} tcId {id}: an acceptable vector of a new kind needs a decision"
            );
            assert!(
                !ok,
                "{file} tcId {id}: DigestInfo without NULL accepted ({flags:?})"
            );
            counts.acceptable_rejected += 1;
        }
        other => panic!("{file} tcId {id}: unknown result {other}"),
    }
}

#[test]
fn pkcs1v15_vectors() {
    let mut all = Counts::default();
    let mut per_file = BTreeMap::new();
    for file in PKCS1_FILES {
        let doc = load(file);
        assert_eq!(doc["schema"], "rsassa_pkcs1_verify_schema_v1.json");
        let mut counts = Counts::default();
        for group in doc["testGroups"].as_array().expect("groups") {
            let hash = hash_of(group["sha"].as_str().expect("sha"))
                .unwrap_or_else(|| panic!("{file}: JWS-usable hash expected"));
            let key = key_of(group);
            for t in group["tests"].as_array().expect("tests") {
                let msg = hex(t["msg"].as_str().expect("msg"));
                let sig = hex(t["sig"].as_str().expect("sig"));
                let ok = key.verify_pkcs1v15(hash, &msg, &sig);
                check(&mut counts, file, t, ok);
                // The other scheme: only `WrongPrimitive` vectors (PSS
                // signatures by the same key) may verify as PSS, and those
                // with the same hash and sLen = hLen must (counted below).
                let as_pss = key.verify_pss(hash, &msg, &sig);
                assert!(
                    !as_pss || has_flag(t, "WrongPrimitive"),
                    "{file} tcId {}: verify_pss",
                    t["tcId"]
                );
                counts.other_scheme_verified += usize::from(as_pss);
            }
        }
        assert!(counts.valid_verified > 0, "{file}: no valid vector ran");
        assert!(counts.invalid_rejected > 0, "{file}: no invalid vector ran");
        all.valid_verified += counts.valid_verified;
        all.invalid_rejected += counts.invalid_rejected;
        all.acceptable_rejected += counts.acceptable_rejected;
        all.other_scheme_verified += counts.other_scheme_verified;
        per_file.insert(*file, counts);
    }
    for (file, c) in &per_file {
        println!(
            "{file}: {} valid verified, {} invalid rejected, {} acceptable (MissingNull) rejected",
            c.valid_verified, c.invalid_rejected, c.acceptable_rejected
        );
    }
    println!("PKCS#1 v1.5 total: {all:?}");
    assert_eq!(all.total(), 2330);
    assert_eq!(all.valid_verified, 68);
    assert_eq!(all.acceptable_rejected, 9);
    // One PSS signature with the file's hash and sLen = hLen per file.
    assert_eq!(all.other_scheme_verified, 9);
}

#[test]
fn pss_vectors() {
    let mut all = Counts::default();
    for file in PSS_FILES {
        let doc = load(file);
        assert_eq!(doc["schema"], "rsassa_pss_verify_schema_v1.json");
        let mut counts = Counts::default();
        for group in doc["testGroups"].as_array().expect("groups") {
            assert_eq!(group["mgf"], "MGF1", "{file}: unexpected MGF");
            let sha = group["sha"].as_str().expect("sha");
            let mgf_sha = group["mgfSha"].as_str().expect("mgfSha");
            let s_len = group["sLen"].as_u64().expect("sLen");
            let tests = group["tests"].as_array().expect("tests");
            let Some(hash) = hash_of(sha) else {
                // SHA-1 / SHA-224: no `Hash` names them.
                counts.params_unnameable += tests.len();
                continue;
            };
            let key = key_of(group);
            let jws_params = mgf_sha == sha && s_len == hash.output_len() as u64;
            for t in tests {
                let msg = hex(t["msg"].as_str().expect("msg"));
                let sig = hex(t["sig"].as_str().expect("sig"));
                let ok = key.verify_pss(hash, &msg, &sig);
                if jws_params {
                    check(&mut counts, file, t, ok);
                } else {
                    let id = t["tcId"].as_u64().expect("tcId");
                    let expect = SIGNED_WITH_JWS_PARAMS.contains(&(*file, id));
                    assert_eq!(
                        ok, expect,
                        "{file} tcId {id}: sha {sha} mgf {mgf_sha} sLen {s_len}"
                    );
                    if expect {
                        counts.signed_with_jws_params += 1;
                        continue;
                    }
                    counts.params_refused_run += 1;
                    if t["result"] == "valid" {
                        counts.params_refused_valid += 1;
                    }
                }
                // The other scheme: only `WrongPrimitive` vectors (PKCS#1
                // v1.5 signatures by the same key) may verify as one, and
                // those with the same hash must (counted below).
                let as_pkcs1 = key.verify_pkcs1v15(hash, &msg, &sig);
                assert!(
                    !as_pkcs1 || has_flag(t, "WrongPrimitive"),
                    "{file} tcId {}: verify_pkcs1v15",
                    t["tcId"]
                );
                counts.other_scheme_verified += usize::from(as_pkcs1);
            }
        }
        println!(
            "{file}: {} valid verified, {} invalid rejected, {} refused for non-JWS parameters \
             ({} of them valid), {} with a hash we cannot name",
            counts.valid_verified,
            counts.invalid_rejected,
            counts.params_refused_run,
            counts.params_refused_valid,
            counts.params_unnameable
        );
        assert_eq!(
            counts.total() as u64,
            doc["numberOfTests"].as_u64().expect("numberOfTests"),
            "{file}: every vector accounted for"
        );
        all.valid_verified += counts.valid_verified;
        all.invalid_rejected += counts.invalid_rejected;
        all.acceptable_rejected += counts.acceptable_rejected;
        all.params_refused_run += counts.params_refused_run;
        all.params_refused_valid += counts.params_refused_valid;
        all.params_unnameable += counts.params_unnameable;
        all.signed_with_jws_params += counts.signed_with_jws_params;
        all.other_scheme_verified += counts.other_scheme_verified;
    }
    println!("PSS total: {all:?}");
    assert_eq!(all.total(), 930);
    // The sLen = 0 file's 61 valid vectors and the misc file's 87 runnable
    // ones with other parameters: all refused.
    assert_eq!(all.params_refused_valid, 61 + 87);
    assert_eq!(all.params_unnameable, 60);
    assert_eq!(all.params_refused_run, 102 + 87);
    assert_eq!(all.signed_with_jws_params, 1);
    assert_eq!(all.valid_verified, 451);
    assert_eq!(all.invalid_rejected, 229);
    // One PKCS#1 v1.5 signature with the file's hash per file, except the
    // misc file.
    assert_eq!(all.other_scheme_verified, 6);
}
