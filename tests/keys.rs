//! Client keys with rules (docs/config.md "Key rules"), on one instance and
//! on several that share a real `redis-server` (docs/config.md "Several
//! instances"): rates, token reservations, concurrency, budgets, models
//! and expiry, their headers and refusals, and what happens when Redis
//! stops, comes back or stalls.

mod support;

use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::upstream::{chat_answer, json_answer, send, MockUpstream, Recorded, Step};
use support::{post_request, TestGateway};

/// A mock provider serving `mock-echo` and `other`, and the key `sk-ci`
/// (named `ci`) with `rules` (JSON members, may be empty); `shared` adds
/// a `sharedState` member.
fn config(rules: &str, shared: &str) -> String {
    let rules = if rules.is_empty() {
        String::new()
    } else {
        format!(", {rules}")
    };
    format!(
        r#"{{"apiKeys": ["sk-open", {{"name": "ci", "key": "sk-ci"{rules}}}] {shared},
  "providers": [{{"id": "local", "type": "mock", "models": ["mock-echo", "other"],
                  "tokenDelayMs": 0, "answerTokens": 5}}]}}"#
    )
}

fn ask(model: &str, extra: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}]{extra}}}"#)
}

async fn chat(gw: &TestGateway, key: &str, extra: &str) -> support::Response {
    gw.post_json("/v1/chat/completions", Some(key), &ask("mock-echo", extra))
        .await
}

fn header_u64(r: &support::Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

#[tokio::test]
async fn rpm_admits_a_burst_of_the_rate_then_says_exactly_when() {
    let gw = TestGateway::start(&config(r#""rpm": 60"#, "")).await;
    let mut remaining = Vec::new();
    let mut refused = None;
    for _ in 0..61 {
        let r = chat(&gw, "sk-ci", "").await;
        match r.status {
            200 => {
                assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 60);
                remaining.push(header_u64(&r, "x-ratelimit-remaining-requests"));
                assert!(r.header("x-ratelimit-reset-requests").is_some());
            }
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    assert_eq!(remaining.len(), 60, "60 in a burst");
    // Remaining counts down (it may tick back up by one as time passes).
    assert!(
        remaining.windows(2).all(|w| w[1] <= w[0] + 1),
        "{remaining:?}"
    );
    assert!(remaining.last().copied().unwrap_or(99) <= 1);
    let r = refused.expect("the 61st is refused");
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    let body = r.json();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("'ci'"));
    assert!(body["error"]["message"].as_str().unwrap().contains("rpm"));
    // One comes back every second: the wait is at most 1 s, and right.
    assert_eq!(r.header("Retry-After"), Some("1"));
    let ms = header_u64(&r, "retry-after-ms");
    assert!((1..=1000).contains(&ms), "{ms}");
    // Keys without rules are not limited, nor counted against this one.
    for _ in 0..5 {
        assert_eq!(chat(&gw, "sk-open", "").await.status, 200);
    }
    // After the wait, exactly one more passes.
    tokio::time::sleep(Duration::from_millis(ms + 20)).await;
    assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
    assert_eq!(chat(&gw, "sk-ci", "").await.status, 429);
    let stats = gw.settled_stats().await;
    assert_eq!(stats["keyUsage"]["ci"]["refused"], 2);
    assert_eq!(stats["keyUsage"]["ci"]["requests"], 63);
    assert_eq!(stats["keyUsage"]["key1"]["requests"], 5);
}

#[tokio::test]
async fn tpm_reserves_tokens_so_concurrent_requests_cannot_overshoot() {
    // Each request reserves its prompt estimate (~body/4) plus max_tokens
    // 300: about 320 of the 1000 a minute, so 3 fit at once, not 4.
    let gw = TestGateway::start(&slow_config(r#""tpm": 1000"#)).await;
    let extra = r#","max_tokens":300"#;
    let body_len = ask("mock-echo", extra).len() as u64;
    let reservation = body_len.div_ceil(4) + 300;
    let mut slow = Vec::new();
    for _ in 0..8 {
        let gw_addr = gw.addr;
        slow.push(tokio::spawn(async move {
            let mut c = support::Client::connect(gw_addr).await;
            // Streams that stay open a while (the mock paces its tokens),
            // and report their usage at the end.
            let body = ask(
                "mock-echo",
                &format!("{extra},\"stream\":true,\"stream_options\":{{\"include_usage\":true}}"),
            );
            c.send(
                post_request(
                    "/v1/chat/completions",
                    "Authorization: Bearer sk-ci\r\n",
                    &body,
                )
                .as_bytes(),
            )
            .await;
            c.response().await.expect("an answer")
        }));
    }
    let mut admitted = 0;
    for t in slow {
        let r = t.await.unwrap();
        match r.status {
            200 => admitted += 1,
            429 => assert!(r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tpm")),
            s => panic!("status {s}"),
        }
    }
    assert!(admitted >= 1);
    // Never more reserved than the minute allows (+ one reservation).
    assert!(
        admitted * reservation <= 1000 + reservation,
        "{admitted} admitted of {reservation} tokens each"
    );
    // The answers used far fewer tokens than reserved: the rest came back,
    // so a new request fits at once.
    let r = chat(&gw, "sk-ci", extra).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 1000);
    assert!(header_u64(&r, "x-ratelimit-remaining-tokens") < 1000);
}

/// A mock whose streams stay open ~1 s.
fn slow_config(rules: &str) -> String {
    format!(
        r#"{{"apiKeys": [{{"name": "ci", "key": "sk-ci", {rules}}}],
  "providers": [{{"id": "local", "type": "mock", "models": ["mock-echo"],
                  "tokenDelayMs": 100, "answerTokens": 10}}]}}"#
    )
}

async fn open_stream(gw: &TestGateway) -> support::Client {
    let mut c = gw.connect().await;
    let body = ask("mock-echo", r#","stream":true"#);
    c.send(
        post_request(
            "/v1/chat/completions",
            "Authorization: Bearer sk-ci\r\n",
            &body,
        )
        .as_bytes(),
    )
    .await;
    // Wait for the head: the request is admitted and open.
    let mut got = Vec::new();
    c.read_raw_until(&mut got, |s| s.contains("\r\n\r\n")).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    c
}

#[tokio::test]
async fn max_concurrent_holds_a_slot_until_the_streams_last_byte() {
    let gw = TestGateway::start(&slow_config(r#""maxConcurrent": 2"#)).await;
    let a = open_stream(&gw).await;
    let _b = open_stream(&gw).await;
    let r = chat(&gw, "sk-ci", "").await;
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maxConcurrent"));
    assert_eq!(r.header("Retry-After"), Some("1"));
    // The client of one stream goes away: its slot comes back.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = chat(&gw, "sk-ci", r#","max_tokens":1"#).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = gw.settled_stats().await;
    assert!(stats["keyUsage"]["ci"]["open"].as_u64().unwrap() <= 1);
}

#[tokio::test]
async fn models_outside_a_keys_list_do_not_exist_for_it() {
    let gw = TestGateway::start(&config(r#""models": ["mock-*"]"#, "")).await;
    assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-ci"), &ask("other", ""))
        .await;
    assert_eq!((r.status, r.error_code()), (404, "model_not_found".into()));
    // The same answer as for a model the gateway does not serve at all.
    let unknown = gw
        .post_json("/v1/chat/completions", Some("sk-ci"), &ask("nope", ""))
        .await;
    assert_eq!(unknown.status, 404);
    let list = |key: &'static str| {
        let gw = &gw;
        async move {
            let r = gw
                .request(&format!(
                    "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
                ))
                .await;
            let ids: Vec<String> = r.json()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect();
            ids
        }
    };
    assert_eq!(list("sk-ci").await, ["mock-echo"]);
    assert!(list("sk-open").await.contains(&"other".to_owned()));
    let r = gw
        .request("GET /v1/models/other HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-ci\r\n\r\n")
        .await;
    assert_eq!(r.status, 404);
    // The other key sees it.
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-open"), &ask("other", ""))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn expired_keys_and_spent_daily_budgets() {
    let gw = TestGateway::start(
        r#"{"apiKeys": [{"name": "old", "key": "sk-old", "expiresAt": "2020-01-01T00:00:00Z"},
                         {"name": "later", "key": "sk-later", "expiresAt": 4102444800},
                         {"name": "day", "key": "sk-day", "dailyRequests": 2}],
  "providers": [{"id": "local", "type": "mock", "models": ["mock-echo"]}]}"#,
    )
    .await;
    let r = chat(&gw, "sk-old", "").await;
    assert_eq!((r.status, r.error_code()), (401, "expired_api_key".into()));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'old'"));
    assert_eq!(chat(&gw, "sk-later", "").await.status, 200);
    assert_eq!(chat(&gw, "sk-day", "").await.status, 200);
    let r = chat(&gw, "sk-day", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 2);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 0);
    let r = chat(&gw, "sk-day", "").await;
    assert_eq!(r.status, 429);
    // Until the next UTC midnight.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    let after = header_u64(&r, "Retry-After");
    assert!(after.abs_diff(to_midnight) <= 2, "{after} vs {to_midnight}");
}

#[tokio::test]
async fn anthropic_clients_get_refusals_in_their_shape() {
    let gw = TestGateway::start(&config(r#""rpm": 1"#, "")).await;
    let body =
        r#"{"model":"mock-echo","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}"#;
    let req = post_request(
        "/v1/messages",
        "x-api-key: sk-ci\r\nanthropic-version: 2023-06-01\r\n",
        body,
    );
    assert_eq!(gw.request(&req).await.status, 200);
    let r = gw.request(&req).await;
    assert_eq!(r.status, 429);
    let j = r.json();
    assert_eq!(j["type"], "error");
    assert_eq!(j["error"]["type"], "rate_limit_error");
    assert!(r.header("Retry-After").is_some());
}

#[tokio::test]
async fn key_usage_is_counted_by_name_never_by_secret() {
    let gw = TestGateway::start(&config(r#""rpm": 100"#, "")).await;
    assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
    let stats = gw.settled_stats().await;
    assert_eq!(stats["keyUsage"]["ci"]["requests"], 1);
    assert!(
        stats["keyUsage"]["ci"]["completionTokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(!stats.to_string().contains("sk-ci"));
    let usage = gw.stats.key_usages();
    assert!(usage.iter().any(|(name, f)| name == "ci" && f[0] == 1));
}

// ---- Several instances sharing one Redis ----

fn shared(redis: &str, extra: &str) -> String {
    format!(r#", "sharedState": {{"redis": "{redis}"{extra}}}"#)
}

#[tokio::test]
async fn three_instances_on_one_redis_admit_the_rate_once() {
    let redis = RedisServer::start();
    let json = config(r#""rpm": 60"#, &shared(&redis.url(), ""));
    let gws = [
        TestGateway::start(&json).await,
        TestGateway::start(&json).await,
        TestGateway::start(&json).await,
    ];
    // 90 requests at once, 30 through each instance.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let addr = gws[i % 3].addr;
        tasks.push(tokio::spawn(async move {
            let mut c = support::Client::connect(addr).await;
            let req = post_request(
                "/v1/chat/completions",
                "Authorization: Bearer sk-ci\r\n",
                &ask("mock-echo", ""),
            );
            c.send(req.as_bytes()).await;
            c.response().await.expect("an answer").status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            s => panic!("status {s}"),
        }
    }
    assert!((60..=61).contains(&ok), "{ok} admitted in all");
    for gw in &gws {
        let s = gw.settled_stats().await;
        assert_eq!(s["sharedState"]["redis"], "up");
        assert_eq!(s["sharedState"]["fallbacks"], 0);
    }
    // The state is in Redis, under the key's name, hash-tagged.
    assert_eq!(
        redis.command(&["HGET", "c2a:{key:ci}", "dr"]),
        "90".replace("90", &ok.to_string())
    );
}

fn status(code: &str, extra: &str) -> Vec<Step> {
    let body = r#"{"error":{"message":"slow down","type":"x","code":null}}"#;
    vec![send(format!(
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))]
}

fn upstream_config(base_url: &str, daily_limit: u64, shared: &str) -> String {
    format!(
        r#"{{"retryCount": 0, "requestTimeout": 2000 {shared},
  "providers": [{{"id": "up", "type": "openai", "baseUrl": "{base_url}",
    "accounts": [{{"id": "a", "apiKey": "sk-a", "dailyLimit": {daily_limit}}}],
    "models": {{"x": "up-x"}}}}]}}"#
    )
}

#[tokio::test]
async fn a_retry_after_seen_by_one_instance_rests_the_deployment_on_all() {
    let redis = RedisServer::start();
    let first = std::sync::atomic::AtomicBool::new(true);
    let up = MockUpstream::start(move |req: &Recorded| {
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return status("429 Too Many Requests", "Retry-After: 5\r\n");
        }
        let model = req.json()["model"].as_str().unwrap_or_default().to_owned();
        json_answer(&chat_answer(&model, "fine"))
    })
    .await;
    let json = upstream_config(
        &up.base_url(),
        0,
        &shared(&redis.url(), r#", "syncInterval": 100"#),
    );
    let a = TestGateway::start(&json).await;
    let b = TestGateway::start(&json).await;
    let c = TestGateway::start(&json).await;
    let r = a
        .post_json("/v1/chat/completions", None, &ask("x", ""))
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(up.count(), 1);
    // Within a second, the others know.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for gw in [&b, &c] {
        let r = gw
            .post_json("/v1/chat/completions", None, &ask("x", ""))
            .await;
        assert_eq!(r.status, 429, "{}", r.text());
        let after = header_u64(&r, "Retry-After");
        assert!((3..=5).contains(&after), "{after}");
    }
    assert_eq!(up.count(), 1, "no instance sent to the resting deployment");
}

#[tokio::test]
async fn an_accounts_daily_limit_counts_every_instances_requests() {
    let redis = RedisServer::start();
    let up = MockUpstream::start(|req: &Recorded| {
        let model = req.json()["model"].as_str().unwrap_or_default().to_owned();
        json_answer(&chat_answer(&model, "fine"))
    })
    .await;
    let json = upstream_config(
        &up.base_url(),
        4,
        &shared(&redis.url(), r#", "syncInterval": 100"#),
    );
    let gws = [
        TestGateway::start(&json).await,
        TestGateway::start(&json).await,
        TestGateway::start(&json).await,
    ];
    for gw in &gws[..2] {
        for _ in 0..2 {
            let r = gw
                .post_json("/v1/chat/completions", None, &ask("x", ""))
                .await;
            assert_eq!(r.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Four sent in all: the third instance has no quota left either.
    let r = gws[2]
        .post_json("/v1/chat/completions", None, &ask("x", ""))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn a_redis_outage_fails_no_request_and_sharing_resumes() {
    let mut redis = RedisServer::start();
    let json = config(
        r#""rpm": 100000"#,
        &shared(&redis.url(), r#", "timeout": 100, "syncInterval": 100"#),
    );
    let gw = TestGateway::start(&json).await;
    for _ in 0..20 {
        assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
    }
    redis.stop();
    for _ in 0..50 {
        let r = chat(&gw, "sk-ci", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-ratelimit-limit-requests").is_some());
    }
    let s = gw.settled_stats().await;
    assert_eq!(s["sharedState"]["redis"], "down");
    assert!(s["sharedState"]["fallbacks"].as_u64().unwrap() >= 1);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.settled_stats().await["sharedState"]["redis"] != "up" {
        assert!(Instant::now() < deadline, "sharing never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Counted in the new Redis again (its scripts loaded anew by EVAL):
    // the first requests after it returns reach it.
    let counted = || -> u64 {
        redis
            .command(&["HGET", "c2a:{key:ci}", "dr"])
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while counted() == 0 {
        assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
        assert!(Instant::now() < deadline, "sharing never resumed");
    }
    let before = counted();
    for _ in 0..5 {
        assert_eq!(chat(&gw, "sk-ci", "").await.status, 200);
    }
    assert_eq!(counted(), before + 5);
}

#[tokio::test]
async fn a_stalled_redis_costs_a_request_at_most_the_timeout() {
    // Accepts connections and never answers.
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", stall.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in stall.incoming().take(4) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let json = config(
        r#""rpm": 1000, "dailyRequests": 1000"#,
        &shared(&url, r#", "timeout": 150"#),
    );
    let gw = TestGateway::start(&json).await;
    for _ in 0..3 {
        let start = Instant::now();
        let r = chat(&gw, "sk-ci", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(
        gw.settled_stats().await["sharedState"]["fallbacks"]
            .as_u64()
            .unwrap()
            >= 1
    );
    drop(held);
}

#[tokio::test]
async fn budgets_set_to_fail_closed_refuse_while_redis_is_down() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let json = format!(
        r#"{{"apiKeys": [{{"name": "budget", "key": "sk-b", "dailyTokens": 100000}},
                         {{"name": "rate", "key": "sk-r", "rpm": 100}}],
  "sharedState": {{"redis": "redis://127.0.0.1:{port}/0", "budgets": "fail-closed", "timeout": 100}},
  "providers": [{{"id": "local", "type": "mock", "models": ["mock-echo"]}}]}}"#
    );
    let gw = TestGateway::start(&json).await;
    let r = chat(&gw, "sk-b", "").await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "budget_unavailable".into())
    );
    assert!(r.header("Retry-After").is_some());
    // Rates fail open.
    assert_eq!(chat(&gw, "sk-r", "").await.status, 200);
}

#[tokio::test]
async fn tokens_reserved_in_redis_are_settled_there() {
    let redis = RedisServer::start();
    let json = config(
        r#""tpm": 1000, "dailyTokens": 100000"#,
        &shared(&redis.url(), ""),
    );
    let gw = TestGateway::start(&json).await;
    // Each reserves ~320 of the 1000 a minute but uses a handful: without
    // the settlement in Redis the fourth would be refused.
    for i in 0..10 {
        let r = chat(&gw, "sk-ci", r#","max_tokens":300"#).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 1000);
        // Let the settlement (sent without waiting) land.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The day's tokens in Redis are what the answers used, not what was
    // reserved.
    let day_tokens: u64 = redis
        .command(&["HGET", "c2a:{key:ci}", "dt"])
        .parse()
        .unwrap();
    let stats = gw.settled_stats().await;
    let used = &stats["keyUsage"]["ci"];
    let used = used["promptTokens"].as_u64().unwrap() + used["completionTokens"].as_u64().unwrap();
    assert_eq!(day_tokens, used);
    assert_eq!(gw.settled_stats().await["sharedState"]["fallbacks"], 0);
}
