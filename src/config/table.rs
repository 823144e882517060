//! The human-readable routing table printed by `--check-config`.
//!
//! It shows what the server will do with this config: where it listens,
//! whether clients need a key, which provider and accounts answer each client
//! model under which upstream name, and how request models are rewritten.
//! Secrets never appear: client keys are shown by name, accounts by id with
//! "key set" / "no key", the management secret as "set".

use super::base_url::bracket_ipv6;
use super::{Config, Provider, ProviderKind};
use std::fmt::Write as _;

pub(super) fn render(c: &Config) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the fmt::Result is noise here.
    let _ = write_table(&mut out, c);
    out
}

fn write_table(out: &mut String, c: &Config) -> std::fmt::Result {
    match &c.source {
        Some(path) => writeln!(out, "config:      {}", path.display())?,
        None => writeln!(out, "config:      built-in default (no config file)")?,
    }
    writeln!(out, "proxy:       http://{}", addr(&c.host, c.port))?;
    let enabled_keys: Vec<&str> = c
        .api_keys
        .iter()
        .filter(|k| k.enabled)
        .map(|k| k.name.as_str())
        .collect();
    if enabled_keys.is_empty() {
        writeln!(out, "client auth: off (no enabled apiKeys)")?;
    } else {
        writeln!(
            out,
            "client auth: on, {} key(s): {}",
            enabled_keys.len(),
            enabled_keys.join(", ")
        )?;
        for k in c.api_keys.iter().filter(|k| k.enabled && k.rules.any()) {
            writeln!(out, "  key {}: {}", k.name, rules_text(&k.rules))?;
        }
    }
    match &c.shared_state {
        None => writeln!(
            out,
            "shared:      none (limits, budgets and rests kept in this instance)"
        )?,
        Some(s) => writeln!(
            out,
            "shared:      Redis at {} (timeout {} ms, budgets fail {}, sync every {} ms)",
            redact_url(&s.redis),
            s.timeout.as_millis(),
            if s.budgets_fail_closed {
                "closed"
            } else {
                "open"
            },
            s.sync_interval.as_millis()
        )?,
    }
    let m = &c.management;
    if m.enabled {
        let secret = if m.secret.is_some() { "set" } else { "not set" };
        writeln!(
            out,
            "management:  http://{} (secret {secret})",
            addr(&m.host, m.port)
        )?;
    } else {
        writeln!(out, "management:  disabled")?;
    }
    writeln!(out, "workers:     {}", c.workers)?;
    writeln!(
        out,
        "balancing:   {}, {} retries, request timeout {} ms",
        c.load_balance,
        c.retry_count,
        c.request_timeout.as_millis()
    )?;

    writeln!(out, "\nproviders:")?;
    for p in &c.providers {
        write_provider(out, p)?;
    }

    writeln!(
        out,
        "\nmodels (client model -> provider/accounts -> upstream model):"
    )?;
    let width = c
        .providers
        .iter()
        .flat_map(|p| p.models.iter().map(|(client, _)| client.chars().count()))
        .max()
        .unwrap_or(0);
    for (client, routes) in routes_by_model(c) {
        for (p, upstream) in routes {
            let accounts: Vec<&str> = p
                .accounts
                .iter()
                .filter(|a| a.enabled)
                .map(|a| a.id.as_str())
                .collect();
            let accounts = if accounts.is_empty() {
                "(no enabled account)".to_owned()
            } else {
                accounts.join(",")
            };
            let off = if p.enabled {
                ""
            } else {
                "  (provider disabled)"
            };
            let serves = match p.endpoints_of(client) {
                Some(list) => {
                    let names: Vec<&str> = list.iter().map(|e| e.name()).collect();
                    format!("  [{}]", names.join(", "))
                }
                None => String::new(),
            };
            writeln!(
                out,
                "  {client:<width$} -> {}/{accounts} -> {upstream}{serves}{off}",
                p.id
            )?;
        }
    }

    if !c.model_mappings.is_empty() {
        writeln!(out, "\nmodel mappings (request model -> client model):")?;
        let width = c
            .model_mappings
            .iter()
            .map(|m| m.request_model.chars().count())
            .max()
            .unwrap_or(0);
        for m in &c.model_mappings {
            write!(out, "  {:<width$} -> {}", m.request_model, m.actual_model)?;
            if let Some(id) = &m.preferred_provider_id {
                write!(out, " (prefer {id})")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

fn write_provider(out: &mut String, p: &Provider) -> std::fmt::Result {
    write!(out, "  {}: ", p.id)?;
    match &p.kind {
        ProviderKind::OpenAi { base_url, ca_file }
        | ProviderKind::Anthropic { base_url, ca_file } => {
            let api = match p.kind.is_anthropic() {
                true => "anthropic messages",
                false => "openai-compatible",
            };
            write!(out, "{api} {base_url}")?;
            if let Some(ca) = ca_file {
                write!(out, ", extra CA {}", ca.display())?;
            }
        }
        ProviderKind::Mock(m) => {
            write!(out, "built-in mock")?;
            if m.text.is_some() {
                write!(out, ", fixed text")?;
            }
            if !m.first_token.is_zero() {
                write!(out, ", first token after {} ms", m.first_token.as_millis())?;
            }
            if !m.token_delay.is_zero() {
                write!(out, ", {} ms per token", m.token_delay.as_millis())?;
                if !m.token_jitter.is_zero() {
                    write!(out, " ± {} ms", m.token_jitter.as_millis())?;
                }
            }
            if let Some(n) = m.answer_tokens {
                write!(out, ", {n}-word answers")?;
            }
            let f = &m.failures;
            for (share, what) in [
                (f.rate_limit, "429"),
                (f.server_error, "500"),
                (f.cut_stream, "cut streams"),
            ] {
                if share > 0.0 {
                    write!(out, ", {}% {what}", share * 100.0)?;
                }
            }
        }
    }
    if !p.is_mock() {
        let (completions, responses) = (p.completions, p.responses);
        write!(out, ", completions {completions}, responses {responses}")?;
    }
    if !p.enabled {
        write!(out, ", DISABLED")?;
    }
    writeln!(out)?;
    let is_mock = p.is_mock();
    for a in &p.accounts {
        write!(out, "      account {}", a.id)?;
        if !is_mock {
            let key = if a.api_key.is_empty() {
                "no key"
            } else {
                "key set"
            };
            write!(out, ": {key}")?;
        }
        if a.daily_limit > 0 {
            write!(out, ", daily limit {}", a.daily_limit)?;
        }
        if !a.enabled {
            write!(out, ", disabled")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Client models in order of first appearance, each with every provider that
/// serves it and the upstream name there.
fn routes_by_model(c: &Config) -> Vec<(&str, Vec<(&Provider, &str)>)> {
    let mut table: Vec<(&str, Vec<(&Provider, &str)>)> = Vec::new();
    for p in &c.providers {
        for (client, upstream) in &p.models {
            let route = (p, upstream.as_str());
            match table.iter_mut().find(|(name, _)| *name == client.as_str()) {
                Some((_, routes)) => routes.push(route),
                None => table.push((client.as_str(), vec![route])),
            }
        }
    }
    table
}

fn addr(host: &str, port: u16) -> String {
    if port == 0 {
        format!("{}:<any free port>", bracket_ipv6(host))
    } else {
        format!("{}:{port}", bracket_ipv6(host))
    }
}

/// A key's rules, one line: `models gpt-4*, mock-echo; rpm 60; ...`.
fn rules_text(r: &crate::config::KeyRules) -> String {
    let mut parts = Vec::new();
    if !r.models.is_empty() {
        parts.push(format!("models {}", r.models.join(", ")));
    }
    for (name, value) in [
        ("rpm", r.rpm),
        ("tpm", r.tpm),
        ("maxConcurrent", r.max_concurrent),
        ("dailyRequests", r.daily_requests),
        ("dailyTokens", r.daily_tokens),
    ] {
        if let Some(v) = value {
            parts.push(format!("{name} {v}"));
        }
    }
    if r.tpm.is_some() || r.daily_tokens.is_some() {
        parts.push(format!("reserveTokens {}", r.reserve_tokens));
    }
    if let Some(at) = r.expires_at {
        parts.push(format!("expires {}", crate::stats::access::rfc3339(at)));
    }
    parts.join("; ")
}

/// A Redis URL without its password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
