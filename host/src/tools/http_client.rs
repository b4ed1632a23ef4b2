//! The operator tools' HTTP client (`kiki check`, `kiki bench load`, and the tests): one
//! request per connection over hyper's HTTP/1.1 client, so chunked and fixed-length bodies
//! both read right. Plain HTTP only: gateways serve TLS through a proxy, and these tools talk
//! to a gateway's own port, so `https://` is refused with that said.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: https is not supported here; give the gateway's own http:// address (TLS ends at a proxy)")]
    Https(String),
    #[error("{addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("{0}: bad request: {1}")]
    Request(String, String),
    #[error("{addr}: no answer in {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

/// A request's parts besides its target.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Extra headers; a `Host` here replaces the address's.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// GETs `path` from `base` (`http://host:port`, or `host:port`): (status, body).
pub async fn get(base: &str, path: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
    request(base, path, Request { method: "GET", ..Default::default() }, timeout).await
}

/// Sends one request to `base` and reads the whole answer: (status, body as text).
pub async fn request(base: &str, path: &str, req: Request<'_>, timeout: Duration) -> Result<(u16, String), HttpError> {
    if base.starts_with("https://") {
        return Err(HttpError::Https(base.to_string()));
    }
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| HttpError::Connect { addr: addr.clone(), source })?;
        let http = |source| HttpError::Http { addr: addr.clone(), source };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(conn);
        let mut builder = hyper::Request::builder().method(req.method).uri(path);
        if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            builder = builder.header("Host", &addr);
        }
        for (k, v) in req.headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(req.body)))
            .map_err(|e| HttpError::Request(addr.clone(), e.to_string()))?;
        let resp = sender.send_request(request).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout { addr: addr.clone(), timeout })?
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A chunked answer is read whole and decoded (the hand-written client kept the chunk
    /// sizes in the body); https is refused with the reason.
    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_https_is_refused_clearly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        let (status, body) = get(&format!("http://{addr}"), "/metrics", Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "hello world"));
        let err = get("https://gateway.example", "/readyz", Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("https is not supported"), "{err}");
    }
}
