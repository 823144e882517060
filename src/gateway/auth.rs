//! Client authentication (docs/wire.md §3): the key may come as `Authorization: Bearer
//! KEY`, `X-API-Key: KEY` or `?api_key=KEY`, and is compared in constant time:
//! every key is kept zero-padded to one fixed-size block, the presented key
//! is padded the same way, and the whole blocks (and the lengths) are
//! compared with every configured key, so that neither which key matched,
//! nor how much of it, nor how long any key is shows in the time taken.
//! Keys are never logged, echoed or forwarded: the upstream request is built
//! from scratch with the account's own key.

use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::http1::RequestHead;

/// The longest client key, in bytes (`config` refuses longer ones); every
/// comparison covers this many bytes.
pub use crate::config::MAX_KEY_BYTES;

/// A key zero-padded to [`MAX_KEY_BYTES`], and its length.
struct Block {
    bytes: [u8; MAX_KEY_BYTES],
    len: u32,
}

impl Block {
    /// `None` for a key longer than the block.
    fn new(key: &[u8]) -> Option<Block> {
        let mut bytes = [0u8; MAX_KEY_BYTES];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(Block {
            bytes,
            len: key.len() as u32,
        })
    }

    fn ct_eq(&self, other: &Block) -> subtle::Choice {
        self.bytes.ct_eq(&other.bytes) & self.len.ct_eq(&other.len)
    }
}

pub struct ClientKeys {
    keys: Vec<Block>,
}

impl ClientKeys {
    pub fn new(keys: impl IntoIterator<Item = String>) -> ClientKeys {
        ClientKeys {
            keys: keys
                .into_iter()
                .filter_map(|k| Block::new(k.as_bytes()))
                .collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn check(&self, head: &RequestHead) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let presented = presented_key(head).ok_or(ApiError::MissingApiKey)?;
        // Longer than any key can be: wrong, whatever it is.
        let presented = Block::new(presented).ok_or(ApiError::InvalidApiKey)?;
        // Compare against every key, without stopping at a match, so the time
        // taken does not say which key (or how much of one) matched.
        let mut found = subtle::Choice::from(0);
        for key in &self.keys {
            found |= key.ct_eq(&presented);
        }
        if bool::from(found) {
            Ok(())
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
            assert_eq!(keys.check(&head(good)), Ok(()), "{good}");
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
}
