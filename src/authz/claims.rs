//! The header and claims policy that a token must pass before its
//! signature is checked.
#![forbid(unsafe_code)]

use crate::authz::refusal::Refusal;
use crate::config::{media_type, ClaimsPolicy};
use crate::crypto::alg::{Alg, AlgSet};
use crate::token::jose::{Claims, Header};

/// Header checks (RFC 8725): the algorithm must be allowed, `crit` must be
/// empty (this filter understands no extension), `typ` if present must say
/// JWT. `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only from the
/// configured JWKS or fallback key.
pub fn check_header(header: &Header, allowed: AlgSet) -> Result<Alg, Refusal> {
    let alg = Alg::parse(&header.alg)
        .filter(|a| allowed.contains(*a))
        .ok_or(Refusal::AlgorithmNotAllowed)?;
    if header.crit.is_some() {
        return Err(Refusal::UnsupportedCrit);
    }
    if let Some(typ) = &header.typ {
        let t = typ.as_bytes();
        let suffix = t.len().checked_sub(4).and_then(|i| t.get(i..));
        if !t.eq_ignore_ascii_case(b"JWT")
            && !suffix.is_some_and(|s| s.eq_ignore_ascii_case(b"+JWT"))
        {
            return Err(Refusal::UnsupportedType);
        }
    }
    Ok(alg)
}

/// A provider's `allowed_types` (normalised by [`media_type`]): when set,
/// the token must carry one of them as `typ` (RFC 8725 section 3.11: tokens
/// of other kinds from the same issuer, such as `logout+jwt` or
/// `secevent+jwt`, are not access tokens). Empty: no further check.
pub fn check_type(header: &Header, allowed: &[String]) -> Result<(), Refusal> {
    if allowed.is_empty() {
        return Ok(());
    }
    match &header.typ {
        Some(t) if allowed.contains(&media_type(t)) => Ok(()),
        _ => Err(Refusal::UnsupportedType),
    }
}

/// Claims checks, with `clock_skew` applied to every time comparison.
pub fn check_claims(claims: &Claims, policy: &ClaimsPolicy, now_s: u64) -> Result<(), Refusal> {
    let now = now_s as f64;
    let skew = policy.clock_skew_s as f64;
    let require = |present: bool, required: bool, name: &'static str| {
        if required && !present {
            Err(Refusal::MissingClaim(name))
        } else {
            Ok(())
        }
    };
    require(claims.exp.is_some(), policy.require_exp, "exp")?;
    require(claims.nbf.is_some(), policy.require_nbf, "nbf")?;
    require(claims.iat.is_some(), policy.require_iat, "iat")?;
    require(claims.iss.is_some(), policy.require_iss, "iss")?;
    require(claims.aud.is_some(), policy.require_aud, "aud")?;
    require(claims.sub.is_some(), policy.require_sub, "sub")?;

    if let Some(exp) = claims.exp {
        if now >= exp.0 + skew {
            return Err(Refusal::Expired);
        }
    }
    if let Some(nbf) = claims.nbf {
        if now + skew < nbf.0 {
            return Err(Refusal::NotYetValid);
        }
    }
    if let Some(iat) = claims.iat {
        if now + skew < iat.0 {
            return Err(Refusal::IssuedInFuture);
        }
    }
    if let Some(max_age) = policy.max_token_age_s {
        let max_age = max_age as f64;
        if let Some(iat) = claims.iat {
            if now - iat.0 > max_age + skew {
                return Err(Refusal::TooOld);
            }
        }
        if let Some(exp) = claims.exp {
            if exp.0 - now > max_age + skew {
                return Err(Refusal::ExpiresTooFar);
            }
        }
    }
    if !policy.issuers.is_empty() {
        let iss = claims.iss.as_deref().unwrap_or_default();
        if !policy.issuers.iter().any(|i| i == iss) {
            return Err(Refusal::Issuer);
        }
    }
    if !policy.audiences.is_empty() {
        let ok = claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.iter().any(|a| policy.audiences.iter().any(|p| p == a)));
        if !ok {
            return Err(Refusal::Audience);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jose::{Audience, NumericDate};

    const NOW: u64 = 1_800_000_000;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            issuers: vec![],
            audiences: vec![],
            require_exp: true,
            require_nbf: false,
            require_iat: false,
            require_iss: false,
            require_aud: false,
            require_sub: false,
            clock_skew_s: 60,
            max_token_age_s: None,
        }
    }

    fn claims(exp: Option<f64>) -> Claims<'static> {
        Claims {
            exp: exp.map(NumericDate),
            ..Claims::default()
        }
    }

    fn header(alg: &str) -> Header<'_> {
        Header {
            alg: alg.into(),
            ..Header::default()
        }
    }

    #[test]
    fn exp_is_required_by_default_and_checked_with_skew() {
        let p = policy();
        let now = NOW as f64;
        assert_eq!(
            check_claims(&claims(None), &p, NOW),
            Err(Refusal::MissingClaim("exp"))
        );
        assert_eq!(check_claims(&claims(Some(now + 10.0)), &p, NOW), Ok(()));
        assert_eq!(
            check_claims(&claims(Some(now - 59.0)), &p, NOW),
            Ok(()),
            "within skew"
        );
        assert_eq!(
            check_claims(&claims(Some(now - 60.0)), &p, NOW),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn nbf_and_iat_are_checked_whenever_present() {
        let p = policy();
        let now = NOW as f64;
        let mut c = claims(Some(now + 300.0));
        c.nbf = Some(NumericDate(now + 61.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::NotYetValid));
        c.nbf = Some(NumericDate(now + 59.0));
        assert_eq!(check_claims(&c, &p, NOW), Ok(()));
        c.iat = Some(NumericDate(now + 120.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::IssuedInFuture));
    }

    #[test]
    fn max_token_age_bounds_iat_and_exp() {
        let mut p = policy();
        p.max_token_age_s = Some(600);
        p.require_iat = true;
        let now = NOW as f64;
        let mut c = claims(Some(now + 300.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::MissingClaim("iat")));
        c.iat = Some(NumericDate(now - 700.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::TooOld));
        c.iat = Some(NumericDate(now - 100.0));
        assert_eq!(check_claims(&c, &p, NOW), Ok(()));
        c.exp = Some(NumericDate(now + 3600.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::ExpiresTooFar));
    }

    #[test]
    fn issuer_and_audience_must_match_one_configured_value() {
        let mut p = policy();
        p.issuers = vec!["https://a".into(), "https://b".into()];
        p.audiences = vec!["api".into()];
        p.require_iss = true;
        p.require_aud = true;
        let mut c = claims(Some(NOW as f64 + 60.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::MissingClaim("iss")));
        c.iss = Some("https://c".into());
        c.aud = Some(Audience(vec!["api".into()]));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::Issuer));
        c.iss = Some("https://b".into());
        assert_eq!(check_claims(&c, &p, NOW), Ok(()));
        c.aud = Some(Audience(vec!["other".into(), "more".into()]));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::Audience));
        c.aud = Some(Audience(vec!["other".into(), "api".into()]));
        assert_eq!(check_claims(&c, &p, NOW), Ok(()));
    }

    #[test]
    fn listed_claims_are_required_even_without_allow_lists() {
        let mut p = policy();
        p.require_aud = true;
        p.require_sub = true;
        let mut c = claims(Some(NOW as f64 + 60.0));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::MissingClaim("aud")));
        c.aud = Some(Audience(vec!["x".into()]));
        assert_eq!(check_claims(&c, &p, NOW), Err(Refusal::MissingClaim("sub")));
    }

    #[test]
    fn header_policy() {
        let allowed = AlgSet::of(&[Alg::RS256, Alg::ES256]);
        assert_eq!(check_header(&header("RS256"), allowed), Ok(Alg::RS256));
        for bad in ["none", "HS256", "RS384", "rs256", ""] {
            assert_eq!(
                check_header(&header(bad), allowed),
                Err(Refusal::AlgorithmNotAllowed),
                "{bad}"
            );
        }
        let mut h = header("ES256");
        h.crit = Some(vec!["exp".into()]);
        assert_eq!(check_header(&h, allowed), Err(Refusal::UnsupportedCrit));
        let mut h = header("ES256");
        h.typ = Some("at+jwt".into());
        assert_eq!(check_header(&h, allowed), Ok(Alg::ES256));
        h.typ = Some("JWE".into());
        assert_eq!(check_header(&h, allowed), Err(Refusal::UnsupportedType));
        // jku / jwk / x5u are ignored, never followed: the token still goes on
        // to key selection, where only configured keys exist.
        let h = Header::parse(
            r#"{"alg":"RS256","jku":"https://attacker.example/jwks","jwk":{"kty":"RSA"}}"#,
        )
        .unwrap();
        assert_eq!(check_header(&h, allowed), Ok(Alg::RS256));
    }

    /// Issue 19, item 5: `allowed_types` per provider.
    #[test]
    fn allowed_types_restrict_typ_when_set() {
        let mut h = header("RS256");
        assert_eq!(check_type(&h, &[]), Ok(()), "unset: today's rule only");
        let at = vec!["at+jwt".to_string()];
        assert_eq!(
            check_type(&h, &at),
            Err(Refusal::UnsupportedType),
            "typ required"
        );
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            h.typ = Some(ok.into());
            assert_eq!(check_type(&h, &at), Ok(()), "{ok}");
        }
        for bad in ["JWT", "logout+jwt", "secevent+jwt", "at+jwt2"] {
            h.typ = Some(bad.into());
            assert_eq!(check_type(&h, &at), Err(Refusal::UnsupportedType), "{bad}");
        }
        assert_eq!(media_type("Application/AT+JWT"), "at+jwt");
    }
}
