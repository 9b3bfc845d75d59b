//! Never accepts a forgery: property tests over random keys of every
//! supported algorithm. Valid tokens are mutated (bit flips in each part,
//! `alg` swaps, non-canonical base64url, duplicate JSON members, nested
//! tokens); every mutant must be refused. A differential check runs
//! jwt-simple on the same inputs: the filter never accepts what jwt-simple
//! refuses (it may be stricter, and the test counts where it is).
//!
//! The random source is a fixed-seed xorshift, so a failure reproduces;
//! `FORGERY_SEED` and `FORGERY_ROUNDS` change it.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_jwks::config::Config;
use jwt_jwks::engine::{Engine, Verdict};
use jwt_jwks::keys::refresh::{Answer, Doc};
use jwt_jwks::metrics::MemoryMetrics;
use jwt_jwks::store::MemoryStore;
use jwt_simple::prelude::*;
use p521::ecdsa::signature::Signer as _;
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A signer for one algorithm, with its public JWK and a jwt-simple verifier.
struct Signer {
    alg: &'static str,
    jwk: Value,
    sign: Box<dyn Fn(&str) -> String>,
    check: Box<dyn Fn(&str) -> bool>,
}

fn opts() -> VerificationOptions {
    VerificationOptions {
        time_tolerance: Some(Duration::from_secs(60)),
        allowed_issuers: Some(HashSet::from_strings(&["https://idp"])),
        ..VerificationOptions::default()
    }
}

fn rsa_signers(rng: &mut Rng) -> Vec<Signer> {
    let kp = RS256KeyPair::generate(2048).unwrap();
    let c = kp.public_key().to_components();
    let der = kp.to_der().unwrap();
    let kid = format!("rsa-{}", rng.next());
    let jwk = json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)});
    let mut out = Vec::new();
    macro_rules! rsa {
        ($alg:literal, $kp:ident) => {{
            let signer = $kp::from_der(&der).unwrap().with_key_id(&kid);
            let verifier = signer.public_key();
            out.push(Signer {
                alg: $alg,
                jwk: jwk.clone(),
                sign: Box::new(move |claims: &str| {
                    let c: JWTClaims<Value> = serde_json::from_str(claims).unwrap();
                    signer.sign(c).unwrap()
                }),
                check: Box::new(move |t: &str| {
                    verifier.verify_token::<Value>(t, Some(opts())).is_ok()
                }),
            });
        }};
    }
    rsa!("RS256", RS256KeyPair);
    rsa!("RS384", RS384KeyPair);
    rsa!("RS512", RS512KeyPair);
    rsa!("PS256", PS256KeyPair);
    rsa!("PS384", PS384KeyPair);
    rsa!("PS512", PS512KeyPair);
    out
}

fn ec_and_ed_signers(rng: &mut Rng) -> Vec<Signer> {
    let mut out = Vec::new();
    let p256 = ES256KeyPair::generate().with_key_id(&format!("p256-{}", rng.next()));
    let p384 = ES384KeyPair::generate().with_key_id(&format!("p384-{}", rng.next()));
    let ed = Ed25519KeyPair::generate().with_key_id(&format!("ed-{}", rng.next()));
    let ec_jwk = |crv: &str, sec1: &[u8], kid: &str| {
        let n = (sec1.len() - 1) / 2;
        json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&sec1[1..1 + n]), "y": b64(&sec1[1 + n..])})
    };
    let jwk = ec_jwk(
        "P-256",
        &p256.public_key().public_key().to_bytes_uncompressed(),
        p256.key_id().as_deref().unwrap(),
    );
    let v = p256.public_key();
    out.push(Signer {
        alg: "ES256",
        jwk,
        sign: Box::new(move |c: &str| {
            p256.sign(serde_json::from_str::<JWTClaims<Value>>(c).unwrap())
                .unwrap()
        }),
        check: Box::new(move |t: &str| v.verify_token::<Value>(t, Some(opts())).is_ok()),
    });
    let jwk = ec_jwk(
        "P-384",
        &p384.public_key().public_key().to_bytes_uncompressed(),
        p384.key_id().as_deref().unwrap(),
    );
    let v = p384.public_key();
    out.push(Signer {
        alg: "ES384",
        jwk,
        sign: Box::new(move |c: &str| {
            p384.sign(serde_json::from_str::<JWTClaims<Value>>(c).unwrap())
                .unwrap()
        }),
        check: Box::new(move |t: &str| v.verify_token::<Value>(t, Some(opts())).is_ok()),
    });
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": ed.key_id().clone().unwrap(), "x": b64(&ed.public_key().to_bytes())});
    let v = ed.public_key();
    out.push(Signer {
        alg: "EdDSA",
        jwk,
        sign: Box::new(move |c: &str| {
            ed.sign(serde_json::from_str::<JWTClaims<Value>>(c).unwrap())
                .unwrap()
        }),
        check: Box::new(move |t: &str| v.verify_token::<Value>(t, Some(opts())).is_ok()),
    });
    // ES512: jwt-simple has no P-521; the signer is p521, and the
    // reference check is p521's own verifier on the same bytes.
    let mut scalar = [0u8; 66];
    for b in scalar.iter_mut().skip(2) {
        *b = rng.next() as u8;
    }
    let sk = p521::ecdsa::SigningKey::from_slice(&scalar).unwrap();
    let vk = *sk.verifying_key();
    let kid = format!("p521-{}", rng.next());
    let jwk = ec_jwk("P-521", vk.to_sec1_point(false).as_bytes(), &kid);
    out.push(Signer {
        alg: "ES512",
        jwk,
        sign: Box::new(move |c: &str| {
            raw_es512(&sk, &json!({"alg": "ES512", "kid": kid}).to_string(), c)
        }),
        check: Box::new(move |t: &str| {
            use p521::ecdsa::signature::Verifier as _;
            let Some((input, sig)) = t.rsplit_once('.') else {
                return false;
            };
            let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
                return false;
            };
            let Ok(sig) = p521::ecdsa::Signature::from_slice(&sig) else {
                return false;
            };
            let payload_ok = input
                .split_once('.')
                .and_then(|(_, p)| URL_SAFE_NO_PAD.decode(p).ok())
                .and_then(|p| serde_json::from_slice::<JWTClaims<Value>>(&p).ok())
                .is_some();
            payload_ok && vk.verify(input.as_bytes(), &sig).is_ok()
        }),
    });
    out
}

fn raw_es512(sk: &p521::ecdsa::SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig: p521::ecdsa::Signature = sk.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

fn engine_for(signers: &[Signer]) -> (Engine, MemoryStore, MemoryMetrics) {
    let cfg = Config::parse(
        br#"{"jwks_uri":"http://idp/jwks","issuers":["https://idp"],
             "allowed_algorithms":["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","EdDSA"]}"#,
    )
    .unwrap();
    let mut e = Engine::new(cfg, "forgery".into());
    let s = MemoryStore::default();
    let m = MemoryMetrics::default();
    let mut jwks: Vec<Value> = Vec::new();
    for x in signers {
        if !jwks.contains(&x.jwk) {
            jwks.push(x.jwk.clone()); // the six RSA algorithms share one key
        }
    }
    let doc = json!({ "keys": jwks }).to_string();
    assert_eq!(e.tick(&s, now_ms()), vec![0]);
    let answer = Answer {
        status: Some(200),
        body_size: doc.len(),
        body: Some(doc.as_bytes()),

        ..Answer::default()
    };
    e.fetch_done(&s, &m, now_ms(), 0, Doc::Jwks, &answer)
        .unwrap();
    assert_eq!(e.local_key_count(0), jwks.len());
    (e, s, m)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn claims_json(rng: &mut Rng) -> String {
    let now = now_ms() / 1000;
    json!({"iss": "https://idp", "sub": format!("user-{}", rng.next() % 1000), "iat": now, "exp": now + 300,
           "scope": "read write", "n": rng.next()})
    .to_string()
}

fn mutate_part(token: &str, part: usize, rng: &mut Rng) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut bytes = URL_SAFE_NO_PAD.decode(&parts[part]).unwrap();
    if bytes.is_empty() {
        bytes.push(0);
    } else {
        let i = rng.below(bytes.len());
        bytes[i] ^= 1 << rng.below(8);
    }
    parts[part] = b64(&bytes);
    parts.join(".")
}

/// Every way of changing a valid token that must be refused.
fn mutants(token: &str, alg: &str, rng: &mut Rng) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in 0..3 {
        for _ in 0..4 {
            out.push((
                format!("bit flip in part {part}"),
                mutate_part(token, part, rng),
            ));
        }
    }
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    for other in [
        "RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "none", "RS256 ", "rs256",
    ] {
        if other != alg {
            let mut h = header.clone();
            h["alg"] = json!(other);
            out.push((
                format!("alg {alg} -> {other}"),
                format!(
                    "{}.{}.{}",
                    b64(h.to_string().as_bytes()),
                    parts[1],
                    parts[2]
                ),
            ));
        }
    }
    // Non-canonical base64url: padding, the standard alphabet, trailing bits.
    out.push(("padding".into(), format!("{}=", token)));
    out.push((
        "padded header".into(),
        format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
    ));
    let std_sig = STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(parts[2]).unwrap());
    if std_sig != parts[2] {
        out.push((
            "standard alphabet".into(),
            format!("{}.{}.{}", parts[0], parts[1], std_sig),
        ));
    }
    let last = parts[2].chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let pos = alphabet.find(last).unwrap();
    let unused_bits = match parts[2].len() % 4 {
        2 => 4,
        3 => 2,
        _ => 0,
    };
    if unused_bits > 0 {
        let tweaked = alphabet.chars().nth(pos ^ 1).unwrap();
        let sig = format!("{}{}", &parts[2][..parts[2].len() - 1], tweaked);
        out.push((
            "non-zero trailing bits".into(),
            format!("{}.{}.{}", parts[0], parts[1], sig),
        ));
    }
    out.push((
        "signature dropped".into(),
        format!("{}.{}.", parts[0], parts[1]),
    ));
    out.push(("extra part".into(), format!("{token}.{}", parts[2])));
    out.push((
        "payload swapped for the header".into(),
        format!("{}.{}.{}", parts[0], parts[0], parts[2]),
    ));
    out
}

#[test]
fn mutated_tokens_are_always_refused_and_never_accepted_beyond_jwt_simple() {
    let mut rng = Rng(env_u64("FORGERY_SEED", 0x5EED_1234_ABCD_0001));
    let rounds = env_u64("FORGERY_ROUNDS", 2);
    let mut signers = rsa_signers(&mut rng);
    signers.extend(ec_and_ed_signers(&mut rng));
    let (mut e, s, m) = engine_for(&signers);
    let now = now_ms();
    let (mut checked, mut stricter) = (0usize, 0usize);
    for _ in 0..rounds {
        for signer in &signers {
            let token = (signer.sign)(&claims_json(&mut rng));
            assert!(
                e.authenticate(&s, &m, now, &token, None, false).is_allow(),
                "{} valid token",
                signer.alg
            );
            assert!(
                (signer.check)(&token),
                "{} reference accepts the valid token",
                signer.alg
            );
            for (what, mutant) in mutants(&token, signer.alg, &mut rng) {
                let ours = e.authenticate(&s, &m, now, &mutant, None, false);
                assert!(
                    !ours.is_allow(),
                    "{}: {what} was accepted: {mutant}",
                    signer.alg
                );
                assert!(
                    matches!(ours, Verdict::Deny(_)),
                    "{}: {what}: {ours:?}",
                    signer.alg
                );
                stricter += usize::from((signer.check)(&mutant));
                checked += 1;
            }
        }
    }
    eprintln!("forgery: {checked} mutants refused; jwt-simple accepted {stricter} of them");
    assert!(checked > 300, "{checked}");
}

#[test]
fn duplicate_members_and_nested_tokens_are_refused_even_when_correctly_signed() {
    // A P-521 key we hold directly, to sign arbitrary header and payload bytes.
    let mut rng = Rng(env_u64("FORGERY_SEED", 0x5EED_1234_ABCD_0002));
    let mut scalar = [0u8; 66];
    for b in scalar.iter_mut().skip(2) {
        *b = rng.next() as u8;
    }
    let sk = p521::ecdsa::SigningKey::from_slice(&scalar).unwrap();
    let sec1 = sk.verifying_key().to_sec1_point(false);
    let b = sec1.as_bytes();
    let own = Signer {
        alg: "ES512",
        jwk: json!({"kty": "EC", "crv": "P-521", "kid": "own", "x": b64(&b[1..67]), "y": b64(&b[67..])}),
        sign: Box::new(|_| String::new()),
        check: Box::new(|_| false),
    };
    let (mut e, s, m) = engine_for(&[own]);
    let now = now_ms() / 1000;
    let claims = json!({"iss": "https://idp", "exp": now + 300}).to_string();
    let good = raw_es512(&sk, r#"{"alg":"ES512","kid":"own"}"#, &claims);
    assert!(
        e.authenticate(&s, &m, now_ms(), &good, None, false)
            .is_allow(),
        "control: the raw signer works"
    );
    let cases = [
        (
            "duplicate alg",
            r#"{"alg":"ES512","alg":"none","kid":"own"}"#.to_string(),
            claims.clone(),
        ),
        (
            "duplicate kid",
            r#"{"alg":"ES512","kid":"own","kid":"other"}"#.to_string(),
            claims.clone(),
        ),
        (
            "duplicate exp",
            r#"{"alg":"ES512","kid":"own"}"#.to_string(),
            format!(r#"{{"iss":"https://idp","exp":1,"exp":{}}}"#, now + 300),
        ),
        (
            "duplicate iss",
            r#"{"alg":"ES512","kid":"own"}"#.to_string(),
            format!(
                r#"{{"iss":"https://evil","iss":"https://idp","exp":{}}}"#,
                now + 300
            ),
        ),
        (
            "nested token as payload",
            r#"{"alg":"ES512","kid":"own","cty":"JWT"}"#.to_string(),
            good.clone(),
        ),
        (
            "payload is a JSON string",
            r#"{"alg":"ES512","kid":"own"}"#.to_string(),
            format!("{:?}", good),
        ),
        (
            "unknown crit",
            r#"{"alg":"ES512","kid":"own","crit":["exp"]}"#.to_string(),
            claims.clone(),
        ),
        (
            "b64 false",
            r#"{"alg":"ES512","kid":"own","b64":false,"crit":["b64"]}"#.to_string(),
            claims.clone(),
        ),
        (
            "jwk header pointing elsewhere",
            r#"{"alg":"ES512","kid":"nope","jwk":{"kty":"EC"}}"#.to_string(),
            claims.clone(),
        ),
    ];
    for (what, header, payload) in cases {
        let t = raw_es512(&sk, &header, &payload);
        let v = e.authenticate(&s, &m, now_ms(), &t, None, false);
        assert!(matches!(v, Verdict::Deny(_)), "{what}: {v:?}");
    }
}
