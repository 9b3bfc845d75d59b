//! The per-VM engine: one configuration, the parsed key sets (one per
//! provider, refreshed from shared data when its generation moves), the
//! requests waiting for keys, and the decisions the host glue carries out.
//! Everything here is host-neutral and runs under `cargo test`.
//!
//! The request path is here (`authenticate`); the rest of the engine's
//! work is in one file each: the signature check and its key
//! (`signature`), authorization and what goes upstream (`grant`), the key
//! sets and their refresh (`keysets`), paused requests (`waiters`), the
//! admin routes (`cache_admin`), verified tokens (`token_cache`), deny
//! entries (`revocations`), and the types handed to the host glue
//! (`verdict`).
#![forbid(unsafe_code)]

mod cache_admin;
mod grant;
mod introspection;
mod keysets;
mod revocations;
mod signature;
mod status_lists;
pub mod token_cache;
pub mod verdict;
mod waiters;

use std::rc::Rc;

use crate::authz::claims;
use crate::authz::refusal::Refusal;
use crate::config::{Config, WaitMode};
use crate::crypto::host::HostCrypto;
use crate::engine::token_cache::TokenCache;
use crate::keys::jwks::KeySet;
use crate::keys::layout::Names;
use crate::metrics::{Metric, Metrics};
use crate::revoke::held::Revocations;
use crate::revoke::index::{Subject, SubjectRef};
use crate::revoke::status;
use crate::revoke::status_held::StatusLists;
use crate::store::SharedStore;
use crate::token::jose;

pub use verdict::{Callout, Grant, Pending, Verdict};

/// How long a token-cache hit trusts this VM's idea of a key set's
/// generation before reading it from shared data again. A change made in
/// this VM (its own fetch, an admin clear it served) applies at once; one
/// made in another worker reaches this worker's cached verdicts within
/// this time (the tick re-reads it as often). The read is a shared-data
/// host call, about 2,000 instructions in Envoy (docs/performance.md).
pub const KEYS_RECHECK_MS: u64 = 100;

/// One provider's keys as this VM holds them.
struct Runtime {
    names: Option<Names>,
    gen: u64,
    /// `names.marker(gen + 1)`: present once the key set has moved on.
    next: String,
    loaded: bool,
    keys: KeySet,
    /// When a token-cache hit last read the generation from shared data.
    checked_ms: u64,
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
    /// Deny entries as this VM holds them.
    revocations: Revocations,
    /// The status lists this VM's tokens named.
    status: StatusLists,
    /// Per provider: its introspection cache, when it has an
    /// `introspection` block.
    introspectors: Vec<Option<crate::introspect::held::Introspector>>,
    /// Introspection calls this VM sent and awaits.
    calls: Vec<crate::introspect::held::Call>,
    next_call: u32,
    /// Introspection results not kept in shared data, for this VM's
    /// paused requests (see `take_handoff`).
    handoff: Vec<crate::introspect::cache::Entry>,
}

/// What a fresh verification tells the token cache.
pub(crate) struct Fresh {
    provider: usize,
    gen: u64,
    valid_until_ms: Option<u64>,
    /// What deny entries can match, kept for cache hits (only when
    /// revocation is on).
    subject: Option<Rc<Subject>>,
    /// The introspection cache's epoch the verdict rests on, if any.
    epoch: Option<u64>,
}

impl Engine {
    /// `owner` identifies this VM in refresh leases; it must be unique
    /// among the workers sharing the data.
    pub fn new(cfg: Config, owner: String) -> Engine {
        let providers = cfg
            .providers
            .iter()
            .map(|p| Runtime {
                names: p
                    .key_set_uri()
                    .map(|uri| Names::for_provider(uri, p, cfg.allowed_algorithms)),
                gen: 0,
                next: String::new(),
                loaded: false,
                keys: KeySet::default(),
                checked_ms: 0,
            })
            .collect();
        let introspectors = cfg
            .providers
            .iter()
            .map(|p| {
                let s = p.introspection.as_ref()?;
                let tag = crate::keys::layout::introspection_tag(p, s, cfg.allowed_algorithms);
                Some(crate::introspect::held::Introspector::new(&tag, s))
            })
            .collect();
        Engine {
            introspectors,
            calls: Vec::new(),
            next_call: 0,
            handoff: Vec::new(),
            tokens: TokenCache::new(cfg.token_cache_size, cfg.token_cache_max_bytes),
            host_crypto: None,
            scratch: jose::Scratch::default(),
            revocations: Revocations::new(&cfg),
            status: StatusLists::default(),
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
        match self.from_cache(store, metrics, now_ms, token.as_bytes(), rule, may_wait) {
            Some(v) => v,
            None => self.verify(store, metrics, now_ms, token, rule, may_wait),
        }
    }

    /// [`Engine::authenticate`] for a token `from_cache` did not answer:
    /// decoded, checked and verified, and kept in the token cache when
    /// allowed.
    pub fn verify(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        token: &str,
        rule: Option<usize>,
        may_wait: bool,
    ) -> Verdict {
        let cache = self.tokens.enabled();
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
                            subject: f.subject,
                            epoch: f.epoch,
                        };
                        self.tokens.insert(token, entry);
                    }
                }
                v
            }
            Err(r) => Verdict::Deny(r),
        }
    }

    /// The verdict for a token verified before, on the same rule, while it
    /// still holds; `None` otherwise (then `authenticate` decides). Takes
    /// the token as the request holds it: the cache only has tokens that
    /// were read and verified, so equal bytes need no other check.
    pub fn from_cache(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        token: &[u8],
        rule: Option<usize>,
        may_wait: bool,
    ) -> Option<Verdict> {
        if !self.tokens.enabled() {
            return None;
        }
        let (grant, provider, subject) = self.cached(store, token, rule, now_ms)?;
        // A revocation voids a cached verdict at once.
        if let Some(s) = subject {
            match self.check_revoked(store, provider, &s.borrowed(), now_ms, may_wait) {
                Ok(None) => {}
                Ok(Some(wait)) => return Some(wait),
                Err(r) => return Some(Verdict::Deny(r)),
            }
        }
        metrics.incr(Metric::TokenCacheHit);
        Some(Verdict::Allow(grant))
    }

    fn cached(
        &mut self,
        store: &dyn SharedStore,
        token: &[u8],
        rule: Option<usize>,
        now_ms: u64,
    ) -> Option<(Rc<Grant>, usize, Option<Rc<Subject>>)> {
        let hit = self.tokens.lookup(token)?;
        let provider = hit.provider;
        // The key set may have changed in another worker: its generation
        // (read again at most every `KEYS_RECHECK_MS`), and the
        // introspection cache's epoch, if any.
        let gen = self.recent_gen(store, provider, now_ms).ok()?;
        let epoch = self.introspection_epoch(store, provider);
        let valid =
            |e: &token_cache::Entry| e.gen == gen && e.epoch.is_none_or(|x| Some(x) == epoch);
        let (grant, subject) = self.tokens.take(hit, rule, now_ms, valid)?;
        Some((grant, provider, subject))
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
        let d = match jose::decode(token, scratch) {
            Ok(d) => d,
            // Not a compact JWS (no two dots): an opaque token, for the
            // provider that introspects them on this route.
            Err(_)
                if token.matches('.').count() != 2
                    && self.introspecting_provider(rule).is_some() =>
            {
                return self.opaque(store, metrics, now_ms, token, rule, may_wait);
            }
            Err(e) => return Err(Refusal::Decode(e)),
        };
        let alg = claims::check_header(d.header, self.cfg.allowed_algorithms)?;
        let idx = self.select_provider(d.claims.iss.as_deref())?;
        let route = rule.and_then(|i| self.cfg.rules.get(i));
        if route
            .and_then(|r| r.providers.as_ref())
            .is_some_and(|ok| !ok.contains(&idx))
        {
            return Err(Refusal::ProviderNotAllowed);
        }
        let provider = self.cfg.providers.get(idx).ok_or(Refusal::Issuer)?;
        claims::check_claims(&d.claims, &provider.claims, now_s)?;
        claims::check_type(d.header, &provider.allowed_types)?;
        let max_age = provider.claims.max_token_age_s;
        let status_on = provider.status_list.is_some();
        let introspect_jwt = provider
            .introspection
            .as_ref()
            .is_some_and(|s| s.introspect_jwt);
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
        let c = &d.claims;
        let status_ref = match (status_on, c.status) {
            (true, Some(raw)) => status::reference(raw).map_err(|_| Refusal::StatusReference)?,
            _ => None,
        };
        let subject = SubjectRef::of_claims(c, status_ref.as_ref());
        if let Some(wait) = self.check_revoked(store, idx, &subject, now_ms, may_wait)? {
            return Ok((wait, None));
        }
        let mut valid_until_ms = valid_until_ms;
        let mut epoch = None;
        if introspect_jwt {
            // Revocation-sensitive: the JWT is introspected too.
            match self.introspected(store, metrics, idx, token, now_ms, may_wait)? {
                Ok(k) => {
                    epoch = Some(k.epoch);
                    valid_until_ms =
                        Some(valid_until_ms.map_or(k.entry.until_ms, |v| v.min(k.entry.until_ms)));
                }
                Err(wait) => return Ok((wait, None)),
            }
        }
        let fresh = Fresh {
            provider: idx,
            gen: self.providers.get(idx).map_or(0, |r| r.gen),
            valid_until_ms,
            subject: (self.revocations.enabled() || subject.status.is_some())
                .then(|| Rc::new(Subject::of(&subject))),
            epoch,
        };
        Ok((
            Verdict::Allow(Rc::new(self.grant(&d, idx, rule)?)),
            Some(fresh),
        ))
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
}
