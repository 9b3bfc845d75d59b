//! The engine's side of the admin routes: `cache/info` from shared data,
//! and the clears (every worker sees them through the generation).
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::keys::{kid_budget, layout, refresh};
use crate::store::{SharedStore, StoreError};

impl Engine {
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
            let rec = layout::read_keys(store, names).unwrap_or_default();
            let st = layout::read_state(store, names).unwrap_or_default();
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
            let budget = {
                let mut st = st.clone();
                p.key_set_uri()
                    .map(|_| kid_budget::refill(&mut st, p, now_ms))
            };
            let d = &st.discovery;
            let discovery = p.discovery.as_ref().map(|e| {
                json!({
                    "discovery_uri": e.uri,
                    "upstream": p.discovery_upstream,
                    "issuer": d.issuer,
                    "jwks_uri": d.jwks_uri,
                    "fetched_at": secs(d.fetched_at_ms),
                    "fresh_until": secs(d.fresh_until_ms),
                    "last_error": d.last_error,
                })
            });
            let jwks_uri = match &p.jwks {
                Some(j) => Some(j.uri.clone()),
                None => d.jwks_uri.clone(),
            };
            let next_refresh = if st.cleared || !st.has_keys() {
                Value::Null
            } else {
                secs(st.refresh_at_ms.max(st.next_attempt_ms))
            };
            providers.push(json!({
                "jwks_uri": jwks_uri,
                "upstream": p.upstream,
                "keys_count": rec.keys.len(),
                "kids": kids,
                "generation": rec.gen,
                "fetched_at": secs(st.fetched_at_ms),
                "expires_at": secs(st.expires_at_ms),
                "stale": st.has_keys() && now_ms >= st.expires_at_ms,
                "refreshing": st.lease_held(now_ms),
                "next_refresh_at": next_refresh,
                "next_attempt_at": secs(st.next_attempt_ms),
                "freshness": st.has_keys().then_some(st.fresh_s()),
                "freshness_from": st.has_keys().then_some(st.fresh_from.as_str()),
                "etag": st.etag,
                "last_modified": st.last_modified,
                "fetch_success": st.fetch_success,
                "fetch_failure": st.fetch_failure,
                "not_modified": st.not_modified,
                "unknown_kid_refreshes_left": budget,
                "kids_proved_absent": st.absent_kids.iter().filter(|a| a.until_ms > now_ms).count(),
                "last_error": st.last_error,
                "last_error_at": secs(st.last_error_at_ms),
                "last_success_at": secs(st.last_success_ms),
                "failing": st.last_error.is_some() && st.last_error_at_ms > st.last_success_ms,
                "skipped_keys": st.skipped,
                "fallback_key": p.fallback.is_some(),
                "cache_ttl": p.cache_ttl_s,
                "discovery": discovery,
            }));
        }
        json!({
            "cache_type": "proxy-wasm shared data",
            "keys_count": total,
            "providers": providers,
            "revocations": self.revocation_info(store, now_ms),
            "introspection": self.introspection_info(store, now_ms),
        })
    }

    /// `POST .../cache/clear`.
    pub fn clear_all(&mut self, store: &dyn SharedStore) -> Result<Value, StoreError> {
        let mut removed = 0;
        for idx in 0..self.providers.len() {
            if let Some((_, names)) = self.fetching(idx) {
                removed += refresh::clear_all(store, names)?;
            }
            self.sync(store, idx)?;
        }
        let introspection = self.clear_introspection(store)?;
        log::info!(
            "jwt_jwks: admin: cleared the JWKS cache ({removed} keys) and {introspection} introspection caches"
        );
        Ok(json!({
            "cleared": "all",
            "keys_removed": removed,
            "introspection_caches_cleared": introspection,
        }))
    }

    /// `POST .../cache/clear/{kid}`; `None` when no provider has the kid.
    pub fn clear_kid(
        &mut self,
        store: &dyn SharedStore,
        kid: &str,
    ) -> Result<Option<Value>, StoreError> {
        let mut found = false;
        for idx in 0..self.providers.len() {
            if let Some((_, names)) = self.fetching(idx) {
                found |= refresh::clear_kid(store, names, kid)?;
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
