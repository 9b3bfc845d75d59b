//! Signature-check cost inside wasm, one algorithm at a time: the filter's
//! own `PublicKey::verify` (key prepared once, as the JWKS cache does), timed
//! in a loop. Built for wasm32-wasip1 and run by `run.mjs` under node's V8.
//! Prints one line per case: algorithm, microseconds per check, and whether
//! a good signature passed and a flipped one failed (a benchmark of a broken
//! verifier would be meaningless), and the time to load the one-key JWKS
//! (key preparation included), first and second time.

use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_jwks::alg::{Alg, AlgSet};
use jwt_jwks::jwks;
use serde_json::Value;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/data/cases.json".into());
    let budget_ms: u128 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1500);
    let text = std::fs::read_to_string(&path).expect("cases file");
    let doc: Value = serde_json::from_str(&text).expect("cases JSON");
    let cases = doc["cases"].as_array().expect("cases array");
    println!(
        "{:<8} {:>10} {:>8} {:>6} {:>9} {:>9}",
        "alg", "us/check", "checks", "sound", "load ms", "reload ms"
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
        let good = entry.key.verify(alg, token, signing_input, &sig, 0);
        if let Err(e) = &good {
            eprintln!("{alg_name}: good signature refused: {e:?}");
        }
        let good_ok = good.is_ok();
        let tampered = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&bad));
        let bad_ok = entry
            .key
            .verify(alg, &tampered, signing_input, &bad, 0)
            .is_ok();
        let sound = good_ok && !bad_ok;
        // Warm up (lets V8 tier up to its optimising compiler), then time.
        let warm = Instant::now();
        while warm.elapsed().as_millis() < budget_ms / 3 {
            let _ = entry.key.verify(alg, token, signing_input, &sig, 0);
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_millis() < budget_ms {
            let _ = entry.key.verify(alg, token, signing_input, &sig, 0);
            n += 1;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "{:<8} {:>10.1} {:>8} {:>6} {:>9.2} {:>9.2}",
            alg_name,
            us,
            n,
            if sound { "yes" } else { "NO" },
            load_ms[0],
            load_ms[1]
        );
    }
}
