//! The idle-connection pool of one upstream (one origin).
//!
//! Owns the idle set: which connections wait for reuse, since when, and
//! how many. It must not open, read or write connections, nor decide whether
//! a response allowed reuse — the client checks a connection in only after
//! a complete, keep-alive exchange, and the caller supplies the health probe
//! run on checkout.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

type Shard<T> = Mutex<VecDeque<Entry<T>>>;

/// Idle connections of one upstream. See the module docs.
pub struct Pool<T> {
    shards: Box<[Shard<T>]>,
    /// Idle connections in all shards. A slot is reserved with `fetch_add`
    /// before a push, so the entries never exceed `max_idle`. `Relaxed`
    /// suffices: the shard mutexes order the contents, and the count only
    /// bounds them and lets an empty pool skip locking altogether.
    idle: AtomicUsize,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<T> Pool<T> {
    /// A pool keeping at most `max_idle` connections, each for at most
    /// `idle_timeout`. `max_idle == 0` disables pooling.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool<T> {
        let shards = (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect();
        Pool {
            shards,
            idle: AtomicUsize::new(0),
            max_idle,
            idle_timeout,
        }
    }

    /// Idle connections currently held.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// Takes the most recently used idle connection for which `healthy`
    /// holds. Connections past the idle timeout, and those failing
    /// `healthy`, are dropped on the way (outside the lock).
    pub fn checkout(&self, healthy: impl Fn(&T) -> bool) -> Option<T> {
        if self.idle() == 0 {
            return None;
        }
        let mut dead = Vec::new();
        let found = self.take_from(lock(&self.shards[self.own_shard()]), &healthy, &mut dead);
        drop(dead);
        found
    }

    /// Returns a connection after a complete exchange. When the pool is full
    /// the oldest connection of this thread's shard makes room, or, if the
    /// shard has none, `conn` itself is dropped.
    pub fn checkin(&self, conn: T) {
        if self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut shard = lock(&self.shards[self.own_shard()]);
            self.drop_expired(&mut shard, now, &mut dropped);
            if self.idle() >= self.max_idle {
                if let Some(oldest) = shard.pop_front() {
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
            shard.push_back(Entry {
                conn,
                idle_since: now,
            });
        }
        drop(dropped);
    }

    fn own_shard(&self) -> usize {
        THREAD_SHARD.with(|n| n.get()) % self.shards.len()
    }

    fn take_from(
        &self,
        mut shard: MutexGuard<'_, VecDeque<Entry<T>>>,
        healthy: &impl Fn(&T) -> bool,
        dead: &mut Vec<T>,
    ) -> Option<T> {
        let now = Instant::now();
        while let Some(entry) = shard.pop_back() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
            if now.saturating_duration_since(entry.idle_since) >= self.idle_timeout {
                // The shard is ordered by idle_since: everything in front of
                // an expired connection is older still.
                dead.push(entry.conn);
                self.drop_expired(&mut shard, now, dead);
                return None;
            }
            if healthy(&entry.conn) {
                return Some(entry.conn);
            }
            dead.push(entry.conn);
        }
        None
    }

    /// Moves the expired connections at the front of `shard` into `dead`.
    fn drop_expired(&self, shard: &mut VecDeque<Entry<T>>, now: Instant, dead: &mut Vec<T>) {
        while let Some(oldest) = shard.front() {
            if now.saturating_duration_since(oldest.idle_since) < self.idle_timeout {
                break;
            }
            if let Some(entry) = shard.pop_front() {
                self.idle.fetch_sub(1, Ordering::Relaxed);
                dead.push(entry.conn);
            }
        }
    }
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("shards", &self.shards.len())
            .field("idle", &self.idle())
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Locks a shard. A panic while holding the lock cannot leave a `VecDeque`
/// of owned connections inconsistent, so poisoning is ignored.
fn lock<T>(shard: &Shard<T>) -> MutexGuard<'_, VecDeque<Entry<T>>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
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
}
