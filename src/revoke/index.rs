//! A worker's index of the deny entries it holds: one hash lookup per claim
//! kind that has entries, whatever their number, so 100,000 entries cost a
//! request what ten do. Entries past their `exp` stop counting at once and
//! are dropped when the index is next built.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::rc::Rc;

use crate::revoke::entry::{Entry, Kind, Target};
use crate::revoke::status::Reference;
use crate::token::jose::Claims;

/// The claims a deny entry can match, borrowed from a verified token (or
/// from the token cache, which keeps an owned copy: [`Subject`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectRef<'a> {
    pub iss: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// `client_id`, else `azp`.
    pub client: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub jti: Option<&'a str>,
    /// `iat`, whole seconds.
    pub iat: Option<u64>,
    /// Its place in a status list (when its provider checks them).
    pub status: Option<&'a Reference>,
}

impl<'a> SubjectRef<'a> {
    /// What deny entries can match in a token's claims (`client_id`, else
    /// `azp`, is the client).
    pub fn of_claims(c: &'a Claims<'a>, status: Option<&'a Reference>) -> SubjectRef<'a> {
        SubjectRef {
            iss: c.iss.as_deref(),
            sub: c.sub.as_deref(),
            client: c.client_id.as_deref().or(c.azp.as_deref()),
            sid: c.sid.as_deref(),
            jti: c.jti.as_deref(),
            iat: c.iat.map(|i| i.0 as u64),
            status,
        }
    }
}

/// A [`SubjectRef`] that owns its text, kept with a cached verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub iss: Option<Box<str>>,
    pub sub: Option<Box<str>>,
    pub client: Option<Box<str>>,
    pub sid: Option<Box<str>>,
    pub jti: Option<Box<str>>,
    pub iat: Option<u64>,
    pub status: Option<Reference>,
}

impl Subject {
    pub fn of(s: &SubjectRef) -> Subject {
        let own = |t: Option<&str>| t.map(Box::from);
        Subject {
            iss: own(s.iss),
            sub: own(s.sub),
            client: own(s.client),
            sid: own(s.sid),
            jti: own(s.jti),
            iat: s.iat,
            status: s.status.cloned(),
        }
    }

    pub fn borrowed(&self) -> SubjectRef<'_> {
        SubjectRef {
            iss: self.iss.as_deref(),
            sub: self.sub.as_deref(),
            client: self.client.as_deref(),
            sid: self.sid.as_deref(),
            jti: self.jti.as_deref(),
            iat: self.iat,
            status: self.status.as_ref(),
        }
    }

    /// Bytes held, for the token cache's budget.
    pub fn size(&self) -> usize {
        [&self.iss, &self.sub, &self.client, &self.sid, &self.jti]
            .iter()
            .map(|t| t.as_ref().map_or(0, |s| s.len() + 16))
            .sum::<usize>()
            + self.status.as_ref().map_or(0, |r| r.uri.len() + 32)
    }
}

/// An issuer scope (`None`: any issuer; shared by every entry of that
/// issuer) and the entry's expiry.
type Scoped = Vec<(Option<Rc<str>>, u64)>;
/// A not-before time and the entry's expiry.
type Cutoffs = Vec<(u64, u64)>;

#[derive(Debug, Default)]
pub struct Index {
    jti: HashMap<Box<str>, Scoped>,
    sub: HashMap<Box<str>, Scoped>,
    client: HashMap<Box<str>, Scoped>,
    sid: HashMap<Box<str>, Scoped>,
    /// Not-before cut-offs per issuer; per (issuer, sub); per (issuer,
    /// client).
    nbf_iss: HashMap<Box<str>, Cutoffs>,
    nbf_sub: HashMap<(Box<str>, Box<str>), Cutoffs>,
    nbf_client: HashMap<(Box<str>, Box<str>), Cutoffs>,
    len: usize,
}

fn scoped_hit(
    map: &HashMap<Box<str>, Scoped>,
    value: Option<&str>,
    iss: Option<&str>,
    now: u64,
) -> bool {
    if map.is_empty() {
        return false;
    }
    let Some(list) = value.and_then(|v| map.get(v)) else {
        return false;
    };
    list.iter()
        .any(|(scope, exp)| now < *exp && scope.as_deref().is_none_or(|s| Some(s) == iss))
}

fn cut_off(list: Option<&Cutoffs>, iat: Option<u64>, now: u64) -> bool {
    list.is_some_and(|l| {
        l.iter()
            .any(|(at, exp)| now < *exp && iat.is_none_or(|i| i < *at))
    })
}

impl Index {
    /// The index of `entries` as of `now_s` (expired ones are left out).
    pub fn build<'a>(entries: impl IntoIterator<Item = &'a Entry>, now_s: u64) -> Index {
        let mut ix = Index::default();
        let mut issuers: HashMap<&str, Rc<str>> = HashMap::new();
        for e in entries.into_iter().filter(|e| e.live(now_s)) {
            ix.len += 1;
            match &e.target {
                Target::Claim { kind, value, iss } => {
                    let map = match kind {
                        Kind::Jti => &mut ix.jti,
                        Kind::Sub => &mut ix.sub,
                        Kind::Client => &mut ix.client,
                        // (a claim target is never NotBefore: see `entry`)
                        Kind::Sid | Kind::NotBefore => &mut ix.sid,
                    };
                    let scope = iss
                        .as_deref()
                        .map(|i| issuers.entry(i).or_insert_with(|| Rc::from(i)).clone());
                    map.entry(value.as_str().into())
                        .or_default()
                        .push((scope, e.exp));
                }
                Target::NotBefore {
                    iss,
                    sub,
                    client,
                    at,
                } => {
                    let iss: Box<str> = iss.as_str().into();
                    let cut = (*at, e.exp);
                    match (sub, client) {
                        (Some(s), _) => ix
                            .nbf_sub
                            .entry((iss, s.as_str().into()))
                            .or_default()
                            .push(cut),
                        (None, Some(c)) => ix
                            .nbf_client
                            .entry((iss, c.as_str().into()))
                            .or_default()
                            .push(cut),
                        (None, None) => ix.nbf_iss.entry(iss).or_default().push(cut),
                    }
                }
            }
        }
        ix
    }

    /// Live entries indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kind of the first entry that denies `s` at `now_s`, if any. A
    /// not-before needs the token's `iat`: a token without one is issued
    /// "before" every cut-off that applies to it.
    pub fn check(&self, s: &SubjectRef, now_s: u64) -> Option<Kind> {
        if self.len == 0 {
            return None;
        }
        if scoped_hit(&self.jti, s.jti, s.iss, now_s) {
            return Some(Kind::Jti);
        }
        if scoped_hit(&self.sub, s.sub, s.iss, now_s) {
            return Some(Kind::Sub);
        }
        if scoped_hit(&self.client, s.client, s.iss, now_s) {
            return Some(Kind::Client);
        }
        if scoped_hit(&self.sid, s.sid, s.iss, now_s) {
            return Some(Kind::Sid);
        }
        let iss = s.iss?;
        if !self.nbf_iss.is_empty() && cut_off(self.nbf_iss.get(iss), s.iat, now_s) {
            return Some(Kind::NotBefore);
        }
        let pair =
            |other: Option<&str>| other.map(|o| (Box::<str>::from(iss), Box::<str>::from(o)));
        if !self.nbf_sub.is_empty() {
            if let Some(k) = pair(s.sub) {
                if cut_off(self.nbf_sub.get(&k), s.iat, now_s) {
                    return Some(Kind::NotBefore);
                }
            }
        }
        if !self.nbf_client.is_empty() {
            if let Some(k) = pair(s.client) {
                if cut_off(self.nbf_client.get(&k), s.iat, now_s) {
                    return Some(Kind::NotBefore);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revoke::entry::parse_entry;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const LATER: u64 = NOW + 3600;

    fn entries(list: serde_json::Value) -> Vec<Entry> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| parse_entry(v).unwrap())
            .collect()
    }

    fn alice() -> SubjectRef<'static> {
        SubjectRef {
            iss: Some("https://idp"),
            sub: Some("alice"),
            client: Some("web"),
            sid: Some("s-1"),
            jti: Some("j-1"),
            iat: Some(NOW - 60),
            status: None,
        }
    }

    #[test]
    fn each_claim_kind_denies_its_match_only() {
        for (entry, kind) in [
            (
                json!({"type": "jti", "value": "j-1", "iss": "https://idp", "exp": LATER}),
                Kind::Jti,
            ),
            (
                json!({"type": "sub", "value": "alice", "exp": LATER}),
                Kind::Sub,
            ),
            (
                json!({"type": "client_id", "value": "web", "exp": LATER}),
                Kind::Client,
            ),
            (
                json!({"type": "sid", "value": "s-1", "iss": "https://idp", "exp": LATER}),
                Kind::Sid,
            ),
        ] {
            let ix = Index::build(&entries(json!([entry])), NOW);
            assert_eq!(ix.check(&alice(), NOW), Some(kind));
            let other = SubjectRef {
                sub: Some("bob"),
                client: Some("cli"),
                sid: Some("s-2"),
                jti: Some("j-2"),
                ..alice()
            };
            assert_eq!(ix.check(&other, NOW), None, "{kind:?}");
            let foreign = SubjectRef {
                iss: Some("https://other"),
                ..alice()
            };
            let scoped = !matches!(kind, Kind::Sub | Kind::Client);
            assert_eq!(ix.check(&foreign, NOW).is_some(), !scoped, "{kind:?}");
        }
    }

    #[test]
    fn an_entry_stops_counting_at_its_exp() {
        let ix = Index::build(
            &entries(json!([{"type": "sub", "value": "alice", "exp": NOW + 10}])),
            NOW,
        );
        assert_eq!(ix.check(&alice(), NOW + 9), Some(Kind::Sub));
        assert_eq!(ix.check(&alice(), NOW + 10), None);
        assert!(Index::build(
            &entries(json!([{"type": "sub", "value": "alice", "exp": NOW}])),
            NOW
        )
        .is_empty());
    }

    #[test]
    fn not_before_refuses_older_tokens_and_the_latest_cut_off_wins() {
        let list = entries(json!([
            {"type": "not_before", "value": NOW - 120, "iss": "https://idp", "exp": LATER},
            {"type": "not_before", "value": NOW - 30, "iss": "https://idp", "sub": "alice", "exp": LATER},
            {"type": "not_before", "value": NOW - 10, "iss": "https://idp", "client_id": "batch", "exp": LATER},
        ]));
        let ix = Index::build(&list, NOW);
        // alice at NOW-60: after the issuer's cut-off, before her own
        assert_eq!(ix.check(&alice(), NOW), Some(Kind::NotBefore));
        let newer = SubjectRef {
            iat: Some(NOW - 20),
            ..alice()
        };
        assert_eq!(ix.check(&newer, NOW), None);
        // bob at NOW-60: only the issuer's cut-off applies
        let bob = SubjectRef {
            sub: Some("bob"),
            ..alice()
        };
        assert_eq!(ix.check(&bob, NOW), None);
        let old_bob = SubjectRef {
            iat: Some(NOW - 200),
            ..bob
        };
        assert_eq!(ix.check(&old_bob, NOW), Some(Kind::NotBefore));
        // the client's cut-off
        let batch = SubjectRef {
            client: Some("batch"),
            iat: Some(NOW - 15),
            ..bob
        };
        assert_eq!(ix.check(&batch, NOW), Some(Kind::NotBefore));
        // no iat: issued before every cut-off that applies
        let no_iat = SubjectRef { iat: None, ..bob };
        assert_eq!(ix.check(&no_iat, NOW), Some(Kind::NotBefore));
        // another issuer: none applies
        let other = SubjectRef {
            iss: Some("https://other"),
            ..old_bob
        };
        assert_eq!(ix.check(&other, NOW), None);
        // expired cut-offs stop counting
        assert_eq!(ix.check(&old_bob, LATER), None);
    }

    #[test]
    fn a_subject_keeps_what_it_borrowed() {
        let s = Subject::of(&alice());
        let r = s.borrowed();
        assert_eq!(
            (r.iss, r.sub, r.client, r.sid, r.jti, r.iat),
            (
                alice().iss,
                alice().sub,
                alice().client,
                alice().sid,
                alice().jti,
                alice().iat
            )
        );
        assert!(s.size() > 0);
    }

    #[test]
    fn a_hundred_thousand_entries_index_and_answer() {
        let list: Vec<Entry> = (0..100_000)
            .map(|i| parse_entry(&json!({"type": "jti", "value": format!("j-{i}"), "iss": "https://idp", "exp": LATER})).unwrap())
            .collect();
        let ix = Index::build(&list, NOW);
        assert_eq!(ix.len(), 100_000);
        let hit = SubjectRef {
            jti: Some("j-99999"),
            ..alice()
        };
        assert_eq!(ix.check(&hit, NOW), Some(Kind::Jti));
        let miss = SubjectRef {
            jti: Some("j-100000"),
            ..alice()
        };
        assert_eq!(ix.check(&miss, NOW), None);
    }
}
