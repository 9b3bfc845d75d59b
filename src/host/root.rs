//! The root context: configuration, the tick (refreshes, paused requests,
//! metrics) and the callouts it sent itself.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::config::Config;
use crate::engine::Engine;
use crate::host::callout::{dispatch, read_answer};
use crate::host::clock::now_ms;
use crate::host::conclude::finish_waiters;
use crate::host::http::Http;
use crate::host::metrics::HostMetrics;
use crate::host::store::HostStore;
use crate::keys::refresh::Doc;

/// How often the root context checks refreshes and paused requests.
const TICK: Duration = Duration::from_millis(100);

pub(crate) struct Root {
    id: u32,
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Rc<HostMetrics>,
    /// Callouts sent by the root context: token -> (provider, document).
    callouts: HashMap<u32, (usize, Doc)>,
    tick_set: bool,
}

impl Root {
    pub(crate) fn new(id: u32) -> Root {
        Root {
            id,
            engine: None,
            metrics: Rc::new(HostMetrics::default()),
            callouts: HashMap::new(),
            tick_set: false,
        }
    }

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
        for (idx, doc) in to_send {
            if let Some((token, idx, doc)) = dispatch(self, &mut e, m.as_ref(), idx, doc) {
                self.callouts.insert(token, (idx, doc));
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
        let Some(sent) = self.callouts.remove(&token_id) else {
            return;
        };
        if let Some(engine) = self.engine.clone() {
            if let Ok(mut e) = engine.try_borrow_mut() {
                let m = self.metrics.clone();
                let next = read_answer(self, &mut e, m.as_ref(), sent, num_headers, body_size);
                if let Some((token, idx, doc)) = next {
                    self.callouts.insert(token, (idx, doc));
                }
            }
        }
        self.review();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
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
        let engine = Engine::new(cfg, owner);
        // Envoy replaces a shared-data entry on a write with cas 0, so the
        // refresh state is created here, on its main thread, before any
        // worker races for a lease. Kong's host needs none of this (a cas-0
        // write there only creates), and a shared-data call at configure
        // time would trap there when no shm zone is set, where requests
        // otherwise get a clean 500.
        if matches!(hostcalls::get_property(vec!["plugin_vm_id"]), Ok(Some(_))) {
            if let Err(e) = engine.prepare(&HostStore) {
                log::warn!("jwt_jwks: creating the shared refresh state: {e}");
            }
        }
        self.engine = Some(Rc::new(RefCell::new(engine)));
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
            let now = now_ms();
            let keys = e.tick(&HostStore, now).into_iter().map(|i| (i, Doc::Jwks));
            let lists = e
                .revocation_tick(&HostStore, self.metrics.as_ref(), now)
                .into_iter();
            let statuses = e.status_tick(&HostStore, now);
            e.introspection_tick(&HostStore, now);
            let due: Vec<(usize, Doc)> = keys
                .chain(lists.map(|i| (i, Doc::Revocations)))
                .chain(statuses)
                .collect();
            for (idx, doc) in due {
                let m = self.metrics.clone();
                if let Some((token, idx, doc)) = dispatch(self, &mut e, m.as_ref(), idx, doc) {
                    self.callouts.insert(token, (idx, doc));
                }
            }
        }
        self.review();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(Http::new(
            context_id,
            engine,
            self.metrics.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
