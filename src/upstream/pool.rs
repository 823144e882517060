//! The idle-connection pool of one upstream (one origin), and its cap on
//! open connections.
//!
//! Owns the idle set: which connections wait for reuse, since when, and
//! how many; and, when the origin is capped (`limits.upstreamMaxConns`), how
//! many connections are open and which requests queue for one. It must not
//! open, read or write connections, nor decide whether a response allowed
//! reuse — the client checks a connection in only after a complete,
//! keep-alive exchange, and the caller supplies the health probe run on
//! checkout.
//!
//! # Design: sharded by worker thread
//!
//! pingora keeps a lock-free hot queue per upstream. We get the same
//! property — no contended lock on the request path — with less machinery:
//! the idle set is split into one small `Mutex<VecDeque>` per shard, and
//! every proxy worker (`crate::server`) owns the shard of its index
//! ([`set_thread_shard`]); other threads get one round-robin. Each worker
//! locks only its own shard, for one push or pop, so the mutex is never
//! contended (an uncontended `std` mutex is one atomic swap each way).
//!
//! A worker never takes a connection from another shard: each worker has
//! its own runtime, and a socket stays registered with the runtime that
//! opened it, so a borrowed one would be driven by another thread and die
//! with that worker. The idle limit is still enforced per origin.
//!
//! Each shard is LIFO: checkout takes the most recently used connection
//! (warmest, least likely to have been closed by the server's keep-alive
//! timer), and the oldest sit at the front, where check-in evicts them when
//! the pool is full and drops them once they are past the idle timeout.
//!
//! # The cap: nginx's `max_conns` with a `queue`, per worker
//!
//! A capped origin gives each worker's shard a share of the cap
//! (`max_conns / workers`, the remainder to the first workers, at least
//! one each) as a [`Semaphore`] with a permit per connection that worker may
//! have open, idle or busy; each connection holds its permit until it
//! closes ([`Slot::Open`]). A request that finds neither an idle connection
//! of its worker nor a free permit queues, up to the queue timeout, for
//! whichever comes first: a connection checked in to its worker's shard
//! (handed over through the shard's [`Notify`]), or a permit, freed when
//! one of its worker's connections closes. A worker's requests are served
//! in arrival order: while some queue, a new one queues behind them
//! instead of taking what was checked in or freed for them, and each keeps
//! its place in the semaphore's first-in, first-out queue. A thread that is
//! no worker shares a worker's permits, so the cap holds whoever sends.
//!
//! Shares per worker are what nginx does without a shared zone. One
//! semaphore for the whole origin was tried first: a worker's connections
//! cannot serve another worker's requests, so a worker with no queue of its
//! own had to close a connection it checked in whenever another worker
//! queued, and under a steady burst (1000 client connections, cap 256) the
//! upstream accepted 2526 connections in 5 s: the churn the cap is there
//! to prevent (BENCHMARKS.md). With shares no connection is ever closed to
//! make room, and the lock a request takes stays its own worker's. The cost
//! is balance: a worker whose clients are busier waits for its share while
//! another's permits are free, which `SO_REUSEPORT`'s spread of client
//! connections keeps small. An uncapped origin (the default) never touches
//! a semaphore.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Shards per pool: one for each worker a config may start, so that no two
/// workers share one.
const SHARDS: usize = crate::config::MAX_WORKERS;

/// Hands out thread shard numbers round-robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number, reduced modulo each pool's shard count.
    static THREAD_SHARD: std::cell::Cell<usize> =
        std::cell::Cell::new(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
}

/// Give the calling thread shard `index` in every pool (a proxy worker
/// calls this with its worker index before it opens any connection).
pub fn set_thread_shard(index: usize) {
    THREAD_SHARD.with(|n| n.set(index));
}

struct Entry<T> {
    conn: T,
    idle_since: Instant,
}

/// One worker's part of the pool.
struct Shard<T> {
    state: Mutex<ShardState<T>>,
    /// Wakes a request of this shard queued at the cap when a connection is
    /// checked in here.
    checked_in: Notify,
    /// This worker's share of the cap, one permit per connection it may
    /// have open; `None` when the origin is uncapped.
    permits: Option<Arc<Semaphore>>,
}

struct ShardState<T> {
    /// Oldest first.
    idle: VecDeque<Entry<T>>,
    /// Requests of this shard queued at the cap.
    queued: usize,
}

/// The cap on one origin's open connections. See the module docs.
struct Cap {
    max_conns: usize,
    /// Requests queued at the cap, in all shards (a statistic: `Relaxed`).
    queued: AtomicUsize,
    queue_timeout: Duration,
}

/// A connection's place under its origin's cap: kept with the connection
/// for as long as it is open, and given back when it is dropped.
pub type Permit = OwnedSemaphorePermit;

/// What [`Pool::slot`] found for a request.
#[derive(Debug)]
pub enum Slot<T> {
    /// An idle connection of this worker's shard, checked out.
    Idle(T),
    /// Room to open a connection. When the origin is capped the permit must
    /// live as long as the connection opened with it.
    Open(Option<Permit>),
}

/// The request's worker stayed at its share of the origin's cap for the
/// whole queue timeout: no connection of its worker came to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTimeout;

/// Idle connections of one upstream, and its cap. See the module docs.
pub struct Pool<T> {
    shards: Box<[Shard<T>]>,
    /// Idle connections in all shards. A slot is reserved with `fetch_add`
    /// before a push, so the entries never exceed `max_idle`. `Relaxed`
    /// suffices: the shard mutexes order the contents, and the count only
    /// bounds them and lets an empty pool skip locking altogether.
    idle: AtomicUsize,
    max_idle: usize,
    idle_timeout: Duration,
    cap: Option<Cap>,
}

impl<T> Pool<T> {
    /// A pool keeping at most `max_idle` connections, each for at most
    /// `idle_timeout`, with no cap on open connections. `max_idle == 0`
    /// disables pooling.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool<T> {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                state: Mutex::new(ShardState {
                    idle: VecDeque::new(),
                    queued: 0,
                }),
                checked_in: Notify::new(),
                permits: None,
            })
            .collect();
        Pool {
            shards,
            idle: AtomicUsize::new(0),
            max_idle,
            idle_timeout,
            cap: None,
        }
    }

    /// The same pool with at most `max_conns` connections open at once
    /// (idle and busy) over `workers` workers, each worker's shard holding
    /// its share (module docs; at least one each, so `workers` when
    /// `max_conns` is smaller), requests queuing for at most `queue_timeout`
    /// at their worker's share (0: refused at once). `max_conns == 0` leaves
    /// the origin uncapped.
    pub fn capped(mut self, max_conns: usize, queue_timeout: Duration, workers: usize) -> Pool<T> {
        if max_conns == 0 {
            return self;
        }
        let workers = workers.clamp(1, self.shards.len());
        let shares: Vec<_> = (0..workers)
            .map(|worker| {
                let share = max_conns / workers + usize::from(worker < max_conns % workers);
                Arc::new(Semaphore::new(share.clamp(1, Semaphore::MAX_PERMITS)))
            })
            .collect();
        // A thread that is no worker (its shard number is past them) shares
        // a worker's permits, so the cap holds whoever sends.
        for (i, shard) in self.shards.iter_mut().enumerate() {
            shard.permits = Some(Arc::clone(&shares[i % workers]));
        }
        self.cap = Some(Cap {
            max_conns,
            queued: AtomicUsize::new(0),
            queue_timeout,
        });
        self
    }

    /// Idle connections currently held.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// Requests queued at the cap right now (0 when uncapped).
    pub fn queued(&self) -> usize {
        self.cap
            .as_ref()
            .map_or(0, |cap| cap.queued.load(Ordering::Relaxed))
    }

    /// Takes the most recently used idle connection for which `healthy`
    /// holds. Connections past the idle timeout, and those failing
    /// `healthy`, are dropped on the way (outside the lock).
    pub fn checkout(&self, healthy: impl Fn(&T) -> bool) -> Option<T> {
        if self.idle() == 0 {
            return None;
        }
        let mut dead = Vec::new();
        let shard = lock(&self.shards[self.own_shard()]);
        let found = self.take_from(shard, &healthy, &mut dead);
        drop(dead);
        found
    }

    /// Where the next request goes: an idle connection (when `reuse`), or
    /// room for a new one. At its worker's share of the cap, or while other
    /// requests of its worker queue there, the request queues behind them
    /// as the module docs describe; a connection it is handed then may be
    /// an idle one even when `!reuse` (the caller may trade it for its
    /// permit). Uncapped, this never waits.
    ///
    /// Errors: [`QueueTimeout`] when the worker's share stayed taken for
    /// the whole queue timeout.
    pub async fn slot(
        &self,
        healthy: impl Fn(&T) -> bool,
        reuse: bool,
    ) -> Result<Slot<T>, QueueTimeout> {
        let shard = &self.shards[self.own_shard()];
        let (Some(cap), Some(permits)) = (&self.cap, &shard.permits) else {
            if reuse {
                if let Some(conn) = self.checkout(&healthy) {
                    return Ok(Slot::Idle(conn));
                }
            }
            return Ok(Slot::Open(None));
        };
        // First come, first served: while requests of this worker queue, a
        // new one does not take what was checked in or freed for them.
        if lock(shard).queued == 0 {
            if reuse {
                if let Some(conn) = self.checkout(&healthy) {
                    return Ok(Slot::Idle(conn));
                }
            }
            if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
                return Ok(Slot::Open(Some(permit)));
            }
        }
        let timeout = tokio::time::sleep(cap.queue_timeout);
        tokio::pin!(timeout);
        // One wait for a permit for the whole queueing, so the request keeps
        // its place in the semaphore's first-in, first-out queue.
        let permit = Arc::clone(permits).acquire_owned();
        tokio::pin!(permit);
        let (_queued, first) = Queued::enter(cap, shard);
        // Behind others, an idle connection is theirs (each check-in wakes
        // one of them); only the first in the queue looks before it waits,
        // for one checked in between its look above and its entering.
        let mut look = first;
        loop {
            // Registered before looking, so a check-in between the look
            // and the wait still wakes this request.
            let checked_in = shard.checked_in.notified();
            tokio::pin!(checked_in);
            checked_in.as_mut().enable();
            if look {
                if let Some(conn) = self.checkout(&healthy) {
                    return Ok(Slot::Idle(conn));
                }
            }
            look = true;
            // Woken, a request yields once before it goes on: the runtime
            // then polls its I/O driver, so whatever arrived while it
            // waited (its client's departure, which the connection driver
            // looks at first) is seen before a connection is taken or
            // opened for it. Many clients leaving at once would otherwise
            // pass the freed slot down the queue, each opening a connection.
            tokio::select! {
                permit = &mut permit => {
                    // The semaphore is never closed.
                    let permit = permit.map_err(|_| QueueTimeout)?;
                    tokio::task::yield_now().await;
                    return Ok(Slot::Open(Some(permit)));
                }
                () = &mut checked_in => tokio::task::yield_now().await,
                () = &mut timeout => return Err(QueueTimeout),
            }
        }
    }

    /// Returns a connection after a complete exchange. When the pool is full
    /// the oldest connection of this thread's shard makes room, or, if the
    /// shard has none, `conn` itself is dropped. A request of this shard
    /// queued at the cap is woken to take it.
    pub fn checkin(&self, conn: T) {
        if self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        let shard = &self.shards[self.own_shard()];
        let wake;
        {
            let mut state = lock(shard);
            self.drop_expired(&mut state.idle, now, &mut dropped);
            wake = state.queued > 0;
            if self.idle() >= self.max_idle {
                if let Some(oldest) = state.idle.pop_front() {
                    self.idle.fetch_sub(1, Ordering::Relaxed);
                    dropped.push(oldest.conn);
                }
            }
            // Reserve the slot before pushing, so two threads checking in on
            // different shards at once cannot both take the last one.
            if self.idle.fetch_add(1, Ordering::Relaxed) >= self.max_idle {
                self.idle.fetch_sub(1, Ordering::Relaxed);
                dropped.push(conn);
                return;
            }
            state.idle.push_back(Entry {
                conn,
                idle_since: now,
            });
        }
        if wake {
            shard.checked_in.notify_one();
        }
        drop(dropped);
    }

    fn own_shard(&self) -> usize {
        THREAD_SHARD.with(|n| n.get()) % self.shards.len()
    }

    fn take_from(
        &self,
        mut shard: MutexGuard<'_, ShardState<T>>,
        healthy: &impl Fn(&T) -> bool,
        dead: &mut Vec<T>,
    ) -> Option<T> {
        let now = Instant::now();
        while let Some(entry) = shard.idle.pop_back() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
            if now.saturating_duration_since(entry.idle_since) >= self.idle_timeout {
                // The shard is ordered by idle_since: everything in front of
                // an expired connection is older still.
                dead.push(entry.conn);
                self.drop_expired(&mut shard.idle, now, dead);
                return None;
            }
            if healthy(&entry.conn) {
                return Some(entry.conn);
            }
            dead.push(entry.conn);
        }
        None
    }

    /// Moves the expired connections at the front of `idle` into `dead`.
    fn drop_expired(&self, idle: &mut VecDeque<Entry<T>>, now: Instant, dead: &mut Vec<T>) {
        while let Some(oldest) = idle.front() {
            if now.saturating_duration_since(oldest.idle_since) < self.idle_timeout {
                break;
            }
            if let Some(entry) = idle.pop_front() {
                self.idle.fetch_sub(1, Ordering::Relaxed);
                dead.push(entry.conn);
            }
        }
    }
}

/// A request counted as queued at the cap, in its shard and in all, until
/// dropped (served, timed out, or cancelled with its client).
struct Queued<'a, T> {
    cap: &'a Cap,
    shard: &'a Shard<T>,
}

impl<'a, T> Queued<'a, T> {
    /// Counts a request in, and says whether it is the first of its shard.
    fn enter(cap: &'a Cap, shard: &'a Shard<T>) -> (Self, bool) {
        cap.queued.fetch_add(1, Ordering::Relaxed);
        let mut state = lock(shard);
        let first = state.queued == 0;
        state.queued += 1;
        (Queued { cap, shard }, first)
    }
}

impl<T> Drop for Queued<'_, T> {
    fn drop(&mut self) {
        lock(self.shard).queued -= 1;
        self.cap.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("shards", &self.shards.len())
            .field("idle", &self.idle())
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_conns", &self.cap.as_ref().map(|c| c.max_conns))
            .field("queued", &self.queued())
            .finish()
    }
}

/// Locks a shard. A panic while holding the lock cannot leave a `VecDeque`
/// of owned connections inconsistent, so poisoning is ignored.
fn lock<T>(shard: &Shard<T>) -> MutexGuard<'_, ShardState<T>> {
    shard.state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_is_lifo_and_counts() {
        let pool = Pool::new(8, Duration::from_secs(60));
        assert_eq!(pool.checkout(|_| true), None::<u32>);
        pool.checkin(1u32);
        pool.checkin(2);
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.checkout(|_| true), Some(2));
        assert_eq!(pool.checkout(|_| true), Some(1));
        assert_eq!(pool.checkout(|_| true), None);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn unhealthy_connections_are_dropped_on_checkout() {
        let pool = Pool::new(8, Duration::from_secs(60));
        for n in 1..=3u32 {
            pool.checkin(n);
        }
        assert_eq!(pool.checkout(|n| *n == 1), Some(1));
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn expired_connections_are_dropped() {
        let pool = Pool::new(8, Duration::from_millis(20));
        pool.checkin(1u32);
        pool.checkin(2);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(pool.checkout(|_| true), None);
        assert_eq!(pool.idle(), 0);
        pool.checkin(3);
        assert_eq!(pool.checkout(|_| true), Some(3));
    }

    #[test]
    fn full_pool_evicts_the_oldest() {
        let pool = Pool::new(2, Duration::from_secs(60));
        for n in 1..=3u32 {
            pool.checkin(n);
        }
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.checkout(|_| true), Some(3));
        assert_eq!(pool.checkout(|_| true), Some(2));
        assert_eq!(pool.checkout(|_| true), None);
    }

    #[test]
    fn zero_max_idle_disables_pooling() {
        let pool = Pool::new(0, Duration::from_secs(60));
        pool.checkin(1u32);
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.checkout(|_| true), None);
    }

    #[test]
    fn a_worker_finds_only_its_own_connections() {
        let pool = std::sync::Arc::new(Pool::new(8, Duration::from_secs(60)));
        let on_worker = |index: usize, checkin: Option<u32>| {
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || {
                set_thread_shard(index);
                match checkin {
                    Some(conn) => {
                        pool.checkin(conn);
                        None
                    }
                    None => pool.checkout(|_| true),
                }
            })
            .join()
            .expect("thread ran")
        };
        on_worker(1, Some(7));
        assert_eq!(pool.idle(), 1);
        assert_eq!(on_worker(0, None), None);
        assert_eq!(on_worker(1, None), Some(7));
        assert_eq!(pool.idle(), 0);
    }

    /// A connection for the cap tests: holds its permit and counts itself
    /// in `open` while it lives, as an upstream connection does.
    struct Conn {
        _permit: Option<Permit>,
        open: std::sync::Arc<AtomicUsize>,
    }

    impl Conn {
        fn new(
            permit: Option<Permit>,
            open: &std::sync::Arc<AtomicUsize>,
            most: &AtomicUsize,
        ) -> Conn {
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            Conn {
                _permit: permit,
                open: open.clone(),
            }
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A current-thread runtime with timers, as a worker's.
    fn worker_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn permit_of<T>(slot: Result<Slot<T>, QueueTimeout>) -> Permit {
        match slot {
            Ok(Slot::Open(Some(permit))) => permit,
            _ => panic!("expected room for a new connection"),
        }
    }

    /// A pool capped at one connection (one worker), the permit of that
    /// connection, and a request queued behind it (spawned on this
    /// runtime, already counted as queued).
    async fn one_open_one_queued<T: Send + 'static>() -> (
        std::sync::Arc<Pool<T>>,
        Permit,
        tokio::task::JoinHandle<Result<Slot<T>, QueueTimeout>>,
    ) {
        let pool = std::sync::Arc::new(Pool::new(8, Duration::from_secs(60)).capped(
            1,
            Duration::from_secs(5),
            1,
        ));
        let permit = permit_of(pool.slot(|_| true, true).await);
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.slot(|_| true, true).await })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        (pool, permit, queued)
    }

    #[tokio::test]
    async fn at_the_cap_a_checked_in_connection_goes_to_the_queued_request() {
        let (pool, permit, queued) = one_open_one_queued::<(u32, Permit)>().await;
        pool.checkin((7, permit));
        match queued.await.unwrap() {
            Ok(Slot::Idle((7, _))) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.queued(), 0);
    }

    /// First come, first served: a request arriving just after a check-in
    /// that woke a queued one does not take that connection.
    #[tokio::test]
    async fn a_new_request_waits_behind_the_queued_ones() {
        let (pool, permit, queued) = one_open_one_queued::<(u32, Permit)>().await;
        pool.checkin((7, permit));
        let newcomer =
            tokio::time::timeout(Duration::from_millis(50), pool.slot(|_| true, true)).await;
        assert!(newcomer.is_err(), "the new request jumped the queue");
        match queued.await.unwrap() {
            Ok(Slot::Idle((7, _))) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn at_the_cap_a_closed_connection_frees_its_permit() {
        let (_pool, permit, queued) = one_open_one_queued::<Permit>().await;
        drop(permit);
        assert!(matches!(queued.await.unwrap(), Ok(Slot::Open(Some(_)))));
    }

    #[tokio::test]
    async fn the_queue_times_out_and_zero_refuses_at_once() {
        for wait in [Duration::ZERO, Duration::from_millis(50)] {
            let pool = Pool::<Permit>::new(8, Duration::from_secs(60)).capped(1, wait, 1);
            let _held = permit_of(pool.slot(|_| true, true).await);
            let started = tokio::time::Instant::now();
            assert_eq!(pool.slot(|_| true, true).await.unwrap_err(), QueueTimeout);
            assert!(started.elapsed() >= wait);
            assert_eq!(pool.queued(), 0);
        }
    }

    #[test]
    fn uncapped_pools_never_queue() {
        let pool = Pool::<u32>::new(8, Duration::from_secs(60));
        let rt = worker_runtime();
        for _ in 0..1000 {
            assert!(matches!(
                rt.block_on(pool.slot(|_| true, true)),
                Ok(Slot::Open(None))
            ));
        }
    }

    /// Each worker has its share of the cap (3 over 2 workers: 2 and 1),
    /// and queues at it even while another worker's share is free.
    #[test]
    fn each_worker_queues_at_its_own_share() {
        let pool = std::sync::Arc::new(Pool::<Permit>::new(8, Duration::from_secs(60)).capped(
            3,
            Duration::from_millis(20),
            2,
        ));
        for (worker, share) in [(1, 1), (0, 2)] {
            let pool = pool.clone();
            std::thread::spawn(move || {
                set_thread_shard(worker);
                let rt = worker_runtime();
                let held: Vec<_> = (0..share)
                    .map(|_| permit_of(rt.block_on(pool.slot(|_| true, true))))
                    .collect();
                assert_eq!(
                    rt.block_on(pool.slot(|_| true, true)).unwrap_err(),
                    QueueTimeout,
                    "worker {worker} past its share of {share}"
                );
                // Kept idle, its connections serve only this worker.
                for permit in held {
                    pool.checkin(permit);
                }
            })
            .join()
            .unwrap();
        }
        assert_eq!(pool.idle(), 3);
    }

    /// Two workers, 400 requests, a cap of 3 (shares 2 and 1): never more
    /// than 3 connections open, and every request served.
    #[test]
    fn the_cap_holds_across_workers_under_load() {
        const CAP: usize = 3;
        let pool = std::sync::Arc::new(Pool::<Conn>::new(8, Duration::from_secs(60)).capped(
            CAP,
            Duration::from_secs(10),
            2,
        ));
        let open = std::sync::Arc::new(AtomicUsize::new(0));
        let most = std::sync::Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|index| {
                let (pool, open, most) = (pool.clone(), open.clone(), most.clone());
                std::thread::spawn(move || {
                    set_thread_shard(index);
                    let rt = worker_runtime();
                    rt.block_on(async move {
                        let tasks: Vec<_> = (0..200u64)
                            .map(|n| {
                                let (pool, open, most) = (pool.clone(), open.clone(), most.clone());
                                tokio::spawn(async move {
                                    let conn = match pool.slot(|_| true, n % 5 != 0).await {
                                        Ok(Slot::Idle(conn)) => conn,
                                        Ok(Slot::Open(permit)) => Conn::new(permit, &open, &most),
                                        Err(QueueTimeout) => return false,
                                    };
                                    tokio::time::sleep(Duration::from_micros(200 + n % 7 * 100))
                                        .await;
                                    match n % 4 {
                                        0 => drop(conn),
                                        _ => pool.checkin(conn),
                                    }
                                    true
                                })
                            })
                            .collect();
                        for t in tasks {
                            assert!(t.await.unwrap(), "a request timed out in the queue");
                        }
                    })
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert!(
            most.load(Ordering::SeqCst) <= CAP,
            "{} open at once",
            most.load(Ordering::SeqCst)
        );
        assert_eq!(pool.queued(), 0);
    }
}
