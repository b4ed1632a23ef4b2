//! The gateway's accept loop: hyper's HTTP/1 server with a header-read timeout (a client that
//! opens a socket and sends nothing, or trickles its headers, is cut off), per-address and total
//! connection limits applied before any byte is parsed, and graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::limits::{Guard, Limiter, Refused};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The connection's place under the per-address limit, shared with the WebSocket session the
/// connection may become (which keeps it until the session ends).
pub type ConnPlace = Arc<Guard<IpAddr>>;

pub struct ServerOptions {
    pub header_read_timeout: Duration,
    pub limits: Arc<Limiter<IpAddr>>,
}

/// Serves `app` until `shutdown`; then stops accepting and lets open HTTP exchanges finish
/// (upgraded WebSocket sessions run on and are drained by their own signal).
pub async fn serve(listener: TcpListener, app: Router, opts: ServerOptions, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let closing = Shutdown::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let place = match opts.limits.admit(peer.ip()) {
            Ok(g) => Arc::new(g),
            Err(why) => {
                metrics.connections_refused.inc();
                let detail = match why {
                    Refused::Total => "the server holds its maximum of connections",
                    Refused::PerKey => "too many connections from this address",
                };
                tokio::spawn(async move {
                    let body = format!("{{\"error\":\"{detail}\"}}\n");
                    let resp = format!(
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    // The request head first (a moment, at most 8 KiB): a client answered
                    // before it has sent its request may take the answer for a protocol error
                    // (hyper's client does) instead of a 503. A client that sends nothing is
                    // answered anyway.
                    let _ = tokio::time::timeout(Duration::from_millis(250), async {
                        let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                            match stream.read(&mut buf).await {
                                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                                _ => break,
                            }
                        }
                    })
                    .await;
                    // Answer, close our side, and read what the client still sends for a
                    // moment: closing with its request unread would reset the connection and
                    // could destroy the answer before the client reads it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        stream.write_all(resp.as_bytes()).await?;
                        stream.shutdown().await?;
                        let mut sink = [0u8; 1024];
                        while stream.read(&mut sink).await? > 0 {}
                        Ok::<_, std::io::Error>(())
                    })
                    .await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, place, app.clone(), opts.header_read_timeout, closing.clone()));
    }
    closing.trigger();
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    place: ConnPlace,
    app: Router,
    header_read_timeout: Duration,
    closing: Shutdown,
) {
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(place.clone());
            req
        })
        .service(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::trace!(%peer, "connection ended: {e}");
            }
        }
        _ = closing.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        }
    }
}
