//! Listeners: binding, accepting, and stopping with a drain.
//!
//! A [`Listener`] is one *generation* of workers serving one address, in
//! the manner of nginx's worker processes: each worker is an OS thread with
//! its own current-thread tokio runtime and its own `SO_REUSEPORT` listening
//! socket, so the kernel spreads new connections over the workers and a
//! request is accepted, parsed, proxied and answered on one thread, never
//! waking another. Upstream pools are sharded by worker
//! ([`crate::upstream::pool`]).
//!
//! Each accepted socket gets a task running a [`conn::Conn`], which hands
//! requests to a [`Service`] (the proxy's gateway, or the management API).
//! This module knows nothing of routes or JSON.
//!
//! # Lifecycle
//!
//! - A reload on the same address *adopts* the running generation's sockets
//!   ([`Listener::adopt`]): the new workers accept from the very sockets the
//!   old ones stop accepting from, so the port is never closed and no
//!   connection waiting in a kernel accept queue is lost (when the new
//!   generation has fewer workers, the sockets it leaves are closed, and a
//!   connection that reached one of them in the last instant is reset).
//! - [`Listener::close`] stops accepting; connections that have not sent a
//!   request yet still get their first one answered, idle keep-alive
//!   connections close, in-flight requests and streams go on.
//! - Each worker then drains for the config's `drainTimeout`; at that
//!   deadline every open stream gets a `server_shutting_down` error event
//!   and every request still waiting for its answer a 503, then the worker
//!   exits. [`Listener::wait`] awaits every worker of the generation.

pub mod conn;
pub mod write;

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::api::ApiError;
use crate::api::{EventSource, NoStream, Response};
use crate::config::Limits as ConfigLimits;
use crate::http1::{Limits, RequestHead};
use crate::stats::Tally;

/// The kernel's accept queue per worker socket: a burst of new connections
/// waits here. The kernel caps it at `net.core.somaxconn` (4096 by default
/// since Linux 5.4), so this asks for that cap, as Go's listeners and
/// HAProxy (its `backlog` defaults to `maxconn`) do. A connection that finds
/// the queue full has its SYN dropped and retried by the client's kernel
/// after 1 s: 10 000 clients connecting at once overflowed a queue of 1024
/// (BENCHMARKS.md round four).
const BACKLOG: i32 = 65_535;
/// After the drain deadline: how long connections get to write their
/// `server_shutting_down` answer before the worker's runtime is dropped.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// Over `maxConnections`: how long a refused connection is kept open after
/// its 503, so that a request it already sent does not turn the close into
/// a reset that would destroy the answer (RFC 9112 §9.6).
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// Refusals (503 over `maxConnections`) a worker lets linger at once.
const MAX_REFUSING: usize = 64;
/// The period of each worker's [`tick`].
const TICK: Duration = Duration::from_secs(1);

/// What a listener serves. The connection driver parses, frames and writes;
/// the service decides what to answer.
/// What [`Service::admit`] decides: the request's route and statistics
/// record, or an answer at once (the body is then not read).
pub type Admission<R, S> = Result<(R, Option<Tally>), Box<Response<S>>>;

pub trait Service: Send + Sync + 'static {
    /// What `admit` learned about a request, handed back to `serve`.
    type Route: Send;
    /// The streams this service answers with ([`NoStream`] if none).
    type Stream: EventSource;

    fn limits(&self) -> &ConfigLimits;

    /// A client connection opened or closed (the proxy counts them).
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}

    /// The answer to `err`, a request the connection failed to read (a
    /// malformed or oversized head or body, a slow client), for the request
    /// `path` when its request line could be read (else empty): by default
    /// OpenAI's error shape; a service may answer in its route's dialect.
    fn error_answer(&self, path: &[u8], err: &ApiError) -> Response<Self::Stream> {
        let _ = path;
        Response::error(err)
    }

    /// A first look at a request, before its body is read: an error answer
    /// here spares reading the body.
    fn admit(&self, head: &RequestHead) -> Admission<Self::Route, Self::Stream>;

    /// Answer an admitted request.
    fn serve<'a>(
        self: &'a Arc<Self>,
        route: Self::Route,
        head: &'a RequestHead,
        body: Bytes,
        tally: Option<Tally>,
    ) -> impl Future<Output = Response<Self::Stream>> + Send + 'a;
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

/// The phases of a generation, broadcast to its workers and connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Stop accepting; finish what is in flight.
    Draining,
    /// The drain deadline passed: end every answer now, with an error.
    Deadline,
}

/// Resolves once `rx` is at `phase` or past it. A phase whose sender is
/// gone never moves again, so that wait never ends.
pub(crate) async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    if rx.wait_for(|p| *p >= phase).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One generation of workers on one address. See the module docs.
pub struct Listener {
    addr: SocketAddr,
    /// Our handles on the workers' listening sockets, kept so that a reload
    /// can adopt them; dropped by `close`.
    sockets: Vec<std::net::TcpListener>,
    phase: watch::Sender<Phase>,
    /// Workers still running; 0 once the generation is gone.
    running: watch::Receiver<usize>,
    /// Workers still holding their listening socket.
    accepting: watch::Receiver<usize>,
    /// Open connections over all workers.
    live: Arc<AtomicUsize>,
    /// Connections still open at a worker's drain deadline.
    cut: Arc<AtomicUsize>,
}

impl Listener {
    /// Bind `host:port` with `workers` `SO_REUSEPORT` sockets (port 0: the
    /// OS picks one, shared by all) and start a worker on each.
    ///
    /// Errors: the host does not resolve, the address is taken (also by
    /// another process that itself uses `SO_REUSEPORT`: the group is not
    /// joined), or a worker thread cannot start.
    pub async fn start<S: Service>(
        service: Arc<S>,
        host: &str,
        port: u16,
        workers: usize,
    ) -> io::Result<Listener> {
        let addrs = resolve(host, port)?;
        let mut last = io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("cannot resolve {host}"),
        );
        for addr in addrs {
            match bind_group(addr, workers.max(1), Vec::new()) {
                Ok(sockets) => return Self::spawn(service, sockets),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A new generation serving `service` on the sockets of `running`
    /// (a reload on the same address): the port stays open throughout.
    /// With more workers than `running` has, more sockets join its
    /// `SO_REUSEPORT` group; with fewer, the extra ones are left to
    /// `running`, which closes them when it is closed.
    pub async fn adopt<S: Service>(
        service: Arc<S>,
        running: &Listener,
        workers: usize,
    ) -> io::Result<Listener> {
        let workers = workers.max(1);
        let shared = running
            .sockets
            .iter()
            .take(workers)
            .map(|s| s.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let sockets = bind_group(running.addr, workers, shared)?;
        Self::spawn(service, sockets)
    }

    fn spawn<S: Service>(service: Arc<S>, sockets: Vec<socket2::Socket>) -> io::Result<Listener> {
        let sockets: Vec<std::net::TcpListener> = sockets.into_iter().map(Into::into).collect();
        let addr = sockets[0].local_addr()?;
        let (phase, phase_rx) = watch::channel(Phase::Serving);
        let (running_tx, running) = watch::channel(0usize);
        let running_tx = Arc::new(running_tx);
        let (accepting_tx, accepting) = watch::channel(0usize);
        let accepting_tx = Arc::new(accepting_tx);
        let live = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let mut listener = Listener {
            addr,
            sockets: Vec::new(),
            phase,
            running,
            accepting,
            live: live.clone(),
            cut: cut.clone(),
        };
        let mut kept = Vec::with_capacity(sockets.len());
        for (index, socket) in sockets.into_iter().enumerate() {
            kept.push(socket.try_clone()?);
            let worker = Worker {
                index,
                service: service.clone(),
                phase: phase_rx.clone(),
                live: live.clone(),
                cut: cut.clone(),
                accepting: accepting_tx.clone(),
                refusing: Arc::new(AtomicUsize::new(0)),
            };
            running_tx.send_modify(|n| *n += 1);
            accepting_tx.send_modify(|n| *n += 1);
            let done = running_tx.clone();
            let started = std::thread::Builder::new()
                .name(format!("chat2api-w{index}"))
                .spawn(move || {
                    worker.run(socket);
                    done.send_modify(|n| *n -= 1);
                });
            if let Err(e) = started {
                running_tx.send_modify(|n| *n -= 1);
                accepting_tx.send_modify(|n| *n -= 1);
                let _ = listener.phase.send(Phase::Deadline);
                return Err(e);
            }
        }
        listener.sockets = kept;
        Ok(listener)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Whether every worker of this generation has exited.
    pub fn finished(&self) -> bool {
        *self.running.borrow() == 0
    }

    /// Stop accepting, and return once no worker of this generation will
    /// accept another connection: the sockets are closed unless another
    /// generation adopted them. The workers drain in the background (see
    /// the module docs).
    pub async fn close(&mut self) {
        self.signal_close();
        let mut accepting = self.accepting.clone();
        let _ = accepting.wait_for(|n| *n == 0).await;
    }

    fn signal_close(&mut self) {
        self.phase.send_if_modified(|p| {
            let changed = *p == Phase::Serving;
            *p = (*p).max(Phase::Draining);
            changed
        });
        self.sockets.clear();
    }

    /// Wait until every worker has exited: at most the drain timeout plus a
    /// short grace once `close` was called. Returns the connections that
    /// were still open at the drain deadline (and were told so).
    pub async fn wait(&self) -> usize {
        self.waiter().wait().await
    }

    /// A handle that waits for this generation without borrowing it.
    pub fn waiter(&self) -> Waiter {
        Waiter {
            running: self.running.clone(),
            cut: self.cut.clone(),
        }
    }

    /// `close`, then `wait`.
    pub async fn stop(mut self) -> usize {
        self.close().await;
        self.wait().await
    }
}

/// Waits for one generation's workers to exit (see [`Listener::wait`]).
pub struct Waiter {
    running: watch::Receiver<usize>,
    cut: Arc<AtomicUsize>,
}

impl Waiter {
    pub async fn wait(mut self) -> usize {
        let _ = self.running.wait_for(|n| *n == 0).await;
        self.cut.load(Relaxed)
    }
}

impl Drop for Listener {
    /// A listener dropped without `close` (a test's gateway going out of
    /// scope) still stops its workers.
    fn drop(&mut self) {
        self.signal_close();
    }
}

fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// `count` listening sockets on `addr` in one `SO_REUSEPORT` group, the
/// first ones taken from `shared` (already in the group).
///
/// Joining a group needs `SO_REUSEPORT` on both sides, so a second gateway
/// (or anything else using the option) given the same port would share its
/// traffic instead of being told the port is taken. So a group on a given
/// port first binds a probe without `SO_REUSEPORT` (`SO_REUSEADDR` still
/// lets it pass `TIME_WAIT`), which fails while anything listens there.
///
/// Port 0 takes no probe: the group's first socket asks the OS for the
/// port itself and keeps it. A probe there would have to be dropped before
/// the group binds, leaving an OS-picked port free for a moment, in which
/// another process picking a port (another gateway starting at once) can
/// get the same one and then join this group. The two share connections,
/// and when that process exits, connections routed to its closing sockets
/// are refused: a gateway that had printed its address refusing a
/// connection. The OS never picks a port that any socket holds.
fn bind_group(
    addr: SocketAddr,
    count: usize,
    shared: Vec<std::net::TcpListener>,
) -> io::Result<Vec<socket2::Socket>> {
    let sockets: Vec<socket2::Socket> = shared.into_iter().map(Into::into).collect();
    if sockets.is_empty() && addr.port() != 0 {
        let probe = new_socket(addr, false)?;
        probe.bind(&addr.into())?;
    }
    join_group(addr, count, sockets)
}

/// Binds and listens `SO_REUSEPORT` sockets on `addr` until `sockets` holds
/// `count` of them.
fn join_group(
    mut addr: SocketAddr,
    count: usize,
    mut sockets: Vec<socket2::Socket>,
) -> io::Result<Vec<socket2::Socket>> {
    while sockets.len() < count {
        let s = new_socket(addr, true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        if addr.port() == 0 {
            addr = s.local_addr()?.as_socket().unwrap_or(addr);
        }
        sockets.push(s);
    }
    Ok(sockets)
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// One worker thread: its runtime, its socket, its connections.
struct Worker<S: Service> {
    index: usize,
    service: Arc<S>,
    phase: watch::Receiver<Phase>,
    live: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
    accepting: Arc<watch::Sender<usize>>,
    /// Connections over the cap being refused right now.
    refusing: Arc<AtomicUsize>,
}

/// This worker's open connections, and a wake-up when the last one ends.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    none_left: Notify,
}

/// Counts a connection in `live` and in its worker's `Open` while it lives,
/// however its task ends.
struct ConnGuard {
    live: Arc<AtomicUsize>,
    open: Arc<Open>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Relaxed);
        if self.open.count.fetch_sub(1, Relaxed) == 1 {
            self.open.none_left.notify_one();
        }
    }
}

impl<S: Service> Worker<S> {
    fn run(self, socket: std::net::TcpListener) {
        crate::upstream::pool::set_thread_shard(self.index);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("chat2api: worker {}: cannot start: {e}", self.index);
                self.accepting.send_modify(|n| *n -= 1);
                return;
            }
        };
        runtime.block_on(self.serve(socket));
        // Cancel whatever survived the grace period; a DNS lookup still
        // running on the blocking pool is not waited for past it.
        runtime.shutdown_timeout(DEADLINE_GRACE);
    }

    async fn serve(mut self, socket: std::net::TcpListener) {
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("chat2api: worker {}: cannot listen: {e}", self.index);
                self.accepting.send_modify(|n| *n -= 1);
                return;
            }
        };
        // The phase this worker's connections watch: the generation's,
        // until this worker's own drain deadline moves it on.
        let (local, _) = watch::channel(Phase::Serving);
        let open = Arc::new(Open::default());
        let max = self.service.limits().max_connections;
        let ticking = tokio::spawn(tick());
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = reached(&mut self.phase, Phase::Draining) => break,
            };
            self.handle(accepted, max, &open, &local).await;
        }
        local.send_replace(Phase::Draining);
        // Connections already in this socket's queue were accepted by the
        // kernel: serve them too (a reload's new generation shares the
        // socket and would, but after a stop nobody else will).
        while let Ok(Ok(accepted)) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
            self.handle(Ok(accepted), max, &open, &local).await;
        }
        drop(listener);
        self.accepting.send_modify(|n| *n -= 1);
        self.drain(&open, &local).await;
        ticking.abort();
        crate::stats::access::flush();
    }

    async fn handle(
        &self,
        accepted: io::Result<(TcpStream, SocketAddr)>,
        max: usize,
        open: &Arc<Open>,
        phase: &watch::Sender<Phase>,
    ) {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or a reset before accept: back off
                // briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                return;
            }
        };
        if self.live.load(Relaxed) >= max {
            // Each refusal lingers a moment; a flood past the cap is cut at
            // once rather than let it hold file descriptors.
            if self.refusing.load(Relaxed) < MAX_REFUSING {
                self.refusing.fetch_add(1, Relaxed);
                let refusing = self.refusing.clone();
                tokio::spawn(async move {
                    refuse(stream).await;
                    refusing.fetch_sub(1, Relaxed);
                });
            }
            return;
        }
        self.live.fetch_add(1, Relaxed);
        open.count.fetch_add(1, Relaxed);
        let guard = ConnGuard {
            live: self.live.clone(),
            open: open.clone(),
        };
        let conn = conn::Conn::new(stream, peer, self.service.clone(), phase.subscribe());
        tokio::spawn(async move {
            conn.run().await;
            drop(guard);
        });
    }

    /// Wait for this worker's connections to end, up to the drain timeout;
    /// then tell the rest the deadline passed and give them a moment to say
    /// so to their clients.
    async fn drain(&mut self, open: &Open, local: &watch::Sender<Phase>) {
        let limit = self.service.limits().drain_timeout;
        let all_closed = async {
            loop {
                let notified = open.none_left.notified();
                if open.count.load(Relaxed) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::pin!(all_closed);
        tokio::select! {
            _ = &mut all_closed => return,
            _ = tokio::time::sleep(limit) => {}
            // A generation that failed to start all its workers ends at once.
            _ = reached(&mut self.phase, Phase::Deadline) => {}
        }
        self.cut.fetch_add(open.count.load(Relaxed), Relaxed);
        local.send_replace(Phase::Deadline);
        let _ = tokio::time::timeout(DEADLINE_GRACE, all_closed).await;
    }
}

/// Keeps a timer due within [`TICK`] in this worker's timer wheel, always.
///
/// tokio's time driver wakes its own thread (a write to an eventfd, and one
/// more `epoll_wait` round) whenever a timer is registered that is due
/// sooner than the driver's next planned wake-up; with no timer pending,
/// every per-request deadline (keep-alive, upstream first byte, ...) would
/// be such a timer. With this tick pending, those deadlines, all longer than
/// the tick, are entered into the wheel without waking anything: one
/// wake-up per second per worker instead of one per request.
///
/// The tick also writes out the access log lines this worker gathered.
async fn tick() {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        crate::stats::access::flush();
    }
}

/// A prompt 503 for a connection over `maxConnections`, then close.
async fn refuse(mut stream: TcpStream) {
    let resp: Response<NoStream> = Response::error(&ApiError::Overloaded);
    let mut head = bytes::BytesMut::new();
    let body = write::body_parts(&resp.body).to_vec();
    let len: usize = body.iter().map(Bytes::len).sum();
    write::encode_head(&mut head, &resp, write::Framing::Length(len as u64), true);
    for b in body {
        head.extend_from_slice(&b);
    }
    if stream.write_all(&head).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What another gateway starting on `addr` does: a probe, then its own
    /// `SO_REUSEPORT` group.
    fn another_gateway(addr: SocketAddr) -> io::Result<Vec<socket2::Socket>> {
        bind_group(addr, 1, Vec::new())
    }

    /// Connections beyond the old queue of 1024 wait in the kernel for a
    /// worker to accept them, not in SYN retries: 1500 connect at once to
    /// a socket nobody accepts on (or as many as `somaxconn` allows).
    #[test]
    fn a_burst_of_connections_waits_in_the_accept_queue() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        // The test's own descriptors: one per client socket.
        let nofile = rlimit::increase_nofile_limit(2048).unwrap() as usize;
        let burst = 1500.min(somaxconn).min(nofile.saturating_sub(256));
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 1, Vec::new()).unwrap();
        let addr: SocketAddr = group[0].local_addr().unwrap().as_socket().unwrap();
        let clients: Vec<std::net::TcpStream> = (0..burst)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} of {burst}: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), burst);
    }

    /// A group on port 0 keeps the port the OS picked from its first bind:
    /// no other gateway joins it, then or later, and many groups formed at
    /// once on port 0 each get a port of their own.
    #[test]
    fn groups_on_port_0_are_never_shared() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2, Vec::new()).unwrap();
        let addr: SocketAddr = group[0].local_addr().unwrap().as_socket().unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(group[1].local_addr().unwrap().as_socket(), Some(addr));
        assert!(another_gateway(addr).is_err(), "the port is the group's");
        std::net::TcpStream::connect(addr).expect("the group accepts");

        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..32)
                        .map(|_| bind_group("127.0.0.1:0".parse().unwrap(), 2, Vec::new()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let groups: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let mut ports: Vec<u16> = groups
            .iter()
            .map(|g| g[0].local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            groups.len(),
            "every group has a port of its own"
        );
    }
}
