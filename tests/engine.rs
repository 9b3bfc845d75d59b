//! The engine end to end on the host: real keys, real tokens (minted with
//! jwt-simple and p521), an in-memory shared store with Kong's strict CAS
//! rules, and several "workers" (engines) sharing it.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_jwks::authz::refusal::Refusal;
use jwt_jwks::config::Config;
use jwt_jwks::engine::{Engine, Pending, Verdict, KEYS_RECHECK_MS};
use jwt_jwks::keys::layout::Names;
use jwt_jwks::keys::refresh::{Answer, Doc};
use jwt_jwks::metrics::{MemoryMetrics, Metric};
use jwt_jwks::store::{MemoryStore, SharedStore};
use jwt_jwks::token::find::Source;
use jwt_jwks::token::jose::DecodeError;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const URI: &str = "http://idp:8080/jwks";

/// The shared entries of the engine's first provider.
fn names_of(e: &Engine) -> Names {
    let c = e.config();
    Names::for_provider(URI, &c.providers[0], c.allowed_algorithms)
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Keys {
    rsa: RS256KeyPair,
    rsa2: RS256KeyPair,
    p256: ES256KeyPair,
    p384: ES384KeyPair,
    ed: Ed25519KeyPair,
    p521: p521::ecdsa::SigningKey,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let mut scalar = [0u8; 66];
        for (i, b) in scalar.iter_mut().enumerate().skip(1) {
            *b = i as u8;
        }
        Keys {
            rsa: RS256KeyPair::generate(2048).unwrap(),
            rsa2: RS256KeyPair::generate(2048).unwrap(),
            p256: ES256KeyPair::generate(),
            p384: ES384KeyPair::generate(),
            ed: Ed25519KeyPair::generate(),
            p521: p521::ecdsa::SigningKey::from_slice(&scalar).unwrap(),
        }
    })
}

fn rsa_jwk(k: &RS256KeyPair, kid: &str, alg: Option<&str>) -> Value {
    let c = k.public_key().to_components();
    let mut j = json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)});
    if let Some(a) = alg {
        j["alg"] = json!(a);
    }
    j
}

fn ec_jwk(crv: &str, sec1: &[u8], kid: &str) -> Value {
    let n = (sec1.len() - 1) / 2;
    json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&sec1[1..1 + n]), "y": b64(&sec1[1 + n..])})
}

fn all_jwks() -> Value {
    let k = keys();
    let p521_point = k.p521.verifying_key().to_sec1_point(false);
    json!({"keys": [
        rsa_jwk(&k.rsa, "rsa", None),
        ec_jwk("P-256", &k.p256.public_key().public_key().to_bytes_uncompressed(), "p256"),
        ec_jwk("P-384", &k.p384.public_key().public_key().to_bytes_uncompressed(), "p384"),
        ec_jwk("P-521", p521_point.as_bytes(), "p521"),
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&k.ed.public_key().to_bytes())},
    ]})
}

fn claims() -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_mins(5))
        .with_issuer("https://idp")
        .with_audience("api")
}

/// A token for `alg` signed with the test key of that family.
fn token(alg: &str, kid: Option<&str>) -> String {
    let k = keys();
    let c = claims();
    macro_rules! sign {
        ($kp:expr) => {{
            let kp = $kp;
            match kid {
                Some(id) => kp.with_key_id(id).sign(c).unwrap(),
                None => kp.sign(c).unwrap(),
            }
        }};
    }
    match alg {
        "RS256" => sign!(k.rsa.clone()),
        "RS384" => sign!(RS384KeyPair::from_der(&k.rsa.to_der().unwrap()).unwrap()),
        "RS512" => sign!(RS512KeyPair::from_der(&k.rsa.to_der().unwrap()).unwrap()),
        "PS256" => sign!(PS256KeyPair::from_der(&k.rsa.to_der().unwrap()).unwrap()),
        "PS384" => sign!(PS384KeyPair::from_der(&k.rsa.to_der().unwrap()).unwrap()),
        "PS512" => sign!(PS512KeyPair::from_der(&k.rsa.to_der().unwrap()).unwrap()),
        "ES256" => sign!(ES256KeyPair::from_bytes(&k.p256.to_bytes()).unwrap()),
        "ES384" => sign!(ES384KeyPair::from_bytes(&k.p384.to_bytes()).unwrap()),
        "EdDSA" => sign!(Ed25519KeyPair::from_bytes(&k.ed.to_bytes()).unwrap()),
        "ES512" => {
            use p521::ecdsa::signature::Signer;
            let mut header = json!({"alg": "ES512", "typ": "JWT"});
            if let Some(id) = kid {
                header["kid"] = json!(id);
            }
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(serde_json::to_string(&c).unwrap().as_bytes())
            );
            let sig: p521::ecdsa::Signature = k.p521.sign(input.as_bytes());
            format!("{input}.{}", b64(&sig.to_bytes()))
        }
        other => panic!("no key for {other}"),
    }
}

fn config(extra: &str) -> Config {
    Config::parse(
        format!(
            r#"{{"jwks_uri":"{URI}","allowed_algorithms":["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","EdDSA"],"min_refresh_interval":30{extra}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn ok(body: &str) -> Answer<'_> {
    Answer {
        status: Some(200),
        body_size: body.len(),
        body: Some(body.as_bytes()),
        ..Answer::default()
    }
}

/// One worker: an engine plus its metrics, over a shared store.
struct Worker {
    e: Engine,
    m: MemoryMetrics,
}

impl Worker {
    fn new(cfg: Config, name: &str) -> Worker {
        Worker {
            e: Engine::new(cfg, name.into()),
            m: MemoryMetrics::default(),
        }
    }

    fn auth(&mut self, s: &MemoryStore, now: u64, t: &str) -> Verdict {
        self.e.authenticate(s, &self.m, now, t, None, true)
    }

    fn load(&mut self, s: &MemoryStore, now: u64, doc: &Value) {
        let due = self.e.tick(s, now);
        assert_eq!(due, vec![0], "a refresh is due");
        let body = doc.to_string();
        self.e
            .fetch_done(s, &self.m, now, 0, Doc::Jwks, &ok(&body))
            .unwrap();
    }
}

/// A request paused on provider 0 until `deadline_ms`.
fn pending(context_id: u32, token: &str, deadline_ms: u64) -> Pending {
    Pending {
        context_id,
        token: token.to_string(),
        source: Source::Header("authorization".into()),
        grpc: false,
        provider: 0,
        rule: None,
        deadline_ms,
        gen: 0,
        doc: Doc::Jwks,
    }
}

#[test]
fn every_algorithm_verifies_and_a_forgery_does_not() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(""), "w1");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let cases = [
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("PS384", "rsa"),
        ("PS512", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("ES512", "p521"),
        ("EdDSA", "ed"),
    ];
    for (alg, kid) in cases {
        let t = token(alg, Some(kid));
        assert!(w.auth(&s, now, &t).is_allow(), "{alg}");
        // Flip one bit of the signature's first byte.
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 0x80;
        let forged = format!("{input}.{}", b64(&raw));
        assert_eq!(
            w.auth(&s, now, &forged),
            Verdict::Deny(Refusal::BadSignature),
            "{alg} forged"
        );
    }
    assert!(w.m.get(Metric::CacheHit) >= 20);
}

#[test]
fn alg_must_match_the_key_and_be_allowed() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(""), "w1");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    // An ES256 token naming the RSA key's kid.
    let t = token("ES256", Some("rsa"));
    assert_eq!(
        w.auth(&s, now, &t),
        Verdict::Deny(Refusal::NoKeyForAlgorithm)
    );

    let s = MemoryStore::default();
    let strict = Config::parse(
        format!(r#"{{"jwks_uri":"{URI}","allowed_algorithms":["RS256"]}}"#).as_bytes(),
    )
    .unwrap();
    let mut w = Worker::new(strict, "w1");
    w.load(
        &s,
        now,
        &json!({"keys": [rsa_jwk(&keys().rsa, "rsa", None)]}),
    );
    assert_eq!(
        w.auth(&s, now, &token("PS256", Some("rsa"))),
        Verdict::Deny(Refusal::AlgorithmNotAllowed)
    );
    assert!(w.auth(&s, now, &token("RS256", Some("rsa"))).is_allow());
}

#[test]
fn claims_are_checked_before_the_signature() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","issuers":["https://other"]"#), "w1");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    assert_eq!(
        w.auth(&s, now, &token("ES256", Some("p256"))),
        Verdict::Deny(Refusal::Issuer)
    );
    let mut w = Worker::new(config(r#","audiences":["api"]"#), "w2");
    assert!(w.auth(&s, now, &token("ES256", Some("p256"))).is_allow());
    // Ten minutes later the five-minute token is expired.
    assert_eq!(
        w.auth(&s, now + 600_000, &token("ES256", Some("p256"))),
        Verdict::Deny(Refusal::Expired)
    );
    assert_eq!(
        w.auth(&s, now, "a.b"),
        Verdict::Deny(Refusal::Decode(DecodeError::Parts))
    );
}

#[test]
fn cold_start_waits_for_one_fetch_shared_by_every_worker() {
    let s = MemoryStore::default();
    let mut w1 = Worker::new(config(""), "w1");
    let mut w2 = Worker::new(config(""), "w2");
    let now = now_ms();
    let t = token("RS256", Some("rsa"));
    // The first request takes the lease and must send the callout...
    assert_eq!(
        w1.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    // ...the next ones (any worker) wait without fetching.
    assert_eq!(
        w1.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: false,
            doc: Doc::Jwks,
        }
    );
    assert_eq!(
        w2.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: false,
            doc: Doc::Jwks,
        }
    );
    assert_eq!(
        w2.e.tick(&s, now),
        Vec::<usize>::new(),
        "no second fetch while the lease is held"
    );
    assert!(w2.e.add_waiter(&s, pending(7, &t, now + 5000), now));
    let (finals, _) = w2.e.review_waiters(&s, &w2.m, now + 10);
    assert!(finals.is_empty(), "still waiting");

    let body = all_jwks().to_string();
    w1.e.fetch_done(&s, &w1.m, now + 50, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    assert_eq!(w1.m.get(Metric::FetchSuccess), 1);
    // The other worker's waiter is decided on its next review (tick).
    let (finals, dispatch) = w2.e.review_waiters(&s, &w2.m, now + 100);
    assert_eq!(finals.len(), 1);
    assert!(finals[0].1.is_allow());
    assert!(dispatch.is_empty());
    assert_eq!(w2.e.waiting(), 0);
    assert_eq!(w2.e.local_key_count(0), 5);
}

#[test]
fn a_waiter_past_its_deadline_gets_503_and_the_pending_cap_holds() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","max_pending_requests":1"#), "w1");
    let now = now_ms();
    let t = token("RS256", Some("rsa"));
    assert!(matches!(w.auth(&s, now, &t), Verdict::Wait { .. }));
    let p = pending(1, &t, now + 5000);
    assert!(w.e.add_waiter(&s, p.clone(), now));
    assert!(
        !w.e.add_waiter(&s, Pending { context_id: 2, ..p }, now),
        "over max_pending_requests"
    );
    let (finals, _) = w.e.review_waiters(&s, &w.m, now + 5000);
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].1, Verdict::Deny(Refusal::KeysUnavailable));
}

#[test]
fn unknown_kid_refreshes_are_budgeted_and_pick_up_rotation() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(""), "w1");
    let now = now_ms();
    let k = keys();
    let v1 = json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]});
    w.load(&s, now, &v1);
    let new_token = k.rsa2.clone().with_key_id("rsa2").sign(claims()).unwrap();

    // The issuer rotates: rsa2 is published. The first request with it
    // triggers a refresh and waits; the answer carries the new key.
    assert_eq!(
        w.auth(&s, now + 1000, &new_token),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    let v2 =
        json!({"keys": [rsa_jwk(&k.rsa, "rsa", None), rsa_jwk(&k.rsa2, "rsa2", None)]}).to_string();
    w.e.fetch_done(&s, &w.m, now + 1100, 0, Doc::Jwks, &ok(&v2))
        .unwrap();
    assert!(w.auth(&s, now + 1200, &new_token).is_allow());
    assert!(
        w.auth(&s, now + 1200, &token("RS256", Some("rsa")))
            .is_allow(),
        "old key kept while published"
    );

    // A random kid gets one refresh from the budget; once that refresh
    // proved it absent, it costs no more refreshes for an interval.
    let random = k.rsa.clone().with_key_id("nope").sign(claims()).unwrap();
    assert_eq!(
        w.auth(&s, now + 2000, &random),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    w.e.fetch_done(&s, &w.m, now + 2100, 0, Doc::Jwks, &ok(&v2))
        .unwrap();
    for i in 0..100 {
        assert_eq!(
            w.auth(&s, now + 3_000 + i, &random),
            Verdict::Deny(Refusal::UnknownKid)
        );
    }
    let st = jwt_jwks::keys::layout::read_state(&s, &names_of(&w.e)).unwrap();
    assert_eq!(st.fetch_success, 3, "no refresh for the absent kid");
    // After the interval it may ask once more.
    assert!(matches!(
        w.auth(&s, now + 33_000, &random),
        Verdict::Wait { dispatch: true, .. }
    ));
    assert!(w.m.get(Metric::CacheMiss) >= 100);
}

#[test]
fn a_failed_refresh_keeps_the_keys_and_marks_nothing_lost() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","cache_ttl":60,"refresh_ahead_time":10"#), "w1");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let t = token("EdDSA", Some("ed"));
    // At 50 s the refresh is due; the endpoint is down.
    assert_eq!(w.e.tick(&s, now + 50_000), vec![0]);
    let down = Answer {
        status: None,
        dispatch_status: Some("broken connection".into()),
        ..Answer::default()
    };
    w.e.fetch_done(&s, &w.m, now + 50_000, 0, Doc::Jwks, &down)
        .unwrap();
    assert_eq!(w.m.get(Metric::FetchFailure), 1);
    assert!(w.auth(&s, now + 50_001, &t).is_allow());
    // Past the TTL, still serving, and cache/info says stale.
    let info = w.e.info(&s, now + 70_000);
    assert_eq!(info["providers"][0]["stale"], json!(true));
    assert!(info["providers"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("broken connection"));
    assert!(
        w.auth(&s, now + 70_000, &token("ES384", Some("p384")))
            .is_allow(),
        "stale keys still serve"
    );
    // Issue 19, item 12: the error is current until a fetch succeeds, then
    // history, told apart by the time of the last success.
    let p = &info["providers"][0];
    assert_eq!(p["failing"], json!(true));
    assert_eq!(p["last_success_at"], json!(now / 1000));
    assert_eq!(w.e.tick(&s, now + 70_000), vec![0]);
    let body = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, now + 70_000, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    let info = w.e.info(&s, now + 70_001);
    let p = &info["providers"][0];
    assert!(p["last_error"]
        .as_str()
        .unwrap()
        .contains("broken connection"));
    assert_eq!(p["failing"], json!(false));
    assert_eq!(p["last_success_at"], json!((now + 70_000) / 1000));
}

#[test]
fn fallback_key_serves_while_no_jwks_key_is_loaded_and_for_tokens_without_kid() {
    let k = keys();
    let pem = k.p256.public_key().to_pem().unwrap();
    let cfg = config(&format!(r#","fallback_public_key":{}"#, json!(pem)));
    let s = MemoryStore::default();
    let mut w = Worker::new(cfg, "w1");
    let now = now_ms();
    // Nothing loaded: the fallback serves any kid.
    assert!(w
        .auth(&s, now, &token("ES256", Some("whatever")))
        .is_allow());
    assert_eq!(
        w.auth(&s, now, &token("RS256", Some("rsa"))),
        Verdict::Deny(Refusal::NoKeyForAlgorithm)
    );
    // Loaded: kid selects JWKS keys; no kid means the fallback key.
    w.load(&s, now, &json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]}));
    assert!(w.auth(&s, now, &token("RS256", Some("rsa"))).is_allow());
    assert!(w.auth(&s, now, &token("ES256", None)).is_allow());
}

#[test]
fn without_kid_the_keys_for_the_alg_are_tried_in_order() {
    let k = keys();
    let s = MemoryStore::default();
    let mut w = Worker::new(config(""), "w1");
    let now = now_ms();
    w.load(
        &s,
        now,
        &json!({"keys": [rsa_jwk(&k.rsa2, "a", None), rsa_jwk(&k.rsa, "b", None)]}),
    );
    assert!(w.auth(&s, now, &token("RS256", None)).is_allow());
    let other = RS256KeyPair::generate(2048)
        .unwrap()
        .sign(claims())
        .unwrap();
    // None verifies: a rotation may be under way, so one refresh is tried.
    assert_eq!(
        w.auth(&s, now, &other),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    assert_eq!(
        w.e.authenticate(&s, &w.m, now, &other, None, false),
        Verdict::Deny(Refusal::BadSignature)
    );
}

#[test]
fn key_claim_iss_requires_an_issuer_and_tries_keys_by_alg() {
    let k = keys();
    let cfg = Config::parse(
        format!(r#"{{"jwks_uri":"{URI}","key_claim_name":"iss","claims_to_verify":["exp"]}}"#)
            .as_bytes(),
    )
    .unwrap();
    let s = MemoryStore::default();
    let mut w = Worker::new(cfg, "w1");
    let now = now_ms();
    w.load(
        &s,
        now,
        &json!({"keys": [rsa_jwk(&k.rsa, "some-kid", None)]}),
    );
    // kid is not used for selection: a token naming another kid still verifies.
    assert!(w.auth(&s, now, &token("RS256", Some("other"))).is_allow());
    let no_iss = k.rsa.sign(Claims::create(Duration::from_mins(5))).unwrap();
    assert_eq!(
        w.auth(&s, now, &no_iss),
        Verdict::Deny(Refusal::MissingClaim("iss"))
    );
}

/// Two workers sharing a store; the first loaded every key, the second
/// accepts an ES256 token (returned) from the shared keys.
fn two_workers_with_keys() -> (MemoryStore, Worker, Worker, u64, String) {
    let s = MemoryStore::default();
    let mut w1 = Worker::new(config(""), "w1");
    let mut w2 = Worker::new(config(""), "w2");
    let now = now_ms();
    w1.load(&s, now, &all_jwks());
    let t = token("ES256", Some("p256"));
    assert!(w2.auth(&s, now, &t).is_allow());
    (s, w1, w2, now, t)
}

#[test]
fn admin_clear_is_seen_by_every_worker_and_the_next_request_refetches() {
    let (s, mut w1, mut w2, now, t) = two_workers_with_keys();

    assert_eq!(
        w1.e.clear_kid(&s, "p256").unwrap(),
        Some(json!({"cleared": "p256"}))
    );
    assert_eq!(
        w1.e.clear_kid(&s, "p256").unwrap(),
        None,
        "404 for an unknown kid"
    );
    // The cleared kid may refetch at once (the interval was reset).
    assert_eq!(
        w2.auth(&s, now + 10, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    let body = all_jwks().to_string();
    w2.e.fetch_done(&s, &w2.m, now + 20, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    assert!(w2.auth(&s, now + 30, &t).is_allow());

    let r = w1.e.clear_all(&s).unwrap();
    assert_eq!(r["keys_removed"], json!(5));
    assert_eq!(w2.e.info(&s, now)["keys_count"], json!(0));
    // w2's cached verdict stands until it reads the generation again, at
    // most KEYS_RECHECK_MS after its last read (at now + 10, its last hit).
    assert!(w2.auth(&s, now + 40, &t).is_allow());
    assert_eq!(
        w2.auth(&s, now + 10 + KEYS_RECHECK_MS, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    assert_eq!(w1.e.local_key_count(0), 0);
}

#[test]
fn a_configuration_update_keeps_the_key_set_unless_its_settings_changed() {
    let (s, _w1, _w2, now, t) = two_workers_with_keys();

    // Envoy rebuilds the filter (a new root context, a new engine) when the
    // listener changes. Only claims and rules changed: the set is in place.
    let mut same = Worker::new(
        config(r#","clock_skew":5,"claims_to_headers":{"sub":"x-sub"}"#),
        "w3",
    );
    assert!(same.e.tick(&s, now + 10).is_empty(), "nothing to fetch");
    assert!(same.auth(&s, now + 10, &t).is_allow());
    assert_eq!(names_of(&same.e), names_of(&_w1.e));

    // The accepted algorithms changed: the set is read again, under names
    // of its own, and the first configuration's set is left as it was.
    let narrower = config(r#","allowed_algorithms":["ES256"]"#);
    let mut changed = Worker::new(narrower, "w4");
    assert_ne!(names_of(&changed.e), names_of(&_w1.e));
    assert_eq!(changed.e.tick(&s, now + 20), vec![0], "a fetch is due");
    changed
        .e
        .fetch_done(
            &s,
            &changed.m,
            now + 30,
            0,
            Doc::Jwks,
            &ok(&all_jwks().to_string()),
        )
        .unwrap();
    assert!(changed.auth(&s, now + 40, &t).is_allow());
    assert_eq!(changed.e.info(&s, now + 40)["keys_count"], json!(1));
    assert_eq!(same.e.info(&s, now + 40)["keys_count"], json!(5));
}

#[test]
fn a_key_set_written_without_its_marker_reaches_the_other_workers_on_their_tick() {
    let (s, _w1, mut w2, now, t) = two_workers_with_keys();

    // An empty key set under a new generation, as if writing its marker had
    // failed: requests keep the local copy (no marker), the tick reads `gen`.
    let n = names_of(&w2.e);
    let (old, cas) = s.get(&n.gen).unwrap();
    let next: u64 = String::from_utf8(old.unwrap())
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 1;
    let (_, kcas) = s.get(&n.keys).unwrap();
    s.set(
        &n.keys,
        json!({"gen": next, "keys": []}).to_string().as_bytes(),
        kcas,
    )
    .unwrap();
    s.set(&n.gen, next.to_string().as_bytes(), cas).unwrap();
    assert!(
        w2.auth(&s, now + 1, &t).is_allow(),
        "no marker: not seen yet"
    );
    let _ = w2.e.tick(&s, now + 2);
    assert_eq!(w2.e.local_key_count(0), 0, "the tick read the generation");
    assert!(!w2.auth(&s, now + 3, &t).is_allow());
}

#[test]
fn cache_info_reports_the_shared_state() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(""), "w1");
    let now = now_ms();
    let mut doc = all_jwks();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "RSA", "kid": "enc", "use": "enc"}));
    w.load(&s, now, &doc);
    let info = w.e.info(&s, now);
    assert_eq!(info["cache_type"], json!("proxy-wasm shared data"));
    assert_eq!(info["keys_count"], json!(5));
    let p = &info["providers"][0];
    assert_eq!(p["jwks_uri"], json!(URI));
    assert_eq!(p["kids"], json!(["rsa", "p256", "p384", "p521", "ed"]));
    assert_eq!(p["stale"], json!(false));
    assert_eq!(p["fetch_success"], json!(1));
    assert_eq!(p["skipped_keys"][0]["kid"], json!("enc"));
    assert_eq!(p["fetched_at"], json!(now / 1000));
}

#[test]
fn per_request_wait_mode_never_leaves_a_request_without_its_own_callout() {
    let s = MemoryStore::default();
    let cfg = config(r#","wait_mode":"per_request""#);
    let mut w1 = Worker::new(cfg.clone(), "w1");
    let mut w2 = Worker::new(cfg, "w2");
    assert!(!w1.e.shared_wake());
    let now = now_ms();
    let t = token("RS256", Some("rsa"));
    assert_eq!(
        w1.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    // The lease is held, but this request could not be woken by that
    // fetch: on a cold start it fetches for itself.
    assert_eq!(
        w2.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    let body = all_jwks().to_string();
    w1.e.fetch_done(&s, &w1.m, now + 10, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    assert!(w2.auth(&s, now + 20, &t).is_allow());

    // An unknown kid while another refresh is under way is refused at once.
    let random = keys()
        .rsa
        .clone()
        .with_key_id("nope")
        .sign(claims())
        .unwrap();
    assert_eq!(
        w1.auth(&s, now + 31_000, &random),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    assert_eq!(
        w2.auth(&s, now + 31_001, &random),
        Verdict::Deny(Refusal::UnknownKid)
    );

    // After failures, a cold request does not fetch during the retry delay:
    // it gets 503 instead of hammering the endpoint.
    let s = MemoryStore::default();
    let mut w = Worker::new(
        config(r#","wait_mode":"per_request","retry_delay":5000"#),
        "w3",
    );
    assert_eq!(
        w.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    let down = Answer {
        status: Some(503),
        ..Answer::default()
    };
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &down).unwrap();
    assert_eq!(
        w.auth(&s, now + 100, &t),
        Verdict::Deny(Refusal::KeysUnavailable)
    );
}

#[test]
fn auto_wait_mode_follows_the_host_and_explicit_modes_win() {
    let mut e = Engine::new(config(""), "w".into());
    assert!(!e.host_known());
    e.set_host(false);
    assert!(e.host_known() && !e.shared_wake());
    let mut e = Engine::new(config(""), "w".into());
    e.set_host(true);
    assert!(e.shared_wake());
    let mut e = Engine::new(config(r#","wait_mode":"shared""#), "w".into());
    e.set_host(false);
    assert!(e.shared_wake());
    let mut e = Engine::new(config(r#","wait_mode":"per_request""#), "w".into());
    e.set_host(true);
    assert!(!e.shared_wake());
}

/// A token with extra claims, signed by the test RSA key (kid "rsa").
fn token_with(iss: &str, extra: Value, key: &RS256KeyPair, kid: &str) -> String {
    let c = Claims::with_custom_claims(extra, Duration::from_mins(5))
        .with_issuer(iss)
        .with_subject("alice");
    key.clone().with_key_id(kid).sign(c).unwrap()
}

fn grant(v: Verdict) -> jwt_jwks::engine::Grant {
    match v {
        Verdict::Allow(g) => jwt_jwks::engine::Grant::clone(&g),
        other => panic!("expected Allow, got {other:?}"),
    }
}

#[test]
fn tokens_go_to_the_provider_of_their_issuer_and_each_has_its_own_keys() {
    let k = keys();
    let cfg = Config::parse(
        br#"{"providers":[
            {"name":"external","issuers":["https://auth.example.com"],"jwks_uri":"http://internal/jwks"},
            {"name":"partner","issuers":["https://partner"],"jwks_uri":"http://partner/jwks"}
        ],"rules":[{"path_prefix":"/partner","providers":["partner"]}]}"#,
    )
    .unwrap();
    let s = MemoryStore::default();
    let mut w = Worker::new(cfg, "w1");
    let now = now_ms();
    assert_eq!(w.e.tick(&s, now), vec![0, 1], "one fetch per provider");
    let ext = json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]}).to_string();
    let par = json!({"keys": [rsa_jwk(&k.rsa2, "rsa", None)]}).to_string();
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &ok(&ext))
        .unwrap();
    w.e.fetch_done(&s, &w.m, now, 1, Doc::Jwks, &ok(&par))
        .unwrap();

    let external = token_with("https://auth.example.com", json!({}), &k.rsa, "rsa");
    let partner = token_with("https://partner", json!({}), &k.rsa2, "rsa");
    assert!(w.auth(&s, now, &external).is_allow());
    assert!(w.auth(&s, now, &partner).is_allow());
    // Same kid, but the partner's key under the external issuer: refused.
    let forged = token_with("https://auth.example.com", json!({}), &k.rsa2, "rsa");
    assert_eq!(
        w.auth(&s, now, &forged),
        Verdict::Deny(Refusal::BadSignature)
    );
    let unknown = token_with("https://other", json!({}), &k.rsa, "rsa");
    assert_eq!(w.auth(&s, now, &unknown), Verdict::Deny(Refusal::Issuer));
    // A route for the partner only.
    assert_eq!(
        w.e.authenticate(&s, &w.m, now, &external, Some(0), true),
        Verdict::Deny(Refusal::ProviderNotAllowed)
    );
    assert!(w
        .e
        .authenticate(&s, &w.m, now, &partner, Some(0), true)
        .is_allow());
}

#[test]
fn rules_require_scopes_and_allowed_requests_carry_claims_upstream() {
    let k = keys();
    let cfg = Config::parse(
        format!(
            r#"{{"jwks_uri":"{URI}","rules":[{{"path_prefix":"/invoices","scopes":{{"any":["invoice_*"]}}}}],
            "roles":{{"any":["admin"]}},"roles_claims":["realm_access.roles"],
            "claims_to_headers":{{"sub":"x-jwt-sub","realm_access.roles":"x-jwt-roles","org_id":"x-jwt-org"}},
            "payload_header":"x-jwt-payload","identity_property":"jwt_jwks_identity"}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    let s = MemoryStore::default();
    let mut w = Worker::new(cfg, "w1");
    let now = now_ms();
    w.load(&s, now, &json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]}));
    let reader = token_with(
        "https://idp",
        json!({"scope": "profile invoice_read", "realm_access": {"roles": ["user", "admin"]}, "org_id": 42}),
        &k.rsa,
        "rsa",
    );
    let g = grant(w.e.authenticate(&s, &w.m, now, &reader, Some(0), true));
    assert!(g.headers.contains(&("x-jwt-sub".into(), "alice".into())));
    assert!(g
        .headers
        .contains(&("x-jwt-roles".into(), "user,admin".into())));
    assert!(g.headers.contains(&("x-jwt-org".into(), "42".into())));
    let payload = reader.split('.').nth(1).unwrap();
    assert!(g
        .headers
        .contains(&("x-jwt-payload".into(), payload.into())));
    assert_eq!(
        g.identity, None,
        "no identity property before the host is known to be Envoy"
    );

    let no_scope = token_with(
        "https://idp",
        json!({"scope": "profile", "realm_access": {"roles": ["admin"]}}),
        &k.rsa,
        "rsa",
    );
    match w.e.authenticate(&s, &w.m, now, &no_scope, Some(0), true) {
        Verdict::Deny(Refusal::InsufficientScope(m)) => {
            assert_eq!(m.scope_attribute().as_deref(), Some("invoice_*"))
        }
        other => panic!("{other:?}"),
    }
    // No rule matched: the top-level roles apply.
    assert!(w
        .e
        .authenticate(&s, &w.m, now, &no_scope, None, true)
        .is_allow());
    let user = token_with(
        "https://idp",
        json!({"realm_access": {"roles": ["user"]}}),
        &k.rsa,
        "rsa",
    );
    assert!(matches!(
        w.e.authenticate(&s, &w.m, now, &user, None, true),
        Verdict::Deny(Refusal::InsufficientScope(_))
    ));

    // On Envoy the identity goes to a property for later filters, when
    // one is named (never by default).
    let mut plain = Worker::new(config(""), "w2");
    plain.e.set_host(true);
    plain.load(&s, now, &json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]}));
    assert_eq!(grant(plain.auth(&s, now, &reader)).identity, None);
    w.e.set_host(true);
    let g = grant(w.e.authenticate(&s, &w.m, now, &reader, Some(0), true));
    let id: Value = serde_json::from_str(&g.identity.unwrap()).unwrap();
    assert_eq!(
        id,
        json!({"provider": "default", "iss": "https://idp", "sub": "alice", "aud": null})
    );
}

/// A store whose host calls start failing on demand (a host error).
struct FlakyStore {
    inner: MemoryStore,
    failing: std::cell::Cell<bool>,
}

impl jwt_jwks::store::SharedStore for FlakyStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), jwt_jwks::store::StoreError> {
        if self.failing.get() {
            return Err(jwt_jwks::store::StoreError::Host("InternalFailure".into()));
        }
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), jwt_jwks::store::StoreError> {
        if self.failing.get() {
            return Err(jwt_jwks::store::StoreError::Host("InternalFailure".into()));
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_failing_host_store_never_panics_and_loses_no_loaded_key() {
    let s = FlakyStore {
        inner: MemoryStore::default(),
        failing: std::cell::Cell::new(false),
    };
    let mut e = Engine::new(config(""), "w1".into());
    let m = MemoryMetrics::default();
    let now = now_ms();
    assert_eq!(e.tick(&s, now), vec![0]);
    let body = all_jwks().to_string();
    e.fetch_done(&s, &m, now, 0, Doc::Jwks, &ok(&body)).unwrap();
    let t = token("ES256", Some("p256"));
    s.failing.set(true);
    // Keys already parsed in this worker keep serving.
    assert!(e.authenticate(&s, &m, now, &t, None, true).is_allow());
    // What needs the store degrades to a refusal, not a crash.
    let random = keys()
        .rsa
        .clone()
        .with_key_id("nope")
        .sign(claims())
        .unwrap();
    assert_eq!(
        e.authenticate(&s, &m, now, &random, None, true),
        Verdict::Deny(Refusal::UnknownKid)
    );
    assert_eq!(e.tick(&s, now + 10_000_000), Vec::<usize>::new());
    assert!(e
        .fetch_done(&s, &m, now, 0, Doc::Jwks, &ok(&body))
        .is_none());
    assert!(e.clear_all(&s).is_err());
    let info = e.info(&s, now);
    assert_eq!(info["keys_count"], json!(0), "info reads nothing, says so");
    // A cold worker with a failing store answers 503, never hangs.
    let mut cold = Engine::new(config(""), "w2".into());
    assert_eq!(
        cold.authenticate(&s, &m, now, &t, None, true),
        Verdict::Deny(Refusal::KeysUnavailable)
    );
}

#[test]
fn the_token_cache_answers_repeats_and_never_outlives_exp_or_the_key_set() {
    let k = keys();
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","token_cache_size":2"#), "w1");
    let mut other = Worker::new(config(""), "w2");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let t = token("RS256", Some("rsa"));
    assert!(w.auth(&s, now, &t).is_allow());
    assert!(w.auth(&s, now, &t).is_allow());
    assert_eq!(w.m.get(Metric::TokenCacheHit), 1);
    assert_eq!(w.e.token_cache_len(), 1);

    // Past exp (five minutes), the cache does not answer: the token is
    // checked again (still inside the 60 s clock skew), then refused.
    assert!(w.auth(&s, now + 301_000, &t).is_allow());
    assert_eq!(
        w.m.get(Metric::TokenCacheHit),
        1,
        "verified again, not served from the cache"
    );
    assert_eq!(
        w.auth(&s, now + 361_000, &t),
        Verdict::Deny(Refusal::Expired)
    );

    // A clear in another worker voids the entry once this worker reads the
    // generation again (at most KEYS_RECHECK_MS after its last read): the
    // next request waits for keys, as on a cold start.
    assert!(w.auth(&s, now, &t).is_allow());
    assert!(w.auth(&s, now + 1, &t).is_allow(), "a hit: generation read");
    other.e.clear_kid(&s, "rsa").unwrap();
    assert!(w.auth(&s, now + 2, &t).is_allow(), "within the window");
    let now = now + 1 + KEYS_RECHECK_MS;
    assert_eq!(
        w.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    let hits = w.m.get(Metric::TokenCacheHit);

    // Bounded: two entries at most.
    let body = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    for alg in ["ES256", "ES384", "EdDSA"] {
        let kid = match alg {
            "ES256" => "p256",
            "ES384" => "p384",
            _ => "ed",
        };
        assert!(w.auth(&s, now, &token(alg, Some(kid))).is_allow());
    }
    assert_eq!(w.e.token_cache_len(), 2);
    assert_eq!(w.m.get(Metric::TokenCacheHit), hits);

    // A forged signature is never cached as valid, whatever came before.
    let (input, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", b64(&[0u8; 256]));
    assert_eq!(
        w.auth(&s, now, &forged),
        Verdict::Deny(Refusal::BadSignature)
    );
    let _ = k;
}

/// A host verifier that records its calls and answers as told.
struct FakeHost {
    answer: Result<bool, String>,
    calls: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl jwt_jwks::crypto::host::HostCrypto for FakeHost {
    fn verify(&self, args: &[u8]) -> Result<bool, String> {
        self.calls.borrow_mut().push(args.to_vec());
        self.answer.clone()
    }
}

#[test]
fn host_crypto_checks_rsa_and_ecdsa_and_leaves_pss_and_eddsa_to_wasm() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","token_cache_size":0"#), "w1");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let host = std::rc::Rc::new(FakeHost {
        answer: Ok(false),
        calls: Default::default(),
    });
    w.e.set_host_crypto(Some(host.clone()));
    // The host says no: RS256/ES256/ES512 are refused on its word...
    for (alg, kid) in [("RS256", "rsa"), ("ES256", "p256"), ("ES512", "p521")] {
        assert_eq!(
            w.auth(&s, now, &token(alg, Some(kid))),
            Verdict::Deny(Refusal::BadSignature),
            "{alg}"
        );
    }
    assert_eq!(host.calls.borrow().len(), 3);
    assert_eq!(w.m.get(Metric::HostVerification), 3);
    // ...while PS256 and EdDSA never reach it.
    assert!(w.auth(&s, now, &token("PS256", Some("rsa"))).is_allow());
    assert!(w.auth(&s, now, &token("EdDSA", Some("ed"))).is_allow());
    assert_eq!(host.calls.borrow().len(), 3);

    // What the host receives: sha256, the key's SPKI, a DER ECDSA signature
    // and the signing input.
    let t = token("ES256", Some("p256"));
    let _ = w.auth(&s, now, &t);
    let args = host.calls.borrow().last().unwrap().clone();
    assert_eq!(&args[..8], b"\x0a\x06sha256");
    let input = &t[..t.rfind('.').unwrap()];
    assert!(args.ends_with(input.as_bytes()));
    let raw_sig = URL_SAFE_NO_PAD
        .decode(t.rsplit('.').next().unwrap())
        .unwrap();
    let der = jwt_jwks::crypto::host::ecdsa_der(&raw_sig, 32).unwrap();
    assert!(args.windows(der.len()).any(|win| win == der.as_slice()));

    // A host that cannot answer: the wasm path decides (valid passes,
    // forged fails).
    let broken = std::rc::Rc::new(FakeHost {
        answer: Err("BadArgument".into()),
        calls: Default::default(),
    });
    w.e.set_host_crypto(Some(broken.clone()));
    assert!(w.auth(&s, now, &token("RS256", Some("rsa"))).is_allow());
    let (input, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", b64(&[1u8; 64]));
    assert_eq!(
        w.auth(&s, now, &forged),
        Verdict::Deny(Refusal::BadSignature)
    );
    assert_eq!(broken.calls.borrow().len(), 2);
}

#[test]
fn per_request_mode_never_finishes_a_request_from_another_context() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","wait_mode":"per_request""#), "w1");
    let now = now_ms();
    let t = token("RS256", Some("rsa"));
    assert_eq!(
        w.auth(&s, now, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: Doc::Jwks,
        }
    );
    assert!(w.e.add_waiter(&s, pending(5, &t, now + 1000), now));
    let body = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    // Keys are here and the deadline has passed, but on a host where one
    // context cannot resume another, nothing is decided for it here.
    let (finals, dispatch) = w.e.review_waiters(&s, &w.m, now + 2000);
    assert!(finals.is_empty() && dispatch.is_empty());
    assert_eq!(w.e.waiting(), 1);
    assert!(w.e.take_waiter(5).is_some());
}

// ---------------------------------------------------------------- issue 15

fn discovery_config(extra: &str) -> Config {
    Config::parse(
        format!(
            r#"{{"discovery_uri":"https://idp/realms/a/.well-known/openid-configuration",
                "issuers":["https://idp"],"min_refresh_interval":30{extra}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn discovery_finds_the_jwks_on_another_host_and_a_foreign_issuer_is_refused() {
    let s = MemoryStore::default();
    let mut w = Worker::new(discovery_config(r#","retry_count":0"#), "w1");
    let now = now_ms();
    let t = token("RS256", Some("rsa"));
    assert_eq!(w.e.tick(&s, now), vec![0]);
    let c = w.e.callout(&s, 0, Doc::Jwks, now).unwrap();
    assert_eq!((c.doc, c.upstream.as_str()), (Doc::Discovery, "idp"));
    // A document for another issuer is not used: no JWKS callout follows.
    let evil = r#"{"issuer":"https://evil","jwks_uri":"http://evil:1/certs"}"#;
    let o =
        w.e.fetch_done(&s, &w.m, now, 0, Doc::Discovery, &ok(evil))
            .unwrap();
    assert!(!o.follow_up(), "{o:?}");
    let info = w.e.info(&s, now);
    let err = info["providers"][0]["discovery"]["last_error"]
        .as_str()
        .unwrap();
    assert!(err.contains("\"https://evil\""), "{err}");
    assert_eq!(w.m.get(Metric::DiscoveryFailure), 1);
    assert_eq!(
        w.auth(&s, now + 10, &t),
        Verdict::Wait {
            provider: 0,
            dispatch: false,
            doc: Doc::Jwks,
        },
        "a retry delay runs: the request waits for the periodic check"
    );

    // The right document names a JWKS on a second server.
    let later = now + 31_000;
    assert_eq!(w.e.tick(&s, later), vec![0]);
    let meta = r#"{"issuer":"https://idp","jwks_uri":"http://keys.example:8081/certs"}"#;
    let o =
        w.e.fetch_done(&s, &w.m, later, 0, Doc::Discovery, &ok(meta))
            .unwrap();
    assert!(o.follow_up());
    let c = w.e.callout(&s, 0, Doc::Jwks, later).unwrap();
    assert_eq!(
        (c.doc, c.upstream.as_str()),
        (Doc::Jwks, "keys.example:8081")
    );
    assert!(c.headers.contains(&(":path".into(), "/certs".into())));
    let body = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, later, 0, Doc::Jwks, &ok(&body))
        .unwrap();
    assert!(w.auth(&s, later + 10, &t).is_allow());
    let info = w.e.info(&s, later);
    let p = &info["providers"][0];
    assert_eq!(p["jwks_uri"], json!("http://keys.example:8081/certs"));
    assert_eq!(p["discovery"]["issuer"], json!("https://idp"));
    assert_eq!(p["discovery"]["last_error"], json!(null));
}

#[test]
fn a_304_keeps_the_generation_and_the_token_cache() {
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","cache_ttl":600"#), "w1");
    let now = now_ms();
    assert_eq!(w.e.tick(&s, now), vec![0]);
    let body = all_jwks().to_string();
    let mut first = ok(&body);
    first.etag = Some("\"abc\"".into());
    first.cache.cache_control = Some("max-age=120".into());
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &first).unwrap();
    let t = token("ES256", Some("p256"));
    assert!(w.auth(&s, now, &t).is_allow());
    assert!(w.auth(&s, now, &t).is_allow());
    assert_eq!(w.m.get(Metric::TokenCacheHit), 1);
    let info = w.e.info(&s, now);
    assert_eq!(info["providers"][0]["freshness"], json!(120));
    assert_eq!(
        info["providers"][0]["next_refresh_at"],
        json!((now + 60_000) / 1000)
    );
    // Due at half the max-age; the callout carries the validator.
    assert!(w.e.tick(&s, now + 59_000).is_empty());
    assert_eq!(w.e.tick(&s, now + 60_000), vec![0]);
    let c = w.e.callout(&s, 0, Doc::Jwks, now + 60_000).unwrap();
    assert!(c
        .headers
        .contains(&("if-none-match".into(), "\"abc\"".into())));
    let not_modified = Answer {
        status: Some(304),
        ..Answer::default()
    };
    let o =
        w.e.fetch_done(&s, &w.m, now + 60_000, 0, Doc::Jwks, &not_modified)
            .unwrap();
    assert_eq!(o, jwt_jwks::keys::refresh::Outcome::NotModified { gen: 1 });
    assert!(w.auth(&s, now + 60_001, &t).is_allow());
    assert_eq!(
        w.m.get(Metric::TokenCacheHit),
        2,
        "the cached verdict survived"
    );
    assert_eq!(w.m.get(Metric::NotModified), 1);
    let info = w.e.info(&s, now + 60_001);
    assert_eq!(info["providers"][0]["not_modified"], json!(1));
    assert_eq!(info["providers"][0]["generation"], json!(1));
}

#[test]
fn a_flood_of_junk_kids_on_two_workers_costs_the_budget_and_rotation_still_passes() {
    use jwt_jwks::keys::kid_budget::BUDGET;
    let s = MemoryStore::default();
    let mut w1 = Worker::new(config(""), "w1");
    let mut w2 = Worker::new(config(""), "w2");
    let now = now_ms();
    let k = keys();
    let v1 = json!({"keys": [rsa_jwk(&k.rsa, "rsa", None)]}).to_string();
    assert_eq!(w1.e.tick(&s, now), vec![0]);
    w1.e.fetch_done(&s, &w1.m, now, 0, Doc::Jwks, &ok(&v1))
        .unwrap();
    // Five junk kids, each answered by a fetch that does not have it.
    for i in 0..5u64 {
        let junk = k
            .rsa
            .clone()
            .with_key_id(&format!("junk-{i}"))
            .sign(claims())
            .unwrap();
        let w = if i % 2 == 0 { &mut w1 } else { &mut w2 };
        let at = now + 1000 + i * 1000;
        assert!(matches!(
            w.auth(&s, at, &junk),
            Verdict::Wait { dispatch: true, .. }
        ));
        w.e.fetch_done(&s, &w.m, at + 10, 0, Doc::Jwks, &ok(&v1))
            .unwrap();
        assert_eq!(
            w.auth(&s, at + 20, &junk),
            Verdict::Deny(Refusal::UnknownKid)
        );
    }
    // The rotation's first token, seconds later: one fetch, accepted.
    let v2 =
        json!({"keys": [rsa_jwk(&k.rsa, "rsa", None), rsa_jwk(&k.rsa2, "rsa2", None)]}).to_string();
    let new_token = k.rsa2.clone().with_key_id("rsa2").sign(claims()).unwrap();
    assert!(matches!(
        w2.auth(&s, now + 7000, &new_token),
        Verdict::Wait { dispatch: true, .. }
    ));
    w2.e.fetch_done(&s, &w2.m, now + 7010, 0, Doc::Jwks, &ok(&v2))
        .unwrap();
    assert!(w1.auth(&s, now + 7020, &new_token).is_allow());
    // 1,000 distinct junk kids a second for two minutes, on both workers:
    // the rest of the budget, then one fetch per interval (30 s).
    let names = names_of(&w1.e);
    let before = jwt_jwks::keys::layout::read_state(&s, &names)
        .unwrap()
        .fetch_success;
    let mut fetches = 0u64;
    for i in 0..120_000u64 {
        let at = now + 8000 + i;
        let junk = format!("flood-{i}");
        let header = b64(json!({"alg": "RS256", "kid": junk}).to_string().as_bytes());
        let body = b64(serde_json::to_string(&claims()).unwrap().as_bytes());
        let t = format!("{header}.{body}.{}", b64(&[1u8; 256]));
        let w = if i % 2 == 0 { &mut w1 } else { &mut w2 };
        match w.auth(&s, at, &t) {
            Verdict::Wait { dispatch: true, .. } => {
                fetches += 1;
                w.e.fetch_done(&s, &w.m, at, 0, Doc::Jwks, &ok(&v2))
                    .unwrap();
            }
            Verdict::Deny(Refusal::UnknownKid) => {}
            other => panic!("{other:?}"),
        }
    }
    let spent_before = 5 + 1;
    let bound = u64::from(BUDGET) - spent_before + 120 / 30 + 1;
    assert!(fetches <= bound, "{fetches} fetches, bound {bound}");
    let after = jwt_jwks::keys::layout::read_state(&s, &names)
        .unwrap()
        .fetch_success;
    assert_eq!(after - before, fetches);
}

/// An ES256 token with the header given (signed with the test P-256 key).
fn es256_with_header(header: Value) -> String {
    use p256::ecdsa::signature::Signer;
    let k = keys();
    let sk = p256::ecdsa::SigningKey::from_slice(&k.p256.to_bytes()).unwrap();
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(serde_json::to_string(&claims()).unwrap().as_bytes())
    );
    let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

#[test]
fn allowed_types_keep_other_token_kinds_of_the_issuer_out() {
    // Issue 19, item 5 (RFC 8725 section 3.11, RFC 9068).
    let s = MemoryStore::default();
    let mut w = Worker::new(config(r#","allowed_types":["at+jwt"]"#), "w1");
    let mut open = Worker::new(config(""), "w2");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let at = es256_with_header(json!({"alg": "ES256", "kid": "p256", "typ": "at+jwt"}));
    let app =
        es256_with_header(json!({"alg": "ES256", "kid": "p256", "typ": "application/AT+JWT"}));
    let logout = es256_with_header(json!({"alg": "ES256", "kid": "p256", "typ": "logout+jwt"}));
    let plain = es256_with_header(json!({"alg": "ES256", "kid": "p256"}));
    assert!(w.auth(&s, now, &at).is_allow());
    assert!(w.auth(&s, now, &app).is_allow());
    for t in [&logout, &plain] {
        assert_eq!(w.auth(&s, now, t), Verdict::Deny(Refusal::UnsupportedType));
    }
    // Without allowed_types, any *+jwt and an absent typ still pass.
    for t in [&at, &logout, &plain] {
        assert!(open.auth(&s, now, t).is_allow());
    }
}

#[test]
fn a_closed_revocation_list_pulled_by_one_worker_serves_the_others_at_once() {
    let s = MemoryStore::default();
    let extra = r#","issuers":["https://issuer.example"],"revocation_uri":"http://lists:8080/r","revocation_refresh_interval":5,"max_staleness":5,"revocation_fail":"closed""#;
    let mut w1 = Worker::new(config(extra), "w1");
    let mut w2 = Worker::new(config(extra), "w2");
    let now = now_ms();
    w1.load(&s, now, &all_jwks());
    let claims = |sub: &str| JWTClaims::<NoCustomClaims> {
        issuer: Some("https://issuer.example".into()),
        subject: Some(sub.into()),
        ..claims()
    };
    let k = keys();
    let good = k
        .rsa
        .clone()
        .with_key_id("rsa")
        .sign(claims("alice"))
        .unwrap();
    let bad = k
        .rsa
        .clone()
        .with_key_id("rsa")
        .sign(claims("mallory"))
        .unwrap();
    // No list yet: closed refuses with 503 (RevocationUnavailable).
    assert_eq!(
        w2.auth(&s, now, &good),
        Verdict::Deny(Refusal::RevocationUnavailable)
    );
    // w1 pulls the list; w2 has not ticked since.
    assert_eq!(w1.e.revocation_tick(&s, &w1.m, now + 10), vec![0]);
    let doc = r#"{"entries": [{"type": "sub", "value": "mallory", "exp": 4000000000}]}"#;
    w1.e.fetch_done(&s, &w1.m, now + 20, 0, Doc::Revocations, &ok(doc));
    assert!(w2.auth(&s, now + 30, &good).is_allow());
    // The list's age, as a gauge set on the tick.
    assert!(w2.e.revocation_tick(&s, &w2.m, now + 3_020).is_empty());
    assert_eq!(w2.m.gauge(jwt_jwks::metrics::Gauge::RevocationListAge), 3);
    assert_eq!(
        w2.auth(&s, now + 40, &bad),
        Verdict::Deny(Refusal::Revoked("sub"))
    );
    // Past max_staleness without a pull: refused again.
    assert_eq!(
        w2.auth(&s, now + 20 + 5_000, &good),
        Verdict::Deny(Refusal::RevocationUnavailable)
    );
}

const LIST_URI: &str = "http://lists:8080/statuslists/1";

/// A Status List Token for `statuses` (1 bit each), signed ES512 with the
/// test key `p521` (or by a key the provider does not have).
fn status_list_token(statuses: &[u8], ttl: u64, typ: &str, foreign: bool) -> String {
    use p521::ecdsa::signature::Signer;
    let mut bytes = vec![0u8; statuses.len().div_ceil(8)];
    for (i, s) in statuses.iter().enumerate() {
        bytes[i / 8] |= (s & 1) << (i % 8);
    }
    let lst = b64(&miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 6));
    let header = json!({"alg": "ES512", "kid": "p521", "typ": typ});
    let now = now_ms() / 1000;
    let payload = json!({"sub": LIST_URI, "iat": now, "exp": now + 3600, "ttl": ttl,
        "status_list": {"bits": 1, "lst": lst}});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let key = if foreign {
        let mut scalar = [7u8; 66];
        scalar[0] = 0;
        p521::ecdsa::SigningKey::from_slice(&scalar).unwrap()
    } else {
        keys().p521.clone()
    };
    let sig: p521::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

/// An RS256 token at `idx` of the list (another subject per index).
fn token_at(idx: u64) -> String {
    let extra = json!({"status": {"status_list": {"idx": idx, "uri": LIST_URI}}});
    let c = Claims::with_custom_claims(extra, Duration::from_mins(5))
        .with_issuer("https://idp")
        .with_audience("api")
        .with_subject(format!("user-{idx}"));
    keys().rsa.clone().with_key_id("rsa").sign(c).unwrap()
}

#[test]
fn a_status_list_is_fetched_once_for_every_worker_and_a_flipped_bit_voids_cached_verdicts() {
    let s = MemoryStore::default();
    let cfg = || config(r#","status_list":true,"cache_ttl":300,"token_cache_size":100"#);
    let (mut w1, mut w2) = (Worker::new(cfg(), "w1"), Worker::new(cfg(), "w2"));
    let now = now_ms();
    w1.load(&s, now, &all_jwks());
    let slot = Doc::StatusList(0);
    let t3 = token_at(3);
    // Cold: the first request takes the lease, the others (any worker) wait.
    assert_eq!(
        w1.auth(&s, now, &t3),
        Verdict::Wait {
            provider: 0,
            dispatch: true,
            doc: slot
        }
    );
    assert_eq!(
        w2.auth(&s, now, &t3),
        Verdict::Wait {
            provider: 0,
            dispatch: false,
            doc: slot
        }
    );
    let mut p = pending(9, &t3, now + 5000);
    p.doc = slot;
    assert!(w2.e.add_waiter(&s, p, now));
    let c = w1.e.callout(&s, 0, slot, now).unwrap();
    assert_eq!(c.upstream, "lists:8080");
    assert!(c
        .headers
        .contains(&(":path".into(), "/statuslists/1".into())));
    assert!(c
        .headers
        .contains(&("accept".into(), "application/statuslist+jwt".into())));

    // Index 3 valid, index 5 revoked; ttl 1 is held to 2 seconds.
    let list = status_list_token(&[0, 0, 0, 0, 0, 1, 0, 0], 1, "statuslist+jwt", false);
    w1.e.fetch_done(&s, &w1.m, now + 10, 0, slot, &ok(&list));
    assert_eq!(w1.m.get(Metric::StatusListFetchSuccess), 1);
    let (finals, sends) = w2.e.review_waiters(&s, &w2.m, now + 20);
    assert_eq!(finals.len(), 1, "the other worker's waiter is woken");
    assert!(finals[0].1.is_allow());
    assert!(sends.is_empty());
    assert!(w1.auth(&s, now + 20, &t3).is_allow());
    assert!(w2.auth(&s, now + 20, &t3).is_allow());
    assert_eq!(
        w1.auth(&s, now + 20, &token_at(5)),
        Verdict::Deny(Refusal::Revoked("status"))
    );
    assert_eq!(
        w1.auth(&s, now + 20, &token_at(8)),
        Verdict::Deny(Refusal::StatusReference),
        "past the end of the list"
    );
    // Within the ttl nothing is fetched; the token cache serves t3.
    assert!(w1.e.status_tick(&s, now + 1000).is_empty());
    let hits = w1.m.get(Metric::TokenCacheHit);
    assert!(w1.auth(&s, now + 1000, &t3).is_allow());
    assert_eq!(w1.m.get(Metric::TokenCacheHit), hits + 1);

    // Past the ttl, one worker refreshes. A list signed by another key, one
    // of another typ, or broken zlib keep the good list.
    let due = now + 2010;
    assert_eq!(w1.e.status_tick(&s, due), vec![(0, slot)]);
    assert!(w2.e.status_tick(&s, due).is_empty(), "one fetch for both");
    let flipped = status_list_token(&[0, 0, 0, 1], 60, "statuslist+jwt", false);
    let mut at = due;
    for bad in [
        status_list_token(&[0, 0, 0, 1], 60, "statuslist+jwt", true),
        status_list_token(&[0, 0, 0, 1], 60, "JWT", false),
        flipped.replace('.', "x"),
    ] {
        w1.e.fetch_done(&s, &w1.m, at, 0, slot, &ok(&bad));
        assert!(w1.auth(&s, at, &t3).is_allow(), "the good list stays");
        at += 40_000;
        assert_eq!(w1.e.status_tick(&s, at), vec![(0, slot)], "retried");
    }
    assert_eq!(w1.m.get(Metric::StatusListFetchFailure), 3);
    w1.e.fetch_done(&s, &w1.m, at, 0, slot, &ok(&flipped));
    // Both workers refuse t3 now, though its verdict was cached.
    assert_eq!(
        w1.auth(&s, at, &t3),
        Verdict::Deny(Refusal::Revoked("status"))
    );
    assert_eq!(
        w2.auth(&s, at, &t3),
        Verdict::Deny(Refusal::Revoked("status"))
    );
    assert!(w2.auth(&s, at, &token_at(2)).is_allow());
    let info = w1.e.info(&s, at);
    let listed = &info["revocations"]["status_lists"][0];
    assert_eq!(listed["uri"], LIST_URI);
    assert_eq!(listed["state"], "fresh");
    assert_eq!(listed["fetch_failure"], 3);
}

#[test]
fn an_unreachable_status_list_follows_revocation_fail() {
    let now = now_ms();
    for (mode, expected) in [
        ("closed", Verdict::Deny(Refusal::RevocationUnavailable)),
        ("open", Verdict::Allow(Default::default())),
    ] {
        let extra = format!(r#","status_list":true,"revocation_fail":"{mode}","max_staleness":10"#);
        let s = MemoryStore::default();
        let mut w = Worker::new(config(&extra), mode);
        w.load(&s, now, &all_jwks());
        let t = token_at(1);
        assert!(matches!(
            w.auth(&s, now, &t),
            Verdict::Wait { dispatch: true, .. }
        ));
        let down = Answer {
            dispatch_status: Some("broken connection".into()),
            ..Answer::default()
        };
        w.e.fetch_done(&s, &w.m, now, 0, Doc::StatusList(0), &down);
        // A retry waits a second: meanwhile the mode decides at once.
        let v = w.auth(&s, now + 100, &t);
        match &expected {
            Verdict::Allow(_) => assert!(v.is_allow(), "{mode}: {v:?}"),
            other => assert_eq!(&v, other, "{mode}"),
        }
    }
}

fn intro_config(extra: &str) -> Config {
    config(&format!(
        r#","issuers":["https://idp"],"introspection":{{"endpoint":"http://idp:8080/introspect","client_id":"gw","client_secret":"pw"{extra}}}"#
    ))
}

fn introspection_id(v: &Verdict) -> u32 {
    match v {
        Verdict::Wait {
            doc: Doc::Introspection(id),
            ..
        } => *id,
        other => panic!("not waiting for an introspection: {other:?}"),
    }
}

#[test]
fn an_opaque_token_is_introspected_once_for_every_worker_and_cached() {
    let s = MemoryStore::default();
    let (mut w1, mut w2) = (
        Worker::new(intro_config(""), "w1"),
        Worker::new(intro_config(""), "w2"),
    );
    let now = now_ms();
    w1.e.prepare(&s).unwrap();
    let first = w1.auth(&s, now, "opaque-token-1");
    let id = introspection_id(&first);
    assert!(matches!(first, Verdict::Wait { dispatch: true, .. }));
    let other = w2.auth(&s, now, "opaque-token-1");
    assert!(
        matches!(
            other,
            Verdict::Wait {
                dispatch: false,
                ..
            }
        ),
        "{other:?}: one call"
    );
    let mut p = pending(3, "opaque-token-1", now + 5000);
    p.doc = Doc::Introspection(u32::MAX);
    assert!(w2.e.add_waiter(&s, p, now));
    let c = w1.e.callout(&s, 0, Doc::Introspection(id), now).unwrap();
    assert_eq!(c.upstream, "idp:8080");
    assert_eq!(
        String::from_utf8(c.body.unwrap()).unwrap(),
        "token=opaque-token-1&token_type_hint=access_token"
    );
    assert!(c
        .headers
        .contains(&("authorization".into(), "Basic Z3c6cHc=".into())));
    let exp = now / 1000 + 60;
    let body = format!(
        r#"{{"active":true,"sub":"alice","iss":"https://idp","scope":"read","exp":{exp}}}"#
    );
    w1.e.fetch_done(&s, &w1.m, now + 5, 0, Doc::Introspection(id), &ok(&body));
    let (finals, _) = w2.e.review_waiters(&s, &w2.m, now + 10);
    assert_eq!(finals.len(), 1);
    let g = grant(finals[0].1.clone());
    assert!(g.strip_token, "the opaque token never goes upstream");
    // Hits without calls, on both workers, until the lifetime ends.
    for w in [&mut w1, &mut w2] {
        assert!(w.auth(&s, now + 20, "opaque-token-1").is_allow());
    }
    assert!(matches!(
        w1.auth(&s, exp * 1000 + 1, "opaque-token-1"),
        Verdict::Wait { dispatch: true, .. } | Verdict::Deny(Refusal::Expired)
    ));
    // Inactive: 401, then a negative hit without a call.
    let v = w1.auth(&s, now, "opaque-junk");
    let id = introspection_id(&v);
    w1.e.fetch_done(
        &s,
        &w1.m,
        now,
        0,
        Doc::Introspection(id),
        &ok(r#"{"active":false}"#),
    );
    assert_eq!(
        w2.auth(&s, now + 1, "opaque-junk"),
        Verdict::Deny(Refusal::Inactive)
    );
    assert_eq!(w2.m.get(Metric::IntrospectionNegativeHit), 1);
    // An admin clear: every result is gone.
    w1.e.clear_all(&s).unwrap();
    assert!(matches!(
        w2.auth(&s, now + 30, "opaque-token-1"),
        Verdict::Wait { dispatch: true, .. }
    ));
}

#[test]
fn a_phantom_jwt_is_verified_and_forwarded_and_failures_are_503_or_502() {
    let s = MemoryStore::default();
    let mut w = Worker::new(intro_config(r#","response":"jwt""#), "w1");
    let now = now_ms();
    // The keys come first: the phantom JWT is verified with them.
    assert!(matches!(
        w.auth(&s, now, "opaque-2"),
        Verdict::Wait { doc: Doc::Jwks, .. }
    ));
    let jwks = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &ok(&jwks))
        .unwrap();
    let id = introspection_id(&w.auth(&s, now, "opaque-2"));
    let phantom = token("RS256", Some("rsa"));
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Introspection(id), &ok(&phantom));
    let g = grant(w.auth(&s, now + 1, "opaque-2"));
    assert!(g
        .headers
        .contains(&("authorization".into(), format!("Bearer {phantom}"))));
    // A tampered phantom JWT: 502.
    let id = introspection_id(&w.auth(&s, now, "opaque-3"));
    let mut bad = phantom.clone();
    bad.pop();
    bad.push(if phantom.ends_with('A') { 'B' } else { 'A' });
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Introspection(id), &ok(&bad));
    assert_eq!(
        w.auth(&s, now + 1, "opaque-3"),
        Verdict::Deny(Refusal::IntrospectionFailed("phantom"))
    );
    // The server down: 503, and no call for any token during the back-off.
    let id = introspection_id(&w.auth(&s, now, "opaque-4"));
    let down = Answer {
        dispatch_status: Some("timeout".into()),
        ..Answer::default()
    };
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Introspection(id), &down);
    assert_eq!(
        w.auth(&s, now + 10, "opaque-5"),
        Verdict::Deny(Refusal::IntrospectionUnavailable)
    );
    // ...and a token cached before still passes.
    assert!(w.auth(&s, now + 10, "opaque-2").is_allow());
    assert_eq!(w.m.get(Metric::IntrospectionErrorUnavailable), 1);
    assert_eq!(w.m.get(Metric::IntrospectionErrorPhantom), 1);
}

/// The answer `body` for a call sent at `now`, with a Cache-Control header.
fn answered<'a>(body: &'a str, cache_control: Option<&str>) -> Answer<'a> {
    let mut a = ok(body);
    a.cache.cache_control = cache_control.map(str::to_string);
    a
}

#[test]
fn a_result_lives_the_least_of_exp_max_age_and_cache_ttl() {
    let now = now_ms();
    let exp = now / 1000 + 100;
    let body = format!(r#"{{"active":true,"sub":"a","iss":"https://idp","exp":{exp}}}"#);
    // (cache_ttl, Cache-Control, expected lifetime in seconds)
    for (ttl, cc, life) in [
        (300, None, 100),              // the token's exp
        (30, None, 30),                // cache_ttl
        (300, Some("max-age=20"), 20), // the answer's max-age
        (300, Some("no-store"), 0),    // not kept
    ] {
        let s = MemoryStore::default();
        let mut w = Worker::new(intro_config(&format!(r#","cache_ttl":{ttl}"#)), "w");
        let id = introspection_id(&w.auth(&s, now, "opaque-life"));
        w.e.fetch_done(
            &s,
            &w.m,
            now,
            0,
            Doc::Introspection(id),
            &answered(&body, cc),
        );
        let mut other = Worker::new(intro_config(&format!(r#","cache_ttl":{ttl}"#)), "o");
        let at = |secs: u64| now + secs * 1000;
        if life == 0 {
            assert!(matches!(
                other.auth(&s, at(0), "opaque-life"),
                Verdict::Wait { dispatch: true, .. }
            ));
            continue;
        }
        assert!(
            other.auth(&s, at(life) - 1000, "opaque-life").is_allow(),
            "{ttl} {cc:?}"
        );
        assert!(
            !other.auth(&s, at(life) + 1, "opaque-life").is_allow(),
            "{ttl} {cc:?}: past {life} s"
        );
    }
}

#[test]
fn introspect_jwt_refuses_a_valid_jwt_the_server_says_is_inactive() {
    let s = MemoryStore::default();
    let mut w = Worker::new(intro_config(r#","introspect_jwt":true"#), "w");
    let now = now_ms();
    w.load(&s, now, &all_jwks());
    let jwt = token("RS256", Some("rsa"));
    let id = introspection_id(&w.auth(&s, now, &jwt));
    let c = w.e.callout(&s, 0, Doc::Introspection(id), now).unwrap();
    assert!(String::from_utf8(c.body.unwrap())
        .unwrap()
        .starts_with("token=eyJ"));
    w.e.fetch_done(
        &s,
        &w.m,
        now,
        0,
        Doc::Introspection(id),
        &ok(r#"{"active":false}"#),
    );
    assert_eq!(w.auth(&s, now + 1, &jwt), Verdict::Deny(Refusal::Inactive));
    // Active: the JWT passes, as itself (no phantom).
    let other = token("ES256", Some("p256"));
    let id = introspection_id(&w.auth(&s, now, &other));
    w.e.fetch_done(
        &s,
        &w.m,
        now,
        0,
        Doc::Introspection(id),
        &ok(r#"{"active":true}"#),
    );
    let g = grant(w.auth(&s, now + 1, &other));
    assert!(!g.strip_token && g.headers.iter().all(|(k, _)| k != "authorization"));
}

#[test]
fn the_endpoint_can_come_from_discovery() {
    let s = MemoryStore::default();
    let cfg = Config::parse(
        br#"{"discovery_uri":"http://idp:8080/.well-known/openid-configuration","issuers":["https://idp"],
             "introspection":{"client_id":"gw","client_secret":"pw"}}"#,
    )
    .unwrap();
    let mut w = Worker::new(cfg, "w");
    let now = now_ms();
    // No endpoint yet: the metadata (and keys) first.
    assert!(
        matches!(
            w.auth(&s, now, "opaque-d"),
            Verdict::Wait { doc: Doc::Jwks, .. }
        ) || matches!(w.auth(&s, now, "opaque-d"), Verdict::Wait { .. })
    );
    let meta = r#"{"issuer":"https://idp","jwks_uri":"http://idp:8080/jwks","introspection_endpoint":"http://idp:8080/oauth/introspect"}"#;
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Discovery, &ok(meta));
    let jwks = all_jwks().to_string();
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Jwks, &ok(&jwks));
    let id = introspection_id(&w.auth(&s, now + 10, "opaque-d"));
    let c = w.e.callout(&s, 0, Doc::Introspection(id), now).unwrap();
    assert!(c
        .headers
        .contains(&(":path".into(), "/oauth/introspect".into())));
    assert_eq!(c.upstream, "idp:8080");
}

#[test]
fn deny_entries_apply_to_introspected_claims_cached_or_not() {
    let s = MemoryStore::default();
    let now = now_ms();
    let cfg = config(
        r#","issuers":["https://idp"],"admin_token":"admin-token-0123456789","introspection":{"endpoint":"http://idp:8080/introspect","client_id":"gw","client_secret":"pw"}"#,
    );
    let mut w = Worker::new(cfg, "w");
    let id = introspection_id(&w.auth(&s, now, "opaque-mallory"));
    let body = format!(
        r#"{{"active":true,"sub":"mallory","iss":"https://idp","exp":{}}}"#,
        now / 1000 + 300
    );
    w.e.fetch_done(&s, &w.m, now, 0, Doc::Introspection(id), &ok(&body));
    assert!(w.auth(&s, now + 1, "opaque-mallory").is_allow());
    assert!(
        w.auth(&s, now + 2, "opaque-mallory").is_allow(),
        "from the token cache"
    );
    let doc = format!(
        r#"{{"entries":[{{"type":"sub","value":"mallory","exp":{}}}]}}"#,
        now / 1000 + 600
    );
    w.e.revocations_add(&s, doc.as_bytes(), now).unwrap();
    assert_eq!(
        w.auth(&s, now + 3, "opaque-mallory"),
        Verdict::Deny(Refusal::Revoked("sub"))
    );
}
