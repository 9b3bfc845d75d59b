//! The HTTP context: one request read, routed (admin path, public route,
//! preflight), its token found and decided, paused while keys are fetched.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::admin::{self, Action as AdminAction, Route};
use crate::authz::refusal::Refusal;
use crate::authz::rules;
use crate::config::rules::AuthMode;
use crate::engine::{Engine, Pending, Verdict};
use crate::host::callout::{dispatch, read_answer, Sent};
use crate::host::clock::now_ms;
use crate::host::conclude::{conclude, finish_waiters};
use crate::host::headers::{self, request_header_map};
use crate::host::metrics::HostMetrics;
use crate::host::probe::settle_host;
use crate::host::reply::send;
use crate::host::store::HostStore;
use crate::host::upstream::drop_header;
use crate::metrics::{Metric, Metrics};
use crate::response::{self, json_reply, LocalReply};
use crate::token::find::{self, text};

/// `POST <prefix>/revocations` with its entries document.
fn push(e: &mut Engine, doc: &[u8]) -> LocalReply {
    use crate::revoke::push::PushError;
    let message = |status: u16, error: &str, text: String| {
        json_reply(status, serde_json::json!({"error": error, "message": text}))
    };
    match e.revocations_add(&HostStore, doc, now_ms()) {
        Ok(answer) => json_reply(200, answer),
        Err(PushError::Invalid(err)) => message(400, "invalid_request", err.to_string()),
        Err(PushError::Full { would_hold, max }) => message(
            409,
            "full",
            format!(
                "the pushed list would hold {would_hold} entries, more than \
                     max_revocation_entries ({max})"
            ),
        ),
        Err(PushError::Store(err)) => message(500, "internal", err.to_string()),
    }
}

pub(crate) struct Http {
    id: u32,
    engine: Rc<RefCell<Engine>>,
    metrics: Rc<HostMetrics>,
    /// Callouts this request sent: (token, provider, document).
    callouts: Vec<Sent>,
}

impl Http {
    pub(crate) fn new(id: u32, engine: Rc<RefCell<Engine>>, metrics: Rc<HostMetrics>) -> Http {
        Http {
            id,
            engine,
            metrics,
            callouts: Vec::new(),
        }
    }

    fn admin(&self, e: &mut Engine, action: AdminAction) -> LocalReply {
        self.metrics.incr(Metric::AdminRequests);
        let result = match action {
            AdminAction::Info => Ok(Some(e.info(&HostStore, now_ms()))),
            AdminAction::ClearAll => e.clear_all(&HostStore).map(Some),
            AdminAction::ClearKid(kid) => e.clear_kid(&HostStore, &kid),
            AdminAction::RevocationsList { offset, limit } => e
                .revocations_list(&HostStore, offset, limit, now_ms())
                .map(Some),
            AdminAction::RevocationsDelete(id) => e
                .revocations_delete(&HostStore, &id, now_ms())
                .map(|found| found.then(|| serde_json::json!({ "deleted": id }))),
            AdminAction::RevocationsAdd(doc) => return push(e, doc.as_bytes()),
        };
        match result {
            Ok(Some(body)) => json_reply(200, body),
            Ok(None) => json_reply(
                404,
                serde_json::json!({"error": "not_found", "message": "no such key id or entry"}),
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
        let Some(headers) = raw.as_deref().and_then(headers::pairs) else {
            log::error!("jwt_jwks: cannot read request headers");
            send(&response::refusal(
                &Refusal::KeysUnavailable,
                "jwt-jwks",
                false,
            ));
            return Action::Pause;
        };
        // Envoy gives header names in lower case; ngx_wasm_module (Kong)
        // as the client wrote them. Values stay bytes: only those the
        // filter reads become text (the token's header among them).
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| *v)
        };
        let method = get(":method").map(text).unwrap_or_default();
        let path = get(":path").map(text).unwrap_or_default();
        let (method, path) = (method.as_ref(), path.as_ref());
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

        let admin_token = e
            .config()
            .admin
            .as_ref()
            .and_then(|_| get("authorization"))
            .map(text);
        match admin::route(
            e.config().admin.as_ref(),
            method,
            path,
            admin_token.as_deref(),
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
            if headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            {
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
        if auth == AuthMode::Public || (!preflight_runs && find::is_preflight(method, &headers)) {
            return Action::Continue;
        }
        let found = match find::extract(e.config(), &headers, path) {
            Ok(Some(f)) => f,
            Ok(None) if auth == AuthMode::Optional => return Action::Continue,
            Ok(None) => {
                let v = Verdict::Deny(Refusal::MissingToken);
                return conclude(&e, m.as_ref(), &v, None, grpc, false);
            }
            Err(r) => return conclude(&e, m.as_ref(), &Verdict::Deny(r.into()), None, grpc, false),
        };
        let now = now_ms();
        // A token seen before is answered from its bytes; only a new one is
        // read as text and checked.
        let verdict = match e.from_cache(&HostStore, m.as_ref(), now, found.bytes(), rule, true) {
            Some(v) => v,
            None => match found.token() {
                Ok(token) => e.verify(&HostStore, m.as_ref(), now, &token, rule, true),
                Err(r) => Verdict::Deny(r.into()),
            },
        };
        let Verdict::Wait {
            provider,
            dispatch: send_it,
            doc,
        } = verdict
        else {
            return conclude(&e, m.as_ref(), &verdict, Some(&found.source), grpc, false);
        };
        let token = match found.token() {
            Ok(t) => t.into_owned(),
            Err(r) => {
                let v = Verdict::Deny(r.into());
                return conclude(&e, m.as_ref(), &v, None, grpc, false);
            }
        };
        let timeout = e
            .config()
            .providers
            .get(provider)
            .map_or(5000, |p| p.timeout_ms);
        let pending = Pending {
            context_id: self.id,
            token,
            source: found.source,
            grpc,
            provider,
            rule,
            deadline_ms: now + timeout,
            gen: 0,
            doc,
        };
        if !e.add_waiter(&HostStore, pending, now) {
            let v = Verdict::Deny(Refusal::Overloaded);
            return conclude(&e, m.as_ref(), &v, None, grpc, false);
        }
        m.incr(Metric::Paused);
        if send_it {
            match dispatch(self, &mut e, m.as_ref(), provider, doc) {
                Some(sent) => self.callouts.push(sent),
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
                        return conclude(&e, m.as_ref(), &v, Some(&w.source), w.grpc, false);
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
        let Some(pos) = self.callouts.iter().position(|(t, _, _)| *t == token_id) else {
            return;
        };
        let (_, idx, doc) = self.callouts.swap_remove(pos);
        let engine = self.engine.clone();
        let Ok(mut e) = engine.try_borrow_mut() else {
            return;
        };
        let m = self.metrics.clone();
        let next = read_answer(self, &mut e, m.as_ref(), (idx, doc), num_headers, body_size);
        if let Some(sent) = next {
            // The JWKS callout follows the metadata: its answer decides.
            self.callouts.push(sent);
            if !e.shared_wake() {
                return;
            }
        }
        if !e.shared_wake() {
            // Only this request can be resumed from here: decide it now,
            // or, when what it waited for is in and it needs another
            // document (its keys came, its status list did not), wait on
            // for that one with a callout of its own, until its deadline.
            if let Some(mut w) = e.take_waiter(self.id) {
                let now = now_ms();
                let mut v = e.authenticate(&HostStore, m.as_ref(), now, &w.token, w.rule, true);
                if let Verdict::Wait { provider, doc, .. } = v {
                    if doc != w.doc && now < w.deadline_ms {
                        w.doc = doc;
                        w.provider = provider;
                        if e.add_waiter(&HostStore, w.clone(), now) {
                            if let Some(sent) = dispatch(self, &mut e, m.as_ref(), provider, doc) {
                                self.callouts.push(sent);
                                return;
                            }
                            e.remove_waiter(self.id);
                        }
                    }
                    v = e.authenticate(&HostStore, m.as_ref(), now, &w.token, w.rule, false);
                }
                conclude(&e, m.as_ref(), &v, Some(&w.source), w.grpc, true);
            }
            e.end_handoff();
            return;
        }
        let (finals, to_send) = e.review_waiters(&HostStore, m.as_ref(), now_ms());
        finish_waiters(&e, m.as_ref(), finals, self.id);
        for (idx, doc) in to_send {
            if let Some(sent) = dispatch(self, &mut e, m.as_ref(), idx, doc) {
                self.callouts.push(sent);
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
