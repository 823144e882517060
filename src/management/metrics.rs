//! `/metrics`: the figures of `/stats` in the Prometheus text exposition
//! format 0.0.4, for scraping many instances.
//!
//! Owns the metric names (all `chat2api_`-prefixed, each written once
//! below) and the escaping rules of the format. Reads [`Stats`] and a status
//! snapshot; changes nothing. Times are in seconds, as Prometheus expects,
//! while `/stats` keeps milliseconds.

use std::fmt::{Display, Write as _};

use super::control::StatusView;
use crate::stats::{DeploymentHealth, Label, Stats, Summary};

/// Render every metric.
pub fn render(stats: &Stats, status: &StatusView, deployments: &[DeploymentHealth]) -> String {
    let mut m = Exposition::default();

    m.family(
        "chat2api_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    m.sample(
        "chat2api_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    m.family(
        "chat2api_up",
        "gauge",
        "1 while the proxy listener is running, 0 when stopped or in error.",
    );
    m.sample("chat2api_up", &[], u8::from(status.is_running()));

    m.family(
        "chat2api_uptime_seconds",
        "gauge",
        "Seconds since the proxy listener last started (0 while stopped).",
    );
    m.sample(
        "chat2api_uptime_seconds",
        &[],
        Float(status.uptime_ms as f64 / 1000.0),
    );

    let (total, success, failed) = stats.totals();
    m.family(
        "chat2api_requests_total",
        "counter",
        "Finished /v1/ requests by result (success = a completed 2xx answer).",
    );
    m.sample("chat2api_requests_total", &[("result", "success")], success);
    m.sample("chat2api_requests_total", &[("result", "failed")], failed);

    let (retries, rests) = stats.retries_and_rests();
    m.family(
        "chat2api_retries_total",
        "counter",
        "Attempts made after a request's first, on another deployment.",
    );
    m.sample("chat2api_retries_total", &[], retries);
    m.family(
        "chat2api_rests_total",
        "counter",
        "Times a deployment, account or origin was set to rest.",
    );
    m.sample("chat2api_rests_total", &[], rests);
    if !deployments.is_empty() {
        m.family(
            "chat2api_deployment_resting",
            "gauge",
            "1 while a deployment (provider/account/upstream model) rests.",
        );
        for d in deployments {
            m.sample(
                "chat2api_deployment_resting",
                &[("deployment", &d.id), ("model", &d.model)],
                u64::from(d.resting),
            );
        }
        m.family(
            "chat2api_deployment_consecutive_failures",
            "gauge",
            "Failures of a deployment since its last success.",
        );
        for d in deployments {
            m.sample(
                "chat2api_deployment_consecutive_failures",
                &[("deployment", &d.id), ("model", &d.model)],
                u64::from(d.consecutive_failures),
            );
        }
    }

    m.family(
        "chat2api_requests_in_flight",
        "gauge",
        "/v1/ requests started and not finished yet.",
    );
    m.sample(
        "chat2api_requests_in_flight",
        &[],
        total.saturating_sub(success + failed),
    );

    m.family(
        "chat2api_active_connections",
        "gauge",
        "Open client connections on the proxy port.",
    );
    m.sample(
        "chat2api_active_connections",
        &[],
        stats.active_connections(),
    );

    m.family(
        "chat2api_requests_per_minute",
        "gauge",
        "/v1/ requests started in the last 60 seconds.",
    );
    m.sample(
        "chat2api_requests_per_minute",
        &[],
        stats.requests_per_minute(),
    );

    let (prompt, completion) = stats.tokens();
    m.family(
        "chat2api_tokens_total",
        "counter",
        "Tokens of finished requests, by kind, as the upstream reported them.",
    );
    m.sample("chat2api_tokens_total", &[("kind", "prompt")], prompt);
    m.sample(
        "chat2api_tokens_total",
        &[("kind", "completion")],
        completion,
    );

    m.summary(
        "chat2api_request_latency_seconds",
        "Time from a /v1/ request reaching its route to its answer being written.",
        &stats.latency(),
    );
    m.summary(
        "chat2api_ttft_seconds",
        "Time to the first token: the first streamed event, or a plain answer.",
        &stats.ttft(),
    );

    for (label, name, key, help) in [
        (
            Label::Model,
            "chat2api_model_requests_total",
            "model",
            "Requests per model name clients asked for (the mapped name for a mapping).",
        ),
        (
            Label::Provider,
            "chat2api_provider_requests_total",
            "provider",
            "Attempts sent to each provider.",
        ),
        (
            Label::Account,
            "chat2api_account_requests_total",
            "account",
            "Attempts sent to each account, as provider/account.",
        ),
    ] {
        m.family(name, "counter", help);
        for (value, n) in stats.usage(label) {
            m.sample(name, &[(key, &value)], n);
        }
    }

    // Client keys, by name (never the secret).
    let keys = stats.key_usages();
    for (i, (name, help, kind)) in [
        (
            "chat2api_key_requests_total",
            "Requests made with each client key.",
            "counter",
        ),
        (
            "chat2api_key_refused_total",
            "Requests a client key's rules refused.",
            "counter",
        ),
        (
            "chat2api_key_prompt_tokens_total",
            "Prompt tokens of each client key's answers.",
            "counter",
        ),
        (
            "chat2api_key_completion_tokens_total",
            "Completion tokens of each client key's answers.",
            "counter",
        ),
        (
            "chat2api_key_open_requests",
            "Requests open now under a client key's rules.",
            "gauge",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        m.family(name, kind, help);
        for (key, figures) in &keys {
            m.sample(name, &[("key", key)], figures[i]);
        }
    }
    if let Some(state) = stats.shared_state.label() {
        use std::sync::atomic::Ordering::Relaxed;
        m.family(
            "chat2api_shared_state_up",
            "gauge",
            "1 while the sharedState Redis answers, 0 while requests are decided locally.",
        );
        m.sample("chat2api_shared_state_up", &[], u64::from(state == "up"));
        m.family(
            "chat2api_shared_state_fallbacks_total",
            "counter",
            "Requests decided on this instance's own counters because Redis did not answer.",
        );
        m.sample(
            "chat2api_shared_state_fallbacks_total",
            &[],
            stats.shared_state.fallbacks.load(Relaxed),
        );
        m.family(
            "chat2api_shared_state_errors_total",
            "counter",
            "Failed Redis calls (admissions, settlements, syncs).",
        );
        m.sample(
            "chat2api_shared_state_errors_total",
            &[],
            stats.shared_state.errors.load(Relaxed),
        );
    }
    m.out
}

/// A float as the format spells it (`NaN`, `+Inf`, `-Inf` included).
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            x if x.is_nan() => f.write_str("NaN"),
            x if x == f64::INFINITY => f.write_str("+Inf"),
            x if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            x => write!(f, "{x}"),
        }
    }
}

#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A summary in seconds. With no observation yet the quantiles are NaN,
    /// as the Prometheus client libraries report them.
    fn summary(&mut self, name: &str, help: &str, s: &Summary) {
        self.family(name, "summary", help);
        for (q, ms) in s.quantiles_ms {
            let value = if s.count == 0 { f64::NAN } else { ms / 1000.0 };
            self.sample(name, &[("quantile", &q.to_string())], Float(value));
        }
        self.sample(&format!("{name}_sum"), &[], Float(s.sum_ms / 1000.0));
        self.sample(&format!("{name}_count"), &[], s.count);
    }
}

/// Label values escape `\`, `"` and line feeds (text format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes `\` and line feeds only.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::management::control::Status;
    use std::sync::Arc;

    fn view(status: Status) -> StatusView {
        StatusView {
            status,
            error: None,
            host: "127.0.0.1".into(),
            port: 8080,
            uptime_ms: 1500,
            connections: 0,
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let stats = Arc::new(Stats::new());
        stats
            .counter(Label::Model, "we\"ird\\model")
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let text = render(&stats, &view(Status::Stopped), &[]);
        assert!(text.contains("chat2api_up 0\n"), "{text}");
        assert!(text.contains("chat2api_uptime_seconds 1.5\n"));
        assert!(text.contains(r#"chat2api_model_requests_total{model="we\"ird\\model"} 2"#));
        assert!(text.contains("chat2api_request_latency_seconds{quantile=\"0.99\"} NaN\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let mut t = crate::stats::Tally::new(&stats);
        t.first_token();
        t.finish(200, true, None);
        let text = render(&stats, &view(Status::Running), &[]);
        assert!(text.contains("chat2api_up 1\n"));
        assert!(text.contains("chat2api_requests_total{result=\"success\"} 1\n"));
        assert!(text.contains("chat2api_ttft_seconds_count 1\n"));
        assert!(!text.contains("NaN"), "{text}");
    }

    #[test]
    fn client_keys_and_the_shared_state_by_name() {
        let stats = Arc::new(Stats::new());
        let usage = stats.key_usage("ci");
        let mut t = crate::stats::Tally::new(&stats);
        t.key(0, usage);
        t.tokens(7, 3);
        t.finish(200, true, None);
        stats
            .shared_state
            .state
            .store(2, std::sync::atomic::Ordering::Relaxed);
        let text = render(&stats, &view(Status::Running), &[]);
        for line in [
            "chat2api_key_requests_total{key=\"ci\"} 1\n",
            "chat2api_key_prompt_tokens_total{key=\"ci\"} 7\n",
            "chat2api_key_completion_tokens_total{key=\"ci\"} 3\n",
            "chat2api_key_open_requests{key=\"ci\"} 0\n",
            "chat2api_shared_state_up 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
