//! Config loading tests: the docs/wire.md §2 example, every error variant with its
//! path, vendor shorthand, the built-in default, and secret hygiene.

use super::*;

/// The docs/wire.md §2 example, verbatim.
const SPEC_EXAMPLE: &str = r#"{
  "host": "127.0.0.1",
  "port": 8080,
  "apiKeys": ["sk-local-one", {"name": "ci", "key": "${CI_KEY}", "enabled": true}],
  "loadBalanceStrategy": "round-robin",
  "requestTimeout": 120000,
  "retryCount": 2,
  "management": {"host": "127.0.0.1", "port": 8081, "secret": "${C2A_ADMIN}"},
  "providers": [
    {
      "id": "deepseek",
      "type": "openai",
      "baseUrl": "https://api.deepseek.com/v1",
      "accounts": [{"id": "main", "apiKey": "${DEEPSEEK_API_KEY}", "dailyLimit": 0}],
      "models": {"DeepSeek-V3.2": "deepseek-chat", "deepseek-reasoner": "deepseek-reasoner"},
      "completions": "native"
    },
    {"id": "local", "type": "mock", "models": ["mock-echo"]}
  ],
  "modelMappings": [
    {"requestModel": "gpt-4*", "actualModel": "DeepSeek-V3.2", "preferredProviderId": "deepseek"}
  ]
}"#;

const CI_KEY: &str = "sk-ci-secret-0123";
const ADMIN: &str = "admin-secret-4567";
const DEEPSEEK_KEY: &str = "sk-deepseek-secret-89ab";

fn spec_env(name: &str) -> Option<String> {
    match name {
        "CI_KEY" => Some(CI_KEY.to_owned()),
        "C2A_ADMIN" => Some(ADMIN.to_owned()),
        "DEEPSEEK_API_KEY" => Some(DEEPSEEK_KEY.to_owned()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_json(text, &spec_env)
}

/// A one-provider config with `extra` spliced into the top level.
fn with_top(extra: &str) -> String {
    format!(r#"{{"providers": [{{"type": "mock"}}] {extra}}}"#)
}

fn models(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

fn served_by<'a>(c: &'a Config, model: &str) -> Vec<&'a str> {
    c.providers
        .iter()
        .filter(|p| p.upstream_model(model).is_some())
        .map(|p| p.id.as_str())
        .collect()
}

#[track_caller]
fn assert_unknown_key(text: &str, expected: &str) {
    match parse(text) {
        Err(ConfigError::UnknownKey { path }) => assert_eq!(path, expected),
        other => panic!("expected UnknownKey {expected}, got {other:?}"),
    }
}

/// An `Invalid` error at exactly `expected`; returns its message.
#[track_caller]
fn assert_invalid(text: &str, expected: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { path, message }) => {
            assert_eq!(path, expected, "message: {message}");
            message
        }
        other => panic!("expected Invalid at {expected}, got {other:?}"),
    }
}

#[test]
fn spec_example_parses() {
    let c = parse(SPEC_EXAMPLE).expect("the SPEC example is valid");
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
    assert_eq!(c.api_keys.len(), 2);
    assert_eq!(
        (c.api_keys[0].name.as_str(), c.api_keys[0].key.as_str()),
        ("key1", "sk-local-one")
    );
    assert_eq!(
        (c.api_keys[1].name.as_str(), c.api_keys[1].key.as_str()),
        ("ci", CI_KEY)
    );
    assert!(c.auth_enabled());
    assert_eq!(c.load_balance, Strategy::RoundRobin);
    assert_eq!(c.request_timeout, Duration::from_secs(120));
    assert_eq!(c.retry_count, 2);
    assert_eq!(
        c.management,
        Management {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 8081,
            secret: Some(ADMIN.to_owned()),
        }
    );

    let deepseek = &c.providers[0];
    assert_eq!(deepseek.id, "deepseek");
    let ProviderKind::OpenAi { base_url, ca_file } = &deepseek.kind else {
        panic!("openai provider expected");
    };
    assert_eq!(base_url.to_string(), "https://api.deepseek.com/v1");
    assert_eq!(ca_file, &None);
    assert_eq!(
        deepseek.accounts,
        [Account {
            id: "main".to_owned(),
            api_key: DEEPSEEK_KEY.to_owned(),
            daily_limit: 0,
            enabled: true,
            organization: None,
            project: None,
        }]
    );
    assert_eq!(
        deepseek.models,
        models(&[
            ("DeepSeek-V3.2", "deepseek-chat"),
            ("deepseek-reasoner", "deepseek-reasoner")
        ])
    );
    assert_eq!(deepseek.completions, EndpointMode::Native);
    assert!(deepseek.enabled);

    let local = &c.providers[1];
    assert_eq!(local.id, "local");
    assert!(local.is_mock());
    assert_eq!(local.models, models(&[("mock-echo", "mock-echo")]));
    assert_eq!(local.accounts.len(), 1, "the mock gets an implied account");

    assert_eq!(
        c.model_mappings,
        [ModelMapping {
            request_model: "gpt-4*".to_owned(),
            actual_model: "DeepSeek-V3.2".to_owned(),
            preferred_provider_id: Some("deepseek".to_owned()),
        }]
    );
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.source, None);
}

#[test]
fn minimal_file_gets_every_default() {
    let c = parse(r#"{"providers": [{"type": "mock"}]}"#).expect("valid");
    assert_eq!((c.host.as_str(), c.port), (DEFAULT_HOST, DEFAULT_PORT));
    assert!(c.api_keys.is_empty() && !c.auth_enabled());
    assert_eq!(c.load_balance, Strategy::RoundRobin);
    assert_eq!(c.request_timeout, Duration::from_millis(120_000));
    assert_eq!(c.retry_count, 2);
    assert_eq!(c.management, Management::default());
    assert_eq!(c.providers[0].id, "mock", "id defaults to the type");
    assert_eq!(c.providers[0].models, models(&[("mock-echo", "mock-echo")]));
    assert_eq!(
        c.providers[0].kind,
        ProviderKind::Mock(MockProfile::default())
    );
    assert!(c.model_mappings.is_empty());
}

#[test]
fn limit_defaults_follow_spec_section_6() {
    let l = Limits::default();
    assert_eq!(l.max_head_bytes, 64 * 1024);
    assert_eq!(l.max_headers, 100);
    assert_eq!(l.max_uri_bytes, 8 * 1024);
    assert_eq!(l.max_body_bytes, 50 * 1024 * 1024);
    assert_eq!(l.header_read_timeout, Duration::from_secs(10));
    assert_eq!(l.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!(l.upstream_connect_timeout, Duration::from_secs(5));
    assert_eq!(l.stream_idle_timeout, Duration::from_secs(300));
    assert_eq!(l.drain_timeout, Duration::from_secs(30));
}

#[test]
fn limits_are_milliseconds_and_partial() {
    let c = parse(&with_top(
        r#", "limits": {"headerReadTimeout": 2500, "maxBodyBytes": 1024, "sseKeepaliveInterval": 0}"#,
    ))
    .expect("valid");
    assert_eq!(c.limits.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(c.limits.max_body_bytes, 1024);
    assert_eq!(c.limits.sse_keepalive_interval, Duration::ZERO);
    assert_eq!(c.limits.max_headers, 100, "untouched keys keep defaults");
}

#[test]
fn unknown_keys_name_their_full_path() {
    assert_unknown_key(&with_top(r#", "prot": 1"#), "prot");
    assert_unknown_key(
        r#"{"providers": [{"type": "mock"}, {"type": "openai", "basUrl": "https://x"}]}"#,
        "providers[1].basUrl",
    );
    assert_unknown_key(
        r#"{"providers": [{"type": "openai", "baseUrl": "https://x", "models": ["m"],
            "accounts": [{"id": "a", "apikey": "k"}]}]}"#,
        "providers[0].accounts[0].apikey",
    );
    assert_unknown_key(
        &with_top(r#", "limits": {"maxHeaders": 10, "headerReadTimeoutMs": 5}"#),
        "limits.headerReadTimeoutMs",
    );
    assert_unknown_key(
        &with_top(r#", "management": {"secrets": "x"}"#),
        "management.secrets",
    );
    assert_unknown_key(
        &with_top(r#", "apiKeys": ["a", {"key": "b", "enabld": false}]"#),
        "apiKeys[1].enabld",
    );
    assert_unknown_key(
        &with_top(
            r#", "modelMappings": [{"requestModel": "a", "actualModel": "mock-echo", "preferred": "mock"}]"#,
        ),
        "modelMappings[0].preferred",
    );
}

#[test]
fn unknown_key_message_names_the_path() {
    let err =
        parse(r#"{"providers": [{"type": "mock"}, {"type": "openai", "basUrl": "https://x"}]}"#)
            .expect_err("typo");
    let message = err.to_string();
    assert!(message.contains("`providers[1].basUrl`"), "{message}");
    assert!(!message.contains('\n'));
}

#[test]
fn missing_env_var_is_named() {
    let text = with_top(r#", "apiKeys": ["a", {"key": "${NOT_SET_ANYWHERE}"}]"#);
    match parse(&text) {
        Err(err @ ConfigError::MissingEnv { .. }) => {
            let ConfigError::MissingEnv { var, path } = &err else {
                unreachable!()
            };
            assert_eq!(var, "NOT_SET_ANYWHERE");
            assert_eq!(path, "apiKeys[1].key");
            let message = err.to_string();
            assert!(message.contains("NOT_SET_ANYWHERE") && message.contains("apiKeys[1].key"));
        }
        other => panic!("{other:?}"),
    }
    // The SPEC example without its variables.
    assert!(matches!(
        Config::from_json(SPEC_EXAMPLE, &no_env),
        Err(ConfigError::MissingEnv { .. })
    ));
}

#[test]
fn env_vars_embed_in_any_string() {
    let env = |name: &str| match name {
        "WHO" => Some("world".to_owned()),
        "PORTLESS_HOST" => Some("example.org".to_owned()),
        _ => None,
    };
    let c = Config::from_json(
        r#"{"providers": [
            {"id": "m", "type": "mock", "text": "hello ${WHO}, $${WHO} is literal"},
            {"id": "o", "type": "openai", "baseUrl": "https://${PORTLESS_HOST}/v1",
             "accounts": [{"id": "a", "apiKey": "pre-${WHO}-post"}], "models": ["x"]}
        ]}"#,
        &env,
    )
    .expect("valid");
    assert_eq!(
        c.providers[0].kind,
        ProviderKind::Mock(MockProfile {
            text: Some("hello world, ${WHO} is literal".to_owned()),
            ..MockProfile::default()
        })
    );
    let ProviderKind::OpenAi { base_url, .. } = &c.providers[1].kind else {
        panic!("openai expected");
    };
    assert_eq!(base_url.host, "example.org");
    assert_eq!(c.providers[1].accounts[0].api_key, "pre-world-post");
}

#[test]
fn models_map_keeps_file_order() {
    let c = parse(
        r#"{"providers": [{"type": "mock", "models":
            {"zeta": "z-up", "alpha": "a-up", "mid": "m-up", "Beta": "b-up"}}]}"#,
    )
    .expect("valid");
    assert_eq!(
        c.providers[0].models,
        models(&[
            ("zeta", "z-up"),
            ("alpha", "a-up"),
            ("mid", "m-up"),
            ("Beta", "b-up")
        ])
    );
    assert_eq!(c.providers[0].upstream_model("mid"), Some("m-up"));
    assert_eq!(c.providers[0].upstream_model("m-up"), None);
}

#[test]
fn models_list_means_same_name() {
    let c = parse(r#"{"providers": [{"type": "mock", "models": ["b", "a"]}]}"#).expect("valid");
    assert_eq!(c.providers[0].models, models(&[("b", "b"), ("a", "a")]));
}

#[test]
fn models_errors() {
    assert_invalid(
        r#"{"providers": [{"type": "mock", "models": "one"}]}"#,
        "providers[0].models",
    );
    assert_invalid(
        r#"{"providers": [{"type": "mock", "models": {"a": 1}}]}"#,
        "providers[0].models.a",
    );
    let msg = assert_invalid(
        r#"{"providers": [{"type": "mock", "models": {"a": "x", "a": "y"}}]}"#,
        "providers[0].models",
    );
    assert!(msg.contains("twice"), "{msg}");
    assert_invalid(
        r#"{"providers": [{"type": "mock", "models": []}]}"#,
        "providers[0].models",
    );
    assert_invalid(
        r#"{"providers": [{"type": "mock", "models": [""]}]}"#,
        "providers[0].models",
    );
}

#[test]
fn vendor_shorthand() {
    let c = parse(r#"{"providers": [{"type": "deepseek"}]}"#).expect("valid");
    let p = &c.providers[0];
    assert_eq!(p.id, "deepseek");
    let ProviderKind::OpenAi { base_url, .. } = &p.kind else {
        panic!("openai expected");
    };
    assert_eq!(base_url.to_string(), "https://api.deepseek.com/v1");
    assert_eq!(p.accounts.len(), 1);
    assert_eq!(p.accounts[0].id, DEFAULT_ACCOUNT_ID);
    assert_eq!(p.accounts[0].api_key, DEEPSEEK_KEY);
    assert_eq!(p.upstream_model("DeepSeek-V3.2"), Some("deepseek-chat"));
    assert_eq!(
        p.upstream_model("deepseek-reasoner"),
        Some("deepseek-reasoner")
    );

    // Explicit parts override the vendor's.
    let c = parse(
        r#"{"providers": [{"id": "ds", "type": "deepseek", "models": ["deepseek-chat"],
            "accounts": [{"id": "a", "apiKey": "k1"}, {"id": "b", "apiKey": "k2", "dailyLimit": 500}]}]}"#,
    )
    .expect("valid");
    assert_eq!(c.providers[0].id, "ds");
    assert_eq!(
        c.providers[0].models,
        models(&[("deepseek-chat", "deepseek-chat")])
    );
    assert_eq!(c.providers[0].accounts[1].daily_limit, 500);

    // "openai" is the OpenAI vendor too when no baseUrl is given.
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-openai".to_owned());
    let c = Config::from_json(r#"{"providers": [{"type": "openai"}]}"#, &env).expect("valid");
    assert_eq!(c.providers[0].upstream_model("gpt-4o"), Some("gpt-4o"));
}

#[test]
fn vendor_shorthand_errors() {
    let msg = assert_invalid(
        r#"{"providers": [{"type": "groq"}]}"#,
        "providers[0].accounts",
    );
    assert!(msg.contains("GROQ_API_KEY"), "{msg}");
    // A vendor key is never sent to another host, and its models are not implied.
    assert_invalid(
        r#"{"providers": [{"type": "deepseek", "baseUrl": "https://proxy.example/v1", "models": ["m"]}]}"#,
        "providers[0].accounts",
    );
    assert_invalid(
        r#"{"providers": [{"type": "openai", "baseUrl": "http://localhost:11434/v1",
            "accounts": [{"id": "local"}]}]}"#,
        "providers[0].models",
    );
    let msg = assert_invalid(
        r#"{"providers": [{"type": "deepsek"}]}"#,
        "providers[0].type",
    );
    assert!(
        msg.contains("deepseek"),
        "the message lists the known types: {msg}"
    );
    assert_invalid(
        r#"{"providers": [{"type": "deepseek", "text": "hi"}]}"#,
        "providers[0].text",
    );
    assert_invalid(
        r#"{"providers": [{"type": "mock", "baseUrl": "https://x"}]}"#,
        "providers[0].baseUrl",
    );
}

#[test]
fn local_openai_server_without_key() {
    let c = parse(
        r#"{"providers": [{"id": "ollama", "type": "openai", "baseUrl": "http://127.0.0.1:11434/v1/",
            "accounts": [{"id": "local"}], "models": {"llama": "llama3.2:3b"}, "completions": "chat",
            "caFile": "certs/ca.pem"}]}"#,
    )
    .expect("valid");
    let p = &c.providers[0];
    assert_eq!(p.accounts[0].api_key, "", "empty = no Authorization header");
    assert_eq!(p.completions, EndpointMode::Chat);
    let ProviderKind::OpenAi { base_url, ca_file } = &p.kind else {
        panic!("openai expected");
    };
    assert_eq!(base_url.authority(), "127.0.0.1:11434");
    assert_eq!(base_url.path, "/v1");
    assert_eq!(ca_file.as_deref(), Some(Path::new("certs/ca.pem")));
}

#[test]
fn builtin_without_env() {
    let c = Config::builtin(&no_env);
    c.validate().expect("the built-in default is valid");
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
    assert_eq!(c.providers.len(), 1);
    let mock = &c.providers[0];
    assert_eq!(mock.id, "mock");
    assert!(mock.is_mock());
    assert_eq!(
        mock.models,
        models(&[
            ("mock-echo", "mock-echo"),
            ("DeepSeek-V3.2", "DeepSeek-V3.2")
        ])
    );
    assert!(!c.auth_enabled());
    assert_eq!(c.source, None);
}

#[test]
fn builtin_with_deepseek_key() {
    let env = |name: &str| (name == "DEEPSEEK_API_KEY").then(|| DEEPSEEK_KEY.to_owned());
    let c = Config::builtin(&env);
    c.validate().expect("valid");
    assert_eq!(served_by(&c, "DeepSeek-V3.2"), ["deepseek"]);
    assert_eq!(served_by(&c, "mock-echo"), ["mock"]);
    let deepseek = c.provider("deepseek").expect("deepseek provider");
    assert_eq!(
        deepseek.upstream_model("DeepSeek-V3.2"),
        Some("deepseek-chat")
    );
    assert_eq!(deepseek.accounts[0].api_key, DEEPSEEK_KEY);
}

#[test]
fn builtin_adds_one_provider_per_vendor_key() {
    let env = |name: &str| match name {
        "GROQ_API_KEY" | "OPENAI_API_KEY" => Some("k".to_owned()),
        "MISTRAL_API_KEY" => Some(String::new()),
        _ => None,
    };
    let c = Config::builtin(&env);
    c.validate().expect("valid");
    let ids: Vec<&str> = c.providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        ["mock", "openai", "groq"],
        "an empty variable counts as unset"
    );
    assert_eq!(served_by(&c, "DeepSeek-V3.2"), ["mock"]);
}

#[test]
fn file_without_providers_uses_the_builtin_ones() {
    let c = parse(r#"{"port": 0}"#).expect("valid");
    assert_eq!(c.port, 0, "port 0 (ephemeral) is allowed");
    assert_eq!(served_by(&c, "mock-echo"), ["mock"]);
    // spec_env sets DEEPSEEK_API_KEY.
    assert_eq!(served_by(&c, "DeepSeek-V3.2"), ["deepseek"]);
    assert_invalid(r#"{"providers": []}"#, "providers");
}

#[test]
fn provider_ids() {
    let msg = assert_invalid(
        r#"{"providers": [{"type": "mock"}, {"type": "mock", "models": ["x"]}]}"#,
        "providers[1].id",
    );
    assert!(msg.contains("mock"), "{msg}");
    assert_invalid(
        r#"{"providers": [{"id": "", "type": "mock"}]}"#,
        "providers[0].id",
    );
    assert_invalid(
        r#"{"providers": [{"id": "a/b", "type": "mock"}]}"#,
        "providers[0].id",
    );
    assert_invalid(
        r#"{"providers": [{"type": "mock", "accounts": [{"id": "x"}, {"id": "x"}]}]}"#,
        "providers[0].accounts[1].id",
    );
    assert_invalid(
        r#"{"providers": [{"type": "mock", "accounts": [{"apiKey": "k"}]}]}"#,
        "providers[0].accounts[0].id",
    );
}

#[test]
fn openai_provider_needs_an_account() {
    let msg = assert_invalid(
        r#"{"providers": [{"type": "openai", "baseUrl": "https://x/v1", "models": ["m"], "accounts": []}]}"#,
        "providers[0].accounts",
    );
    assert!(msg.contains("at least one account"), "{msg}");
}

#[test]
fn bad_base_urls() {
    for url in [
        "ftp://x/v1",
        "api.openai.com",
        "https://",
        "https://h:99999",
    ] {
        let text = format!(
            r#"{{"providers": [{{"type": "openai", "baseUrl": "{url}", "models": ["m"], "accounts": [{{"id": "a"}}]}}]}}"#
        );
        assert_invalid(&text, "providers[0].baseUrl");
    }
}

#[test]
fn mappings_must_point_somewhere() {
    let text = |mapping: &str| {
        format!(
            r#"{{"providers": [{{"id": "m", "type": "mock"}}, {{"id": "n", "type": "mock", "models": ["other"]}}],
                "modelMappings": [{mapping}]}}"#
        )
    };
    parse(&text(
        r#"{"requestModel": "gpt-*", "actualModel": "mock-echo", "preferredProviderId": "m"}"#,
    ))
    .expect("valid");
    let msg = assert_invalid(
        &text(r#"{"requestModel": "gpt-*", "actualModel": "nope"}"#),
        "modelMappings[0].actualModel",
    );
    assert!(msg.contains("nope"), "{msg}");
    assert_invalid(
        &text(
            r#"{"requestModel": "gpt-*", "actualModel": "mock-echo", "preferredProviderId": "zz"}"#,
        ),
        "modelMappings[0].preferredProviderId",
    );
    assert_invalid(
        &text(
            r#"{"requestModel": "gpt-*", "actualModel": "mock-echo", "preferredProviderId": "n"}"#,
        ),
        "modelMappings[0].preferredProviderId",
    );
    assert_invalid(
        &text(
            r#"{"requestModel": "a", "actualModel": "mock-echo"}, {"requestModel": "a", "actualModel": "other"}"#,
        ),
        "modelMappings[1].requestModel",
    );
    assert_invalid(
        &text(r#"{"actualModel": "mock-echo"}"#),
        "modelMappings[0].requestModel",
    );
}

#[test]
fn strategies() {
    for (name, strategy) in [
        ("round-robin", Strategy::RoundRobin),
        ("fill-first", Strategy::FillFirst),
        ("failover", Strategy::Failover),
    ] {
        let c = parse(&with_top(&format!(r#", "loadBalanceStrategy": "{name}""#))).expect(name);
        assert_eq!(c.load_balance, strategy);
        assert_eq!(strategy.as_str(), name);
    }
    let msg = assert_invalid(
        &with_top(r#", "loadBalanceStrategy": "round-robbin""#),
        "loadBalanceStrategy",
    );
    assert!(
        msg.contains("round-robbin") && msg.contains("fill-first"),
        "{msg}"
    );
    assert_invalid(
        &with_top(r#", "loadBalanceStrategy": 1"#),
        "loadBalanceStrategy",
    );
}

#[test]
fn wrong_types_and_ranges() {
    let msg = assert_invalid(&with_top(r#", "port": "8080""#), "port");
    assert!(msg.contains("u16"), "{msg}");
    assert_invalid(&with_top(r#", "port": 70000"#), "port");
    assert_invalid(&with_top(r#", "port": -1"#), "port");
    assert_invalid(&with_top(r#", "retryCount": 1.5"#), "retryCount");
    assert_invalid(&with_top(r#", "requestTimeout": 0"#), "requestTimeout");
    assert_invalid(&with_top(r#", "apiKeys": [42]"#), "apiKeys[0]");
    assert_invalid(
        &with_top(r#", "apiKeys": [{"name": "x"}]"#),
        "apiKeys[0].key",
    );
    assert_invalid(&with_top(r#", "port": 1, "port": 2"#), "port");
    assert_invalid(r#"{"providers": [{"id": "x"}]}"#, "providers[0].type");
    assert_invalid("[]", "");
    let err = parse("5").expect_err("not an object");
    assert!(err.to_string().contains("(top level)"), "{err}");
    // null means "not given".
    let c = parse(&with_top(
        r#", "host": null, "management": {"secret": null}"#,
    ))
    .expect("valid");
    assert_eq!(c.host, DEFAULT_HOST);
    assert_eq!(c.management.secret, None);
}

#[test]
fn limits_of_zero() {
    for key in [
        "maxHeadBytes",
        "maxHeaders",
        "maxUriBytes",
        "maxBodyBytes",
        "maxConnections",
        "headerReadTimeout",
        "bodyReadTimeout",
        "sendTimeout",
        "keepAliveTimeout",
        "upstreamConnectTimeout",
        "streamIdleTimeout",
    ] {
        assert_invalid(
            &with_top(&format!(r#", "limits": {{"{key}": 0}}"#)),
            &format!("limits.{key}"),
        );
    }
    // Zero means "none" or "off" for these.
    parse(&with_top(
        r#", "limits": {"maxChunkExtBytes": 0, "maxTrailerBytes": 0, "drainTimeout": 0,
            "upstreamIdleTimeout": 0, "upstreamMaxIdle": 0, "sseKeepaliveInterval": 0}"#,
    ))
    .expect("valid");
    assert_invalid(
        &with_top(r#", "limits": {"maxHeadBytes": 1000, "maxUriBytes": 2000}"#),
        "limits.maxUriBytes",
    );
}

#[test]
fn hosts() {
    for (host, stored) in [
        ("0.0.0.0", "0.0.0.0"),
        ("::", "::"),
        ("[::1]", "::1"),
        ("localhost", "localhost"),
    ] {
        let c = parse(&with_top(&format!(r#", "host": "{host}""#))).expect(host);
        assert_eq!(c.host, stored);
    }
    for bad in ["", "no such host", "::zz", "http://x"] {
        assert_invalid(&with_top(&format!(r#", "host": "{bad}""#)), "host");
    }
    assert_invalid(
        &with_top(r#", "management": {"host": "a b"}"#),
        "management.host",
    );
}

#[test]
fn management_checks() {
    assert_invalid(
        &with_top(r#", "management": {"port": 8080}"#),
        "management.port",
    );
    let c = parse(&with_top(
        r#", "management": {"port": 8080, "enabled": false}"#,
    ))
    .expect("valid");
    assert!(!c.management.enabled);
    parse(&with_top(r#", "port": 0, "management": {"port": 0}"#)).expect("two ephemeral ports");
    let env = |name: &str| (name == "EMPTY").then(String::new);
    let err = Config::from_json(&with_top(r#", "management": {"secret": "${EMPTY}"}"#), &env)
        .expect_err("empty secret");
    assert_eq!(err.path(), Some("management.secret"));
}

#[test]
fn api_key_checks() {
    let c = parse(&with_top(
        r#", "apiKeys": [{"key": "a", "enabled": false}]"#,
    ))
    .expect("valid");
    assert!(!c.auth_enabled(), "only enabled keys turn auth on");
    assert_invalid(&with_top(r#", "apiKeys": [""]"#), "apiKeys[0]");
    let msg = assert_invalid(
        &with_top(r#", "apiKeys": ["dup-secret", "dup-secret"]"#),
        "apiKeys[1]",
    );
    assert!(!msg.contains("dup-secret"), "{msg}");
    assert_invalid(
        &with_top(r#", "apiKeys": [{"name": "n", "key": "a"}, {"name": "n", "key": "b"}]"#),
        "apiKeys[1]",
    );
}

#[test]
fn syntax_errors() {
    let err = parse("{\n  \"port\": 8080,\n}").expect_err("trailing comma");
    let ConfigError::Json { line, column, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*line, *column), (3, 1));
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn routing_table_never_shows_secrets() {
    let c = parse(SPEC_EXAMPLE).expect("valid");
    let table = c.routing_table();
    for secret in [CI_KEY, ADMIN, DEEPSEEK_KEY, "sk-local-one"] {
        assert!(!table.contains(secret), "{secret} leaked:\n{table}");
    }
    for expected in [
        "127.0.0.1:8080",
        "127.0.0.1:8081",
        "client auth: on, 2 key(s): key1, ci",
        "secret set",
        "round-robin",
        "deepseek/main -> deepseek-chat",
        "local/default -> mock-echo",
        "gpt-4* -> DeepSeek-V3.2 (prefer deepseek)",
        "https://api.deepseek.com/v1",
    ] {
        assert!(
            table.contains(expected),
            "missing {expected:?} in:\n{table}"
        );
    }

    let env = |name: &str| (name == "XAI_API_KEY").then(|| "xai-secret-key".to_owned());
    let table = Config::builtin(&env).routing_table();
    assert!(!table.contains("xai-secret-key"), "{table}");
    assert!(table.contains("built-in default"), "{table}");
    assert!(table.contains("client auth: off"), "{table}");
    assert!(table.contains("xai/default -> grok-4"), "{table}");
}

#[test]
fn debug_output_hides_secrets() {
    let c = parse(SPEC_EXAMPLE).expect("valid");
    let debug = format!("{c:?}");
    for secret in [CI_KEY, ADMIN, DEEPSEEK_KEY, "sk-local-one"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

#[test]
fn load_reads_a_file_and_resolves_ca_file() {
    let dir = std::env::temp_dir().join(format!("chat2api-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("c.json");
    std::fs::write(
        &file,
        r#"{"providers": [{"type": "openai", "baseUrl": "https://x/v1", "models": ["m"],
            "accounts": [{"id": "a"}], "caFile": "ca.pem"},
           {"id": "abs", "type": "openai", "baseUrl": "https://y/v1", "models": ["n"],
            "accounts": [{"id": "a"}], "caFile": "/etc/ssl/ca.pem"}]}"#,
    )
    .expect("write config");
    let loaded = Config::load(Some(&file));
    let missing = Config::load(Some(&dir.join("missing.json")));
    // Clean up before asserting so a failure leaves nothing behind.
    let _ = std::fs::remove_dir_all(&dir);

    let c = loaded.expect("valid");
    assert_eq!(c.source.as_deref(), Some(file.as_path()));
    let ca = |i: usize| c.providers[i].kind.http().and_then(|(_, ca)| ca.cloned());
    assert_eq!(ca(0), Some(dir.join("ca.pem")));
    assert_eq!(ca(1), Some(PathBuf::from("/etc/ssl/ca.pem")));

    let err = missing.expect_err("no such file");
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn error_messages_are_one_line_with_paths() {
    let cases = [
        ConfigError::UnknownKey {
            path: "a.b".to_owned(),
        },
        ConfigError::MissingEnv {
            var: "V".to_owned(),
            path: "a[0]".to_owned(),
        },
        ConfigError::Invalid {
            path: "x".to_owned(),
            message: "bad".to_owned(),
        },
        ConfigError::Json {
            path_in_file: "p".to_owned(),
            message: "m".to_owned(),
            line: 1,
            column: 2,
        },
    ];
    for err in cases {
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message}");
        let path = err.path().expect("has a path");
        assert!(message.contains(path), "{message}");
    }
}

#[test]
fn key_rules_are_read_and_checked() {
    let c = parse(
        r#"{"apiKeys": [{"name": "ci", "key": "sk-ci", "models": ["gpt-4*"], "rpm": 60,
            "tpm": 1000, "maxConcurrent": 2, "dailyRequests": 10, "dailyTokens": 5000,
            "expiresAt": "2027-01-31T12:00:00.5+02:00", "reserveTokens": 100}],
            "sharedState": {"redis": "redis://:pw@127.0.0.1:6379/2", "budgets": "fail-closed", "timeout": 50}}"#,
    )
    .expect("valid");
    let r = &c.api_keys[0].rules;
    assert_eq!(r.models, ["gpt-4*"]);
    assert_eq!(
        (
            r.rpm,
            r.tpm,
            r.max_concurrent,
            r.daily_requests,
            r.daily_tokens
        ),
        (Some(60), Some(1000), Some(2), Some(10), Some(5000))
    );
    // 2027-01-31T10:00:00.5Z
    assert_eq!(r.expires_at, Some(1_801_389_600_500));
    assert_eq!(r.reserve_tokens, 100);
    let s = c.shared_state.as_ref().expect("sharedState");
    assert!(s.budgets_fail_closed);
    assert_eq!(s.timeout, Duration::from_millis(50));
    let table = c.routing_table();
    assert!(table.contains("key ci: models gpt-4*; rpm 60"), "{table}");
    assert!(table.contains("redis://***@127.0.0.1:6379/2") && !table.contains(":pw@"));
    // Bare keys have no rules; dates alone are their UTC midnight.
    let c = parse(r#"{"apiKeys": ["sk-a", {"key": "sk-b", "expiresAt": "2027-01-31"}]}"#).unwrap();
    assert!(!c.api_keys[0].rules.any());
    assert_eq!(c.api_keys[1].rules.expires_at, Some(1_801_353_600_000));
    assert!(c.shared_state.is_none());
}

#[test]
fn key_rule_and_shared_state_errors_name_the_field() {
    for (json, path, says) in [
        (
            r#"{"apiKeys": [{"key": "k", "rpm": 0}]}"#,
            "apiKeys[0].rpm",
            "at least 1",
        ),
        (
            r#"{"apiKeys": [{"key": "k", "maxConcurrent": 0}]}"#,
            "apiKeys[0].maxConcurrent",
            "at least 1",
        ),
        (
            r#"{"apiKeys": [{"key": "k", "expiresAt": "next week"}]}"#,
            "apiKeys[0].expiresAt",
            "RFC 3339",
        ),
        (
            r#"{"apiKeys": [{"key": "k", "expiresAt": "2027-13-01"}]}"#,
            "apiKeys[0].expiresAt",
            "RFC 3339",
        ),
        (
            r#"{"sharedState": {"redis": "http://x"}}"#,
            "sharedState.redis",
            "redis://",
        ),
        (
            r#"{"sharedState": {"redis": "redis://127.0.0.1:notaport"}}"#,
            "sharedState.redis",
            "Redis URL",
        ),
        (
            r#"{"sharedState": {"redis": "redis://h", "timeout": 0}}"#,
            "sharedState.timeout",
            "more than 0",
        ),
    ] {
        let err = parse(json).expect_err(json);
        assert_eq!(err.path(), Some(path), "{json}: {err}");
        assert!(err.to_string().contains(says), "{json}: {err}");
    }
    // An unknown rule is named, not ignored.
    let err = parse(r#"{"apiKeys": [{"key": "k", "rpmm": 5}]}"#).expect_err("unknown");
    assert!(err.to_string().contains("rpmm"), "{err}");
    let err = parse(r#"{"sharedState": {"redis": "redis://h", "budgets": "maybe"}}"#).unwrap_err();
    assert!(err.to_string().contains("budgets"), "{err}");
}

#[test]
fn anthropic_providers() {
    // The vendor: Anthropic's own URL, ANTHROPIC_API_KEY, its models, and
    // the endpoints it serves (chat and Responses translated, Messages).
    let env = |name: &str| (name == "ANTHROPIC_API_KEY").then(|| "sk-ant".to_owned());
    let c = Config::from_json(r#"{"providers": [{"type": "anthropic"}]}"#, &env).expect("valid");
    let p = &c.providers[0];
    assert!(p.kind.is_anthropic());
    let (url, _) = p.kind.http().expect("over HTTP");
    assert_eq!(url.to_string(), "https://api.anthropic.com/v1");
    assert_eq!(
        p.upstream_model("claude-sonnet-4-5"),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(
        p.endpoints.as_deref(),
        Some(&[Endpoint::Chat, Endpoint::Responses, Endpoint::Messages][..])
    );
    // The built-in default adds it too, from the variable alone.
    let c = Config::builtin(&env);
    c.validate().expect("valid");
    assert_eq!(served_by(&c, "claude-opus-4-5"), ["anthropic"]);
    // A proxy of its own: endpoints narrowed, and what does not apply refused.
    let own = r#"{"providers": [{"type": "anthropic", "baseUrl": "https://claude.example/v1",
        "accounts": [{"id": "a", "apiKey": "k"}], "models": ["claude-x"], "endpoints": ["messages"]}]}"#;
    let c = Config::from_json(own, &no_env).expect("valid");
    assert_eq!(
        c.providers[0].endpoints.as_deref(),
        Some(&[Endpoint::Messages][..])
    );
    let msg = assert_invalid(
        &own.replace(r#""messages"]"#, r#""messages", "embeddings"]"#),
        "providers[0].endpoints[1]",
    );
    assert!(msg.contains("embeddings"), "{msg}");
    let msg = assert_invalid(
        &own.replace(r#""endpoints""#, r#""responses": "native", "endpoints""#),
        "providers[0].responses",
    );
    assert!(msg.contains("always translated"), "{msg}");
}
