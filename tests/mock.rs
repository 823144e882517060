//! The built-in mock as a benchmark target (README "The mock as a
//! benchmark target"): its time to first token, jittered token delay,
//! answer length and injected failures, over real sockets.
//!
//! Timings are checked only from below (a sleep never ends early), so a
//! loaded machine cannot fail them; failure shares are checked over many
//! requests within five standard deviations.

mod support;

use std::time::{Duration, Instant};
use support::TestGateway;

const STREAM: &str =
    r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
const PLAIN: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Hi"}]}"#;

async fn mock(profile: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"{{"retryCount": 2, "providers": [{{"id": "m", "type": "mock", "models": ["bench"], {profile}}}]}}"#
    ))
    .await
}

/// When each event of a streamed answer arrived, from the request on.
async fn event_times(gw: &TestGateway, body: &str) -> (Vec<Duration>, String) {
    use tokio::io::AsyncReadExt;
    let mut c = gw.connect().await;
    c.send(support::post_request("/v1/chat/completions", "", body).as_bytes())
        .await;
    let start = Instant::now();
    let mut times = Vec::new();
    let mut all = Vec::new();
    let mut seen = 0;
    loop {
        let mut tmp = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), c.stream.read(&mut tmp))
            .await
            .expect("the stream went silent")
            .expect("read");
        if n == 0 {
            break;
        }
        all.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&all).into_owned();
        let count = text.matches("data: ").count();
        for _ in seen..count {
            times.push(start.elapsed());
        }
        seen = count;
        if text.contains("data: [DONE]") && text.ends_with("0\r\n\r\n") {
            break;
        }
    }
    (times, String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test]
async fn first_token_delay_jitter_and_answer_length() {
    let gw =
        mock(r#""firstTokenMs": 300, "tokenDelayMs": 20, "tokenJitterMs": 10, "answerTokens": 60"#)
            .await;
    let (times, text) = event_times(&gw, STREAM).await;
    // Role chunk, 60 words, finish chunk, [DONE]: the role chunk after the
    // time to first token, the first word right behind it.
    assert_eq!(times.len(), 63, "{text}");
    assert!(
        times[0] >= Duration::from_millis(300),
        "first token at {:?}",
        times[0]
    );
    // Between words; the finish chunk and [DONE] follow the last at once.
    let gaps: Vec<Duration> = times[1..61].windows(2).map(|w| w[1] - w[0]).collect();
    let min = gaps.iter().min().unwrap();
    let max = gaps.iter().max().unwrap();
    // Batched reads can merge events: only gaps between reads count.
    let spread: Vec<&Duration> = gaps.iter().filter(|g| !g.is_zero()).collect();
    assert!(spread.len() > 30, "events arrive one by one: {gaps:?}");
    assert!(
        spread.iter().all(|g| **g >= Duration::from_millis(9)),
        "no pause shorter than delay - jitter: {min:?}"
    );
    assert!(
        *max - **spread.iter().min().unwrap() >= Duration::from_millis(3),
        "the pauses vary: {gaps:?}"
    );
    let words: usize = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(words, 60);
    // A plain answer waits for its first token too.
    let asked = Instant::now();
    let r = gw.post_json("/v1/chat/completions", None, PLAIN).await;
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(content.split(' ').count(), 60, "{content}");
}

#[tokio::test]
async fn injected_failures_come_in_their_shares_and_are_not_retried() {
    let gw = mock(r#""failures": {"rateLimit": 0.2, "serverError": 0.1, "cutStream": 0.2, "retryAfterSeconds": 3}"#).await;
    const N: usize = 500;
    let (mut limited, mut failed, mut cut, mut whole) = (0, 0, 0, 0);
    for _ in 0..N {
        let mut c = gw.connect().await;
        let request =
            support::post_request("/v1/chat/completions", "Connection: close\r\n", STREAM);
        c.send(request.as_bytes()).await;
        let mut got = Vec::new();
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(Duration::from_secs(5), c.stream.read_to_end(&mut got))
            .await
            .expect("answered")
            .expect("read");
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("HTTP/1.1 429") {
            assert!(
                text.contains("Retry-After: 3\r\n") && text.contains("rate_limit_exceeded"),
                "{text}"
            );
            limited += 1;
        } else if text.starts_with("HTTP/1.1 500") {
            failed += 1;
        } else if text.contains("data: [DONE]") && text.ends_with("0\r\n\r\n") {
            whole += 1;
        } else {
            assert!(
                text.starts_with("HTTP/1.1 200") && !text.ends_with("0\r\n\r\n"),
                "{text}"
            );
            cut += 1;
        }
    }
    // Within 5 standard deviations of N × share.
    let within = |count: usize, share: f64| {
        let mean = N as f64 * share;
        let sd = (N as f64 * share * (1.0 - share)).sqrt();
        (count as f64 - mean).abs() <= 5.0 * sd
    };
    assert!(within(limited, 0.2), "429s: {limited}/{N}");
    assert!(within(failed, 0.1), "500s: {failed}/{N}");
    assert!(within(cut, 0.2), "cut streams: {cut}/{N}");
    assert!(within(whole, 0.5), "whole answers: {whole}/{N}");
    // Injected failures reach the client: no retry, no rest.
    let s = gw.settled_stats().await;
    assert_eq!(s["retries"], 0, "{s}");
    assert_eq!(s["failedRequests"], (limited + failed + cut) as u64, "{s}");
}

#[tokio::test]
async fn a_profile_is_checked_at_load() {
    let env = |_: &str| None;
    for (profile, says) in [
        (r#""tokenDelayMs": 5, "tokenJitterMs": 10"#, "tokenJitterMs"),
        (
            r#""failures": {"rateLimit": 0.7, "serverError": 0.5}"#,
            "more than 1",
        ),
        (r#""failures": {"cutStream": -0.1}"#, "cutStream"),
        (r#""answerTokens": 0"#, "answerTokens"),
        (r#""answerTokens": 1000000000"#, "at most 100000"),
        (r#""firstTokenMs": 18446744073709551615"#, "ten minutes"),
        (r#""models": {"m": {"endpoints": []}}"#, "names no endpoint"),
        (
            r#""models": {"m": {"endpoints": ["embeddings", "embeddings"]}}"#,
            "endpoints[1]`: is given twice",
        ),
        (r#""endpoints": ["chat"]"#, "unknown endpoint `chat`"),
        (
            r#""models": {"m": {"endpoint": ["embeddings"]}}"#,
            "unknown config key `providers[0].models.m.endpoint`",
        ),
        (
            r#""models": {"m": 5}"#,
            r#"an upstream model name or {"upstream", "endpoints"}"#,
        ),
    ] {
        let json = format!(r#"{{"providers": [{{"type": "mock", {profile}}}]}}"#);
        let err = chat2api::config::Config::from_json(&json, &env).expect_err(profile);
        assert!(err.to_string().contains(says), "{profile}: {err}");
    }
    let json = r#"{"providers": [{"type": "openai", "baseUrl": "http://127.0.0.1:9/v1", "accounts": [{"id": "a"}], "models": ["x"], "firstTokenMs": 5}]}"#;
    let err = chat2api::config::Config::from_json(json, &env).expect_err("mock only");
    assert!(
        err.to_string()
            .contains("only applies to \"type\": \"mock\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_long_pause_is_filled_with_keep_alive_comments() {
    let gw = TestGateway::start(
        r#"{"limits": {"sseKeepaliveInterval": 200},
            "providers": [{"id": "m", "type": "mock", "models": ["bench"], "firstTokenMs": 700}]}"#,
    )
    .await;
    let (_, text) = event_times(&gw, STREAM).await;
    // The comments fill the wait for the first token.
    let first = text.find("data: ").expect("events");
    let comments = text[..first].matches(": keep-alive").count();
    assert!(
        (2..=4).contains(&comments),
        "{comments} comments in 700 ms at 200 ms: {text}"
    );
    assert!(text.contains("data: [DONE]"));
}

#[tokio::test]
async fn the_mock_honours_the_answer_length_limit() {
    let gw = mock(r#""answerTokens": 20"#).await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"bench","max_tokens":3,"messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .await;
    let choice = &r.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        3
    );
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"bench","max_completion_tokens":3,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .await;
    assert!(
        r.text().contains("\"finish_reason\":\"length\""),
        "{}",
        r.text()
    );
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"bench","input":"Hi","max_output_tokens":3}"#,
        )
        .await;
    let v = r.json();
    assert_eq!(
        (
            v["status"].as_str(),
            v["incomplete_details"]["reason"].as_str()
        ),
        (Some("incomplete"), Some("max_output_tokens"))
    );
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"bench","input":"Hi","max_output_tokens":3,"stream":true}"#,
        )
        .await;
    let names: Vec<String> = r.sse().into_iter().filter_map(|e| e.event).collect();
    assert_eq!(names[..2], ["response.created", "response.in_progress"]);
    assert_eq!(
        names.last().map(String::as_str),
        Some("response.incomplete")
    );
}
