//! Deny entries, in the one format the admin push and a pulled document
//! share:
//!
//! ```json
//! {"entries": [
//!   {"type": "jti", "value": "...", "iss": "...", "exp": 1790000000},
//!   {"type": "sub", "value": "...", "exp": 1790000000},
//!   {"type": "not_before", "value": 1789990000, "iss": "...", "exp": 1790000000}
//! ]}
//! ```
//!
//! - `type`: `jti`, `sub`, `client_id` (matches the token's `client_id`,
//!   else its `azp`), `sid`, or `not_before`.
//! - `value`: the claim value (a string), or for `not_before` a time in
//!   seconds since the epoch: tokens whose `iat` is earlier are refused.
//! - `iss`: required for `jti` (a `jti` is unique per issuer) and for
//!   `not_before`; optional for the others (absent: any issuer).
//! - `sub` or `client_id` (not both), for `not_before` only: the cut-off
//!   applies to that subject or client of the issuer only.
//! - `exp`: seconds since the epoch after which the entry drops out by
//!   itself; required (a deny entry outlives the tokens it targets, no
//!   more).
//!
//! Each entry has an `id`: 16 hex digits of SHA-256 over what it targets
//! (not its `exp`), so pushing the same target again replaces the entry.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The longest `value`, `iss`, `sub` or `client_id` accepted.
pub const MAX_TEXT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Jti,
    Sub,
    Client,
    Sid,
    NotBefore,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Sub => "sub",
            Kind::Client => "client_id",
            Kind::Sid => "sid",
            Kind::NotBefore => "not_before",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        [
            Kind::Jti,
            Kind::Sub,
            Kind::Client,
            Kind::Sid,
            Kind::NotBefore,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// What an entry denies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Tokens whose claim of this kind (`jti`, `sub`, client, `sid`) is
    /// `value`, from `iss` (any issuer when `None`; never for `jti`).
    Claim {
        kind: Kind,
        value: String,
        iss: Option<String>,
    },
    /// Tokens of `iss` (and of `sub`, or of `client`, when given) issued
    /// before `at`.
    NotBefore {
        iss: String,
        sub: Option<String>,
        client: Option<String>,
        at: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: Target,
    /// Seconds since the epoch; the entry counts while `now < exp`.
    pub exp: u64,
}

impl Entry {
    pub fn kind(&self) -> Kind {
        match &self.target {
            Target::Claim { kind, .. } => *kind,
            Target::NotBefore { .. } => Kind::NotBefore,
        }
    }

    pub fn live(&self, now_s: u64) -> bool {
        now_s < self.exp
    }

    /// 16 hex digits naming what the entry targets.
    pub fn id(&self) -> String {
        let canonical = match &self.target {
            Target::Claim { kind, value, iss } => json!([kind.name(), value, iss]),
            Target::NotBefore {
                iss, sub, client, ..
            } => json!(["not_before", iss, sub, client]),
        };
        let digest = hmac_sha256::Hash::hash(canonical.to_string().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The entry in the shared format, with its `id`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_wire()).unwrap_or(Value::Null)
    }
}

/// Why an entry (or a document of them) was refused; `at` is the entry's
/// index in `entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub at: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(i) => write!(f, "entries[{i}]: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// An entry as written: every member optional here, so that each gets a
/// message of its own; unknown members are refused. Only scalars, so a
/// document of 100,000 entries never becomes a tree of maps in the VM.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(rename = "type", default)]
    pub kind: Option<Value>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Value>,
    #[serde(default)]
    pub exp: Option<Value>,
}

fn text(v: &Option<Value>, name: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_TEXT => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("\"{name}\" must be 1 to {MAX_TEXT} bytes")),
        Some(_) => Err(format!("\"{name}\" must be a string")),
    }
}

fn seconds(v: &Option<Value>, name: &str) -> Result<u64, String> {
    v.as_ref()
        .and_then(Value::as_u64)
        .filter(|s| *s > 0 && *s < 1 << 40)
        .ok_or_else(|| format!("\"{name}\" must be a time in seconds since the epoch"))
}

impl Wire {
    /// The entry this describes, or what is wrong with it.
    pub fn entry(&self) -> Result<Entry, String> {
        let kind = self
            .kind
            .as_ref()
            .and_then(Value::as_str)
            .and_then(Kind::parse)
            .ok_or("\"type\" must be jti, sub, client_id, sid or not_before")?;
        let exp = seconds(&self.exp, "exp")?;
        let iss = text(&self.iss, "iss")?;
        let target = if kind == Kind::NotBefore {
            let at = seconds(&self.value, "value")?;
            let iss = iss.ok_or("\"iss\" is required for not_before")?;
            let (sub, client) = (text(&self.sub, "sub")?, text(&self.client_id, "client_id")?);
            if sub.is_some() && client.is_some() {
                return Err("not_before takes \"sub\" or \"client_id\", not both".into());
            }
            Target::NotBefore {
                iss,
                sub,
                client,
                at,
            }
        } else {
            for (only, v) in [("sub", &self.sub), ("client_id", &self.client_id)] {
                if v.is_some() {
                    return Err(format!("\"{only}\" is for not_before entries only"));
                }
            }
            let value = text(&self.value, "value")?.ok_or("\"value\" is required")?;
            if kind == Kind::Jti && iss.is_none() {
                return Err("\"iss\" is required for jti (a jti is unique per issuer)".into());
            }
            Target::Claim { kind, value, iss }
        };
        Ok(Entry { target, exp })
    }
}

impl Entry {
    /// The entry as written in shared data (with its `id`).
    pub fn to_wire(&self) -> Wire {
        let mut w = Wire {
            id: Some(json!(self.id())),
            kind: Some(json!(self.kind().name())),
            exp: Some(json!(self.exp)),
            ..Wire::default()
        };
        match &self.target {
            Target::Claim { value, iss, .. } => {
                w.value = Some(json!(value));
                w.iss = iss.as_ref().map(|i| json!(i));
            }
            Target::NotBefore {
                iss,
                sub,
                client,
                at,
            } => {
                w.value = Some(json!(at));
                w.iss = Some(json!(iss));
                w.sub = sub.as_ref().map(|s| json!(s));
                w.client_id = client.as_ref().map(|c| json!(c));
            }
        }
        w
    }
}

/// One entry from its JSON value.
pub fn parse_entry(v: &Value) -> Result<Entry, String> {
    if !v.is_object() {
        return Err("must be a JSON object".into());
    }
    Wire::deserialize(v).map_err(|e| e.to_string())?.entry()
}

/// A document `{"entries": [...]}`: every entry must be valid (one bad
/// entry refuses the document, so a half-read list never replaces a good
/// one); at most `max` of them. Entries are checked as they are read.
pub fn parse_document(bytes: &[u8], max: usize) -> Result<Vec<Entry>, EntryError> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // An entry's own error carries its index: "entries[3]: ...".
        let at = text
            .strip_prefix("entries[")
            .and_then(|r| r.split_once(']'))
            .and_then(|(i, _)| i.parse().ok());
        EntryError {
            at,
            message: match at {
                Some(_) => text
                    .split_once("]: ")
                    .map_or(text.clone(), |(_, m)| m.to_string()),
                None => format!("not a list of entries: {text}"),
            },
        }
    })?;
    if doc.entries.0.len() > max {
        return Err(EntryError {
            at: None,
            message: format!("more than the {max} entries allowed (max_revocation_entries)"),
        });
    }
    Ok(doc.entries.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    entries: Listed<true>,
}

/// A list as stored in shared data: `{"gen": N, "keys": [entries]}` (the
/// record layout of `keys::layout`).
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    keys: Listed<false>,
}

/// Entries read one at a time and turned into [`Entry`]s as they are read,
/// so that a long list never exists twice. `STRICT`: the first bad entry
/// refuses the whole list, naming its index (a document from outside);
/// else a bad one is skipped (a stored list).
#[derive(Default)]
struct Listed<const STRICT: bool>(Vec<Entry>);

impl<'de, const STRICT: bool> Deserialize<'de> for Listed<STRICT> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listed<STRICT>, D::Error> {
        struct Visit<const S: bool>;
        impl<'de, const S: bool> serde::de::Visitor<'de> for Visit<S> {
            type Value = Listed<S>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listed<S>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                let mut i = 0;
                loop {
                    let read = seq.next_element::<Wire>().map_err(|e| e.to_string());
                    let entry = match read {
                        Ok(None) => break,
                        Ok(Some(w)) => w.entry(),
                        Err(e) => Err(e),
                    };
                    match entry {
                        Ok(e) => out.push(e),
                        Err(m) if S => {
                            return Err(serde::de::Error::custom(format!("entries[{i}]: {m}")))
                        }
                        Err(_) => {}
                    }
                    i += 1;
                }
                Ok(Listed(out))
            }
        }
        d.deserialize_seq(Visit::<STRICT>)
    }
}

#[derive(Serialize)]
struct StoredOut<'a> {
    gen: u64,
    keys: AsWires<'a>,
}

/// Entries written one at a time in their wire form.
struct AsWires<'a>(&'a [Entry]);

impl Serialize for AsWires<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Entry::to_wire))
    }
}

/// Entries read back from a stored list; an unreadable one is skipped.
pub fn read_stored(bytes: Option<&[u8]>) -> Vec<Entry> {
    bytes
        .and_then(|b| serde_json::from_slice::<Stored>(b).ok())
        .map(|s| s.keys.0)
        .unwrap_or_default()
}

/// The stored form of `entries` under generation `gen`.
pub fn write_stored(entries: &[Entry], gen: u64) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&StoredOut {
        gen,
        keys: AsWires(entries),
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: Value) -> Result<Entry, String> {
        parse_entry(&v)
    }

    #[test]
    fn each_kind_parses_and_round_trips() {
        let docs = [
            json!({"type": "jti", "value": "j1", "iss": "https://idp", "exp": 2000000000u64}),
            json!({"type": "sub", "value": "alice", "exp": 2000000000u64}),
            json!({"type": "client_id", "value": "app", "iss": "https://idp", "exp": 2000000000u64}),
            json!({"type": "sid", "value": "s-1", "exp": 2000000000u64}),
            json!({"type": "not_before", "value": 1900000000u64, "iss": "https://idp", "exp": 2000000000u64}),
            json!({"type": "not_before", "value": 1900000000u64, "iss": "https://idp", "sub": "bob", "exp": 2000000000u64}),
            json!({"type": "not_before", "value": 1900000000u64, "iss": "https://idp", "client_id": "app", "exp": 2000000000u64}),
        ];
        for d in docs {
            let e = one(d.clone()).unwrap();
            let back = e.to_json();
            assert_eq!(back["id"], json!(e.id()));
            assert_eq!(one(back).unwrap(), e);
        }
    }

    #[test]
    fn the_id_names_the_target_not_the_expiry() {
        let a = one(json!({"type": "sub", "value": "alice", "exp": 2000000000u64})).unwrap();
        let b = one(json!({"type": "sub", "value": "alice", "exp": 2100000000u64})).unwrap();
        let c = one(json!({"type": "sid", "value": "alice", "exp": 2000000000u64})).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().len(), 16);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let cases = [
            (
                json!({"type": "jti", "value": "j", "exp": 2000000000u64}),
                "\"iss\" is required",
            ),
            (json!({"type": "sub", "value": "a"}), "\"exp\""),
            (json!({"type": "sub", "value": "a", "exp": -1}), "\"exp\""),
            (
                json!({"type": "kid", "value": "a", "exp": 2000000000u64}),
                "\"type\"",
            ),
            (
                json!({"type": "sub", "value": 7, "exp": 2000000000u64}),
                "\"value\" must be a string",
            ),
            (
                json!({"type": "sub", "value": "", "exp": 2000000000u64}),
                "1 to 1024",
            ),
            (
                json!({"type": "sub", "value": "a", "exp": 2000000000u64, "sid": "x"}),
                "unknown field `sid`",
            ),
            (
                json!({"type": "sub", "value": "a", "sub": "b", "exp": 2000000000u64}),
                "not_before entries only",
            ),
            (
                json!({"type": "not_before", "value": "soon", "iss": "i", "exp": 2000000000u64}),
                "\"value\"",
            ),
            (
                json!({"type": "not_before", "value": 1, "exp": 2000000000u64}),
                "\"iss\" is required",
            ),
            (
                json!({"type": "not_before", "value": 1, "iss": "i", "sub": "s", "client_id": "c", "exp": 2000000000u64}),
                "not both",
            ),
            (json!(["sub"]), "JSON object"),
        ];
        for (doc, word) in cases {
            let err = one(doc.clone()).unwrap_err();
            assert!(err.contains(word), "{doc}: {err}");
        }
    }

    #[test]
    fn a_document_is_all_or_nothing_and_bounded() {
        let good = br#"{"entries": [{"type": "sub", "value": "a", "exp": 2000000000}]}"#;
        assert_eq!(parse_document(good, 10).unwrap().len(), 1);
        let bad =
            br#"{"entries": [{"type": "sub", "value": "a", "exp": 2000000000}, {"type": "sub"}]}"#;
        let err = parse_document(bad, 10).unwrap_err();
        assert_eq!(err.at, Some(1));
        assert!(parse_document(good, 0)
            .unwrap_err()
            .message
            .contains("max_revocation_entries"));
        assert!(parse_document(b"{\"entries\": {}}", 10).is_err());
        assert!(parse_document(b"{\"entries\": [], \"more\": 1}", 10).is_err());
        assert!(parse_document(b"not json", 10).is_err());
    }
}
