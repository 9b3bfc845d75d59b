//! How long a fetched document stays fresh, and when the next scheduled
//! fetch is due: the answer's HTTP caching headers (RFC 9111) within the
//! configured bounds.
//!
//! - `Cache-Control: no-store` or `no-cache`: the shortest allowed.
//! - `s-maxage`, else `max-age`, minus `Age`: that many seconds.
//! - `Expires` (an HTTP date; an invalid one, such as `0`, is in the past),
//!   against the answer's `Date` (else the gateway's clock).
//! - none of them: `cache_ttl`.
//!
//! The result is clamped to `cache_ttl` at most and to the provider's
//! minimum interval (`min_refresh_interval`, at least 1 s) at least; where
//! the two disagree the minimum interval wins, so no answer and no
//! configuration can make fetches follow each other faster than that.
#![forbid(unsafe_code)]

use std::time::{Duration, UNIX_EPOCH};

use crate::config::Provider;

/// The caching headers of one answer, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheHeaders {
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub date: Option<String>,
    pub age: Option<String>,
}

/// Where a freshness came from (shown in `cache/info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    NoCache,
    MaxAge,
    Expires,
    CacheTtl,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::NoCache => "no-cache",
            Source::MaxAge => "max-age",
            Source::Expires => "expires",
            Source::CacheTtl => "cache_ttl",
        }
    }
}

/// The freshness the headers ask for, before the bounds: seconds and source.
pub fn requested(h: &CacheHeaders, now_ms: u64) -> (Option<u64>, Source) {
    if let Some(cc) = &h.cache_control {
        let mut max_age = None;
        let mut s_maxage = None;
        for directive in cc.split(',') {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || value.and_then(|v| v.parse::<u64>().ok());
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return (Some(0), Source::NoCache);
            } else if name.eq_ignore_ascii_case("s-maxage") {
                s_maxage = s_maxage.or_else(seconds);
            } else if name.eq_ignore_ascii_case("max-age") {
                max_age = max_age.or_else(seconds);
            }
        }
        if let Some(secs) = s_maxage.or(max_age) {
            let age = h
                .age
                .as_deref()
                .and_then(|a| a.trim().parse::<u64>().ok())
                .unwrap_or(0);
            return (Some(secs.saturating_sub(age)), Source::MaxAge);
        }
    }
    if let Some(expires) = &h.expires {
        let at = http_date_ms(expires).unwrap_or(0);
        let date = h.date.as_deref().and_then(http_date_ms).unwrap_or(now_ms);
        return (Some(at.saturating_sub(date) / 1000), Source::Expires);
    }
    (None, Source::CacheTtl)
}

fn http_date_ms(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let d: Duration = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

/// The freshness of an answer for provider `p`, in seconds, within bounds.
pub fn fresh_s(p: &Provider, h: &CacheHeaders, now_ms: u64) -> (u64, Source) {
    let (asked, source) = requested(h, now_ms);
    let secs = asked.unwrap_or(p.cache_ttl_s).min(p.cache_ttl_s);
    (secs.max(p.min_interval_s()), source)
}

/// When the next scheduled fetch is due for a set fetched at `fetched_ms`
/// and fresh for `fresh_s`: `refresh_ahead_time` before it goes stale (at
/// most half its freshness ahead), and never sooner than the minimum
/// interval after the fetch.
pub fn refresh_at_ms(p: &Provider, fetched_ms: u64, fresh_s: u64) -> u64 {
    let ahead = p.refresh_ahead_s.min(fresh_s / 2);
    let after = fresh_s.saturating_sub(ahead).max(p.min_interval_s());
    fetched_ms.saturating_add(after.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider(extra: &str) -> Provider {
        let json = format!(r#"{{"jwks_uri":"http://idp/jwks"{extra}}}"#);
        Config::parse(json.as_bytes()).unwrap().providers.remove(0)
    }

    fn cc(v: &str) -> CacheHeaders {
        CacheHeaders {
            cache_control: Some(v.to_string()),
            ..CacheHeaders::default()
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn max_age_within_the_bounds_and_the_bounds_win() {
        let p = provider(r#","cache_ttl":3600,"min_refresh_interval":30"#);
        assert_eq!(
            fresh_s(&p, &cc("public, max-age=600"), NOW),
            (600, Source::MaxAge)
        );
        assert_eq!(
            fresh_s(&p, &cc("max-age=86400"), NOW),
            (3600, Source::MaxAge)
        );
        assert_eq!(fresh_s(&p, &cc("max-age=5"), NOW), (30, Source::MaxAge));
        assert_eq!(fresh_s(&p, &cc("max-age=0"), NOW), (30, Source::MaxAge));
        assert_eq!(fresh_s(&p, &cc("no-store"), NOW), (30, Source::NoCache));
        assert_eq!(
            fresh_s(&p, &cc("max-age=600, no-cache"), NOW),
            (30, Source::NoCache)
        );
        assert_eq!(fresh_s(&p, &cc("s-maxage=900, max-age=60"), NOW).0, 900);
        assert_eq!(fresh_s(&p, &cc("max-age=\"120\""), NOW).0, 120);
        assert_eq!(
            fresh_s(&p, &cc("max-age=abc"), NOW),
            (3600, Source::CacheTtl)
        );
        let aged = CacheHeaders {
            age: Some("100".into()),
            ..cc("max-age=600")
        };
        assert_eq!(fresh_s(&p, &aged, NOW).0, 500);
        assert_eq!(
            fresh_s(&p, &CacheHeaders::default(), NOW),
            (3600, Source::CacheTtl)
        );
    }

    #[test]
    fn expires_counts_from_the_answers_date() {
        let p = provider("");
        let h = CacheHeaders {
            expires: Some("Sun, 06 Nov 1994 08:59:49 GMT".into()),
            date: Some("Sun, 06 Nov 1994 08:49:49 GMT".into()),
            ..CacheHeaders::default()
        };
        assert_eq!(fresh_s(&p, &h, NOW), (600, Source::Expires));
        let past = CacheHeaders {
            expires: Some("0".into()),
            ..CacheHeaders::default()
        };
        assert_eq!(fresh_s(&p, &past, NOW), (30, Source::Expires));
        // max-age wins over Expires (RFC 9111 section 5.3)
        let both = CacheHeaders {
            cache_control: Some("max-age=120".into()),
            ..h
        };
        assert_eq!(fresh_s(&p, &both, NOW).0, 120);
    }

    #[test]
    fn a_minimum_interval_of_zero_still_means_one_second() {
        let p = provider(r#","cache_ttl":1,"min_refresh_interval":0"#);
        assert_eq!(fresh_s(&p, &cc("no-store"), NOW).0, 1);
        assert_eq!(refresh_at_ms(&p, NOW, 1), NOW + 1000);
    }

    #[test]
    fn the_refresh_point_never_comes_before_the_minimum_interval() {
        // The seed's configuration: 300 s before the end of the hour.
        let seed = provider(r#","cache_ttl":3600,"refresh_ahead_time":300"#);
        assert_eq!(refresh_at_ms(&seed, NOW, 3600), NOW + 3_300_000);
        // A short TTL with the default ahead time: halfway.
        let short = provider(r#","cache_ttl":300"#);
        assert_eq!(short.refresh_ahead_s, 150);
        assert_eq!(refresh_at_ms(&short, NOW, 300), NOW + 150_000);
        // An answer fresher than the ahead time: at most half ahead.
        assert_eq!(refresh_at_ms(&seed, NOW, 120), NOW + 60_000);
        // Whatever the answer says, not before min_refresh_interval.
        assert_eq!(refresh_at_ms(&seed, NOW, 30), NOW + 30_000);
        for fresh in [0, 1, 2, 29, 30, 31, 59, 60, 61, 599, 3600] {
            for cfg in [
                r#","cache_ttl":1,"min_refresh_interval":0"#,
                r#","cache_ttl":2,"refresh_ahead_time":1,"min_refresh_interval":1"#,
                r#","cache_ttl":300"#,
                r#","cache_ttl":31,"refresh_ahead_time":30,"min_refresh_interval":3600"#,
            ] {
                let p = provider(cfg);
                assert!(refresh_at_ms(&p, NOW, fresh) >= NOW + p.min_interval_s() * 1000);
            }
        }
    }
}
