//! Signed tokens: who may open sessions and use the admin API, and which session a reconnecting
//! client may resume.
//!
//! Access tokens are HS256 JSON Web Tokens signed with `gateway.auth_secret` (so any JWT library
//! can mint them, and `kiki token` does), with `sub`, `exp` and `scope` (space-separated:
//! `transcribe`, `admin`). They come in `Authorization: Bearer …` or, for browsers' WebSockets,
//! in the `token` query parameter. Without a secret, auth is off (and the gateway refuses to
//! listen beyond loopback unless told to).
//!
//! Resume tokens name a session and its epoch, signed with the auth secret or, without one,
//! with a key shared by every gateway through Redis, so that one gateway honours another's.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Sessions on every WebSocket protocol, and the file API.
    Transcribe,
    /// `/admin/*` and `/api/stats`.
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Transcribe => "transcribe",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    scope: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResumeClaims {
    sid: String,
    ep: String,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject; `None` when auth is off.
    pub subject: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required: Authorization: Bearer <token>, or ?token=<token>")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token lacks the {0} scope")]
    Scope(&'static str),
    #[error("token signing failed: {0}")]
    Sign(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Scope(_) => StatusCode::FORBIDDEN,
            AuthError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    fn new(secret: &[u8]) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }
}

/// Checks access tokens (when a secret is set) and signs and checks resume tokens.
pub struct Auth {
    access: Option<Keys>,
    resume: Keys,
    /// The older static admin bearer (`gateway.admin_token`), still honoured for `/admin`.
    admin_token: Option<String>,
}

impl Auth {
    /// `secret`: the access-token secret, if auth is on. `resume_secret`: the key for resume
    /// tokens when there is no access secret (shared by the gateways through Redis).
    pub fn new(secret: Option<&[u8]>, resume_secret: &[u8], admin_token: Option<String>) -> Self {
        Self { access: secret.map(Keys::new), resume: Keys::new(secret.unwrap_or(resume_secret)), admin_token }
    }

    pub fn enabled(&self) -> bool {
        self.access.is_some()
    }

    /// Checks a request for `scope`. With auth off everyone passes (except that a configured
    /// static admin token still guards the admin scope).
    pub fn check(&self, headers: &HeaderMap, query_token: Option<&str>, scope: Scope) -> Result<Principal, AuthError> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let token = bearer.or(query_token).filter(|t| !t.is_empty());
        if scope == Scope::Admin
            && let (Some(static_token), Some(given)) = (&self.admin_token, token)
            && constant_time_eq(static_token.as_bytes(), given.as_bytes())
        {
            return Ok(Principal { subject: Some("admin-token".into()) });
        }
        let Some(keys) = &self.access else {
            return match (&self.admin_token, scope) {
                (Some(_), Scope::Admin) => Err(if token.is_some() {
                    AuthError::Invalid("wrong admin token".into())
                } else {
                    AuthError::Missing
                }),
                _ => Ok(Principal { subject: None }),
            };
        };
        let token = token.ok_or(AuthError::Missing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if !claims.scope.split_whitespace().any(|s| s == scope.name()) {
            return Err(AuthError::Scope(scope.name()));
        }
        Ok(Principal { subject: Some(claims.sub) })
    }

    /// Signs an access token (`kiki token`, tests).
    pub fn mint(&self, subject: &str, scopes: &[Scope], ttl_s: u64) -> Result<String, AuthError> {
        let keys =
            self.access.as_ref().ok_or_else(|| AuthError::Sign("no gateway.auth_secret is configured".into()))?;
        let claims = Claims {
            sub: subject.to_string(),
            exp: now_s() + ttl_s,
            scope: scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(" "),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// The token a client resumes `session` with. Its lifetime is the session's replay window,
    /// which the gateway checks, so the token itself does not expire.
    pub fn resume_token(&self, session: &str, epoch: &str) -> String {
        let claims = ResumeClaims { sid: session.to_string(), ep: epoch.to_string() };
        // HS256 over two short strings cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.resume.encoding).unwrap_or_default()
    }

    /// The (session, epoch) a resume token names, if it is genuine.
    pub fn verify_resume(&self, token: &str) -> Option<(String, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = false;
        let c = jsonwebtoken::decode::<ResumeClaims>(token, &self.resume.decoding, &validation).ok()?.claims;
        Some((c.sid, c.ep))
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a scope list as `kiki token --scope` takes it.
pub fn parse_scope(s: &str) -> Result<Scope, String> {
    match s {
        "transcribe" => Ok(Scope::Transcribe),
        "admin" => Ok(Scope::Admin),
        other => Err(format!("unknown scope {other:?} (transcribe, admin)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn scopes_expiry_and_signatures() {
        let auth = Auth::new(Some(b"s3cret"), b"unused", None);
        let t = auth.mint("alice", &[Scope::Transcribe], 60).unwrap();
        let p = auth.check(&bearer(&t), None, Scope::Transcribe).unwrap();
        assert_eq!(p.subject.as_deref(), Some("alice"));
        assert!(auth.check(&HeaderMap::new(), Some(&t), Scope::Transcribe).is_ok(), "query token");
        assert!(matches!(auth.check(&bearer(&t), None, Scope::Admin), Err(AuthError::Scope("admin"))));
        assert!(matches!(auth.check(&HeaderMap::new(), None, Scope::Transcribe), Err(AuthError::Missing)));
        let other = Auth::new(Some(b"other"), b"unused", None);
        let forged = other.mint("mallory", &[Scope::Transcribe, Scope::Admin], 60).unwrap();
        assert!(matches!(auth.check(&bearer(&forged), None, Scope::Admin), Err(AuthError::Invalid(_))));
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: "a".into(), exp: now_s() - 3600, scope: "transcribe".into() },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(matches!(auth.check(&bearer(&expired), None, Scope::Transcribe), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn off_means_open_but_the_static_admin_token_still_guards_admin() {
        let auth = Auth::new(None, b"k", Some("adm".into()));
        assert!(auth.check(&HeaderMap::new(), None, Scope::Transcribe).is_ok());
        assert!(auth.check(&HeaderMap::new(), None, Scope::Admin).is_err());
        assert!(auth.check(&bearer("adm"), None, Scope::Admin).is_ok());
        assert!(auth.check(&bearer("nope"), None, Scope::Admin).is_err());
        assert!(Auth::new(None, b"k", None).check(&HeaderMap::new(), None, Scope::Admin).is_ok());
    }

    #[test]
    fn resume_tokens_are_bound_to_their_key() {
        let a = Auth::new(None, b"shared", None);
        let t = a.resume_token("sess", "ep");
        assert_eq!(a.verify_resume(&t), Some(("sess".into(), "ep".into())));
        assert_eq!(Auth::new(None, b"other", None).verify_resume(&t), None);
        assert_eq!(a.verify_resume("garbage"), None);
    }
}
