//! What several chat2api instances agree on through one Redis (or Valkey):
//! client-key limits and budgets, accounts' `dailyLimit` counters, the
//! rests learnt from upstreams' `Retry-After`, and stored responses
//! (`responses.rs`) (docs/config.md "Several instances",
//! docs/architecture.md "Shared state").
//!
//! - **Admission**: one Lua script per request, and only for a key with
//!   counting rules ([`SharedState::admit`]): every rule checked and
//!   counted at once, on Redis's clock. Its keys share one hash tag
//!   (`c2a:{key:NAME}`), so the script runs on Redis Cluster too. Scripts
//!   are sent by `EVALSHA`, and by `EVAL` when Redis does not know them yet
//!   (no `SCRIPT LOAD`, which some proxies refuse).
//! - **Settlement**: the end of a request (its real tokens, its slot back)
//!   is sent without waiting for the answer.
//! - **Rests and account counters**: written when learnt, and read back
//!   every `syncInterval` (250 ms) by a background loop, never on a
//!   request's path.
//!
//! Each worker thread opens its own multiplexed connection on its own
//! runtime for admissions and settlements, so a request's round trip needs
//! no hand-off to another thread; a thread of its own (`chat2api-redis`)
//! runs the sync loop and publishes rests, over a connection of its own.
//! Connections reconnect by themselves. When Redis does not answer within
//! `sharedState.timeout`, or is known to be down, a request is decided on
//! the instance's own counters (`crate::limits`): the fallback is counted
//! (`/stats` `sharedState.fallbacks`) and logged, and a budget set to fail
//! closed refuses instead. The sync loop notices when Redis answers again,
//! and sharing resumes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::config::SharedState as SharedConfig;
use crate::limits::{Ask, KeyLimits, Quota, Refusal, SettleShared};
use crate::stats::Stats;

mod responses;
pub use responses::SharedResponse;

const ADMIT: &str = include_str!("admit.lua");
const SETTLE: &str = include_str!("settle.lua");
const REST: &str = include_str!("rest.lua");
const RESTS: &str = include_str!("rests.lua");

/// How long a concurrency slot lives in Redis if its instance never
/// returns it (a crash): the longest answer it can cover.
pub const LEASE_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Jobs waiting for the Redis thread; past this, requests fall back at once.
const QUEUE: usize = 4096;

/// Rule names in the order `admit.lua` numbers them.
const RULES: [&str; 5] = [
    "rpm",
    "tpm",
    "maxConcurrent",
    "dailyRequests",
    "dailyTokens",
];

/// One account's requests today, as this instance counts them and as the
/// other instances sharing its Redis do (read back by the sync loop).
#[derive(Debug, Default)]
pub struct DayCount {
    /// The UTC day (days since the epoch) the counts are for.
    pub day: AtomicU64,
    /// Requests this instance sent today.
    pub mine: AtomicU64,
    /// How many of `mine` Redis has been told of.
    pub pushed: AtomicU64,
    /// Requests the other instances sent today (Redis's total minus ours).
    pub others: AtomicU64,
}

impl DayCount {
    /// Requests today by every instance, as far as this one knows.
    pub fn total(&self, today: u64) -> u64 {
        if self.day.load(Relaxed) != today {
            return 0;
        }
        self.mine.load(Relaxed) + self.others.load(Relaxed)
    }

    /// One more request today.
    pub fn record(&self, today: u64) {
        self.turn_to(today);
        self.mine.fetch_add(1, Relaxed);
    }

    /// Redis counts `total` requests today, `mine` of them ours.
    pub fn observe(&self, today: u64, mine: u64, total: u64) {
        self.turn_to(today);
        self.pushed.store(mine, Relaxed);
        self.others.store(total.saturating_sub(mine), Relaxed);
    }

    fn turn_to(&self, today: u64) {
        if self.day.swap(today, Relaxed) != today {
            self.mine.store(0, Relaxed);
            self.pushed.store(0, Relaxed);
            self.others.store(0, Relaxed);
        }
    }
}

/// The router's state the sync loop keeps in step with Redis.
#[derive(Default)]
pub struct Slots {
    /// Every scope that can rest (`d:provider/account/model`,
    /// `a:provider/account`, `o:provider`) and the deadline of its shared
    /// rest, in `clock` milliseconds.
    pub rests: Vec<(String, Arc<AtomicU64>)>,
    /// Every account with a `dailyLimit`, by `provider/account`.
    pub accounts: Vec<(String, Arc<DayCount>)>,
    /// The clock rest deadlines are kept in (ms).
    pub clock: Option<fn() -> u64>,
}

/// What Redis decided about one request.
pub enum Admission {
    /// Admitted under lease `lease` on UTC day `day` (Redis's clock); its
    /// `x-ratelimit-*` figures.
    Admitted {
        day: u64,
        quota: Quota,
        lease: u64,
    },
    Refused(Refusal),
    /// Redis did not answer in time (or is known down): decide locally.
    Unavailable,
}

enum Job {
    Script {
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    },
}

/// A Lua script and its SHA-1 (for `EVALSHA`).
struct Script {
    source: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Script {
    const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: std::sync::OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            let d = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                self.source.as_bytes(),
            );
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// `EVALSHA`, then `EVAL` if Redis does not hold the script (a new or
    /// restarted Redis).
    async fn run(
        &self,
        conn: &mut ConnectionManager,
        keys: &[String],
        args: &[String],
    ) -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.sha()).arg(keys.len()).arg(keys).arg(args);
        match cmd.query_async(conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(self.source).arg(keys.len()).arg(keys).arg(args);
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

static ADMIT_SCRIPT: Script = Script::new(ADMIT);
static SETTLE_SCRIPT: Script = Script::new(SETTLE);
static REST_SCRIPT: Script = Script::new(REST);
static RESTS_SCRIPT: Script = Script::new(RESTS);

/// The handle the gateway holds: sends jobs to the Redis thread.
pub struct SharedState {
    /// For the connection each worker thread opens itself.
    client: redis::Client,
    /// Tells this state's connections from an earlier config's, in the
    /// workers' thread-local slot.
    generation: u64,
    /// Bumped by the sync loop each time Redis answers again after an
    /// outage: workers then open fresh connections rather than find out,
    /// one failed request each, that theirs broke.
    reconnects: Arc<AtomicU64>,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    budgets_fail_closed: bool,
    stats: Arc<Stats>,
    /// Lease ids are `instance:counter`, unique across instances.
    instance: String,
    next_lease: AtomicU64,
}

/// `c2a:{key:NAME}`: a Redis key part from a name (a config name, a
/// response or item id), with the braces that would end a hash tag early
/// percent-encoded, and `%` itself: two names never share a key.
fn tag(kind: &str, name: &str) -> String {
    let mut out = String::with_capacity(name.len() + kind.len() + 8);
    out.push_str("c2a:{");
    out.push_str(kind);
    out.push(':');
    for c in name.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

const RESTS_KEY: &str = "c2a:{rests}";

impl SharedState {
    /// Start the Redis thread for `config`; `slots` are the router's rests
    /// and account counters it keeps in step. The thread ends when the
    /// returned handle (and every lease holding it) is dropped.
    ///
    /// # Errors
    /// The thread or its runtime could not be started (the URL was checked
    /// when the config was loaded; an unreachable Redis is not an error).
    pub fn start(
        config: &SharedConfig,
        slots: Slots,
        stats: Arc<Stats>,
    ) -> Result<Arc<SharedState>, String> {
        let client = redis::Client::open(config.redis.as_str())
            .map_err(|e| format!("sharedState.redis: {:?}", e.kind()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("sharedState: cannot start its runtime: {e}"))?;
        // Up until a call says otherwise: the first requests try Redis.
        stats.shared_state.state.store(1, Relaxed);
        let (timeout, interval) = (config.timeout, config.sync_interval);
        let thread_stats = stats.clone();
        let thread_client = client.clone();
        let reconnects = Arc::new(AtomicU64::new(0));
        let thread_reconnects = reconnects.clone();
        std::thread::Builder::new()
            .name("chat2api-redis".into())
            .spawn(move || {
                runtime.block_on(serve(
                    thread_client,
                    rx,
                    slots,
                    thread_stats,
                    thread_reconnects,
                    timeout,
                    interval,
                ))
            })
            .map_err(|e| format!("sharedState: cannot start its thread: {e}"))?;
        let instance = {
            let mut b = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        Ok(Arc::new(SharedState {
            client,
            generation: GENERATION.fetch_add(1, Relaxed),
            reconnects,
            jobs: tx,
            timeout,
            budgets_fail_closed: config.budgets_fail_closed,
            stats,
            instance,
            next_lease: AtomicU64::new(0),
        }))
    }

    /// This worker thread's own connection to Redis, opened on first use on
    /// the worker's runtime: admissions and settlements go straight from
    /// the worker to Redis, with no hand-off to another thread. `None`
    /// outside a runtime.
    fn worker_connection(&self) -> Option<ConnectionManager> {
        thread_local! {
            static CONNECTION: std::cell::RefCell<Option<((u64, u64), ConnectionManager)>> =
                const { std::cell::RefCell::new(None) };
        }
        tokio::runtime::Handle::try_current().ok()?;
        let current = (self.generation, self.reconnects.load(Relaxed));
        CONNECTION.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some((made, conn)) = slot.as_ref() {
                if *made == current {
                    return Some(conn.clone());
                }
            }
            let conn = ConnectionManager::new_lazy_with_config(
                self.client.clone(),
                connection_config(self.timeout),
            )
            .ok()?;
            *slot = Some((current, conn.clone()));
            Some(conn)
        })
    }

    /// Whether Redis is believed to answer (the last call did).
    pub fn is_up(&self) -> bool {
        self.stats.shared_state.state.load(Relaxed) == 1
    }

    /// Whether a key with budgets must be refused while Redis is down.
    pub fn budgets_fail_closed(&self) -> bool {
        self.budgets_fail_closed
    }

    /// Count one decision made locally because Redis could not make it.
    pub fn fell_back(&self) {
        self.stats.shared_state.fallbacks.fetch_add(1, Relaxed);
    }

    fn went_down(&self, why: &str) {
        self.stats.shared_state.errors.fetch_add(1, Relaxed);
        if self.stats.shared_state.state.swap(2, Relaxed) == 1 {
            eprintln!(
                "chat2api: shared state: Redis {why}; limits and rests are decided on this instance's own counters until it answers again"
            );
        }
    }

    /// Decide `ask` for `key` in Redis, waiting at most the configured
    /// timeout. Never fails: [`Admission::Unavailable`] says to decide
    /// locally (and is already counted as a fallback when it is returned).
    pub async fn admit(&self, key: &KeyLimits, ask: Ask) -> Admission {
        if !self.is_up() {
            return Admission::Unavailable;
        }
        let r = &key.rules;
        let lease = self.next_lease.fetch_add(1, Relaxed);
        let base = tag("key", &key.name);
        let keys = [base.clone(), format!("{base}:open")];
        let args = [
            r.rpm.unwrap_or(0).to_string(),
            r.tpm.unwrap_or(0).to_string(),
            r.max_concurrent.unwrap_or(0).to_string(),
            r.daily_requests.unwrap_or(0).to_string(),
            r.daily_tokens.unwrap_or(0).to_string(),
            ask.tokens.to_string(),
            format!("{}:{lease}", self.instance),
            LEASE_LIFETIME.as_micros().to_string(),
        ];
        let Some(mut conn) = self.worker_connection() else {
            self.went_down("cannot be reached from this thread");
            return Admission::Unavailable;
        };
        let call = ADMIT_SCRIPT.run(&mut conn, &keys, &args);
        let Some(value) = self.answer(call).await else {
            return Admission::Unavailable;
        };
        let n: Vec<i64> = match redis::from_redis_value(value) {
            Ok(n) => n,
            Err(_) => {
                self.went_down("answered the admission script with something else");
                return Admission::Unavailable;
            }
        };
        let at = |i: usize| n.get(i).copied().unwrap_or(0).max(0) as u64;
        if at(0) == 0 {
            let rule = RULES
                .get(at(1).saturating_sub(1) as usize)
                .copied()
                .unwrap_or("rpm");
            let limit = match rule {
                "rpm" => r.rpm,
                "tpm" => r.tpm,
                "maxConcurrent" => r.max_concurrent,
                "dailyRequests" => r.daily_requests,
                _ => r.daily_tokens,
            };
            return Admission::Refused(Refusal {
                rule,
                limit: limit.unwrap_or(0),
                retry_after_ms: at(2).max(1),
            });
        }
        let figure = |i: usize| (at(i) > 0).then(|| (at(i), at(i + 1), at(i + 2)));
        Admission::Admitted {
            quota: Quota {
                requests: figure(1),
                tokens: figure(4),
            },
            lease,
            day: at(7),
        }
    }

    /// The answer of a call to Redis, waiting at most the timeout; `None`
    /// (and Redis marked down, saying why) when it failed or did not
    /// answer in time.
    async fn answer<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.went_down(&format!("failed ({})", e.category()));
                None
            }
            Err(_) => {
                self.went_down(&format!(
                    "did not answer within {} ms",
                    self.timeout.as_millis()
                ));
                None
            }
        }
    }

    /// Tell every instance that scope `name` (see [`Slots::rests`]) rests
    /// until `until_unix_ms`; Redis keeps the longest deadline.
    pub fn publish_rest(&self, name: String, until_unix_ms: u64) {
        let job = Job::Script {
            script: &REST_SCRIPT,
            keys: vec![RESTS_KEY.to_owned()],
            args: vec![name, until_unix_ms.to_string()],
        };
        if self.jobs.try_send(job).is_err() {
            self.stats.shared_state.errors.fetch_add(1, Relaxed);
        }
    }
}

impl SettleShared for SharedState {
    /// Sent without waiting: on this worker's connection (a task on its
    /// runtime), else through the Redis thread.
    fn settle(&self, key: &KeyLimits, lease: u64, tpm_delta: i64, day_delta: i64, day: u64) {
        let base = tag("key", &key.name);
        let keys = vec![base.clone(), format!("{base}:open")];
        let args = vec![
            key.rules.tpm.unwrap_or(0).to_string(),
            tpm_delta.to_string(),
            day_delta.to_string(),
            day.to_string(),
            format!("{}:{lease}", self.instance),
        ];
        if let Some(mut conn) = self.worker_connection() {
            let (stats, timeout) = (self.stats.clone(), self.timeout);
            tokio::spawn(async move {
                let call = SETTLE_SCRIPT.run(&mut conn, &keys, &args);
                if !matches!(tokio::time::timeout(timeout, call).await, Ok(Ok(_))) {
                    stats.shared_state.errors.fetch_add(1, Relaxed);
                }
            });
            return;
        }
        let job = Job::Script {
            script: &SETTLE_SCRIPT,
            keys,
            args,
        };
        if self.jobs.try_send(job).is_err() {
            self.stats.shared_state.errors.fetch_add(1, Relaxed);
        }
    }
}

/// The connection settings of every Redis connection: calls time out after
/// `timeout`, reconnection is retried in the background.
fn connection_config(timeout: Duration) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// The Redis thread: runs jobs as they come (the connection pipelines
/// them), and the sync loop beside them, until every sender is gone.
async fn serve(
    client: redis::Client,
    mut jobs: mpsc::Receiver<Job>,
    slots: Slots,
    stats: Arc<Stats>,
    reconnects: Arc<AtomicU64>,
    timeout: Duration,
    interval: Duration,
) {
    let conn = match ConnectionManager::new_lazy_with_config(client, connection_config(timeout)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat2api: shared state: cannot set up the Redis connection: {e}");
            stats.shared_state.state.store(2, Relaxed);
            return;
        }
    };
    let sync = tokio::spawn(sync_loop(
        conn.clone(),
        slots,
        stats.clone(),
        reconnects,
        interval,
    ));
    while let Some(job) = jobs.recv().await {
        let mut conn = conn.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let Job::Script { script, keys, args } = job;
            // A call the request stopped waiting for is not left to run on.
            let result =
                match tokio::time::timeout(timeout, script.run(&mut conn, &keys, &args)).await {
                    Ok(r) => r,
                    Err(_) => Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    ))),
                };
            if result.is_err() {
                stats.shared_state.errors.fetch_add(1, Relaxed);
            }
        });
    }
    sync.abort();
}

/// Every `interval`: read the shared rests and push and read the account
/// counters; mark Redis up or down by whether that worked, and log the
/// fallbacks of the last interval while it is down.
async fn sync_loop(
    mut conn: ConnectionManager,
    slots: Slots,
    stats: Arc<Stats>,
    reconnects: Arc<AtomicU64>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fallbacks_seen = 0;
    let mut last_log = std::time::Instant::now();
    loop {
        tick.tick().await;
        let ok = tokio::time::timeout(
            interval.max(Duration::from_millis(500)),
            sync_once(&mut conn, &slots),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let state = &stats.shared_state;
        if ok {
            if state.state.swap(1, Relaxed) == 2 {
                reconnects.fetch_add(1, Relaxed);
                eprintln!("chat2api: shared state: Redis answers again; sharing resumed");
            }
        } else {
            state.errors.fetch_add(1, Relaxed);
            if state.state.swap(2, Relaxed) == 1 {
                eprintln!(
                    "chat2api: shared state: Redis does not answer; limits and rests are decided on this instance's own counters until it does"
                );
            }
        }
        let fallbacks = state.fallbacks.load(Relaxed);
        if fallbacks > fallbacks_seen && last_log.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "chat2api: shared state: {} request(s) decided on this instance's own counters since the last report",
                fallbacks - fallbacks_seen
            );
            fallbacks_seen = fallbacks;
            last_log = std::time::Instant::now();
        }
    }
}

async fn sync_once(conn: &mut ConnectionManager, slots: &Slots) -> redis::RedisResult<()> {
    if let Some(clock) = slots.clock {
        let value = RESTS_SCRIPT.run(conn, &[RESTS_KEY.to_owned()], &[]).await?;
        let items: Vec<String> = redis::from_redis_value(value)?;
        if let Some((now, pairs)) = items.split_first() {
            let redis_now: u64 = now.parse().unwrap_or(0);
            let local_now = clock();
            for pair in pairs.chunks_exact(2) {
                let Ok(deadline) = pair[1].parse::<u64>() else {
                    continue;
                };
                if let Some((_, slot)) = slots.rests.iter().find(|(n, _)| *n == pair[0]) {
                    slot.fetch_max(local_now + deadline.saturating_sub(redis_now), Relaxed);
                }
            }
        }
    }
    if !slots.accounts.is_empty() {
        let today = crate::stats::unix_time() / 86_400;
        let mut pipe = redis::pipe();
        let mut pushed = Vec::with_capacity(slots.accounts.len());
        for (name, count) in &slots.accounts {
            let mine = if count.day.load(Relaxed) == today {
                count.mine.load(Relaxed)
            } else {
                0
            };
            let delta = mine.saturating_sub(count.pushed.load(Relaxed));
            let key = format!("{}:{today}", tag("account", name));
            pipe.incr(&key, delta).expire(&key, 2 * 86_400).ignore();
            pushed.push(mine);
        }
        let totals: Vec<u64> = pipe.query_async(conn).await?;
        for (((_, count), total), mine) in slots.accounts.iter().zip(totals).zip(pushed) {
            count.observe(today, mine, total);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_keep_one_keys_state_in_one_slot() {
        assert_eq!(tag("key", "ci"), "c2a:{key:ci}");
        assert_eq!(tag("key", "a}b{c"), "c2a:{key:a%7Db%7Bc}");
        // Distinct names, distinct keys (a forged id cannot alias another).
        assert_ne!(tag("resp", "resp{1"), tag("resp", "resp_1"));
        assert_ne!(tag("resp", "a%7B"), tag("resp", "a{"));
    }

    #[test]
    fn script_digests_are_sha1_hex() {
        let s = Script::new("return 1");
        // `redis-cli SCRIPT LOAD "return 1"`
        assert_eq!(s.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn day_counts_reset_with_the_day() {
        let c = DayCount::default();
        c.record(10);
        c.record(10);
        c.others.store(5, Relaxed);
        assert_eq!(c.total(10), 7);
        c.record(11);
        assert_eq!((c.total(10), c.total(11)), (0, 1));
    }
}
