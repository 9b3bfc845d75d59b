//! Signature-check cost inside wasm, one algorithm at a time: the filter's
//! own `PublicKey::verify` (key prepared once, as the JWKS cache does), timed
//! in a loop. Built for wasm32-wasip1 and run by `run.mjs` under node's V8.
//! Prints one line per case: algorithm, microseconds per check, and whether
//! a good signature passed and a flipped one failed (a benchmark of a broken
//! verifier would be meaningless), and the time to load the one-key JWKS
//! (key preparation included), first and second time, and the time of the
//! key's first check (which builds an ECDSA key's table).

use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_jwks::config::Config;
use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::crypto::host::HostCrypto;
use jwt_jwks::engine::Engine;
use jwt_jwks::keys::jwks;
use jwt_jwks::keys::refresh::{Answer, Doc};
use jwt_jwks::metrics::MemoryMetrics;
use jwt_jwks::store::MemoryStore;
use jwt_jwks::token::jose;
use serde_json::Value;

/// Times `f` for `budget_ms` after a warm-up of a third of that; µs per call.
fn time_it(budget_ms: u128, mut f: impl FnMut()) -> (f64, u64) {
    let warm = Instant::now();
    while warm.elapsed().as_millis() < budget_ms / 3 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_millis() < budget_ms {
        f();
        n += 1;
    }
    (start.elapsed().as_secs_f64() * 1e6 / n as f64, n)
}

/// A host that says yes without checking: isolates the filter's own work
/// around a host signature check (argument encoding included).
struct YesHost;

impl HostCrypto for YesHost {
    fn verify(&self, _args: &[u8]) -> Result<bool, String> {
        Ok(true)
    }
}

/// The engine's whole decision for one token (decode, header and claims
/// policy, key lookup, signature check, grant), with an in-memory store.
fn engine_section(budget_ms: u128, cases: &[Value]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!();
    println!("{:<28} {:>10} {:>8}", "engine path", "us/req", "reqs");
    for case in cases {
        let alg = case["alg"].as_str().expect("alg");
        if alg != "RS256" && alg != "ES256" {
            continue;
        }
        let token = case["token"].as_str().expect("token");
        let doc = serde_json::json!({ "keys": [case["jwk"]] }).to_string();
        for (label, cache, host) in [
            ("host crypto (yes-host)", 0, true),
            ("token cache hit", 1000, false),
        ] {
            let cfg = Config::parse(
                format!(
                    r#"{{"jwks_uri":"http://idp/jwks","allowed_algorithms":["{alg}"],"token_cache_size":{cache}}}"#
                )
                .as_bytes(),
            )
            .expect("config");
            let mut e = Engine::new(cfg, "bench".into());
            let store = MemoryStore::default();
            let m = MemoryMetrics::default();
            let _ = e.tick(&store, now);
            let answer = Answer {
                status: Some(200),
                body_size: doc.len(),
                body: Some(doc.as_bytes()),

                ..Answer::default()
            };
            e.fetch_done(&store, &m, now, 0, Doc::Jwks, &answer)
                .expect("keys load");
            if host {
                e.set_host_crypto(Some(Rc::new(YesHost)));
            }
            let first = e.authenticate(&store, &m, now, token, None, true);
            assert!(first.is_allow(), "{alg} {label}: {first:?}");
            let (us, n) = time_it(budget_ms, || {
                let _ = e.authenticate(&store, &m, now, token, None, true);
            });
            println!("{:<28} {:>10.2} {:>8}", format!("{alg} {label}"), us, n);
        }
        let mut scratch = jose::Scratch::default();
        let (us, n) = time_it(budget_ms / 2, || {
            let _ = jose::decode(token, &mut scratch);
        });
        println!(
            "{:<28} {:>10.2} {:>8}",
            format!("{alg} jose::decode"),
            us,
            n
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/data/cases.json".into());
    let budget_ms: u128 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1500);
    let text = std::fs::read_to_string(&path).expect("cases file");
    let doc: Value = serde_json::from_str(&text).expect("cases JSON");
    let cases = doc["cases"].as_array().expect("cases array");
    println!(
        "{:<8} {:>10} {:>8} {:>6} {:>9} {:>9} {:>9}",
        "alg", "us/check", "checks", "sound", "load ms", "reload ms", "1st ms"
    );
    for case in cases {
        let alg_name = case["alg"].as_str().expect("alg");
        let alg = Alg::parse(alg_name).expect("known alg");
        let doc = serde_json::json!({ "keys": [case["jwk"]] }).to_string();
        // Loaded twice: the first load of a curve also builds per-VM tables.
        let mut load_ms = [0f64; 2];
        let mut loaded = None;
        for ms in &mut load_ms {
            let load = Instant::now();
            loaded = Some(jwks::parse(doc.as_bytes(), AlgSet::of(&[alg]), 10).expect("key loads"));
            *ms = load.elapsed().as_secs_f64() * 1e3;
        }
        let set = loaded.expect("loaded");
        let entry = set.set.for_alg(alg).next().expect("key for alg");
        let token = case["token"].as_str().expect("token");
        let dot = token.rfind('.').expect("compact JWS");
        let (signing_input, sig_b64) = (&token[..dot], &token[dot + 1..]);
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).expect("signature base64");
        let mut bad = sig.clone();
        if let Some(b) = bad.get_mut(sig.len() / 2) {
            *b ^= 0x10;
        }
        // The first check also builds the key's table (ECDSA).
        let first = Instant::now();
        let good = entry.key.verify(alg, signing_input, &sig);
        let first_ms = first.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = &good {
            eprintln!("{alg_name}: good signature refused: {e:?}");
        }
        let good_ok = good.is_ok();
        let bad_ok = entry.key.verify(alg, signing_input, &bad).is_ok();
        let sound = good_ok && !bad_ok;
        // The warm-up lets V8 tier up to its optimising compiler.
        let (us, n) = time_it(budget_ms, || {
            let _ = entry.key.verify(alg, signing_input, &sig);
        });
        println!(
            "{:<8} {:>10.1} {:>8} {:>6} {:>9.2} {:>9.2} {:>9.2}",
            alg_name,
            us,
            n,
            if sound { "yes" } else { "NO" },
            load_ms[0],
            load_ms[1],
            first_ms
        );
    }
    engine_section(budget_ms, cases);
}
