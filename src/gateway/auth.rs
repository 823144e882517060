//! Client authentication (docs/wire.md §3): the key may come as `Authorization: Bearer
//! KEY`, `X-API-Key: KEY` or `?api_key=KEY`. The presented key is hashed
//! (SHA-256) and its digest compared in constant time with the digest of
//! every configured key, without stopping at a match, so that neither which
//! key matched, nor how much of it, nor how long any key is shows in the
//! time taken; comparing 32-byte digests keeps that cheap whatever the
//! keys' lengths. Keys are never logged, echoed or forwarded: the upstream
//! request is built from scratch with the account's own key.

use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::api::ApiError;
use crate::http1::RequestHead;

/// The longest client key, in bytes (`config` refuses longer ones).
pub use crate::config::MAX_KEY_BYTES;

type Digest = [u8; 32];

fn digest(key: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The enabled client keys, as digests, in config order.
pub struct ClientKeys {
    keys: Vec<Digest>,
}

impl ClientKeys {
    pub fn new(keys: impl IntoIterator<Item = String>) -> ClientKeys {
        ClientKeys {
            keys: keys.into_iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Which key (its index among the keys given to [`ClientKeys::new`])
    /// the request presents; `Ok(None)` when no keys are configured.
    ///
    /// # Errors
    /// `MissingApiKey` without a key, `InvalidApiKey` for one that is not
    /// configured (or is longer than any key may be).
    pub fn check(&self, head: &RequestHead) -> Result<Option<usize>, ApiError> {
        if self.is_open() {
            return Ok(None);
        }
        let presented = presented_key(head).ok_or(ApiError::MissingApiKey)?;
        if presented.len() > MAX_KEY_BYTES {
            return Err(ApiError::InvalidApiKey);
        }
        let presented = digest(presented);
        // Compare against every key, without stopping at a match.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, key) in self.keys.iter().enumerate() {
            let eq = key.ct_eq(&presented);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            Ok(Some(index as usize))
        } else {
            Err(ApiError::InvalidApiKey)
        }
    }
}

/// The key the client presented, in the order of docs/wire.md §3.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, Limits};

    fn head(auth: &str) -> RequestHead {
        let raw = format!("GET /v1/models HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
        let mut buf = bytes::BytesMut::from(raw.as_bytes());
        parse_request(&mut buf, &Limits::default())
            .expect("valid head")
            .expect("complete head")
    }

    #[test]
    fn only_a_whole_configured_key_passes() {
        let keys = ClientKeys::new(["sk-one".to_owned(), "sk-a-much-longer-key".to_owned()]);
        for good in [
            "Authorization: Bearer sk-one\r\n",
            "X-API-Key: sk-a-much-longer-key\r\n",
        ] {
            assert!(keys.check(&head(good)).is_ok(), "{good}");
        }
        let long = format!("X-API-Key: {}\r\n", "k".repeat(MAX_KEY_BYTES + 1));
        for bad in [
            "Authorization: Bearer sk-on\r\n",
            "Authorization: Bearer sk-one1\r\n",
            "X-API-Key: SK-ONE\r\n",
            long.as_str(),
        ] {
            assert_eq!(
                keys.check(&head(bad)),
                Err(ApiError::InvalidApiKey),
                "{bad}"
            );
        }
        assert_eq!(keys.check(&head("")), Err(ApiError::MissingApiKey));
    }

    #[test]
    fn the_matching_key_is_named_by_its_index() {
        let keys = ClientKeys::new(["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let h = head(&format!("X-API-Key: {k}\r\n"));
            assert_eq!(keys.check(&h), Ok(Some(i)));
        }
        assert_eq!(ClientKeys::new([]).check(&head("")), Ok(None));
    }
}
