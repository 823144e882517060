//! Routing that survives real failures (docs/wire.md §2): health per deployment,
//! per account and per origin; `Retry-After`; refusals that say when to
//! come back; client errors that rest nothing; request ids.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use support::upstream::{chat_answer, json_answer, send, MockUpstream, Recorded, Step};
use support::TestGateway;

fn status(code: &str, extra: &str) -> Vec<Step> {
    let body =
        format!(r#"{{"error":{{"message":"upstream says {code}","type":"x","code":null}}}}"#);
    vec![send(format!(
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))]
}

fn ok(req: &Recorded) -> Vec<Step> {
    let model = req.json()["model"].as_str().unwrap_or_default().to_owned();
    json_answer(&chat_answer(&model, "fine"))
}

/// Accounts `a` and `b` (keys `sk-a`, `sk-b`) of provider `up`, serving
/// models `x` and `y`.
fn config(base_url: &str, accounts: &[&str], retries: u32) -> String {
    let accounts: Vec<String> = accounts
        .iter()
        .map(|a| format!(r#"{{"id": "{a}", "apiKey": "sk-{a}"}}"#))
        .collect();
    format!(
        r#"{{"retryCount": {retries}, "requestTimeout": 2000,
  "providers": [{{"id": "up", "type": "openai", "baseUrl": "{base_url}",
    "accounts": [{}], "models": {{"x": "up-x", "y": "up-y"}}}}]}}"#,
        accounts.join(", ")
    )
}

fn ask(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}]}}"#)
}

/// How many requests reached the upstream with account key `key`.
fn sent_with_key(up: &MockUpstream, key: &str) -> usize {
    let auth = format!("Bearer {key}");
    up.requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.header("authorization") == Some(auth.as_str()))
        .count()
}

async fn chat(gw: &TestGateway, model: &str) -> support::Response {
    gw.post_json("/v1/chat/completions", None, &ask(model))
        .await
}

/// The failing case of the issue: one account, several models; a 500 on
/// `x`, a 429 with `Retry-After: 1` on `y`. `x` keeps being served, `y`
/// rests for that second only, and is served again after it.
#[tokio::test]
async fn a_rate_limit_on_one_model_leaves_the_accounts_other_models_serving() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let up = MockUpstream::start(move |req| {
        let n = seen.fetch_add(1, SeqCst);
        match (req.json()["model"].as_str(), n) {
            (Some("up-x"), 0) => status("500 Internal Server Error", ""),
            (Some("up-y"), 1) => status("429 Too Many Requests", "Retry-After: 1\r\n"),
            _ => ok(req),
        }
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a"], 0)).await;
    assert_eq!(chat(&gw, "x").await.status, 500);
    let r = chat(&gw, "y").await;
    assert_eq!(r.status, 429, "the upstream's own 429 is passed on");
    assert_eq!(r.header("retry-after"), Some("1"));
    // `x` is not touched by `y`'s rate limit.
    assert_eq!(chat(&gw, "x").await.status, 200);
    // `y` rests on its Retry-After, without asking the upstream.
    let before = up.count();
    let r = chat(&gw, "y").await;
    assert_eq!(
        (r.status, r.error_code()),
        (429, "rate_limit_exceeded".into())
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(up.count(), before);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat(&gw, "y").await.status, 200);
    let stats = gw.settled_stats().await;
    assert_eq!(stats["rests"], 1, "{stats}");
    assert_eq!(
        stats["modelUsage"]["y"], 3,
        "requests, not attempts: {stats}"
    );
}

/// Two accounts: one's key is refused. After three refusals that account
/// rests for every model, and the other serves everything; the health
/// shows why in /stats and /metrics.
#[tokio::test]
async fn a_refused_key_rests_its_account_and_the_other_serves() {
    let up = MockUpstream::start(|req| match req.header("authorization") {
        Some("Bearer sk-a") => status("401 Unauthorized", ""),
        _ => ok(req),
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a", "b"], 1)).await;
    for model in ["x", "y", "x", "y", "x", "y"] {
        assert_eq!(chat(&gw, model).await.status, 200);
    }
    let stats = gw.settled_stats().await;
    let accounts = stats["health"]["accounts"].as_array().unwrap();
    let a = accounts.iter().find(|a| a["id"] == "up/a").unwrap();
    assert_eq!(a["account"]["state"], "resting", "{stats}");
    assert_eq!(a["account"]["reason"], "key_refused");
    assert_eq!(a["account"]["lastError"]["status"], 401);
    let b = accounts.iter().find(|a| a["id"] == "up/b").unwrap();
    assert_eq!(b["account"]["state"], "healthy");
    let refused = sent_with_key(&up, "sk-a");
    assert_eq!(refused, 3, "account a rests after three refusals");
    assert!(stats["retries"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["health"]["deployments"].as_array().unwrap().len(), 4);
}

/// Every candidate resting: 429 when they all rest on rate limits (with
/// `Retry-After` as seconds or as an HTTP date), else 503; both with the
/// seconds until the soonest comes back.
#[tokio::test]
async fn all_candidates_resting_say_when_to_come_back() {
    let date = httpdate_in(3);
    let up = MockUpstream::start(move |req| match req.header("authorization") {
        Some("Bearer sk-a") => status("429 Too Many Requests", "Retry-After: 2\r\n"),
        _ => status("429 Too Many Requests", &format!("Retry-After: {date}\r\n")),
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a", "b"], 1)).await;
    assert_eq!(chat(&gw, "x").await.status, 429);
    assert_eq!(up.count(), 2, "both accounts were tried");
    let r = chat(&gw, "x").await;
    assert_eq!(
        (r.status, r.error_code()),
        (429, "rate_limit_exceeded".into())
    );
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    assert_eq!(up.count(), 2, "resting candidates are not asked");

    // Rests from 5xx, not rate limits: 503 with the time to the soonest.
    let up = MockUpstream::start(|_| status("500 Internal Server Error", "")).await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a", "b"], 1)).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, "x").await.status, 500);
    }
    let r = chat(&gw, "x").await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "no_available_account".into())
    );
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((55..=60).contains(&secs), "{secs}");
}

/// An HTTP date `secs` from now (IMF-fixdate, RFC 9110 §5.6.7).
fn httpdate_in(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("+{secs} seconds"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A 4xx caused by the request is passed on and rests nothing, however
/// often; a client's `OpenAI-Organization` never reaches the upstream.
#[tokio::test]
async fn client_errors_rest_nothing_and_client_org_headers_stay_home() {
    let up = MockUpstream::start(|req| match req.json()["model"].as_str() {
        Some("up-x") => status("400 Bad Request", ""),
        _ => ok(req),
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a", "b"], 2)).await;
    for _ in 0..5 {
        let r = gw
            .request(&support::post_request(
                "/v1/chat/completions",
                "OpenAI-Organization: org-other\r\nOpenAI-Project: proj-other\r\n",
                &ask("x"),
            ))
            .await;
        assert_eq!(r.status, 400);
    }
    assert_eq!(up.count(), 5, "no retries on a client error");
    for r in up.requests.lock().unwrap().iter() {
        assert_eq!(r.header("openai-organization"), None);
        assert_eq!(r.header("openai-project"), None);
    }
    let stats = gw.settled_stats().await;
    assert_eq!(stats["rests"], 0, "{stats}");
    for d in stats["health"]["deployments"].as_array().unwrap() {
        assert_eq!(d["health"]["state"], "healthy", "{d}");
    }
}

/// An account's own organization and project go upstream with its key.
#[tokio::test]
async fn an_accounts_organization_goes_with_its_key() {
    let up = MockUpstream::start(ok).await;
    let config = format!(
        r#"{{"providers": [{{"id": "up", "type": "openai", "baseUrl": "{}",
    "accounts": [{{"id": "a", "apiKey": "sk-a", "organization": "org-mine", "project": "proj-mine"}}],
    "models": ["m"]}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    assert_eq!(chat(&gw, "m").await.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("openai-organization"), Some("org-mine"));
    assert_eq!(seen.header("openai-project"), Some("proj-mine"));
}

/// The upstream's `x-request-id` (and its rate-limit figures) reach the
/// client on plain answers, streams and errors; without one, chat2api
/// makes one. Browsers may read both the id and `Retry-After`.
#[tokio::test]
async fn request_ids_reach_the_client() {
    let up = MockUpstream::start(|req| {
        let v = req.json();
        let id = "x-request-id: req_upstream123\r\nx-ratelimit-remaining-requests: 99\r\n";
        match (v["model"].as_str(), v["stream"] == true) {
            (Some("up-x"), false) => {
                let body = chat_answer("up-x", "fine");
                vec![send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{id}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ))]
            }
            (Some("up-x"), true) => vec![send(format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{id}Connection: close\r\n\r\ndata: {}\n\ndata: [DONE]\n\n",
                support::upstream::chunk("up-x", "hi")
            )), Step::Close],
            (Some("up-y"), _) => status("400 Bad Request", id),
            _ => ok(req),
        }
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a"], 0)).await;
    let plain = chat(&gw, "x").await;
    let stream = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .await;
    let error = chat(&gw, "y").await;
    for r in [&plain, &stream, &error] {
        assert_eq!(r.header("x-request-id"), Some("req_upstream123"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("99"));
        let exposed = r
            .header("access-control-expose-headers")
            .unwrap_or_default();
        assert!(exposed.contains("x-request-id") && exposed.contains("Retry-After"));
    }
    assert_eq!(error.status, 400);
    // Refused before routing too: an unknown route, a wrong method.
    for r in [
        gw.get("/v1/nope").await,
        gw.get("/v1/chat/completions").await,
    ] {
        assert!(
            r.header("x-request-id")
                .is_some_and(|id| id.starts_with("req_")),
            "{}",
            r.status
        );
    }
    // No upstream id (and no upstream at all): one of chat2api's own.
    let own = gw.get("/v1/models").await;
    let id = own.header("x-request-id").unwrap();
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
    let unknown = chat(&gw, "no-such-model").await;
    assert_ne!(unknown.header("x-request-id"), Some(id));
    // A body refused for another reason still names its model in the log.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"named-but-no-messages"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    // The request log keeps the id, and the model asked for even unknown.
    gw.settled_stats().await;
    let log = gw.stats.log_json();
    assert!(log.contains("req_upstream123"), "{log}");
    assert!(log.contains(r#""requestedModel":"no-such-model""#), "{log}");
    assert!(
        log.contains(r#""requestedModel":"named-but-no-messages""#),
        "{log}"
    );
}

/// The official Python SDK, with its own retries on: the first answer is
/// a 429 with `Retry-After: 1`, then the only candidate rests for that
/// second; the SDK waits as told and gets its answer. The request id
/// reaches `_request_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_retries_on_its_own_and_succeeds() {
    let py = support::sdk::python();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let up = MockUpstream::start(move |req| match seen.fetch_add(1, SeqCst) {
        0 => status("429 Too Many Requests", "Retry-After: 1\r\n"),
        _ => {
            let body = chat_answer(req.json()["model"].as_str().unwrap_or_default(), "fine");
            vec![send(format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req_from_upstream\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))]
        }
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &["a"], 0)).await;
    let script = format!(
        r#"
from openai import OpenAI
client = OpenAI(api_key="k", base_url="http://{}/v1", max_retries=3)
r = client.chat.completions.create(model="x", messages=[{{"role": "user", "content": "Hi"}}])
assert r.choices[0].message.content == "fine", r
assert r._request_id == "req_from_upstream", r._request_id
print("ok")
"#,
        gw.addr
    );
    tokio::task::spawn_blocking(move || {
        support::sdk::run(std::process::Command::new(py).arg("-c").arg(script))
    })
    .await
    .unwrap();
    assert_eq!(
        calls.load(SeqCst),
        2,
        "the resting second was not sent upstream"
    );
}

/// Two origins serve one model: connections to the first cannot be made.
/// After three, that origin (all its accounts) rests and the second serves
/// every request at once.
#[tokio::test]
async fn an_unreachable_origin_rests_and_the_other_serves() {
    let up = MockUpstream::start(ok).await;
    // A port nothing listens on: connections are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let config = format!(
        r#"{{"retryCount": 2, "loadBalanceStrategy": "failover",
  "management": {{"enabled": false}},
  "providers": [
    {{"id": "dead", "type": "openai", "baseUrl": "{dead_url}",
      "accounts": [{{"id": "a", "apiKey": "sk-a"}}, {{"id": "b", "apiKey": "sk-b"}}], "models": {{"x": "up-x"}}}},
    {{"id": "live", "type": "openai", "baseUrl": "{}",
      "accounts": [{{"id": "c", "apiKey": "sk-c"}}], "models": {{"x": "up-x"}}}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, "x").await.status, 200);
    }
    let stats = gw.settled_stats().await;
    let accounts = stats["health"]["accounts"].as_array().unwrap();
    for id in ["dead/a", "dead/b"] {
        let a = accounts.iter().find(|a| a["id"] == id).unwrap();
        assert_eq!(a["origin"]["state"], "resting", "{stats}");
        assert_eq!(a["origin"]["reason"], "unreachable");
    }
    // Now the live origin is asked first, without a retry.
    let retries = stats["retries"].as_u64().unwrap();
    assert_eq!(chat(&gw, "x").await.status, 200);
    assert_eq!(
        gw.settled_stats().await["retries"].as_u64().unwrap(),
        retries
    );
    assert_eq!(up.count(), 4);
}

/// A deployment whose 2xx answers are no answers (HTML here) fails like a
/// 5xx: retried elsewhere, and after three in a row it rests.
#[tokio::test]
async fn a_deployment_answering_html_rests() {
    let up = MockUpstream::start(|req| match req.header("authorization") {
        Some("Bearer sk-a") => vec![send(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>",
        )],
        _ => ok(req),
    })
    .await;
    let config = config(&up.base_url(), &["a", "b"], 1).replace(
        r#""retryCount": 1"#,
        r#""retryCount": 1, "loadBalanceStrategy": "failover""#,
    );
    let gw = TestGateway::start(&config).await;
    for _ in 0..4 {
        assert_eq!(chat(&gw, "x").await.status, 200);
    }
    let stats = gw.settled_stats().await;
    let deployment = stats["health"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "up/a/up-x")
        .unwrap()
        .clone();
    assert_eq!(deployment["health"]["state"], "resting", "{stats}");
    assert_eq!(deployment["health"]["reason"], "server_error");
    let html_answers = sent_with_key(&up, "sk-a");
    assert_eq!(
        html_answers, 3,
        "the fourth request skips the resting deployment"
    );
}
