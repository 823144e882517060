//! Listeners: binding, accepting, and stopping with a drain.
//!
//! Owns the listening socket and the set of live connections; each accepted
//! socket gets its own task running a [`conn::Conn`], which hands requests to
//! a [`Service`] (the proxy's gateway, or the management API). Knows nothing
//! of routes or JSON.

pub mod conn;
pub mod write;

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Limits as ConfigLimits;
use crate::gateway::response::Response;
use crate::http1::{Limits, RequestHead};
use crate::stats::Tally;

/// What a listener serves. The connection driver parses, frames and writes;
/// the service decides what to answer.
pub trait Service: Send + Sync + 'static {
    /// What `admit` learned about a request, handed back to `serve`.
    type Route: Send;

    fn limits(&self) -> &ConfigLimits;

    /// A client connection opened or closed (the proxy counts them).
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}

    /// A first look at a request, before its body is read: an error answer
    /// here spares reading the body.
    fn admit(&self, head: &RequestHead) -> Result<(Self::Route, Option<Tally>), Box<Response>>;

    /// Answer an admitted request.
    fn serve<'a>(
        self: &'a Arc<Self>,
        route: Self::Route,
        head: &'a RequestHead,
        body: Bytes,
        tally: Option<Tally>,
    ) -> impl Future<Output = Response> + Send + 'a;
}

/// The protocol limits of the HTTP/1.1 layer, from the config.
pub fn http_limits(l: &ConfigLimits) -> Limits {
    Limits {
        max_head_bytes: l.max_head_bytes,
        max_headers: l.max_headers,
        max_uri_bytes: l.max_uri_bytes,
        max_body_bytes: l.max_body_bytes,
        max_chunk_ext_bytes: l.max_chunk_ext_bytes,
        max_trailer_bytes: l.max_trailer_bytes,
    }
}

/// A running proxy listener.
pub struct Listener {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    live: Arc<AtomicUsize>,
}

impl Listener {
    /// Bind `host:port` and start serving `service`.
    pub async fn start<S: Service>(service: Arc<S>, host: &str, port: u16) -> io::Result<Listener> {
        let listener = bind(host, port).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop_rx) = watch::channel(false);
        let live = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(listener, service, stop_rx, live.clone()));
        Ok(Listener {
            addr,
            shutdown,
            accept: Some(accept),
            live,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Stop accepting and close the port at once; let in-flight requests and
    /// streams finish for up to `drain`. Idle keep-alive connections close
    /// right away. Returns the number of connections still open at the
    /// deadline.
    pub async fn stop(mut self, drain: Duration) -> usize {
        self.close().await;
        self.drain(drain).await
    }

    /// Stop accepting and close the port; the live connections go on.
    pub async fn close(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    /// Wait up to `limit` for the live connections to end.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        while self.live.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.live.load(Relaxed)
    }
}

async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("cannot resolve {host}"),
    );
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Decrements the live-connection count when a connection task ends, however
/// it ends.
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn accept_loop<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    mut stop: watch::Receiver<bool>,
    live: Arc<AtomicUsize>,
) {
    let max = service.limits().max_connections;
    loop {
        // At the connection cap, leave further clients in the kernel's
        // accept queue until a connection ends.
        while live.load(Relaxed) >= max {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors or a reset before accept: back off
                // briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        live.fetch_add(1, Relaxed);
        let guard = LiveGuard(live.clone());
        let conn = conn::Conn::new(stream, service.clone(), stop.clone());
        tokio::spawn(async move {
            conn.run().await;
            drop(guard);
        });
    }
}
