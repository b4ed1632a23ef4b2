//! A minimal HTTP/1.1 GET for the operator tools (`kiki check`, `kiki bench load`) talking to
//! a gateway: plain TCP, `Connection: close`, no dependencies beyond tokio.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `base` (`http://host:port`, or `host:port`): (status, body).
pub async fn get(base: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}: no answer in {timeout:?}"))
    })??;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}
