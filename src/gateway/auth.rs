//! Client authentication (SPEC §3): the key may come as `Authorization: Bearer
//! KEY`, `X-API-Key: KEY` or `?api_key=KEY`, and is compared in constant time:
//! the SHA-256 digests of the configured keys are kept, and the digest of the
//! presented key is compared with each of them, so that neither which key
//! matched nor how long any key is shows in the time taken.
//! Keys are never logged, echoed or forwarded: the upstream request is built
//! from scratch with the account's own key.

use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::http1::RequestHead;

/// A SHA-256 digest (32 bytes).
type Digest = [u8; 32];

pub struct ClientKeys {
    digests: Vec<Digest>,
}

fn digest(key: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl ClientKeys {
    pub fn new(keys: impl IntoIterator<Item = String>) -> ClientKeys {
        ClientKeys {
            digests: keys.into_iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn check(&self, head: &RequestHead) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let presented = digest(presented_key(head).ok_or(ApiError::MissingApiKey)?);
        // Compare against every key, without stopping at a match, so the time
        // taken does not say which key (or how much of one) matched.
        let mut found = subtle::Choice::from(0);
        for key in &self.digests {
            found |= key.ct_eq(&presented);
        }
        if bool::from(found) {
            Ok(())
        } else {
            Err(ApiError::InvalidApiKey)
        }
    }
}

/// The key the client presented, in the order of SPEC §3.
fn presented_key(head: &RequestHead) -> Option<&[u8]> {
    if let Some(value) = head.header("authorization") {
        if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = value[7..].trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    if let Some(key) = head.header("x-api-key") {
        if !key.is_empty() {
            return Some(key);
        }
    }
    head.query()?
        .split(|b| *b == b'&')
        .find_map(|pair| pair.strip_prefix(b"api_key="))
        .filter(|k| !k.is_empty())
}
