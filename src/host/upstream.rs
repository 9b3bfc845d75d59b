//! Changes to the request on its way upstream: a header kept from it, the
//! token removed when it must not be forwarded.
#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use crate::config::Config;
use crate::token::find::{self, Source};

/// Keeps a request header's value from the upstream. Envoy removes it.
/// ngx_wasm_module (Kong) "removes" a header by unhashing it and nginx's
/// proxy still forwards it (and a later set adds a second copy), so there
/// the value is emptied in place instead: the upstream sees it empty, and a
/// later set replaces it.
pub(crate) fn drop_header(name: &str, envoy: bool) -> Result<(), Status> {
    let value = if envoy { None } else { Some("") };
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
}

/// Removes the token from where it was found, when it must not go upstream.
pub(crate) fn strip_token(cfg: &Config, source: &Source, envoy: bool, always: bool) {
    if cfg.forward_token && !always {
        return;
    }
    let result = match source {
        Source::Header(name) => drop_header(name, envoy),
        Source::Query(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path") {
                Ok(Some(path)) => {
                    let stripped = find::path_without_param(&path, name);
                    let set = hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        ":path",
                        Some(&stripped),
                    );
                    if !envoy {
                        strip_nginx_query(&stripped, name);
                    }
                    set
                }
                other => other.map(drop),
            }
        }
        Source::Cookie(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "cookie") {
                Ok(Some(value)) => match find::cookie_without(&value, name) {
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

/// ngx_wasm_module applies a new `:path` to nginx's URI, but leaves `$args`
/// when the new path has no query, and never marks the original request
/// line stale: `proxy_pass` without a URI part then sends that line, token
/// and all. Setting `$args` does both (nginx's `set_args` handler clears
/// `valid_unparsed_uri`). Kong proxies to `$upstream_uri`, which its router
/// set before the filter ran: the parameter is removed there too. Either
/// variable may be absent (plain nginx has no `$upstream_uri`): then there
/// is nothing to change.
fn strip_nginx_query(stripped_path: &[u8], name: &str) {
    let query = stripped_path
        .iter()
        .position(|b| *b == b'?')
        .and_then(|q| stripped_path.get(q + 1..))
        .unwrap_or_default();
    if let Err(e) = hostcalls::set_property(vec!["ngx", "args"], Some(query)) {
        log::warn!("jwt_jwks: setting $args after removing the token failed: {e:?}");
    }
    if let Ok(Some(uri)) = hostcalls::get_property(vec!["ngx", "upstream_uri"]) {
        if !uri.is_empty() {
            let kept = find::path_without_param(&uri, name);
            if kept != uri {
                if let Err(e) = hostcalls::set_property(vec!["ngx", "upstream_uri"], Some(&kept)) {
                    log::warn!("jwt_jwks: setting $upstream_uri failed: {e:?}");
                }
            }
        }
    }
}
