//! Well-known vendors: OpenAI-compatible ones, and Anthropic.
//!
//! A vendor name can stand in for a whole provider block (`"type": "deepseek"`)
//! and, with no config file, every vendor whose API-key variable is set becomes a
//! provider of the built-in default (docs/wire.md §1). This table is the only place that
//! knows public base URLs, key variables and default model names; keep it in
//! sync with the vendor list in `cli::HELP` and the "Vendors" table of `docs/config.md` (a test
//! checks the help text).
//!
//! Client model names are unique across the whole table, so the built-in
//! default never has two vendors answering the same name by accident.

use super::{BaseUrl, ProviderKind};
use crate::api::Endpoint;

/// One vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vendor {
    /// The `providers[].type` value that selects this vendor; also the provider
    /// id of the built-in default.
    pub name: &'static str,
    /// Public base URL, including the version path the vendor's
    /// `/chat/completions` lives under.
    pub base_url: &'static str,
    /// Environment variable holding the API key.
    pub env_var: &'static str,
    /// Default models: (name clients use, name the vendor expects).
    pub models: &'static [(&'static str, &'static str)],
    /// The API it speaks: OpenAI's chat completions, or Anthropic's
    /// Messages API.
    pub anthropic: bool,
}

/// What an Anthropic provider serves: chat completions and Responses
/// requests translated to Messages requests, and the Messages API itself.
pub const ANTHROPIC_ENDPOINTS: [Endpoint; 3] =
    [Endpoint::Chat, Endpoint::Responses, Endpoint::Messages];

impl Vendor {
    /// The provider kind of this vendor at `base_url`.
    pub fn kind(&self, base_url: BaseUrl, ca_file: Option<std::path::PathBuf>) -> ProviderKind {
        match self.anthropic {
            true => ProviderKind::Anthropic { base_url, ca_file },
            false => ProviderKind::OpenAi { base_url, ca_file },
        }
    }

    /// The endpoints its models serve by default (`None`: all).
    pub fn endpoints(&self) -> Option<Vec<Endpoint>> {
        self.anthropic.then(|| ANTHROPIC_ENDPOINTS.to_vec())
    }
}

/// Every vendor chat2api knows by name, in the order the built-in default adds
/// them.
pub const VENDORS: &[Vendor] = &[
    Vendor {
        name: "openai",
        base_url: "https://api.openai.com/v1",
        env_var: "OPENAI_API_KEY",
        models: &[
            ("gpt-4o", "gpt-4o"),
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4.1", "gpt-4.1"),
            ("gpt-4.1-mini", "gpt-4.1-mini"),
            ("o3-mini", "o3-mini"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        env_var: "DEEPSEEK_API_KEY",
        models: &[
            // The model name of the examples in the original Proxy Settings page.
            ("DeepSeek-V3.2", "deepseek-chat"),
            ("deepseek-chat", "deepseek-chat"),
            ("deepseek-reasoner", "deepseek-reasoner"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        env_var: "GROQ_API_KEY",
        models: &[
            ("llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
            ("llama-3.1-8b-instant", "llama-3.1-8b-instant"),
            ("openai/gpt-oss-120b", "openai/gpt-oss-120b"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        env_var: "MISTRAL_API_KEY",
        models: &[
            ("mistral-large-latest", "mistral-large-latest"),
            ("mistral-small-latest", "mistral-small-latest"),
            ("codestral-latest", "codestral-latest"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "together",
        base_url: "https://api.together.xyz/v1",
        env_var: "TOGETHER_API_KEY",
        models: &[
            (
                "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            ),
            (
                "Qwen/Qwen2.5-72B-Instruct-Turbo",
                "Qwen/Qwen2.5-72B-Instruct-Turbo",
            ),
            (
                "mistralai/Mixtral-8x7B-Instruct-v0.1",
                "mistralai/Mixtral-8x7B-Instruct-v0.1",
            ),
        ],
        anthropic: false,
    },
    Vendor {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        env_var: "OPENROUTER_API_KEY",
        models: &[
            ("openai/gpt-4o", "openai/gpt-4o"),
            ("anthropic/claude-sonnet-4", "anthropic/claude-sonnet-4"),
            ("google/gemini-2.5-flash", "google/gemini-2.5-flash"),
            ("deepseek/deepseek-chat", "deepseek/deepseek-chat"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "xai",
        base_url: "https://api.x.ai/v1",
        env_var: "XAI_API_KEY",
        models: &[
            ("grok-4", "grok-4"),
            ("grok-3", "grok-3"),
            ("grok-3-mini", "grok-3-mini"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "moonshot",
        base_url: "https://api.moonshot.cn/v1",
        env_var: "MOONSHOT_API_KEY",
        models: &[
            ("kimi-k2-0711-preview", "kimi-k2-0711-preview"),
            ("moonshot-v1-8k", "moonshot-v1-8k"),
            ("moonshot-v1-32k", "moonshot-v1-32k"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "siliconflow",
        base_url: "https://api.siliconflow.cn/v1",
        env_var: "SILICONFLOW_API_KEY",
        models: &[
            ("deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3"),
            ("deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1"),
            ("Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct"),
        ],
        anthropic: false,
    },
    Vendor {
        name: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        env_var: "FIREWORKS_API_KEY",
        models: &[
            (
                "accounts/fireworks/models/llama-v3p3-70b-instruct",
                "accounts/fireworks/models/llama-v3p3-70b-instruct",
            ),
            (
                "accounts/fireworks/models/deepseek-v3",
                "accounts/fireworks/models/deepseek-v3",
            ),
            (
                "accounts/fireworks/models/qwen2p5-72b-instruct",
                "accounts/fireworks/models/qwen2p5-72b-instruct",
            ),
        ],
        anthropic: false,
    },
    Vendor {
        name: "anthropic",
        base_url: "https://api.anthropic.com/v1",
        env_var: "ANTHROPIC_API_KEY",
        models: &[
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("claude-opus-4-5", "claude-opus-4-5"),
            ("claude-haiku-4-5", "claude-haiku-4-5"),
        ],
        anthropic: true,
    },
];

/// The vendor whose `name` is exactly `name` (type names are case-sensitive,
/// like every other config value).
pub fn vendor(name: &str) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BaseUrl;
    use std::collections::HashSet;

    #[test]
    fn every_vendor_is_well_formed() {
        let mut names = HashSet::new();
        for v in VENDORS {
            assert!(names.insert(v.name), "duplicate vendor {}", v.name);
            assert_eq!(vendor(v.name), Some(v));
            let url = BaseUrl::parse(v.base_url).expect(v.base_url);
            assert!(url.tls, "{} must use https", v.name);
            assert!(v.env_var.ends_with("_API_KEY"), "{}", v.env_var);
            assert!((2..=5).contains(&v.models.len()), "{}", v.name);
        }
        assert_eq!(vendor("nope"), None);
        assert_eq!(vendor("DeepSeek"), None, "type names are case-sensitive");
    }

    #[test]
    fn client_model_names_are_unique_across_vendors() {
        let mut seen = HashSet::new();
        for v in VENDORS {
            for (client, upstream) in v.models {
                assert!(!client.is_empty() && !upstream.is_empty());
                assert!(seen.insert(*client), "{client} served by two vendors");
            }
        }
    }

    #[test]
    fn deepseek_serves_the_proxy_settings_example_model() {
        let d = vendor("deepseek").expect("deepseek vendor");
        assert!(d.models.contains(&("DeepSeek-V3.2", "deepseek-chat")));
    }
}
