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
//! every thread has a fixed shard number (assigned round-robin the first
//! time it touches any pool). With at least as many shards as cores, each
//! tokio worker normally locks only its own shard, for one push or pop, so
//! the mutex is uncontended in practice (an uncontended `std` mutex is one
//! atomic swap each way). A task that moved to another worker since it
//! checked its connection in still finds it: when the own shard is empty,
//! checkout looks at the other shards with `try_lock`, skipping any that is
//! busy rather than waiting. A thread-local pool per upstream would avoid
//! even that, but a connection checked in on one worker could then never be
//! found from another, and the idle limit could not be enforced per origin.
//!
//! Each shard is LIFO: checkout takes the most recently used connection
//! (warmest, least likely to have been closed by the server's keep-alive
//! timer), and the oldest sit at the front, where check-in evicts them when
//! the pool is full and drops them once they are past the idle timeout.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The most shards a pool splits into; more cores than this share shards.
const MAX_SHARDS: usize = 64;

/// Hands out thread shard numbers round-robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number, reduced modulo each pool's shard count.
    static THREAD_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
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
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let count = cores.clamp(1, MAX_SHARDS);
        let shards = (0..count).map(|_| Mutex::new(VecDeque::new())).collect();
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
        let own = self.own_shard();
        let mut dead = Vec::new();
        let found = self.take_from(lock(&self.shards[own]), &healthy, &mut dead);
        let found = found.or_else(|| {
            self.shards
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != own)
                // A busy shard belongs to a thread using it right now; skip
                // it rather than wait on the request path.
                .filter_map(|(_, shard)| shard.try_lock().ok())
                .find_map(|guard| self.take_from(guard, &healthy, &mut dead))
        });
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
        THREAD_SHARD.with(|n| *n) % self.shards.len()
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
    fn a_connection_checked_in_on_another_thread_is_found() {
        let pool = std::sync::Arc::new(Pool::new(8, Duration::from_secs(60)));
        let other = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || other.checkin(7u32))
            .join()
            .expect("thread ran");
        assert_eq!(pool.checkout(|_| true), Some(7));
    }
}
