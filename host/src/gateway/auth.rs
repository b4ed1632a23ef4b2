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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default)]
    scope: String,
    /// Rooms the subject may share with other subjects (`"*"`: any). Without a grant, a room
    /// is the subject's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rooms: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResumeClaims {
    sid: String,
    ep: String,
    /// The access token's subject that opened the session: only it may resume the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
}

/// Who a request is from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject; `None` when auth is off.
    pub subject: Option<String>,
    /// Rooms the token grants by name.
    pub rooms: Vec<String>,
}

impl Principal {
    /// The Redis name of `room` for this principal: rooms the token grants are shared by every
    /// subject granted them; any other room is the subject's own, so that nobody can listen in
    /// on a room by guessing its name.
    pub fn room_name(&self, room: &str) -> String {
        match &self.subject {
            None => room.to_string(),
            Some(_) if self.rooms.iter().any(|r| r == room || r == "*") => format!("g/{room}"),
            Some(sub) => format!("u/{sub}/{room}"),
        }
    }
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_S: u64 = 5;

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
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
            .map(str::trim);
        let token = bearer.or(query_token).filter(|t| !t.is_empty());
        if scope == Scope::Admin
            && let (Some(static_token), Some(given)) = (&self.admin_token, token)
            && constant_time_eq(static_token.as_bytes(), given.as_bytes())
        {
            return Ok(Principal { subject: Some("admin-token".into()), rooms: Vec::new() });
        }
        let Some(keys) = &self.access else {
            return match (&self.admin_token, scope) {
                (Some(_), Scope::Admin) => Err(if token.is_some() {
                    AuthError::Invalid("wrong admin token".into())
                } else {
                    AuthError::Missing
                }),
                _ => Ok(Principal::default()),
            };
        };
        let token = token.ok_or(AuthError::Missing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if !claims.scope.split_whitespace().any(|s| s == scope.name()) {
            return Err(AuthError::Scope(scope.name()));
        }
        Ok(Principal { subject: Some(claims.sub), rooms: claims.rooms })
    }

    /// Signs an access token (`kiki token`, tests).
    pub fn mint(&self, subject: &str, scopes: &[Scope], ttl_s: u64) -> Result<String, AuthError> {
        self.mint_with_rooms(subject, scopes, ttl_s, &[])
    }

    /// Signs an access token that also grants `rooms` by name.
    pub fn mint_with_rooms(
        &self,
        subject: &str,
        scopes: &[Scope],
        ttl_s: u64,
        rooms: &[String],
    ) -> Result<String, AuthError> {
        let keys =
            self.access.as_ref().ok_or_else(|| AuthError::Sign("no gateway.auth_secret is configured".into()))?;
        if ttl_s == 0 {
            return Err(AuthError::Sign("a token's lifetime must be at least 1 s".into()));
        }
        let claims = Claims {
            sub: subject.to_string(),
            exp: now_s() + ttl_s,
            nbf: None,
            scope: scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(" "),
            rooms: rooms.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// The token a client resumes `session` with, bound to the subject that opened it. Its
    /// lifetime is the session's replay window, which the gateway checks, so the token itself
    /// does not expire.
    pub fn resume_token(&self, session: &str, epoch: &str, subject: Option<&str>) -> String {
        let claims = ResumeClaims { sid: session.to_string(), ep: epoch.to_string(), sub: subject.map(str::to_string) };
        // HS256 over two short strings cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.resume.encoding).unwrap_or_default()
    }

    /// The (session, epoch) a resume token names, if it is genuine and `subject` (the
    /// resuming connection's) opened the session.
    pub fn verify_resume(&self, token: &str, subject: Option<&str>) -> Option<(String, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = false;
        let c = jsonwebtoken::decode::<ResumeClaims>(token, &self.resume.decoding, &validation).ok()?.claims;
        (c.sub.as_deref() == subject).then_some((c.sid, c.ep))
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
            &Claims { sub: "a".into(), exp: now_s() - 3600, nbf: None, scope: "transcribe".into(), rooms: Vec::new() },
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
        let t = a.resume_token("sess", "ep", None);
        assert_eq!(a.verify_resume(&t, None), Some(("sess".into(), "ep".into())));
        assert_eq!(Auth::new(None, b"other", None).verify_resume(&t, None), None);
        assert_eq!(a.verify_resume("garbage", None), None);
        let alice = a.resume_token("sess", "ep", Some("alice"));
        assert_eq!(a.verify_resume(&alice, Some("alice")), Some(("sess".into(), "ep".into())));
        assert_eq!(a.verify_resume(&alice, Some("bob")), None, "another subject cannot take the session over");
        assert_eq!(a.verify_resume(&alice, None), None);
    }

    #[test]
    fn rooms_are_the_subjects_own_unless_granted() {
        let auth = Auth::new(Some(b"s3cret"), b"unused", None);
        let check = |t: &str| auth.check(&bearer(t), None, Scope::Transcribe).unwrap();
        let alice = check(&auth.mint("alice", &[Scope::Transcribe], 60).unwrap());
        let bob = check(&auth.mint("bob", &[Scope::Transcribe], 60).unwrap());
        assert_ne!(alice.room_name("standup"), bob.room_name("standup"));
        let granted =
            |sub: &str| check(&auth.mint_with_rooms(sub, &[Scope::Transcribe], 60, &["standup".into()]).unwrap());
        assert_eq!(granted("alice").room_name("standup"), granted("bob").room_name("standup"));
        assert_ne!(granted("alice").room_name("other"), granted("bob").room_name("other"));
        assert_eq!(Principal::default().room_name("standup"), "standup", "auth off");
    }

    #[test]
    fn bearer_is_case_insensitive_and_nbf_and_ttl_are_checked() {
        let auth = Auth::new(Some(b"s3cret"), b"unused", None);
        let t = auth.mint("alice", &[Scope::Transcribe], 60).unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("bearer {t}").parse().unwrap());
        assert!(auth.check(&h, None, Scope::Transcribe).is_ok());
        assert!(auth.mint("alice", &[Scope::Transcribe], 0).is_err(), "a token that expires at once");
        let future = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "a".into(),
                exp: now_s() + 7200,
                nbf: Some(now_s() + 3600),
                scope: "transcribe".into(),
                rooms: Vec::new(),
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(matches!(auth.check(&bearer(&future), None, Scope::Transcribe), Err(AuthError::Invalid(_))));
    }
}
