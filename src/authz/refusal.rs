//! Every way a request can be refused, how each is answered (RFC 6750
//! class), described and counted.
#![forbid(unsafe_code)]

use crate::authz::rules::Missing;
use crate::token::find::FindError;
use crate::token::jose::DecodeError;

/// Every way a request can be refused. Each has a stable description (sent
/// as `error_description`) and a stable metric name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    TokenTooLarge,
    DuplicateHeader,
    Decode(DecodeError),
    AlgorithmNotAllowed,
    UnsupportedCrit,
    UnsupportedType,
    Expired,
    NotYetValid,
    IssuedInFuture,
    TooOld,
    ExpiresTooFar,
    MissingClaim(&'static str),
    Issuer,
    Audience,
    UnknownKid,
    NoKeyForAlgorithm,
    BadSignature,
    /// No signing key could be loaded in time.
    KeysUnavailable,
    /// Too many requests are already waiting for keys.
    Overloaded,
    /// The route does not accept tokens of the token's provider.
    ProviderNotAllowed,
    /// The token is valid but lacks what the route requires.
    InsufficientScope(Missing),
    /// A deny entry matches the token; the entry's type (`jti`, `sub`,
    /// `client_id`, `sid`, `not_before`), or `status`: its status list
    /// gives it a status other than 0.
    Revoked(&'static str),
    /// The provider's revocation list or the token's status list failed
    /// past `max_staleness` with `revocation_fail: closed` (or has not
    /// arrived yet).
    RevocationUnavailable,
    /// The token's `status.status_list` is malformed, names a list that
    /// is not an http(s) URL, or an index past the end of its list.
    StatusReference,
    /// The introspection endpoint says the token is not active (or does
    /// not know it).
    Inactive,
    /// The introspection endpoint could not be reached in time, refused
    /// the connection, or answered 429/503.
    IntrospectionUnavailable,
    /// The introspection endpoint answered in a way the filter cannot use:
    /// 401/403/404 or another 5xx, a malformed answer, a phantom JWT that
    /// does not verify or is too large to forward. The kind, for metrics.
    IntrospectionFailed(&'static str),
}

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 401 without an error code (RFC 6750 section 3.1).
    NoCredentials,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 503 with `Retry-After`.
    Unavailable,
    /// 403 `insufficient_scope`.
    Forbidden,
    /// 502: the identity provider answered, but not usefully.
    BadGateway,
}

impl Refusal {
    pub fn class(&self) -> Class {
        match self {
            Refusal::MissingToken => Class::NoCredentials,
            Refusal::TokenTooLarge | Refusal::DuplicateHeader => Class::InvalidRequest,
            Refusal::KeysUnavailable
            | Refusal::Overloaded
            | Refusal::RevocationUnavailable
            | Refusal::IntrospectionUnavailable => Class::Unavailable,
            Refusal::IntrospectionFailed(_) => Class::BadGateway,
            Refusal::InsufficientScope(_) => Class::Forbidden,
            _ => Class::InvalidToken,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Refusal::MissingToken => "no bearer token in the request",
            Refusal::TokenTooLarge => "token is larger than max_token_size",
            Refusal::DuplicateHeader => "more than one token header in the request",
            Refusal::Decode(e) => e.describe(),
            Refusal::AlgorithmNotAllowed => "token algorithm is not allowed",
            Refusal::UnsupportedCrit => "token has unsupported critical header parameters",
            Refusal::UnsupportedType => "token type (typ) is not accepted",
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token is not valid yet (nbf)",
            Refusal::IssuedInFuture => "token issued in the future (iat)",
            Refusal::TooOld => "token is older than max_token_age",
            Refusal::ExpiresTooFar => "token expiry is further away than max_token_age",
            Refusal::MissingClaim("exp") => "token has no exp claim",
            Refusal::MissingClaim("nbf") => "token has no nbf claim",
            Refusal::MissingClaim("iat") => "token has no iat claim",
            Refusal::MissingClaim("iss") => "token has no iss claim",
            Refusal::MissingClaim("aud") => "token has no aud claim",
            Refusal::MissingClaim(_) => "token has no sub claim",
            Refusal::Issuer => "token issuer is not allowed",
            Refusal::Audience => "token audience is not allowed",
            Refusal::UnknownKid => "token key id (kid) is not in the key set",
            Refusal::NoKeyForAlgorithm => "no signing key for the token algorithm",
            Refusal::BadSignature => "token signature is invalid",
            Refusal::KeysUnavailable => "signing keys are not available yet",
            Refusal::Overloaded => "too many requests are waiting for signing keys",
            Refusal::ProviderNotAllowed => "token issuer is not accepted on this route",
            Refusal::InsufficientScope(_) => {
                "token lacks the scopes, permissions or roles this route requires"
            }
            Refusal::Revoked(_) => "token revoked",
            Refusal::RevocationUnavailable => "the revocation list is not available",
            Refusal::StatusReference => "token status reference is invalid",
            Refusal::Inactive => "token is not active",
            Refusal::IntrospectionUnavailable => "the token introspection service is not available",
            Refusal::IntrospectionFailed(_) => "the token introspection service failed",
        }
    }

    /// The suffix of the `jwt_jwks_denied_<reason>` counter.
    pub fn metric(&self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::TokenTooLarge | Refusal::DuplicateHeader => "bad_request",
            Refusal::Decode(_) => "malformed",
            Refusal::AlgorithmNotAllowed => "algorithm",
            Refusal::UnsupportedCrit | Refusal::UnsupportedType => "header",
            Refusal::Expired => "expired",
            Refusal::NotYetValid | Refusal::IssuedInFuture => "not_yet_valid",
            Refusal::TooOld | Refusal::ExpiresTooFar => "too_old",
            Refusal::MissingClaim(_) => "missing_claim",
            Refusal::Issuer => "issuer",
            Refusal::Audience => "audience",
            Refusal::UnknownKid => "unknown_kid",
            Refusal::NoKeyForAlgorithm => "no_key",
            Refusal::BadSignature => "signature",
            Refusal::KeysUnavailable | Refusal::Overloaded => "unavailable",
            Refusal::ProviderNotAllowed => "issuer",
            Refusal::InsufficientScope(_) => "insufficient_scope",
            Refusal::Revoked("jti") => "revoked_jti",
            Refusal::Revoked("sub") => "revoked_sub",
            Refusal::Revoked("client_id") => "revoked_client_id",
            Refusal::Revoked("sid") => "revoked_sid",
            Refusal::Revoked("status") => "revoked_status",
            Refusal::Revoked(_) => "revoked_not_before",
            Refusal::RevocationUnavailable => "revocation_unavailable",
            Refusal::StatusReference => "status_invalid",
            Refusal::Inactive => "inactive",
            Refusal::IntrospectionUnavailable => "introspection_unavailable",
            Refusal::IntrospectionFailed("status") => "introspection_status",
            Refusal::IntrospectionFailed("phantom") => "introspection_phantom",
            Refusal::IntrospectionFailed(_) => "introspection_malformed",
        }
    }

    /// Every metric suffix, so the glue can define all counters up front.
    pub const METRICS: &'static [&'static str] = &[
        "missing_token",
        "bad_request",
        "malformed",
        "algorithm",
        "header",
        "expired",
        "not_yet_valid",
        "too_old",
        "missing_claim",
        "issuer",
        "audience",
        "unknown_kid",
        "no_key",
        "signature",
        "unavailable",
        "insufficient_scope",
        "revoked_jti",
        "revoked_sub",
        "revoked_client_id",
        "revoked_sid",
        "revoked_not_before",
        "revoked_status",
        "revocation_unavailable",
        "status_invalid",
        "inactive",
        "introspection_unavailable",
        "introspection_status",
        "introspection_phantom",
        "introspection_malformed",
    ];
}

impl From<FindError> for Refusal {
    fn from(e: FindError) -> Refusal {
        match e {
            FindError::TooLarge => Refusal::TokenTooLarge,
            FindError::DuplicateHeader => Refusal::DuplicateHeader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_registered_metric() {
        let all = [
            Refusal::MissingToken,
            Refusal::TokenTooLarge,
            Refusal::DuplicateHeader,
            Refusal::Decode(DecodeError::Parts),
            Refusal::AlgorithmNotAllowed,
            Refusal::UnsupportedCrit,
            Refusal::UnsupportedType,
            Refusal::Expired,
            Refusal::NotYetValid,
            Refusal::IssuedInFuture,
            Refusal::TooOld,
            Refusal::ExpiresTooFar,
            Refusal::MissingClaim("sub"),
            Refusal::Issuer,
            Refusal::Audience,
            Refusal::UnknownKid,
            Refusal::NoKeyForAlgorithm,
            Refusal::BadSignature,
            Refusal::KeysUnavailable,
            Refusal::Overloaded,
            Refusal::ProviderNotAllowed,
            Refusal::InsufficientScope(Missing::default()),
            Refusal::Revoked("jti"),
            Refusal::Revoked("sub"),
            Refusal::Revoked("client_id"),
            Refusal::Revoked("sid"),
            Refusal::Revoked("not_before"),
            Refusal::Revoked("status"),
            Refusal::RevocationUnavailable,
            Refusal::StatusReference,
            Refusal::Inactive,
            Refusal::IntrospectionUnavailable,
            Refusal::IntrospectionFailed("status"),
            Refusal::IntrospectionFailed("phantom"),
            Refusal::IntrospectionFailed("malformed"),
        ];
        for r in all {
            assert!(Refusal::METRICS.contains(&r.metric()), "{r:?}");
            assert!(!r.describe().contains('"'), "{r:?}");
        }
    }
}
