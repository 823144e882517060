//! Request ids of the answers chat2api makes itself (when the upstream sent
//! none, or there was no upstream): `req_` + 24 hex digits, unique within
//! the process and, with its random-ish process prefix, across restarts.
//!
//! Each thread counts in a block of its own, so making an id touches no
//! shared atomic on the request path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use bytes::Bytes;

/// Ids a thread may make before it takes a new block.
const BLOCK: u64 = 1 << 32;

static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The next id of this thread, and the end of its block.
    static COUNTER: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// 32 bits that differ from one process start to the next.
fn process_prefix() -> u32 {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mixed =
            (nanos ^ u64::from(std::process::id()) << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as u32
    })
}

/// A new id, `prefix` then 32 hex digits of 128 random bits: for the
/// responses, items and messages chat2api makes (`resp_…`, `msg_…`,
/// `fc_…`, `toolu_…`), which upstreams' chat answers do not give (or
/// repeat). Random, not counted: a stored response or item is read by its
/// id alone, so no id may be guessed from another one. (Should the
/// system's random source fail, a counted id unique in the process.)
pub fn fresh_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let id = next();
        let hex = id.strip_prefix(b"req_").unwrap_or(&id);
        return format!("{prefix}{}", String::from_utf8_lossy(hex));
    }
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// A new request id, e.g. `req_5f3c9a1e0000000100000007`.
pub fn next() -> Bytes {
    let n = COUNTER.with(|c| {
        let (mut next, mut end) = c.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(1, Relaxed) * BLOCK;
            end = next + BLOCK;
        }
        c.set((next + 1, end));
        next
    });
    Bytes::from(format!("req_{:08x}{n:016x}", process_prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_random_and_unguessable() {
        let a = fresh_id("msg_");
        let b = fresh_id("msg_");
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
        assert_ne!(a, b);
        // No shared run of digits beyond chance: not a counter.
        assert_ne!(a[4..20], b[4..20]);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let ids: Vec<Bytes> = (0..4)
            .map(|_| std::thread::spawn(|| (0..100).map(|_| next()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().expect("thread ran"))
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 400);
        assert!(ids
            .iter()
            .all(|id| id.len() == 28 && id.starts_with(b"req_")));
    }
}
