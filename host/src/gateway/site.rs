//! Cross-site protection for every endpoint: the `Host` and `Origin` checks, and the rule that
//! state-changing admin calls need a token or a content type no HTML form or "simple"
//! cross-site request can send.
//!
//! Loopback-only serving is not enough on its own: a hostile page open in a browser on the same
//! machine can open WebSockets to `127.0.0.1` (browsers do not apply CORS to them), POST simple
//! requests, and read responses through DNS rebinding (its own name resolving to 127.0.0.1).
//! Each of those carries a `Host` or an `Origin` that is not ours.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;

/// Which hosts and origins the gateway serves.
#[derive(Debug, Clone)]
pub struct SitePolicy {
    /// Allowed host names, lower case; `None`: any.
    hosts: Option<Vec<String>>,
    /// Allowed foreign origins, lower case, as `scheme://host[:port]`; `"*"` allows any.
    origins: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("host {0:?} is not served here (gateway.allowed_hosts)")]
    Host(String),
    #[error("requests from origin {0:?} are not allowed (gateway.allowed_origins)")]
    Origin(String),
    #[error(
        "admin calls without a token need a non-form Content-Type (application/json or \
         application/octet-stream), so that no cross-site form can make them"
    )]
    SimpleAdminRequest,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl SitePolicy {
    pub fn from_config(cfg: &Config) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>();
        let hosts = match &cfg.gateway.allowed_hosts {
            Some(list) if list.iter().any(|h| h == "*") => None,
            Some(list) => Some(lower(list)),
            None if cfg.listen.ip().is_loopback() => Some(LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect()),
            None => None,
        };
        Self { hosts, origins: lower(&cfg.gateway.allowed_origins) }
    }

    /// Checks one request's headers. `has_token`: it carries credentials of its own
    /// (an `Authorization` header or a `token` query parameter).
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap, has_token: bool) -> Result<(), SiteError> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if let Some(allowed) = &self.hosts
            && !host.is_empty()
        {
            let name = host_name(host);
            let loopback_ip = name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            let listed = allowed.contains(&name) || (loopback_ip && allowed.iter().any(|a| a == "127.0.0.1"));
            if !listed {
                return Err(SiteError::Host(truncate(host)));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
            let same = origin_authority(&origin).is_some_and(|a| a == host.to_ascii_lowercase());
            let listed = self.origins.iter().any(|o| o == "*" || *o == origin);
            if !same && !listed {
                return Err(SiteError::Origin(truncate(&origin)));
            }
        }
        let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state && path.starts_with("/admin/") && !has_token && is_simple(headers) {
            return Err(SiteError::SimpleAdminRequest);
        }
        Ok(())
    }
}

/// The middleware: 403 with the reason for a request the policy refuses.
pub async fn guard(State(policy): State<Arc<SitePolicy>>, req: Request, next: Next) -> Response {
    let has_token = req.headers().contains_key(header::AUTHORIZATION)
        || req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    if let Err(e) = policy.check(req.method(), req.uri().path(), req.headers(), has_token) {
        tracing::debug!("refused a request: {e}");
        return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": e.to_string()}))).into_response();
    }
    next.run(req).await
}

/// The name part of a `Host` header: `[::1]:8080` → `::1`, `Localhost:80` → `localhost`.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, port)| if port.chars().all(|c| c.is_ascii_digit()) { n } else { host })
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `https://a.example:8443` → `a.example:8443`; `None` for `null` and other opaque origins.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.trim_end_matches('/'))
}

/// Whether a browser could send this request cross-site without a preflight (the Fetch
/// standard's CORS-safelisted content types, or none at all).
fn is_simple(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else { return true };
    let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "" | "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn loopback() -> SitePolicy {
        SitePolicy::from_config(&Config::default())
    }

    #[test]
    fn hosts_default_to_loopback_names_on_a_loopback_listen() {
        let p = loopback();
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:80", "[::1]:8080", "127.0.0.2:1"] {
            assert_eq!(p.check(&Method::GET, "/", &headers(&[("host", ok)]), false), Ok(()), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "localhost.evil.example", "10.0.0.5:8080"] {
            assert!(matches!(p.check(&Method::GET, "/", &headers(&[("host", bad)]), false), Err(SiteError::Host(_))));
        }
        let mut cfg = Config::default();
        cfg.gateway.allowed_hosts = Some(vec!["asr.example".into()]);
        let p = SitePolicy::from_config(&cfg);
        assert_eq!(p.check(&Method::GET, "/", &headers(&[("host", "ASR.example:443")]), false), Ok(()));
        assert!(p.check(&Method::GET, "/", &headers(&[("host", "localhost")]), false).is_err());
        cfg.gateway.allowed_hosts = Some(vec!["*".into()]);
        assert_eq!(SitePolicy::from_config(&cfg).check(&Method::GET, "/", &headers(&[("host", "x")]), false), Ok(()));
    }

    #[test]
    fn origins_must_be_our_own_or_listed() {
        let p = loopback();
        let same = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(p.check(&Method::GET, "/ws", &same, false), Ok(()));
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(p.check(&Method::GET, "/ws", &none, false), Ok(()), "native clients send no Origin");
        for bad in ["https://evil.example", "null", "http://127.0.0.1:9999", "http://localhost:8080"] {
            let h = headers(&[("host", "127.0.0.1:8080"), ("origin", bad)]);
            assert!(matches!(p.check(&Method::GET, "/ws", &h, false), Err(SiteError::Origin(_))), "{bad}");
        }
        let mut cfg = Config::default();
        cfg.gateway.allowed_origins = vec!["https://App.example".into()];
        let h = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://app.example")]);
        assert_eq!(SitePolicy::from_config(&cfg).check(&Method::GET, "/ws", &h, false), Ok(()));
    }

    #[test]
    fn admin_changes_need_a_token_or_a_non_form_content_type() {
        let p = loopback();
        let post = |ct: Option<&str>, token| {
            let mut h = headers(&[("host", "localhost:8080")]);
            if let Some(ct) = ct {
                h.insert("content-type", ct.parse().unwrap());
            }
            p.check(&Method::POST, "/admin/plugins/segmenter/activate", &h, token)
        };
        assert_eq!(post(None, false), Err(SiteError::SimpleAdminRequest));
        assert_eq!(post(Some("text/plain;charset=UTF-8"), false), Err(SiteError::SimpleAdminRequest));
        assert_eq!(post(Some("application/x-www-form-urlencoded"), false), Err(SiteError::SimpleAdminRequest));
        assert_eq!(post(Some("application/json"), false), Ok(()));
        assert_eq!(post(None, true), Ok(()));
        let get = p.check(&Method::GET, "/admin/plugins", &headers(&[("host", "localhost")]), false);
        assert_eq!(get, Ok(()), "reads are guarded by Host and Origin, not by content type");
    }
}
