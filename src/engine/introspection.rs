//! The engine's side of introspection: an opaque token (or, with
//! `introspect_jwt`, a verified JWT) looked up in the shared cache, the
//! call sent when it is not there (one per token: the others wait for it),
//! the answer read, its JWT verified with the provider's keys, the result
//! stored, and the verdict built from it on every request, cache hit or
//! not.
#![forbid(unsafe_code)]

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::authz::claims;
use crate::authz::refusal::Refusal;
use crate::config::introspection::{IntrospectionSettings, MAX_PHANTOM_BYTES};
use crate::config::{parse_endpoint, Endpoint};
use crate::engine::verdict::{Callout, Grant, Verdict};
use crate::engine::Engine;
use crate::introspect::answer::{self, Failure, Reading};
use crate::introspect::cache::{Entry, Lookup, State};
use crate::introspect::held::Call;
use crate::introspect::request;
use crate::keys::freshness::{self, Source};
use crate::keys::layout;
use crate::keys::refresh::{Answer, Doc, Trigger};
use crate::metrics::{Metric, Metrics};
use crate::revoke::index::{Subject, SubjectRef};
use crate::store::SharedStore;
use crate::token::jose;

/// The largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 256 << 10;
/// The `typ` of an RFC 9701 answer.
const INTROSPECTION_TYPE: &str = "token-introspection+jwt";
/// A paused request that waits for another request's call.
pub const NOT_MINE: u32 = u32::MAX;

/// A header value for a request that carries no signed header of its own.
static NO_HEADER: jose::Header<'static> = jose::Header {
    alg: Cow::Borrowed("none"),
    kid: None,
    typ: None,
    cty: None,
    crit: None,
};

/// What an introspected token was found to be.
pub(super) struct Known {
    pub entry: Entry,
    pub epoch: u64,
}

impl Engine {
    /// The provider that introspects a token on this route: the first, in
    /// configured order, with an `introspection` block that the route
    /// accepts.
    pub(super) fn introspecting_provider(&self, rule: Option<usize>) -> Option<usize> {
        let allowed = rule
            .and_then(|i| self.cfg.rules.get(i))
            .and_then(|r| r.providers.as_ref());
        self.cfg.providers.iter().enumerate().position(|(i, p)| {
            p.introspection.is_some() && allowed.is_none_or(|ok| ok.contains(&i))
        })
    }

    /// The cache epoch of provider `idx`'s introspection, if it has one.
    pub(super) fn introspection_epoch(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
    ) -> Option<u64> {
        self.introspectors
            .get_mut(idx)?
            .as_mut()
            .map(|i| i.sync(store))
    }

    /// Looks `token` up for provider `idx`: the active entry, a `Wait`
    /// while a call is made, or the refusal (inactive, failed).
    pub(super) fn introspected(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        idx: usize,
        token: &str,
        now_ms: u64,
        may_wait: bool,
    ) -> Result<Result<Known, Verdict>, Refusal> {
        let Some(s) = self
            .cfg
            .providers
            .get(idx)
            .and_then(|p| p.introspection.as_ref())
        else {
            return Err(Refusal::Inactive);
        };
        let lease_ms = s.timeout_ms + 1000;
        // An answer that carries a JWT is verified with the provider's keys,
        // and an endpoint from discovery comes with them: have them before
        // calling.
        let needs_keys = s.yields_jwt() || s.endpoint.is_none();
        if needs_keys && self.local_key_count(idx) == 0 {
            let _ = self.sync(store, idx);
            if self.local_key_count(idx) == 0 && self.fetching(idx).is_some() {
                if !may_wait {
                    return Err(Refusal::KeysUnavailable);
                }
                return self
                    .refresh(store, idx, now_ms, Trigger::Cold, Refusal::KeysUnavailable)
                    .map(Err);
            }
        }
        let Some(intro) = self.introspectors.get_mut(idx).and_then(|i| i.as_mut()) else {
            return Err(Refusal::Inactive);
        };
        let epoch = intro.sync(store);
        let (digest, key) = intro.cache.locate(token);
        // A result this VM just received and did not keep (`no-store`).
        if let Some(entry) = self.handoff.iter().find(|e| e.d == digest && e.e == epoch) {
            return match handoff_refusal(entry) {
                Some(r) => Err(r),
                None => Ok(Ok(Known {
                    entry: entry.clone(),
                    epoch,
                })),
            };
        }
        let found = intro
            .cache
            .lookup(store, &key, &digest, epoch)
            .map_err(|e| {
                log::warn!("jwt_jwks: reading the introspection cache failed: {e}");
                Refusal::IntrospectionUnavailable
            })?;
        if let Lookup::Found(entry) = found {
            if now_ms < entry.until_ms {
                match entry.st {
                    State::Active => {
                        metrics.incr(Metric::IntrospectionHit);
                        return Ok(Ok(Known { entry, epoch }));
                    }
                    State::Inactive => {
                        metrics.incr(Metric::IntrospectionNegativeHit);
                        return Err(Refusal::Inactive);
                    }
                    State::Failed => return Err(failed_refusal(entry.kind.as_deref())),
                    State::Pending => {
                        if !may_wait {
                            return Err(Refusal::IntrospectionUnavailable);
                        }
                        metrics.incr(Metric::IntrospectionCoalesced);
                        if self.shared_wake {
                            return Ok(Err(self.introspection_wait(idx, NOT_MINE, false)));
                        }
                        // Nothing but a callout of its own resumes a paused
                        // request here: it makes its own call.
                        let id = self.new_call(idx, token, digest, key, epoch);
                        return Ok(Err(self.introspection_wait(idx, id, true)));
                    }
                }
            }
        }
        if !may_wait {
            return Err(Refusal::IntrospectionUnavailable);
        }
        if now_ms < intro.cache.backoff_until(store) {
            // Recent calls failed: none for a while, whatever the token.
            return Err(Refusal::IntrospectionUnavailable);
        }
        if self.introspection_endpoint(store, idx).is_none() {
            log::warn!("jwt_jwks: no introspection endpoint: the discovery metadata names none");
            return Err(Refusal::IntrospectionFailed("malformed"));
        }
        let Some(intro) = self.introspectors.get_mut(idx).and_then(|i| i.as_mut()) else {
            return Err(Refusal::Inactive);
        };
        let owner = self.owner.clone();
        match intro
            .cache
            .lease(store, &key, &digest, epoch, &owner, lease_ms, now_ms)
        {
            Ok(true) => {
                let id = self.new_call(idx, token, digest, key, epoch);
                Ok(Err(self.introspection_wait(idx, id, true)))
            }
            // Another request took it a moment ago.
            Ok(false) if self.shared_wake => {
                metrics.incr(Metric::IntrospectionCoalesced);
                Ok(Err(self.introspection_wait(idx, NOT_MINE, false)))
            }
            Ok(false) => {
                let id = self.new_call(idx, token, digest, key, epoch);
                Ok(Err(self.introspection_wait(idx, id, true)))
            }
            Err(e) => {
                log::warn!("jwt_jwks: introspection lease: {e}");
                Err(Refusal::IntrospectionUnavailable)
            }
        }
    }

    fn introspection_wait(&self, idx: usize, id: u32, dispatch: bool) -> Verdict {
        Verdict::Wait {
            provider: idx,
            dispatch,
            doc: Doc::Introspection(id),
        }
    }

    fn new_call(
        &mut self,
        idx: usize,
        token: &str,
        digest: String,
        key: String,
        epoch: u64,
    ) -> u32 {
        self.next_call = self.next_call.wrapping_add(1) % NOT_MINE;
        let id = self.next_call;
        // Calls never answered (a host that drops them) do not pile up.
        if self.calls.len() >= self.cfg.max_pending_requests.max(1) {
            self.calls.remove(0);
        }
        self.calls.push(Call {
            id,
            provider: idx,
            token: token.to_string(),
            digest,
            key,
            epoch,
        });
        id
    }

    /// The verdict of an opaque token, from its introspection.
    pub(super) fn opaque(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        token: &str,
        rule: Option<usize>,
        may_wait: bool,
    ) -> Result<(Verdict, Option<crate::engine::Fresh>), Refusal> {
        let idx = self
            .introspecting_provider(rule)
            .ok_or(Refusal::ProviderNotAllowed)?;
        let known = match self.introspected(store, metrics, idx, token, now_ms, may_wait)? {
            Ok(k) => k,
            Err(wait) => return Ok((wait, None)),
        };
        let e = &known.entry;
        let mut scratch = jose::Scratch::default();
        let payload;
        let d = match (&e.jwt, &e.claims) {
            (Some(jwt), _) => jose::decode(jwt, &mut scratch)
                .map_err(|_| Refusal::IntrospectionFailed("phantom"))?,
            (None, Some(c)) => {
                payload = format!("e30.{}", URL_SAFE_NO_PAD.encode(c));
                jose::Decoded {
                    header: &NO_HEADER,
                    claims: jose::Claims::parse(c)
                        .map_err(|_| Refusal::IntrospectionFailed("malformed"))?,
                    signing_input: &payload,
                    signature: &[],
                    payload_json: c,
                }
            }
            (None, None) => return Err(Refusal::IntrospectionFailed("malformed")),
        };
        let provider = self.cfg.providers.get(idx).ok_or(Refusal::Issuer)?;
        // Checked on every request: a cached answer outlives no claim.
        claims::check_claims(&d.claims, &provider.claims, now_ms / 1000)?;
        let phantom_header = provider
            .introspection
            .as_ref()
            .and_then(|s| s.phantom_header.clone());
        // Deny entries apply to the introspected claims as to a JWT's.
        let subject = SubjectRef::of_claims(&d.claims, None);
        if let Some(wait) = self.check_revoked(store, idx, &subject, now_ms, may_wait)? {
            return Ok((wait, None));
        }
        let kept_subject = self
            .revocations
            .enabled()
            .then(|| std::rc::Rc::new(Subject::of(&subject)));
        let mut grant: Grant = self.grant(&d, idx, rule)?;
        grant.strip_token = true;
        if let Some(jwt) = &e.jwt {
            match phantom_header {
                Some(h) => grant.headers.push((h, jwt.clone())),
                None => grant
                    .headers
                    .push(("authorization".to_string(), format!("Bearer {jwt}"))),
            }
        }
        let exp_ms = d.claims.exp.map(|x| (x.0 * 1000.0) as u64);
        let until = exp_ms.map_or(e.until_ms, |x| x.min(e.until_ms));
        // Served from this worker's token cache while the result lives
        // (never for a result that was not kept).
        let fresh = (until > now_ms).then(|| crate::engine::Fresh {
            provider: idx,
            gen: self.providers.get(idx).map_or(0, |r| r.gen),
            valid_until_ms: Some(until),
            subject: kept_subject,
            epoch: Some(known.epoch),
        });
        Ok((Verdict::Allow(std::rc::Rc::new(grant)), fresh))
    }

    /// The callout of call `id`.
    pub(super) fn introspection_callout(
        &self,
        store: &dyn SharedStore,
        id: u32,
    ) -> Option<Callout> {
        let call = self.calls.iter().find(|c| c.id == id)?;
        let p = self.cfg.providers.get(call.provider)?;
        let s = p.introspection.as_ref()?;
        let endpoint = self.introspection_endpoint(store, call.provider)?;
        let (headers, body) = request::build(s, &endpoint, &call.token);
        Some(Callout {
            doc: Doc::Introspection(id),
            upstream: s
                .upstream
                .clone()
                .unwrap_or_else(|| endpoint.authority.clone()),
            headers,
            body: Some(body),
            timeout_ms: s.timeout_ms,
        })
    }

    /// The configured endpoint, or the discovery metadata's.
    fn introspection_endpoint(&self, store: &dyn SharedStore, idx: usize) -> Option<Endpoint> {
        let s = self.cfg.providers.get(idx)?.introspection.as_ref()?;
        if let Some(e) = &s.endpoint {
            return Some(e.clone());
        }
        let (_, names) = self.fetching(idx)?;
        let st = layout::read_state(store, names).ok()?;
        parse_endpoint(st.discovery.introspection_endpoint.as_deref()?).ok()
    }

    pub(super) fn introspection_body_allowed(&self, size: usize) -> bool {
        size <= MAX_ANSWER_BYTES
    }

    /// Records a call's answer (or that it could not be sent).
    pub(super) fn introspection_done(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        id: u32,
        a: &Answer,
    ) {
        let Some(pos) = self.calls.iter().position(|c| c.id == id) else {
            return;
        };
        let call = self.calls.swap_remove(pos);
        let Some(s) = self
            .cfg
            .providers
            .get(call.provider)
            .and_then(|p| p.introspection.clone())
        else {
            return;
        };
        let result = answer::read(&s, a)
            .and_then(|r| self.verify_reading(store, call.provider, &s, r, now_ms));
        let (requested, source) = freshness::requested(&a.cache, now_ms);
        let no_store = source == Source::NoCache;
        let cap_ms = |cap_s: u64| now_ms + cap_s.saturating_mul(1000);
        let mut entry = Entry {
            d: call.digest.clone(),
            e: call.epoch,
            st: State::Failed,
            until_ms: 0,
            owner: None,
            claims: None,
            jwt: None,
            kind: None,
        };
        let ok = !matches!(result, Err(Failure::Unavailable(_)));
        match result {
            Ok(Checked::Active {
                claims,
                jwt,
                exp_s,
                cap_s,
            }) => {
                let mut until = cap_ms(s.cache_ttl_s);
                if let Some(r) = requested {
                    until = until.min(cap_ms(r));
                }
                if let Some(c) = cap_s {
                    until = until.min(cap_ms(c));
                }
                if let Some(x) = exp_s {
                    until = until.min(x.saturating_mul(1000));
                }
                entry.st = State::Active;
                entry.until_ms = until;
                entry.claims = claims;
                entry.jwt = jwt;
            }
            Ok(Checked::Inactive) => {
                entry.st = State::Inactive;
                entry.until_ms = cap_ms(s.negative_cache_ttl_s);
            }
            Err(f) => {
                let (kind, why, metric) = match &f {
                    Failure::Unavailable(w) => (
                        "unavailable",
                        w.clone(),
                        Metric::IntrospectionErrorUnavailable,
                    ),
                    Failure::Failed("status", w) => {
                        ("status", w.clone(), Metric::IntrospectionErrorStatus)
                    }
                    Failure::Failed("phantom", w) => {
                        ("phantom", w.clone(), Metric::IntrospectionErrorPhantom)
                    }
                    Failure::Failed(_, w) => {
                        ("malformed", w.clone(), Metric::IntrospectionErrorMalformed)
                    }
                };
                metrics.incr(metric);
                log::warn!(
                    "jwt_jwks: introspection of token {} failed: {why}",
                    &call.digest[..12.min(call.digest.len())]
                );
                entry.kind = Some(kind.to_string());
            }
        }
        let intro = self
            .introspectors
            .get(call.provider)
            .and_then(|i| i.as_ref());
        let Some(intro) = intro else { return };
        // A failure is no verdict: the provider backs off instead, and the
        // token's slot says so until then.
        let backoff = match intro
            .cache
            .record(store, entry.st != State::Failed || ok, now_ms)
        {
            Ok(b) => b,
            Err(e) => {
                log::warn!("jwt_jwks: introspection back-off: {e}");
                now_ms + 1000
            }
        };
        if entry.st == State::Failed {
            entry.until_ms = backoff.max(now_ms + 1000);
        }
        let keep = entry.st == State::Failed || (!no_store && entry.until_ms > now_ms);
        if !keep {
            // Not cached: this VM's waiters for the token get it now, and
            // other workers' waiters call again.
            self.handoff.push(entry.clone());
        }
        if let Err(e) = intro.cache.store(
            store,
            &call.key,
            &call.digest,
            call.epoch,
            keep.then_some(entry),
        ) {
            log::warn!("jwt_jwks: storing an introspection result failed: {e}");
        }
    }

    /// Verifies the JWT an answer carries and reads what it says.
    fn verify_reading(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        s: &IntrospectionSettings,
        r: Reading,
        now_ms: u64,
    ) -> Result<Checked, Failure> {
        let phantom = |why: String| Failure::Failed("phantom", why);
        match r {
            Reading::Inactive => Ok(Checked::Inactive),
            Reading::Active {
                claims,
                jwt: None,
                cap_s,
            } => {
                let exp_s = claims_exp(claims.as_deref());
                Ok(Checked::Active {
                    claims,
                    jwt: None,
                    exp_s,
                    cap_s,
                })
            }
            Reading::Active {
                jwt: Some(jwt),
                cap_s,
                ..
            } => {
                if jwt.len() > MAX_PHANTOM_BYTES {
                    return Err(phantom(format!(
                        "a JWT of {} bytes is larger than the {MAX_PHANTOM_BYTES} forwarded",
                        jwt.len()
                    )));
                }
                let mut scratch = jose::Scratch::default();
                let d = jose::decode(&jwt, &mut scratch)
                    .map_err(|e| phantom(e.describe().to_string()))?;
                self.verify_fetched(store, idx, &d).map_err(phantom)?;
                let p = self
                    .cfg
                    .providers
                    .get(idx)
                    .ok_or_else(|| phantom("no provider".into()))?;
                claims::check_claims(&d.claims, &p.claims, now_ms / 1000)
                    .map_err(|r| phantom(r.describe().to_string()))?;
                let exp_s = d.claims.exp.map(|e| e.0 as u64);
                Ok(Checked::Active {
                    claims: None,
                    jwt: Some(jwt.clone()),
                    exp_s,
                    cap_s,
                })
            }
            Reading::Signed(jwt) => {
                let bad = |why: String| Failure::Failed("malformed", why);
                let mut scratch = jose::Scratch::default();
                let d =
                    jose::decode(&jwt, &mut scratch).map_err(|e| bad(e.describe().to_string()))?;
                let typ = d.header.typ.as_deref().map(crate::config::media_type);
                if typ.as_deref() != Some(INTROSPECTION_TYPE) {
                    return Err(bad("typ is not token-introspection+jwt".into()));
                }
                self.verify_fetched(store, idx, &d).map_err(phantom)?;
                let p = self
                    .cfg
                    .providers
                    .get(idx)
                    .ok_or_else(|| bad("no provider".into()))?;
                let iss_ok = p.claims.issuers.is_empty()
                    || d.claims
                        .iss
                        .as_deref()
                        .is_some_and(|i| p.claims.issuers.iter().any(|x| x == i));
                let aud_ok = d
                    .claims
                    .aud
                    .as_ref()
                    .is_some_and(|a| a.iter().any(|x| x == s.client_id));
                if !iss_ok || !aud_ok {
                    return Err(bad("iss or aud of the signed answer".into()));
                }
                match answer::read_signed_payload(d.payload_json)? {
                    Reading::Inactive => Ok(Checked::Inactive),
                    Reading::Active { claims, .. } => {
                        let exp_s = claims_exp(claims.as_deref());
                        Ok(Checked::Active {
                            claims,
                            jwt: None,
                            exp_s,
                            cap_s: None,
                        })
                    }
                    Reading::Signed(_) => Err(bad("nested signed answer".into())),
                }
            }
        }
    }

    /// Drops the results not kept in shared data (`no-store`, a zero
    /// lifetime) once this VM's paused requests were decided with them.
    pub fn end_handoff(&mut self) {
        self.handoff.clear();
    }

    /// Whether the call a paused request waits for is still under way.
    pub(super) fn introspection_busy(
        &mut self,
        store: &dyn SharedStore,
        provider: usize,
        token: &str,
        now_ms: u64,
    ) -> bool {
        let Some(intro) = self
            .introspectors
            .get_mut(provider)
            .and_then(|i| i.as_mut())
        else {
            return false;
        };
        let epoch = intro.sync(store);
        let (digest, key) = intro.cache.locate(token);
        matches!(
            intro.cache.lookup(store, &key, &digest, epoch),
            Ok(Lookup::Found(e)) if e.st == State::Pending && now_ms < e.until_ms
        )
    }

    /// The tick's share: one sweep step per provider (when this VM takes it).
    pub fn introspection_tick(&mut self, store: &dyn SharedStore, now_ms: u64) {
        for intro in self.introspectors.iter().flatten() {
            if let Err(e) = intro.cache.sweep(store, &self.owner, now_ms) {
                log::warn!("jwt_jwks: sweeping the introspection cache: {e}");
            }
        }
    }

    /// Creates every cache slot (Envoy, at configure time).
    pub(super) fn prepare_introspection(
        &self,
        store: &dyn SharedStore,
    ) -> Result<(), crate::store::StoreError> {
        for intro in self.introspectors.iter().flatten() {
            intro.cache.prepare(store)?;
        }
        Ok(())
    }

    /// `POST .../cache/clear`'s share: a new epoch for every provider.
    pub(super) fn clear_introspection(
        &mut self,
        store: &dyn SharedStore,
    ) -> Result<usize, crate::store::StoreError> {
        let mut n = 0;
        for intro in self.introspectors.iter_mut().flatten() {
            intro.cache.clear(store)?;
            intro.sync(store);
            n += 1;
        }
        Ok(n)
    }

    /// `cache/info`'s introspection part (reads every slot).
    pub(super) fn introspection_info(&self, store: &dyn SharedStore, now_ms: u64) -> Vec<Value> {
        self.cfg
            .providers
            .iter()
            .zip(&self.introspectors)
            .filter_map(|(p, i)| {
                let (s, intro) = (p.introspection.as_ref()?, i.as_ref()?);
                let (entries, bytes) = intro.cache.census(store, now_ms);
                let backoff = intro.cache.backoff_until(store);
                Some(json!({
                    "provider": p.name,
                    "endpoint": self.introspection_endpoint(store, self.cfg.providers.iter().position(|x| x.name == p.name)?).map(|e| e.uri),
                    "client_id": s.client_id,
                    "client_secret_from": s.secret_env.as_ref().map_or("configuration".to_string(), |n| format!("env {n}")),
                    "entries": entries,
                    "bytes": bytes,
                    "max_entries": s.max_entries,
                    "epoch": intro.cache.epoch(store).unwrap_or(0),
                    "backing_off_until": (backoff > now_ms).then_some(backoff / 1000),
                }))
            })
            .collect()
    }
}

/// An answer checked: what the cache keeps.
enum Checked {
    Active {
        claims: Option<String>,
        jwt: Option<String>,
        exp_s: Option<u64>,
        cap_s: Option<u64>,
    },
    Inactive,
}

/// The `exp` of RFC 7662 claims (JSON object text), if they have one.
fn claims_exp(claims: Option<&str>) -> Option<u64> {
    let c = jose::Claims::parse(claims?).ok()?;
    c.exp.map(|e| e.0 as u64)
}

/// The refusal a failed entry stands for.
fn failed_refusal(kind: Option<&str>) -> Refusal {
    match kind {
        Some("status") => Refusal::IntrospectionFailed("status"),
        Some("phantom") => Refusal::IntrospectionFailed("phantom"),
        Some("malformed") => Refusal::IntrospectionFailed("malformed"),
        _ => Refusal::IntrospectionUnavailable,
    }
}

/// The refusal of a result handed off to this VM's waiters (none when
/// active).
fn handoff_refusal(e: &Entry) -> Option<Refusal> {
    match e.st {
        State::Inactive => Some(Refusal::Inactive),
        State::Failed => Some(failed_refusal(e.kind.as_deref())),
        _ => None,
    }
}
