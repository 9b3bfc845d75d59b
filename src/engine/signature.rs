//! The key for a token and its signature check: by `kid`, by the fallback
//! key, or by trying the provider's keys for the algorithm; on the host's
//! verifier when it has one; a refresh (and a wait) when the key is missing.
#![forbid(unsafe_code)]

use crate::authz::refusal::Refusal;
use crate::config::KeyClaim;
use crate::crypto::alg::Alg;
use crate::crypto::key::{PublicKey, SigError};
use crate::engine::verdict::Verdict;
use crate::engine::Engine;
use crate::keys::refresh::Trigger;
use crate::metrics::{Metric, Metrics};
use crate::store::SharedStore;
use crate::token::jose;

impl Engine {
    /// Finds the key and checks the signature: `None` when verified, a
    /// `Wait` when keys must be fetched first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn verify_signature(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        d: &jose::Decoded,
        alg: Alg,
        idx: usize,
        may_wait: bool,
    ) -> Result<Option<Verdict>, Refusal> {
        if let Err(e) = self.sync(store, idx) {
            log::warn!("jwt_jwks: reading shared keys failed: {e}; using this worker's copy");
        }
        let host = self.host_crypto.clone();
        let check = |key: &PublicKey| {
            let on_host = host
                .as_deref()
                .and_then(|h| key.verify_on_host(h, alg, d.signing_input, d.signature));
            if on_host.is_some() {
                metrics.incr(Metric::HostVerification);
            }
            let result = match on_host {
                Some(r) => r,
                None => key.verify(alg, d.signing_input, d.signature),
            };
            verdict_of(result)
        };

        let provider = self
            .cfg
            .providers
            .get(idx)
            .ok_or(Refusal::NoKeyForAlgorithm)?;
        let keys = &self
            .providers
            .get(idx)
            .ok_or(Refusal::NoKeyForAlgorithm)?
            .keys;
        if keys.is_empty() {
            // Nothing loaded (cold start, outage, clear): the fallback key
            // serves every token; without one, wait for the first fetch.
            if let Some(fb) = &provider.fallback {
                return check(&fb.key);
            }
            if !may_wait || provider.key_set_uri().is_none() {
                return Err(Refusal::KeysUnavailable);
            }
            return self
                .refresh(store, idx, now_ms, Trigger::Cold, Refusal::KeysUnavailable)
                .map(Some);
        }

        let kid = match self.cfg.key_claim {
            KeyClaim::Kid => d.header.kid.as_deref(),
            KeyClaim::Iss => None,
        };
        if let Some(kid) = kid {
            return match keys.find(kid) {
                Some(entry) => {
                    metrics.incr(Metric::CacheHit);
                    check(&entry.key)
                }
                None => {
                    metrics.incr(Metric::CacheMiss);
                    if !may_wait {
                        return Err(Refusal::UnknownKid);
                    }
                    let trigger = Trigger::UnknownKid(Some(kid));
                    self.refresh(store, idx, now_ms, trigger, Refusal::UnknownKid)
                        .map(Some)
                }
            };
        }
        if self.cfg.key_claim == KeyClaim::Kid {
            if let Some(fb) = &provider.fallback {
                return check(&fb.key);
            }
        }
        // No kid (or key_claim_name "iss"): try the provider's keys for this
        // alg, in document order. A miss may mean rotation: refresh once.
        let mut tried = false;
        for entry in keys.for_alg(alg) {
            tried = true;
            match check(&entry.key) {
                Err(Refusal::BadSignature) => continue,
                other => {
                    metrics.incr(Metric::CacheHit);
                    return other;
                }
            }
        }
        metrics.incr(Metric::CacheMiss);
        let refusal = if tried {
            Refusal::BadSignature
        } else {
            Refusal::NoKeyForAlgorithm
        };
        if !may_wait {
            return Err(refusal);
        }
        self.refresh(store, idx, now_ms, Trigger::UnknownKid(None), refusal)
            .map(Some)
    }
}

fn verdict_of(result: Result<(), SigError>) -> Result<Option<Verdict>, Refusal> {
    match result {
        Ok(()) => Ok(None),
        Err(SigError::BadSignature) => Err(Refusal::BadSignature),
        Err(SigError::WrongAlgorithm) => Err(Refusal::NoKeyForAlgorithm),
    }
}

impl Engine {
    /// Checks a JWT the filter fetched (a status list, a phantom token, a
    /// signed introspection answer) with provider `idx`'s keys as this VM
    /// holds them: by `kid`, else any key of its algorithm. No refresh and
    /// no wait: a key that is not there is an error.
    pub(super) fn verify_fetched(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        d: &jose::Decoded,
    ) -> Result<(), String> {
        let _ = self.sync(store, idx);
        let alg = crate::authz::claims::check_header(d.header, self.cfg.allowed_algorithms)
            .map_err(|r| format!("header: {}", r.describe()))?;
        let keys = &self.providers.get(idx).ok_or("no such provider")?.keys;
        let verified = match d.header.kid.as_deref() {
            Some(kid) => keys
                .find(kid)
                .ok_or_else(|| format!("no key {kid:?} in the provider's key set"))?
                .key
                .verify(alg, d.signing_input, d.signature)
                .is_ok(),
            None => keys
                .for_alg(alg)
                .any(|k| k.key.verify(alg, d.signing_input, d.signature).is_ok()),
        };
        if verified {
            Ok(())
        } else {
            Err("the signature does not verify".to_string())
        }
    }
}
