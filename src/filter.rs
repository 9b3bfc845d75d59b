//! The proxy-wasm glue: root and HTTP contexts that read from the host,
//! ask the engine, and write back. Only host calls that return `Result`
//! are used on request paths, so a host error never unwinds into the VM.
//!
//! Waiting for keys: a request that needs a fetch sends the callout from
//! its own context (allowed on every host) and is resumed from that
//! callout's answer. Other paused requests in the same VM are finished
//! through `set_effective_context` when the answer arrives, and by the
//! root's periodic check (every `TICK`) when another worker fetched.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, GrpcStatusCode, LogLevel, MapType, MetricType, Status,
};

use crate::admin::{self, Action as AdminAction, Route};
use crate::cache::{SharedStore, StoreError};
use crate::config::Config;
use crate::config::HostCryptoMode;
use crate::engine::{Engine, Pending, Verdict};
use crate::fetch::Answer;
use crate::headers;
use crate::hostcrypto::{self, HostCrypto};
use crate::metrics::{self, Metric, Metrics};
use crate::policy::Refusal;
use crate::response::{self, json_reply, LocalReply};
use crate::rules::{self, AuthMode};
use crate::token::{self, Source};

/// How often the root context checks refreshes and paused requests.
const TICK: Duration = Duration::from_millis(100);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root {
            id: context_id,
            engine: None,
            metrics: Rc::new(HostMetrics::default()),
            callouts: HashMap::new(),
            tick_set: false,
        })
    });
}}

/// Envoy's `verify_signature` foreign function. Only installed when the
/// host is Envoy (or `host_crypto: on`): on ngx_wasm_module an unknown
/// foreign function is a trap.
struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    fn verify(&self, args: &[u8]) -> Result<bool, String> {
        match hostcalls::call_foreign_function("verify_signature", Some(args)) {
            // An empty answer is a result of `false` with no error text.
            Ok(None) => Ok(false),
            Ok(Some(bytes)) => hostcrypto::decode_result(&bytes)
                .map(|(ok, _)| ok)
                .ok_or_else(|| "unreadable verify_signature result".to_string()),
            Err(status) => Err(format!("verify_signature: {status:?}")),
        }
    }
}

struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), StoreError> {
        hostcalls::get_shared_data(key)
            .map(|(v, cas)| (v, cas.unwrap_or(0)))
            .map_err(|s| StoreError::Host(format!("{s:?}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let cas = if cas == 0 { None } else { Some(cas) };
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| match s {
            Status::CasMismatch => StoreError::CasMismatch,
            other => StoreError::Host(format!("{other:?}")),
        })
    }
}

/// The filter's counters. A request only bumps a count in the VM's memory;
/// the root context adds the counts to the host's metrics on every tick
/// (100 ms), and whatever is left when the set is replaced or dropped. A
/// host call per counter per request cost more than the rest of a token
/// cache hit; a scrape sees the counts at most one tick late.
#[derive(Default)]
struct HostMetrics {
    ids: Vec<Option<u32>>,
    pending: Vec<Cell<u64>>,
}

impl HostMetrics {
    fn define() -> HostMetrics {
        let ids: Vec<Option<u32>> = metrics::all_names()
            .iter()
            .map(
                |name| match hostcalls::define_metric(MetricType::Counter, name) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        log::warn!("jwt_jwks: metric {name} unavailable: {e:?}");
                        None
                    }
                },
            )
            .collect();
        let pending = ids.iter().map(|_| Cell::new(0)).collect();
        HostMetrics { ids, pending }
    }

    /// Hands the counts gathered since the last flush to the host.
    fn flush(&self) {
        for (id, count) in self.ids.iter().zip(&self.pending) {
            let n = count.take();
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Drop for HostMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Metrics for HostMetrics {
    fn incr(&self, m: Metric) {
        if let Some(c) = self.pending.get(m.index()) {
            c.set(c.get().saturating_add(1));
        }
    }
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn send(reply: &LocalReply) {
    let result = match reply.grpc_status {
        Some(code) => {
            let status = match code {
                3 => GrpcStatusCode::InvalidArgument,
                7 => GrpcStatusCode::PermissionDenied,
                14 => GrpcStatusCode::Unavailable,
                _ => GrpcStatusCode::Unauthenticated,
            };
            let meta: Vec<(&str, &[u8])> = reply
                .headers
                .iter()
                .filter(|(k, _)| k == "www-authenticate")
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let msg = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                });
            hostcalls::send_grpc_response(status, msg.as_deref(), meta)
        }
        None => {
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            hostcalls::send_http_response(reply.status as u32, headers, Some(reply.body.as_bytes()))
        }
    };
    if let Err(e) = result {
        log::error!("jwt_jwks: sending a local reply failed: {e:?}");
    }
}

/// Keeps a request header's value from the upstream. Envoy removes it.
/// ngx_wasm_module (Kong) "removes" a header by unhashing it and nginx's
/// proxy still forwards it (and a later set adds a second copy), so there
/// the value is emptied in place instead: the upstream sees it empty, and a
/// later set replaces it.
fn drop_header(name: &str, envoy: bool) -> Result<(), Status> {
    let value = if envoy { None } else { Some("") };
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
}

/// Removes the token from where it was found, when it must not go upstream.
fn strip_token(cfg: &Config, source: &Source, envoy: bool) {
    if cfg.forward_token {
        return;
    }
    let result = match source {
        Source::Header(name) => drop_header(name, envoy),
        Source::Query(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path") {
                Ok(Some(path)) => {
                    let stripped = token::path_without_param(&path, name);
                    hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        ":path",
                        Some(&stripped),
                    )
                }
                other => other.map(drop),
            }
        }
        Source::Cookie(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "cookie") {
                Ok(Some(value)) => match token::cookie_without(&value, name) {
                    Some(kept) => hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        "cookie",
                        Some(&kept),
                    ),
                    None => drop_header("cookie", envoy),
                },
                other => other.map(drop),
            }
        }
    };
    if let Err(e) = result {
        log::warn!("jwt_jwks: removing the token before the upstream failed: {e:?}");
    }
}

/// Carries out a verdict for the current (effective) request.
fn conclude(
    e: &Engine,
    m: &dyn Metrics,
    verdict: &Verdict,
    source: &Source,
    grpc: bool,
    resume: bool,
) -> Action {
    let cfg = e.config();
    match verdict {
        Verdict::Allow(grant) => {
            m.incr(Metric::Allowed);
            strip_token(cfg, source, e.host_is_envoy());
            for (name, value) in &grant.headers {
                if let Err(e) =
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                {
                    log::warn!("jwt_jwks: setting {name} failed: {e:?}");
                }
            }
            if let (Some(identity), Some(prop)) = (&grant.identity, &cfg.identity_property) {
                if let Err(e) =
                    hostcalls::set_property(vec![prop.as_str()], Some(identity.as_bytes()))
                {
                    log::warn!("jwt_jwks: setting property {prop} failed: {e:?}");
                }
            }
            if resume {
                if let Err(e) = hostcalls::resume_http_request() {
                    log::warn!("jwt_jwks: resuming a request failed: {e:?}");
                }
            }
            Action::Continue
        }
        Verdict::Deny(r) => {
            m.incr(Metric::Denied(r.metric()));
            send(&response::refusal(r, &cfg.realm, grpc));
            Action::Pause
        }
        Verdict::Wait { .. } => Action::Pause,
    }
}

/// Finishes paused requests decided elsewhere; returns to `home` after.
fn finish_waiters(engine: &Engine, m: &dyn Metrics, finals: Vec<(Pending, Verdict)>, home: u32) {
    if finals.is_empty() {
        return;
    }
    for (w, v) in finals {
        if hostcalls::set_effective_context(w.context_id).is_err() {
            continue; // the request is gone
        }
        conclude(engine, m, &v, &w.source, w.grpc, true);
    }
    let _ = hostcalls::set_effective_context(home);
}

/// Sends the JWKS callout for `idx` from the calling context.
fn dispatch(ctx: &dyn Context, engine: &mut Engine, m: &dyn Metrics, idx: usize) -> Option<u32> {
    let c = engine.callout(idx)?;
    let (upstream, timeout_ms) = (c.upstream.as_str(), c.timeout_ms);
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match ctx.dispatch_http_call(
        upstream,
        headers,
        None,
        vec![],
        Duration::from_millis(timeout_ms),
    ) {
        Ok(token) => Some(token),
        Err(e) => {
            engine.fetch_not_sent(
                &HostStore,
                m,
                now_ms(),
                idx,
                &format!("{e:?} (is '{upstream}' a known upstream?)"),
            );
            None
        }
    }
}

/// One header of the callout's answer, as text; never panics on bytes.
fn answer_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Reads a callout's answer (the body only if within the size limit). A
/// callout that failed after it started (reset mid-body, oversized answer)
/// arrives with no headers: then no header map exists, and Envoy answers
/// a read with a status the SDK would panic on, so none is read.
fn read_answer(
    engine: &mut Engine,
    m: &dyn Metrics,
    idx: usize,
    num_headers: usize,
    body_size: usize,
) {
    let (status, dispatch_status) = if num_headers == 0 {
        // ngx_wasm_module reports a failed callout with no headers but a
        // readable `:dispatch_status`; on Envoy reading it makes the SDK
        // panic, so it is read only on a host known not to be Envoy.
        let dispatch_status = if engine.host_known() && !engine.host_is_envoy() {
            answer_header(":dispatch_status")
        } else {
            None
        };
        (None, dispatch_status)
    } else {
        let status = answer_header(":status").and_then(|s| s.trim().parse::<u16>().ok());
        (status, answer_header(":dispatch_status"))
    };
    let body = if status == Some(200) && engine.body_allowed(idx, body_size) {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
    } else {
        None
    };
    let answer = Answer {
        status,
        dispatch_status,
        body_size,
        body: body.as_deref(),
    };
    engine.fetch_done(&HostStore, m, now_ms(), idx, &answer);
}

/// Tells Envoy from other hosts, once per VM: Envoy answers the
/// `plugin_vm_id` property; ngx_wasm_module (Kong) does not, and there one
/// context cannot resume another's request and foreign functions trap.
fn settle_host(e: &mut Engine) {
    let envoy = matches!(hostcalls::get_property(vec!["plugin_vm_id"]), Ok(Some(_)));
    e.set_host(envoy);
    let crypto = match e.config().host_crypto {
        HostCryptoMode::On => true,
        HostCryptoMode::Auto => envoy,
        HostCryptoMode::Off => false,
    };
    if crypto {
        e.set_host_crypto(Some(Rc::new(EnvoyCrypto)));
    }
    log::info!(
        "jwt_jwks: host {} Envoy; signatures checked by {}; paused requests are woken {}",
        if envoy { "is" } else { "is not" },
        if crypto {
            "the host (RSA PKCS#1, ECDSA) and wasm (PSS, EdDSA)"
        } else {
            "wasm"
        },
        if e.shared_wake() {
            "by any context (shared)"
        } else {
            "each by its own callout (per_request)"
        }
    );
}

extern "C" {
    // The import the SDK's `get_map_bytes` calls, with plain integers
    // (a status outside the SDK's enum cannot become an invalid value).
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The request's header map as the host serialized it, in one buffer. The
/// SDK's reader copies every name and value into an allocation of its own
/// (two per header, every request); `headers::pairs` reads this in place.
/// `None` when the host refuses.
fn request_header_map() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the call the SDK makes. The host answers with a buffer it got
    // from this module's `proxy_on_memory_allocate` (the SDK's allocator: a
    // leaked `Vec<u8>` of capacity `size`) and that size, or a null pointer.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != Status::Ok as u32 {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the buffer is ours from here, as the SDK takes it.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// UTF-8 as is (the fast check, nearly always), anything else lossily.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

struct Root {
    id: u32,
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Rc<HostMetrics>,
    /// Callouts sent by the root context: token -> provider.
    callouts: HashMap<u32, usize>,
    tick_set: bool,
}

impl Root {
    fn review(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let Ok(mut e) = engine.try_borrow_mut() else {
            return;
        };
        let m = self.metrics.clone();
        // With per_request waiting this returns nothing: each paused request
        // is finished from its own callout (the root cannot resume it there).
        let (finals, to_send) = e.review_waiters(&HostStore, m.as_ref(), now_ms());
        finish_waiters(&e, m.as_ref(), finals, self.id);
        for idx in to_send {
            if let Some(token) = dispatch(self, &mut e, m.as_ref(), idx) {
                self.callouts.insert(token, idx);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(idx) = self.callouts.remove(&token_id) else {
            return;
        };
        if let Some(engine) = self.engine.clone() {
            if let Ok(mut e) = engine.try_borrow_mut() {
                read_answer(&mut e, self.metrics.as_ref(), idx, num_headers, body_size);
            }
        }
        self.review();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => b"{}".to_vec(),
            Err(e) => {
                log::error!("jwt_jwks: cannot read the plugin configuration: {e:?}");
                return false;
            }
        };
        let cfg = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error!("jwt_jwks: {e}");
                return false;
            }
        };
        for w in cfg.warnings() {
            log::warn!("jwt_jwks: {w}");
        }
        let nanos = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let owner = format!("{nanos:x}-{}", self.id);
        self.metrics = Rc::new(HostMetrics::define());
        self.engine = Some(Rc::new(RefCell::new(Engine::new(cfg, owner))));
        if !self.tick_set {
            // Callouts start from the first tick: Kong's host refuses them
            // during on_configure. A second non-zero period traps there too.
            if let Err(e) = hostcalls::set_tick_period(TICK) {
                log::error!("jwt_jwks: cannot set the tick period: {e:?}");
                return false;
            }
            self.tick_set = true;
        }
        true
    }

    fn on_tick(&mut self) {
        self.metrics.flush();
        let Some(engine) = self.engine.clone() else {
            return;
        };
        {
            let Ok(mut e) = engine.try_borrow_mut() else {
                return;
            };
            let due = e.tick(&HostStore, now_ms());
            for idx in due {
                if let Some(token) = dispatch(self, &mut e, self.metrics.as_ref(), idx) {
                    self.callouts.insert(token, idx);
                }
            }
        }
        self.review();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(Http {
            id: context_id,
            engine,
            metrics: self.metrics.clone(),
            callouts: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    engine: Rc<RefCell<Engine>>,
    metrics: Rc<HostMetrics>,
    /// JWKS callouts this request sent: (token, provider).
    callouts: Vec<(u32, usize)>,
}

impl Http {
    fn admin(&self, e: &mut Engine, action: AdminAction) -> LocalReply {
        self.metrics.incr(Metric::AdminRequests);
        let result = match action {
            AdminAction::Info => Ok(Some(e.info(&HostStore, now_ms()))),
            AdminAction::ClearAll => e.clear_all(&HostStore).map(Some),
            AdminAction::ClearKid(kid) => e.clear_kid(&HostStore, &kid),
        };
        match result {
            Ok(Some(body)) => json_reply(200, body),
            Ok(None) => json_reply(
                404,
                serde_json::json!({"error": "not_found", "message": "unknown key id"}),
            ),
            Err(err) => json_reply(
                500,
                serde_json::json!({"error": "internal", "message": err.to_string()}),
            ),
        }
    }

    fn request(&mut self) -> Action {
        // Bytes, not text: a header value may hold any byte (Envoy passes
        // 0x80-0xFF through); a name or value that is not UTF-8 is read
        // with replacement characters.
        let raw = request_header_map();
        let Some(pairs) = raw.as_deref().and_then(headers::pairs) else {
            log::error!("jwt_jwks: cannot read request headers");
            send(&response::refusal(
                &Refusal::KeysUnavailable,
                "jwt-jwks",
                false,
            ));
            return Action::Pause;
        };
        let headers: Vec<(Cow<str>, Cow<str>)> =
            pairs.into_iter().map(|(k, v)| (text(k), text(v))).collect();
        // Envoy gives header names in lower case; ngx_wasm_module (Kong)
        // as the client wrote them.
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_ref())
        };
        let method = get(":method").unwrap_or_default();
        let path = get(":path").unwrap_or_default();
        let grpc = response::is_grpc(get("content-type"));
        let engine = self.engine.clone();
        let Ok(mut e) = engine.try_borrow_mut() else {
            send(&response::refusal(
                &Refusal::KeysUnavailable,
                "jwt-jwks",
                grpc,
            ));
            return Action::Pause;
        };
        let m = self.metrics.clone();

        match admin::route(
            e.config().admin.as_ref(),
            method,
            path,
            get("authorization"),
        ) {
            Route::NotAdmin => {}
            Route::Reply(r) => {
                m.incr(Metric::AdminRequests);
                send(&r);
                return Action::Pause;
            }
            Route::Run(action) => {
                let r = self.admin(&mut e, action);
                send(&r);
                return Action::Pause;
            }
        }

        if !e.host_known() {
            settle_host(&mut e);
        }
        // A client must never be able to forge what the filter forwards.
        for name in e.config().forwarded_headers() {
            if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                if let Err(err) = drop_header(name, e.host_is_envoy()) {
                    log::warn!("jwt_jwks: removing an incoming {name} failed: {err:?}");
                }
            }
        }

        let rule = rules::match_rule(&e.config().rules, method, path);
        let route = rule.and_then(|i| e.config().rules.get(i));
        let auth = route.map_or(AuthMode::Required, |r| r.auth);
        let preflight_runs = route
            .and_then(|r| r.run_on_preflight)
            .unwrap_or(e.config().run_on_preflight);
        if auth == AuthMode::Public || (!preflight_runs && token::is_preflight(method, &headers)) {
            return Action::Continue;
        }
        let no_source = Source::Header(String::new());
        let found = match token::extract(e.config(), &headers, path) {
            Ok(Some(f)) => f,
            Ok(None) if auth == AuthMode::Optional => return Action::Continue,
            Ok(None) => {
                let v = Verdict::Deny(Refusal::MissingToken);
                return conclude(&e, m.as_ref(), &v, &no_source, grpc, false);
            }
            Err(r) => return conclude(&e, m.as_ref(), &Verdict::Deny(r), &no_source, grpc, false),
        };
        let now = now_ms();
        let verdict = e.authenticate(&HostStore, m.as_ref(), now, &found.token, rule, true);
        let Verdict::Wait {
            provider,
            dispatch: send_it,
        } = verdict
        else {
            return conclude(&e, m.as_ref(), &verdict, &found.source, grpc, false);
        };
        let timeout = e
            .config()
            .providers
            .get(provider)
            .map_or(5000, |p| p.timeout_ms);
        let pending = Pending {
            context_id: self.id,
            token: found.token,
            source: found.source,
            grpc,
            provider,
            rule,
            deadline_ms: now + timeout,
            gen: 0,
        };
        if !e.add_waiter(pending) {
            let v = Verdict::Deny(Refusal::Overloaded);
            return conclude(&e, m.as_ref(), &v, &no_source, grpc, false);
        }
        m.incr(Metric::Paused);
        if send_it {
            match dispatch(self, &mut e, m.as_ref(), provider) {
                Some(token) => self.callouts.push((token, provider)),
                None if !e.shared_wake() => {
                    // No callout, so nothing would ever resume this request.
                    if let Some(w) = e.take_waiter(self.id) {
                        let v = e.authenticate(
                            &HostStore,
                            m.as_ref(),
                            now_ms(),
                            &w.token,
                            w.rule,
                            false,
                        );
                        return conclude(&e, m.as_ref(), &v, &w.source, w.grpc, false);
                    }
                }
                None => {}
            }
        }
        Action::Pause
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(pos) = self.callouts.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, idx) = self.callouts.swap_remove(pos);
        let engine = self.engine.clone();
        let Ok(mut e) = engine.try_borrow_mut() else {
            return;
        };
        let m = self.metrics.clone();
        read_answer(&mut e, m.as_ref(), idx, num_headers, body_size);
        if !e.shared_wake() {
            // Only this request can be resumed from here: decide it now.
            if let Some(w) = e.take_waiter(self.id) {
                let v = e.authenticate(&HostStore, m.as_ref(), now_ms(), &w.token, w.rule, false);
                conclude(&e, m.as_ref(), &v, &w.source, w.grpc, true);
            }
            return;
        }
        let (finals, to_send) = e.review_waiters(&HostStore, m.as_ref(), now_ms());
        finish_waiters(&e, m.as_ref(), finals, self.id);
        for idx in to_send {
            if let Some(token) = dispatch(self, &mut e, m.as_ref(), idx) {
                self.callouts.push((token, idx));
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Ok(mut e) = self.engine.try_borrow_mut() {
            e.remove_waiter(self.id);
        }
    }
}
