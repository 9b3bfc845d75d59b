//! The per-VM engine: one configuration, the parsed key sets (one per
//! provider, refreshed from shared data when its generation moves), the
//! requests waiting for keys, and the decisions the host glue carries out.
//! Everything here is host-neutral and runs under `cargo test`.
#![forbid(unsafe_code)]

use std::rc::Rc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::alg::Alg;
use crate::cache::{self, Names, SharedStore, StoreError};
use crate::config::{Config, KeyClaim, WaitMode};
use crate::fetch::{self, Acquire, Answer, Trigger};
use crate::hostcrypto::HostCrypto;
use crate::jose;
use crate::jwks::{self, KeySet};
use crate::keys::{PublicKey, SigError};
use crate::metrics::{Metric, Metrics};
use crate::policy::{self, Refusal};
use crate::rules;
use crate::token::Source;
use crate::token_cache::{self, TokenCache};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through, with these changes.
    Allow(Grant),
    Deny(Refusal),
    /// Pause until provider `provider` has new keys. With `dispatch`, the
    /// caller holds the refresh lease and must send the JWKS callout.
    Wait {
        provider: usize,
        dispatch: bool,
    },
}

/// The verified identity handed to the host (`identity_property`), as JSON
/// with its keys in this order.
#[derive(Serialize)]
struct Identity<'a> {
    aud: Option<&'a jose::Audience<'a>>,
    iss: Option<&'a str>,
    provider: Option<&'a str>,
    sub: Option<&'a str>,
}

/// What an allowed request carries upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Headers to set (claims, payload), already sanitized.
    pub headers: Vec<(String, String)>,
    /// The verified identity as JSON, for the host property.
    pub identity: Option<String>,
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// A paused request, with what is needed to finish it from another context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub context_id: u32,
    pub token: String,
    pub source: Source,
    pub grpc: bool,
    pub provider: usize,
    /// The matched rule, if any.
    pub rule: Option<usize>,
    pub deadline_ms: u64,
    /// The provider's generation when the request started waiting.
    pub gen: u64,
}

/// A JWKS callout to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// Envoy cluster name, or Kong `host:port`.
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
}

struct Runtime {
    names: Option<Names>,
    gen: u64,
    /// `names.marker(gen + 1)`: present once the key set has moved on.
    next: String,
    loaded: bool,
    keys: KeySet,
}

pub struct Engine {
    cfg: Config,
    owner: String,
    /// Whether one context can finish another's paused request (Envoy).
    /// When not, every paused request needs a callout of its own.
    shared_wake: bool,
    host_known: bool,
    host_envoy: bool,
    /// Whether the host keeps properties for later filters (Envoy).
    identity_property: bool,
    providers: Vec<Runtime>,
    waiters: Vec<Pending>,
    tokens: TokenCache,
    /// The host's signature checker, when it offers one (Envoy).
    host_crypto: Option<Rc<dyn HostCrypto>>,
    /// Where tokens are decoded, reused from one to the next.
    scratch: jose::Scratch,
}

/// What a fresh verification tells the token cache.
struct Fresh {
    provider: usize,
    gen: u64,
    valid_until_ms: Option<u64>,
}

impl Engine {
    /// `owner` identifies this VM in refresh leases; it must be unique
    /// among the workers sharing the data.
    pub fn new(cfg: Config, owner: String) -> Engine {
        let providers = cfg
            .providers
            .iter()
            .map(|p| Runtime {
                names: p.jwks.as_ref().map(|j| Names::for_uri(&j.uri)),
                gen: 0,
                next: String::new(),
                loaded: false,
                keys: KeySet::default(),
            })
            .collect();
        Engine {
            tokens: TokenCache::new(cfg.token_cache_size, cfg.token_cache_max_bytes),
            host_crypto: None,
            scratch: jose::Scratch::default(),
            shared_wake: cfg.wait_mode != WaitMode::PerRequest,
            host_known: false,
            host_envoy: false,
            identity_property: false,
            cfg,
            owner,
            providers,
            waiters: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether paused requests are woken by whichever context sees new keys
    /// (`true`), or each by its own callout (`false`).
    pub fn shared_wake(&self) -> bool {
        self.shared_wake
    }

    /// Uses the host's signature checks (RSA PKCS#1 v1.5, ECDSA) from now on.
    pub fn set_host_crypto(&mut self, crypto: Option<Rc<dyn HostCrypto>>) {
        self.host_crypto = crypto;
    }

    /// Whether the host is known to be Envoy (false until the first
    /// request probed it).
    pub fn host_is_envoy(&self) -> bool {
        self.host_envoy
    }

    /// Whether the host was probed.
    pub fn host_known(&self) -> bool {
        self.host_known
    }

    /// Settles what depends on the host, once known: `envoy` when the
    /// host answered Envoy's `plugin_vm_id` property. There one context can
    /// finish another's request (`wait_mode: auto` becomes `shared`; an
    /// explicit `wait_mode` wins) and properties reach later filters.
    pub fn set_host(&mut self, envoy: bool) {
        self.host_known = true;
        self.host_envoy = envoy;
        // Cached grants were computed for the previous host setting.
        self.tokens.clear();
        self.identity_property = envoy && self.cfg.identity_property.is_some();
        self.shared_wake = match self.cfg.wait_mode {
            WaitMode::Auto => envoy,
            WaitMode::Shared => true,
            WaitMode::PerRequest => false,
        };
    }

    /// Re-reads a provider's key set if its generation moved. Returns the
    /// current generation. Once loaded, the per-request check is a lookup of
    /// the next generation's marker, which is absent until the set changes.
    pub fn sync(&mut self, store: &dyn SharedStore, idx: usize) -> Result<u64, StoreError> {
        self.sync_with(store, idx, false)
    }

    /// [`Engine::sync`] that reads the generation itself rather than trusting
    /// the absence of the next generation's marker (the tick's check).
    pub fn sync_full(&mut self, store: &dyn SharedStore, idx: usize) -> Result<u64, StoreError> {
        self.sync_with(store, idx, true)
    }

    fn sync_with(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        full: bool,
    ) -> Result<u64, StoreError> {
        let allowed = self.cfg.allowed_algorithms;
        let max = self.cfg.providers.get(idx).map_or(0, |p| p.max_cache_size);
        let Some(rt) = self.providers.get_mut(idx) else {
            return Ok(0);
        };
        let Some(names) = &rt.names else { return Ok(0) };
        if rt.loaded && !full && !cache::has_marker(store, &rt.next)? {
            return Ok(rt.gen);
        }
        let gen = cache::read_gen(store, names)?;
        if gen != rt.gen || !rt.loaded {
            let (bytes, _) = store.get(&names.keys)?;
            rt.keys = bytes
                .and_then(|b| jwks::parse(&b, allowed, max).ok())
                .map(|p| p.set)
                .unwrap_or_default();
            rt.gen = gen;
            rt.next = names.marker(gen + 1);
            rt.loaded = true;
        }
        Ok(gen)
    }

    /// The number of keys this VM holds for a provider.
    pub fn local_key_count(&self, idx: usize) -> usize {
        self.providers.get(idx).map_or(0, |r| r.keys.len())
    }

    /// Decides one token on the route of `rule` (None: the top-level
    /// policy). With `may_wait` false (a waiter past its deadline), no
    /// refresh is started and missing keys are final.
    pub fn authenticate(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        token: &str,
        rule: Option<usize>,
        may_wait: bool,
    ) -> Verdict {
        let cache = self.tokens.enabled();
        if cache {
            if let Some(grant) = self.cached(store, token, rule, now_ms) {
                metrics.incr(Metric::TokenCacheHit);
                return Verdict::Allow(grant);
            }
        }
        // The decode buffers are taken out while the token borrows them, so
        // that `self` stays free.
        let mut scratch = std::mem::take(&mut self.scratch);
        let decided = self.decide(&mut scratch, store, metrics, now_ms, token, rule, may_wait);
        self.scratch = scratch;
        match decided {
            Ok((v, fresh)) => {
                if let (true, Verdict::Allow(grant), Some(f)) = (cache, &v, fresh) {
                    if let Some(valid_until_ms) = f.valid_until_ms {
                        let entry = token_cache::Entry {
                            provider: f.provider,
                            gen: f.gen,
                            rule,
                            valid_until_ms,
                            grant: grant.clone(),
                        };
                        self.tokens.insert(token, entry);
                    }
                }
                v
            }
            Err(r) => Verdict::Deny(r),
        }
    }

    fn cached(
        &mut self,
        store: &dyn SharedStore,
        token: &str,
        rule: Option<usize>,
        now_ms: u64,
    ) -> Option<Grant> {
        let provider = self.tokens.provider_of(token)?;
        // The key set may have changed in another worker: read its generation.
        let gen = self.sync(store, provider).ok()?;
        self.tokens.get(token, rule, now_ms, |_| gen)
    }

    /// Verified tokens this worker holds (for tests and `cache/info`).
    pub fn token_cache_len(&self) -> usize {
        self.tokens.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        scratch: &mut jose::Scratch,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        token: &str,
        rule: Option<usize>,
        may_wait: bool,
    ) -> Result<(Verdict, Option<Fresh>), Refusal> {
        let now_s = now_ms / 1000;
        let d = jose::decode(token, scratch).map_err(Refusal::Decode)?;
        let alg = policy::check_header(d.header, self.cfg.allowed_algorithms)?;
        let idx = self.select_provider(d.claims.iss.as_deref())?;
        let route = rule.and_then(|i| self.cfg.rules.get(i));
        if route
            .and_then(|r| r.providers.as_ref())
            .is_some_and(|ok| !ok.contains(&idx))
        {
            return Err(Refusal::ProviderNotAllowed);
        }
        let provider = self.cfg.providers.get(idx).ok_or(Refusal::Issuer)?;
        policy::check_claims(&d.claims, &provider.claims, now_s)?;
        let max_age = provider.claims.max_token_age_s;
        if let Some(wait) = self.verify_signature(store, metrics, now_ms, &d, alg, idx, may_wait)? {
            return Ok((wait, None));
        }
        // Served from the cache until exp, and never past iat + max_token_age.
        let exp_ms = d.claims.exp.map(|e| (e.0 * 1000.0) as u64);
        let age_ms = max_age.and_then(|a| d.claims.iat.map(|i| (i.0 as u64 + a) * 1000));
        let valid_until_ms = match (exp_ms, age_ms) {
            (Some(e), Some(a)) => Some(e.min(a)),
            (e, None) => e,
            (None, a) => a,
        };
        let fresh = Fresh {
            provider: idx,
            gen: self.providers.get(idx).map_or(0, |r| r.gen),
            valid_until_ms,
        };
        Ok((Verdict::Allow(self.grant(&d, idx, rule)?), Some(fresh)))
    }

    /// The provider a token belongs to: the only one, or the one listing
    /// its `iss` (providers are never chosen by trying keys).
    fn select_provider(&self, iss: Option<&str>) -> Result<usize, Refusal> {
        if self.cfg.providers.len() == 1 {
            return Ok(0);
        }
        let iss = iss.ok_or(Refusal::MissingClaim("iss"))?;
        self.cfg
            .providers
            .iter()
            .position(|p| p.claims.issuers.iter().any(|i| i == iss))
            .ok_or(Refusal::Issuer)
    }

    /// Authorization and what goes upstream, for a verified token.
    fn grant(&self, d: &jose::Decoded, idx: usize, rule: Option<usize>) -> Result<Grant, Refusal> {
        let require = rule
            .and_then(|i| self.cfg.rules.get(i))
            .map_or(&self.cfg.default_require, |r| &r.require);
        let mut headers = Vec::new();
        if !require.is_empty() || !self.cfg.claims_to_headers.is_empty() {
            let payload: Value = serde_json::from_str(d.payload_json)
                .map_err(|_| Refusal::Decode(jose::DecodeError::Claims))?;
            rules::authorize(require, &self.cfg.claim_paths, &payload)
                .map_err(Refusal::InsufficientScope)?;
            for (path, header) in &self.cfg.claims_to_headers {
                if let Some(v) = rules::claim_at(&payload, path).and_then(rules::header_value) {
                    headers.push((header.clone(), v));
                }
            }
        }
        if let Some(h) = &self.cfg.payload_header {
            headers.push((h.clone(), d.payload_b64().to_string()));
        }
        let identity = self.identity_property.then(|| {
            let id = Identity {
                aud: d.claims.aud.as_ref(),
                iss: d.claims.iss.as_deref(),
                provider: self.cfg.providers.get(idx).map(|p| p.name.as_str()),
                sub: d.claims.sub.as_deref(),
            };
            serde_json::to_string(&id).unwrap_or_default()
        });
        Ok(Grant { headers, identity })
    }

    /// Finds the key and checks the signature: `None` when verified, a
    /// `Wait` when keys must be fetched first.
    #[allow(clippy::too_many_arguments)]
    fn verify_signature(
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
            if !may_wait || provider.jwks.is_none() {
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
                    self.refresh(store, idx, now_ms, Trigger::UnknownKid, Refusal::UnknownKid)
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
        self.refresh(store, idx, now_ms, Trigger::UnknownKid, refusal)
            .map(Some)
    }

    fn refresh(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        now_ms: u64,
        trigger: Trigger,
        otherwise: Refusal,
    ) -> Result<Verdict, Refusal> {
        let (
            Some(p),
            Some(Runtime {
                names: Some(names), ..
            }),
        ) = (self.cfg.providers.get(idx), self.providers.get(idx))
        else {
            return Err(otherwise);
        };
        match fetch::try_acquire(store, names, p, &self.owner, now_ms, trigger) {
            Ok(Acquire::Acquired) => Ok(Verdict::Wait {
                provider: idx,
                dispatch: true,
            }),
            Ok(Acquire::Busy) if self.shared_wake => Ok(Verdict::Wait {
                provider: idx,
                dispatch: false,
            }),
            // Nobody could wake this request: on a cold start it fetches
            // for itself (the answer resumes it); an unknown kid is refused
            // now rather than left hanging (the refresh under way will
            // serve the client's retry).
            Ok(Acquire::Busy) if trigger == Trigger::Cold => Ok(Verdict::Wait {
                provider: idx,
                dispatch: true,
            }),
            // Cold: a retry delay is running; the periodic check will fetch.
            Ok(Acquire::NotDue) if trigger == Trigger::Cold && self.shared_wake => {
                Ok(Verdict::Wait {
                    provider: idx,
                    dispatch: false,
                })
            }
            Ok(_) => Err(otherwise),
            Err(e) => {
                log::warn!("jwt_jwks: refresh lease: {e}");
                Err(otherwise)
            }
        }
    }

    /// The periodic check: providers whose scheduled refresh this VM must
    /// now send (it took the lease).
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<usize> {
        let mut due = Vec::new();
        for idx in 0..self.providers.len() {
            if let Err(e) = self.sync_full(store, idx) {
                log::warn!("jwt_jwks: reading shared keys failed: {e}");
                continue;
            }
            let (
                Some(p),
                Some(Runtime {
                    names: Some(names), ..
                }),
            ) = (self.cfg.providers.get(idx), self.providers.get(idx))
            else {
                continue;
            };
            match fetch::try_acquire(store, names, p, &self.owner, now_ms, Trigger::Scheduled) {
                Ok(Acquire::Acquired) => due.push(idx),
                Ok(_) => {}
                Err(e) => log::warn!("jwt_jwks: refresh lease: {e}"),
            }
        }
        due
    }

    /// The callout to send for a provider.
    pub fn callout(&self, idx: usize) -> Option<Callout> {
        let p = self.cfg.providers.get(idx)?;
        p.jwks.as_ref()?;
        Some(Callout {
            upstream: p.upstream.clone(),
            headers: fetch::request_headers(p),
            timeout_ms: p.timeout_ms,
        })
    }

    /// Whether a callout body of `size` bytes may be read.
    pub fn body_allowed(&self, idx: usize, size: usize) -> bool {
        self.cfg
            .providers
            .get(idx)
            .is_some_and(|p| fetch::body_allowed(p, size))
    }

    /// Records a callout's answer.
    pub fn fetch_done(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        idx: usize,
        answer: &Answer,
    ) -> Option<fetch::Outcome> {
        let allowed = self.cfg.allowed_algorithms;
        let p = self.cfg.providers.get(idx)?;
        let names = self.providers.get(idx)?.names.as_ref()?;
        let result = fetch::evaluate(answer, p, allowed);
        let outcome = match fetch::complete(store, names, p, &self.owner, now_ms, result) {
            Ok(o) => o,
            Err(e) => {
                log::error!("jwt_jwks: storing JWKS fetch result failed: {e}");
                return None;
            }
        };
        match &outcome {
            fetch::Outcome::Stored { keys, skipped, .. } => {
                metrics.incr(Metric::FetchSuccess);
                log::info!(
                    "jwt_jwks: JWKS fetched from {}: {keys} keys ({skipped} skipped)",
                    p.upstream
                );
            }
            fetch::Outcome::Failed(e) => {
                metrics.incr(Metric::FetchFailure);
                log::warn!(
                    "jwt_jwks: JWKS fetch from {} failed: {e}; keeping the current keys",
                    p.upstream
                );
            }
        }
        let _ = self.sync(store, idx);
        Some(outcome)
    }

    /// The callout could not be sent: give the lease back.
    pub fn fetch_not_sent(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        idx: usize,
        why: &str,
    ) {
        metrics.incr(Metric::FetchFailure);
        if let Some(Runtime {
            names: Some(names), ..
        }) = self.providers.get(idx)
        {
            let error = format!("JWKS callout could not be sent: {why}");
            log::warn!("jwt_jwks: {error}");
            if let Err(e) = fetch::abandon(store, names, &self.owner, now_ms, &error) {
                log::warn!("jwt_jwks: releasing the refresh lease: {e}");
            }
        }
    }

    /// Registers a paused request; `false` when the cap is reached.
    pub fn add_waiter(&mut self, mut w: Pending) -> bool {
        if self.waiters.len() >= self.cfg.max_pending_requests {
            return false;
        }
        w.gen = self.providers.get(w.provider).map_or(0, |r| r.gen);
        self.waiters.push(w);
        true
    }

    pub fn remove_waiter(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
    }

    /// Takes one paused request out of the list (to decide it now).
    pub fn take_waiter(&mut self, context_id: u32) -> Option<Pending> {
        let pos = self
            .waiters
            .iter()
            .position(|w| w.context_id == context_id)?;
        Some(self.waiters.swap_remove(pos))
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Looks at every paused request: those whose provider has new keys,
    /// whose fetch ended, or whose deadline passed are decided again.
    /// Returns the final verdicts to carry out, and the providers whose
    /// refresh the caller must now send (a re-decision took the lease).
    pub fn review_waiters(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
    ) -> (Vec<(Pending, Verdict)>, Vec<usize>) {
        let mut finals = Vec::new();
        let mut dispatch = Vec::new();
        // per_request: only a request's own callout may finish it.
        if self.waiters.is_empty() || !self.shared_wake {
            return (finals, dispatch);
        }
        let mut status = Vec::with_capacity(self.providers.len());
        for idx in 0..self.providers.len() {
            let gen = self.sync(store, idx).unwrap_or(0);
            let busy = self
                .providers
                .get(idx)
                .and_then(|r| r.names.as_ref())
                .and_then(|n| cache::read_state(store, n).ok())
                .is_some_and(|s| s.lease_held(now_ms));
            status.push((gen, busy));
        }
        let waiters = std::mem::take(&mut self.waiters);
        for mut w in waiters {
            let (gen, busy) = status.get(w.provider).copied().unwrap_or((0, false));
            let expired = now_ms >= w.deadline_ms;
            if !expired && gen == w.gen && busy {
                self.waiters.push(w);
                continue;
            }
            match self.authenticate(store, metrics, now_ms, &w.token, w.rule, !expired) {
                Verdict::Wait {
                    provider,
                    dispatch: d,
                } => {
                    if d && !dispatch.contains(&provider) {
                        dispatch.push(provider);
                    }
                    w.gen = gen;
                    self.waiters.push(w);
                }
                v => finals.push((w, v)),
            }
        }
        (finals, dispatch)
    }

    /// `GET .../cache/info`.
    pub fn info(&self, store: &dyn SharedStore, now_ms: u64) -> Value {
        let mut total = 0;
        let mut providers = Vec::new();
        for (p, rt) in self.cfg.providers.iter().zip(&self.providers) {
            let Some(names) = &rt.names else {
                providers.push(json!({
                    "jwks_uri": null,
                    "fallback_key": p.fallback.is_some(),
                    "keys_count": 0,
                    "kids": [],
                }));
                continue;
            };
            let rec = cache::read_keys(store, names).unwrap_or_default();
            let st = cache::read_state(store, names).unwrap_or_default();
            let kids: Vec<&str> = rec
                .keys
                .iter()
                .filter_map(|k| k.get("kid").and_then(Value::as_str))
                .collect();
            total += rec.keys.len();
            let secs = |ms: u64| {
                if ms == 0 {
                    Value::Null
                } else {
                    json!(ms / 1000)
                }
            };
            providers.push(json!({
                "jwks_uri": p.jwks.as_ref().map(|j| j.uri.clone()),
                "upstream": p.upstream,
                "keys_count": rec.keys.len(),
                "kids": kids,
                "generation": rec.gen,
                "fetched_at": secs(st.fetched_at_ms),
                "expires_at": secs(st.expires_at_ms),
                "stale": st.has_keys() && now_ms >= st.expires_at_ms,
                "refreshing": st.lease_held(now_ms),
                "next_attempt_at": secs(st.next_attempt_ms),
                "fetch_success": st.fetch_success,
                "fetch_failure": st.fetch_failure,
                "last_error": st.last_error,
                "last_error_at": secs(st.last_error_at_ms),
                "skipped_keys": st.skipped,
                "fallback_key": p.fallback.is_some(),
                "cache_ttl": p.cache_ttl_s,
            }));
        }
        json!({
            "cache_type": "proxy-wasm shared data",
            "keys_count": total,
            "providers": providers,
        })
    }

    /// `POST .../cache/clear`.
    pub fn clear_all(&mut self, store: &dyn SharedStore) -> Result<Value, StoreError> {
        let mut removed = 0;
        for idx in 0..self.providers.len() {
            if let Some(Runtime {
                names: Some(names), ..
            }) = self.providers.get(idx)
            {
                removed += fetch::clear_all(store, names)?;
            }
            self.sync(store, idx)?;
        }
        log::info!("jwt_jwks: admin: cleared the JWKS cache ({removed} keys)");
        Ok(json!({ "cleared": "all", "keys_removed": removed }))
    }

    /// `POST .../cache/clear/{kid}`; `None` when no provider has the kid.
    pub fn clear_kid(
        &mut self,
        store: &dyn SharedStore,
        kid: &str,
    ) -> Result<Option<Value>, StoreError> {
        let mut found = false;
        for idx in 0..self.providers.len() {
            if let Some(Runtime {
                names: Some(names), ..
            }) = self.providers.get(idx)
            {
                found |= fetch::clear_kid(store, names, kid)?;
            }
            self.sync(store, idx)?;
        }
        if !found {
            return Ok(None);
        }
        log::info!("jwt_jwks: admin: cleared key {kid:?}");
        Ok(Some(json!({ "cleared": kid })))
    }
}

fn verdict_of(result: Result<(), SigError>) -> Result<Option<Verdict>, Refusal> {
    match result {
        Ok(()) => Ok(None),
        Err(SigError::BadSignature) => Err(Refusal::BadSignature),
        Err(SigError::WrongAlgorithm) => Err(Refusal::NoKeyForAlgorithm),
    }
}
