//! The endpoints of the OpenAI API that chat2api serves, by the name the
//! config and `/v1/models` give them and the path a provider answers on
//! (docs/wire.md §3).

/// Which endpoint a request body is for: it decides the required fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Chat,
    Completions,
    /// `/v1/embeddings`: `input` instead of messages; never streamed.
    Embeddings,
    /// `/v1/moderations`: `input`; never streamed.
    Moderations,
    /// `/v1/images/generations`: `prompt`; never streamed.
    Images,
    /// `/v1/responses` (the Responses API): `input`; plain or streamed as
    /// typed events.
    Responses,
    /// `/v1/audio/speech`: JSON in (`input`, `voice`); audio bytes out,
    /// passed through unchanged.
    Speech,
    /// `/v1/audio/transcriptions`: a `multipart/form-data` body (`file`,
    /// `model`); JSON, text or events out.
    Transcriptions,
    /// `/v1/audio/translations`: as transcriptions, into English.
    Translations,
    /// `/v1/messages`: the Anthropic Messages API (`messages`,
    /// `max_tokens`); plain or streamed as Anthropic's typed events.
    Messages,
}

/// Every endpoint, in the order `/v1/models` lists them.
pub const ENDPOINTS: [Endpoint; 10] = [
    Endpoint::Chat,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Moderations,
    Endpoint::Images,
    Endpoint::Responses,
    Endpoint::Speech,
    Endpoint::Transcriptions,
    Endpoint::Translations,
    Endpoint::Messages,
];

impl Endpoint {
    /// The path under a provider's base URL (OpenAI's API reference).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Moderations => "/moderations",
            Endpoint::Images => "/images/generations",
            Endpoint::Responses => "/responses",
            Endpoint::Speech => "/audio/speech",
            Endpoint::Transcriptions => "/audio/transcriptions",
            Endpoint::Translations => "/audio/translations",
            Endpoint::Messages => "/messages",
        }
    }

    /// The endpoint's name in the config (`endpoints`) and in
    /// `/v1/models`: its path under `/v1/`, dots for slashes
    /// (`chat.completions`, `audio.speech`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Moderations => "moderations",
            Endpoint::Images => "images.generations",
            Endpoint::Responses => "responses",
            Endpoint::Speech => "audio.speech",
            Endpoint::Transcriptions => "audio.transcriptions",
            Endpoint::Translations => "audio.translations",
            Endpoint::Messages => "messages",
        }
    }

    /// The endpoint of a config name (see [`Endpoint::name`]).
    pub fn from_name(name: &str) -> Option<Endpoint> {
        ENDPOINTS.into_iter().find(|e| e.name() == name)
    }

    /// Whether the body is a `multipart/form-data` form, not JSON.
    pub fn takes_form(self) -> bool {
        matches!(self, Endpoint::Transcriptions | Endpoint::Translations)
    }

    /// Whether a 2xx answer is passed on as the upstream sent it (audio,
    /// text, subtitles): no `model` to rewrite, no shape to judge.
    pub fn passes_bytes(self) -> bool {
        matches!(
            self,
            Endpoint::Speech | Endpoint::Transcriptions | Endpoint::Translations
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoint masks use an endpoint's discriminant as its bit: the list
    /// holds every endpoint once, in declaration order, and fits 16 bits.
    #[test]
    fn endpoints_are_listed_in_declaration_order() {
        for (i, endpoint) in ENDPOINTS.iter().enumerate() {
            assert_eq!(*endpoint as usize, i, "{endpoint:?}");
            assert_eq!(Endpoint::from_name(endpoint.name()), Some(*endpoint));
        }
        assert!(ENDPOINTS.len() <= 16);
    }
}
