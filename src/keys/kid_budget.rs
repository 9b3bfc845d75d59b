//! Refreshes for unknown `kid`s: a small budget, and a memory of the `kid`s
//! a refresh has just proved absent, both in the shared fetch state (so for
//! every worker of the host).
//!
//! - The budget is a token bucket of [`BUDGET`] refreshes, refilled by one
//!   every minimum interval (`min_refresh_interval`, at least 1 s). A
//!   rotation is seen on its first token even after a handful of junk
//!   `kid`s; a flood of distinct junk `kid`s costs [`BUDGET`] fetches, then
//!   one per interval.
//! - A `kid` that asked for a refresh (or waited on one) and is not in the
//!   set that refresh brought is absent for one interval: tokens with it
//!   are refused without a fetch. A failed fetch proves nothing.
//! - `kid`s are kept as 64-bit tags of their SHA-256, so a long `kid` costs
//!   the shared state no more than a short one.
#![forbid(unsafe_code)]

use crate::config::Provider;
use crate::keys::layout::{AbsentKid, FetchState};

/// Refreshes available at once; see the module's text.
pub const BUDGET: u32 = 8;
/// `kid`s remembered as absent, at most (the oldest go first).
pub const ABSENT_MAX: usize = 64;
/// `kid`s waiting on one fetch that are remembered, at most.
pub const ASKED_MAX: usize = 32;

/// The tag a `kid` is remembered by.
pub fn tag(kid: &str) -> String {
    let digest = hmac_sha256::Hash::hash(kid.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn interval_ms(p: &Provider) -> u64 {
    p.min_interval_s() * 1000
}

/// Brings the bucket up to date; returns the refreshes available now.
pub fn refill(s: &mut FetchState, p: &Provider, now_ms: u64) -> u32 {
    if s.kid_refill_ms == 0 {
        s.kid_tokens = BUDGET;
        s.kid_refill_ms = now_ms;
        return BUDGET;
    }
    let step = interval_ms(p);
    let n = now_ms.saturating_sub(s.kid_refill_ms) / step;
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    s.kid_tokens = s.kid_tokens.saturating_add(n).min(BUDGET);
    s.kid_refill_ms = if s.kid_tokens == BUDGET {
        now_ms
    } else {
        s.kid_refill_ms + u64::from(n) * step
    };
    s.kid_tokens
}

/// Takes one refresh from the budget; `false` when none is left.
pub fn take(s: &mut FetchState, p: &Provider, now_ms: u64) -> bool {
    if refill(s, p, now_ms) == 0 {
        return false;
    }
    s.kid_tokens -= 1;
    true
}

/// Whether a refresh proved this `kid` absent less than an interval ago.
pub fn is_absent(s: &FetchState, tag: &str, now_ms: u64) -> bool {
    s.absent_kids
        .iter()
        .any(|a| a.tag == tag && a.until_ms > now_ms)
}

/// Remembers a `kid` that waits for the fetch under way.
pub fn note_asked(s: &mut FetchState, tag: &str) {
    if s.asked_kids.len() < ASKED_MAX && !s.asked_kids.iter().any(|t| t == tag) {
        s.asked_kids.push(tag.to_string());
    }
}

/// After a good fetch: the `kid`s that asked and are not in the new set
/// (`present` says which tags are) are absent for one interval.
pub fn settle(s: &mut FetchState, p: &Provider, now_ms: u64, present: &dyn Fn(&str) -> bool) {
    let until_ms = now_ms + interval_ms(p);
    let asked = std::mem::take(&mut s.asked_kids);
    s.absent_kids.retain(|a| a.until_ms > now_ms);
    for tag in asked.iter().filter(|t| !present(t)) {
        s.absent_kids.retain(|a| a.tag != *tag);
        s.absent_kids.push(AbsentKid {
            tag: tag.clone(),
            until_ms,
        });
    }
    let excess = s.absent_kids.len().saturating_sub(ABSENT_MAX);
    s.absent_kids.drain(..excess);
}

/// An admin clear: a full budget, nothing remembered.
pub fn reset(s: &mut FetchState) {
    s.kid_refill_ms = 0;
    s.kid_tokens = 0;
    s.asked_kids.clear();
    s.absent_kids.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider(min_refresh_interval: u64) -> Provider {
        let json = format!(
            r#"{{"jwks_uri":"http://idp/jwks","min_refresh_interval":{min_refresh_interval}}}"#
        );
        Config::parse(json.as_bytes()).unwrap().providers.remove(0)
    }

    #[test]
    fn the_budget_spends_then_refills_one_per_interval() {
        let p = provider(30);
        let mut s = FetchState::default();
        let t0 = 1_000_000;
        for i in 0..BUDGET {
            assert!(take(&mut s, &p, t0 + u64::from(i)), "refresh {i}");
        }
        assert!(!take(&mut s, &p, t0 + 100));
        assert!(!take(&mut s, &p, t0 + 29_999));
        assert!(take(&mut s, &p, t0 + 30_000));
        assert!(!take(&mut s, &p, t0 + 30_001));
        // a long quiet spell refills the whole budget, never more
        assert_eq!(refill(&mut s, &p, t0 + 3_600_000), BUDGET);
        assert_eq!(refill(&mut s, &p, t0 + 7_200_000), BUDGET);
    }

    #[test]
    fn a_flood_costs_the_budget_then_one_fetch_per_interval() {
        let p = provider(30);
        let mut s = FetchState::default();
        let mut fetches = 0;
        // 1,000 unknown kids a second for five minutes
        for ms in (0..300_000u64).step_by(1) {
            if take(&mut s, &p, 1 + ms) {
                fetches += 1;
            }
        }
        assert_eq!(fetches, BUDGET + 300 / 30 - 1);
    }

    #[test]
    fn a_zero_interval_refills_once_a_second() {
        let p = provider(0);
        let mut s = FetchState::default();
        let mut fetches = 0;
        for ms in 0..10_000u64 {
            if take(&mut s, &p, 1 + ms) {
                fetches += 1;
            }
        }
        assert!(fetches <= BUDGET + 10, "{fetches}");
    }

    #[test]
    fn kids_proved_absent_are_remembered_for_one_interval() {
        let p = provider(30);
        let mut s = FetchState::default();
        let (junk, real) = (tag("junk"), tag("new-key"));
        assert_eq!(junk.len(), 16);
        note_asked(&mut s, &junk);
        note_asked(&mut s, &real);
        note_asked(&mut s, &junk);
        assert_eq!(s.asked_kids.len(), 2);
        settle(&mut s, &p, 1_000, &|t| t == real);
        assert!(s.asked_kids.is_empty());
        assert!(is_absent(&s, &junk, 1_000));
        assert!(is_absent(&s, &junk, 30_999));
        assert!(!is_absent(&s, &junk, 31_000));
        assert!(!is_absent(&s, &real, 1_000));
        // bounded, oldest out first
        for i in 0..(ABSENT_MAX + 10) {
            note_asked(&mut s, &tag(&format!("k{i}")));
            settle(&mut s, &p, 2_000, &|_| false);
        }
        assert_eq!(s.absent_kids.len(), ABSENT_MAX);
        assert!(!is_absent(&s, &tag("k0"), 2_000));
        assert!(is_absent(&s, &tag(&format!("k{}", ABSENT_MAX + 9)), 2_000));
        reset(&mut s);
        assert!(s.absent_kids.is_empty());
        assert_eq!(refill(&mut s, &p, 5_000), BUDGET);
    }
}
