//! The accept loop: every connection is served by hyper's HTTP/1.1 server with the limits a
//! public port needs (DESIGN §6):
//!
//! - at most `http.max_connections` connections at once; beyond that new ones wait in the
//!   kernel's accept queue;
//! - a connection that sends nothing within `http.header_read_timeout_seconds`, or does not
//!   then deliver a complete request head within it, is closed — a client dribbling one
//!   header line every few seconds, and an idle keep-alive connection, alike;
//! - request heads are bounded (64 KiB in hyper; the router answers 431 beyond its own
//!   limit); a slow body still meets the router's request timeout;
//! - a plain connection that opens with `GET /metrics` gets a larger buffer, so that hyper
//!   hands the kernel ~1 MB of the exposition per write instead of 64 KB (a quarter fewer CPU
//!   cycles per scrape of a large fleet); at most [`SCRAPE_CONNECTIONS`] have one at once;
//! - TLS handshakes run in the connection's own task with a timeout.
//!
//! On shutdown the loop stops accepting, lets every in-flight request finish, and returns when
//! the last connection has closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head hyper reads (beyond it hyper answers a bare 431), and its buffer
/// on ordinary connections.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// hyper's buffer on a connection that opened with a scrape, which is also what it gathers of
/// a response before writing (the exposition's pieces are shared, not copied into it).
const SCRAPE_BUF_BYTES: usize = 1024 * 1024;
/// At most this many connections have the scrape buffer at once (scrapers are few).
const SCRAPE_CONNECTIONS: usize = 16;
/// hyper refuses more headers than this; the router's own, lower limit answers in JSON.
const MAX_HEADERS: usize = 256;

/// Connection limits (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` (HTTPS when `tls` is set) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let scrapes = Arc::new(Semaphore::new(SCRAPE_CONNECTIONS));
    let acceptor = tls.map(TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when the last one is gone, all have finished.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            stop: stop_rx.clone(),
            scrapes: scrapes.clone(),
            _open: open_tx.clone(),
            _permit: permit,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move { connection.run(stream, acceptor).await });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

const SCRAPE_REQUEST: &[u8] = b"GET /metrics";

/// Whether the first bytes of a connection are a request for `/metrics`.
fn opens_a_scrape(first: &[u8]) -> bool {
    first.len() > SCRAPE_REQUEST.len()
        && first.starts_with(SCRAPE_REQUEST)
        && matches!(first[SCRAPE_REQUEST.len()], b' ' | b'?')
}

/// How a plain connection opens.
enum Opening {
    /// Nothing within the header timeout, or closed at once.
    Nothing,
    /// `GET /metrics`, with one of the scrape buffers.
    Scrape(tokio::sync::OwnedSemaphorePermit),
    Other,
}

/// One accepted connection and what it holds while it lives.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: Limits,
    stop: watch::Receiver<bool>,
    scrapes: Arc<Semaphore>,
    _open: mpsc::Sender<()>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, acceptor: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        match acceptor {
            None => match self.opening(&stream).await {
                Opening::Nothing => {
                    tracing::debug!(peer = %self.peer, "no request within the header timeout");
                }
                Opening::Scrape(permit) => self.http(TokioIo::new(stream), Some(permit)).await,
                Opening::Other => self.http(TokioIo::new(stream), None).await,
            },
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => self.http(TokioIo::new(tls), None).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    /// What the first bytes of a plain connection say, without consuming them.
    async fn opening(&self, stream: &TcpStream) -> Opening {
        let mut head = [0u8; SCRAPE_REQUEST.len() + 1];
        let mut stop = self.stop.clone();
        let stopping = async move { stop.wait_for(|stop| *stop).await.map(|_| ()) };
        let peeked = tokio::select! {
            peeked = tokio::time::timeout(self.limits.header_read_timeout, stream.peek(&mut head)) => peeked,
            _ = stopping => return Opening::Nothing,
        };
        match peeked {
            Err(_) | Ok(Ok(0)) => Opening::Nothing,
            // A short first segment or a read error: hyper serves (or refuses) it as usual.
            Ok(Ok(n)) if opens_a_scrape(&head[..n]) => {
                match self.scrapes.clone().try_acquire_owned() {
                    Ok(permit) => Opening::Scrape(permit),
                    Err(_) => Opening::Other,
                }
            }
            Ok(_) => Opening::Other,
        }
    }

    async fn http<I>(self, io: I, scrape: Option<tokio::sync::OwnedSemaphorePermit>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let peer = self.peer;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(if scrape.is_some() {
                SCRAPE_BUF_BYTES
            } else {
                MAX_HEAD_BYTES
            })
            .max_header_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stop = self.stop.clone();
        // The guard `wait_for` answers is not `Send`: drop it inside this future.
        let stopping = async move { stop.wait_for(|stop| *stop).await.map(|_| ()) };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
            }
            _ = stopping => {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scrape_is_told_from_its_first_bytes() {
        for (first, scrape) in [
            (&b"GET /metrics HTTP/1.1\r\n"[..], true),
            (b"GET /metrics?x=1 HTTP/1.1", true),
            (b"GET /metrics ", true),
            (b"GET /metrics", false),
            (b"GET /metricsx HTTP/1.1", false),
            (b"GET /met", false),
            (b"POST /metrics HTTP/1.1", false),
            (b"GET /healthz HTTP/1.1", false),
            (b"", false),
        ] {
            assert_eq!(super::opens_a_scrape(first), scrape, "{first:?}");
        }
    }
}
