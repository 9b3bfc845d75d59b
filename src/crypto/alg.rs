//! The JWS algorithms this filter knows, and the key families they need.
#![forbid(unsafe_code)]

use std::fmt;

/// A JWS `alg` this filter can verify. `none` and the HMAC family are
/// deliberately absent: they can never be accepted with JWKS keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// The kind of public key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The seed plugin's default allow-list.
    pub const DEFAULT_ALLOWED: [Alg; 6] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
    ];

    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyFamily::Rsa
            }
            Alg::ES256 => KeyFamily::P256,
            Alg::ES384 => KeyFamily::P384,
            Alg::ES512 => KeyFamily::P521,
            Alg::EdDSA => KeyFamily::Ed25519,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A small set of algorithms (a bit set; copying it is free).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgSet(u16);

impl AlgSet {
    pub fn empty() -> Self {
        AlgSet(0)
    }

    pub fn of(algs: &[Alg]) -> Self {
        let mut set = AlgSet::empty();
        for a in algs {
            set.insert(*a);
        }
        set
    }

    pub fn insert(&mut self, alg: Alg) {
        self.0 |= alg.bit();
    }

    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Alg> {
        Alg::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// The algorithms of one key family.
    pub fn family(family: KeyFamily) -> AlgSet {
        let mut set = AlgSet::empty();
        for a in Alg::ALL {
            if a.family() == family {
                set.insert(a);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.name()), Some(a));
        }
        for bad in ["none", "HS256", "rs256", "ES256K", "Ed25519", ""] {
            assert_eq!(Alg::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sets_hold_exactly_what_was_inserted() {
        let set = AlgSet::of(&[Alg::RS256, Alg::EdDSA]);
        assert!(set.contains(Alg::RS256) && set.contains(Alg::EdDSA));
        assert!(!set.contains(Alg::PS256));
        assert_eq!(set.iter().count(), 2);
        assert_eq!(AlgSet::family(KeyFamily::Rsa).iter().count(), 6);
        assert!(AlgSet::family(KeyFamily::P521).contains(Alg::ES512));
    }
}
