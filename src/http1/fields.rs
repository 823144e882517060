//! The field table shared by request and response heads, and the framing
//! rules both of them apply (RFC 9112 §6).
//!
//! A head is kept as one frozen `Bytes`; this module records every field as a
//! pair of `u32` offset ranges into it while httparse's borrow of the read
//! buffer is alive, and answers look-ups from those offsets afterwards. It
//! never copies a name or value, and it must not decide policy that differs
//! between requests and responses — that stays in `request.rs` and
//! `response.rs`.

use super::HttpError;

/// A `start..end` byte range inside a head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The range `part` occupies inside `base`. `part` must be a sub-slice of
    /// `base` (httparse hands out slices of the buffer it parsed); an empty
    /// `part` may be a static "" in httparse, so it maps to the empty range.
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Result<Span, HttpError> {
        if part.is_empty() {
            return Ok(Span::default());
        }
        const NOT_INSIDE: HttpError = HttpError::Malformed("header slice outside the head");
        let start = (part.as_ptr() as usize)
            .checked_sub(base.as_ptr() as usize)
            .ok_or(NOT_INSIDE)?;
        let end = start.checked_add(part.len()).ok_or(NOT_INSIDE)?;
        if end > base.len() {
            return Err(NOT_INSIDE);
        }
        // The caller bounded the head to `u32::MAX` bytes, so both fit.
        let start = u32::try_from(start).map_err(|_| HttpError::HeadTooLarge)?;
        let end = u32::try_from(end).map_err(|_| HttpError::HeadTooLarge)?;
        Ok(Span { start, end })
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The bytes of this span in `head`; empty if the span does not fit, which
    /// cannot happen for spans recorded against the same head.
    pub(crate) fn get(self, head: &[u8]) -> &[u8] {
        head.get(self.range()).unwrap_or_default()
    }
}

/// Name and value ranges of every header field, in wire order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fields {
    spans: Vec<(Span, Span)>,
}

impl Fields {
    pub(crate) fn record(base: &[u8], headers: &[httparse::Header<'_>]) -> Result<Self, HttpError> {
        let mut spans = Vec::with_capacity(headers.len());
        for h in headers {
            spans.push((Span::of(base, h.name.as_bytes())?, Span::of(base, h.value)?));
        }
        Ok(Fields { spans })
    }

    pub(crate) fn iter<'a>(
        &'a self,
        head: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.spans
            .iter()
            .map(move |(n, v)| (n.get(head), v.get(head)))
    }

    /// Value spans of every field called `name` (ASCII case-insensitive,
    /// RFC 9110 §5.1), in wire order.
    pub(crate) fn spans_of<'a>(
        &'a self,
        head: &'a [u8],
        name: &'a str,
    ) -> impl Iterator<Item = Span> + 'a {
        self.spans
            .iter()
            .filter(move |(n, _)| n.get(head).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    pub(crate) fn values<'a>(
        &'a self,
        head: &'a [u8],
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.spans_of(head, name).map(move |v| v.get(head))
    }

    pub(crate) fn first(&self, head: &[u8], name: &str) -> Option<Span> {
        self.spans_of(head, name).next()
    }

    /// Whether any `name` field lists `token` (RFC 9110 §5.6.1 list syntax,
    /// tokens compared case-insensitively).
    pub(crate) fn has_token(&self, head: &[u8], name: &str, token: &str) -> bool {
        self.values(head, name)
            .flat_map(list_items)
            .any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// The non-empty elements of a comma-separated list, OWS trimmed.
/// RFC 9110 §5.6.1: a recipient must accept and ignore empty elements.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The `Content-Length` of a head, validated (RFC 9112 §6.3 rule 5).
///
/// RFC 9110 §8.6 lets a recipient collapse identical repeated values, but a
/// proxy that does so while the next hop reads them differently is a request
/// smuggling vector, so any repetition — a second field or a list value such
/// as `5, 5` — is rejected, as is anything but `1*DIGIT` that fits a `u64`.
pub(crate) fn content_length(fields: &Fields, head: &[u8]) -> Result<Option<u64>, HttpError> {
    let mut values = fields.values(head, "content-length");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HttpError::Malformed("more than one content-length"));
    }
    if value.is_empty() {
        return Err(HttpError::Malformed("empty content-length"));
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::Malformed(
                "content-length is not a decimal number",
            ));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::Malformed("content-length overflows"))?;
    }
    Ok(Some(n))
}

/// Checks a present `Transfer-Encoding` (all fields combined as one list,
/// RFC 9110 §5.3) and succeeds only when it is exactly `chunked`.
///
/// - RFC 9112 §6.3 rule 4: if `chunked` is not the final coding the length
///   cannot be determined; a server must answer 400 and close.
/// - RFC 9112 §7: `chunked` must not be applied more than once.
/// - RFC 9112 §6.1: a coding we do not implement (gzip, deflate, ...) before
///   `chunked` gets 501 (Not Implemented).
pub(crate) fn check_transfer_encoding(fields: &Fields, head: &[u8]) -> Result<(), HttpError> {
    let mut last = None;
    let mut chunked = 0usize;
    let mut count = 0usize;
    for item in fields
        .values(head, "transfer-encoding")
        .flat_map(list_items)
    {
        count = count.saturating_add(1);
        if item.eq_ignore_ascii_case(b"chunked") {
            chunked = chunked.saturating_add(1);
        }
        last = Some(item);
    }
    match last {
        Some(item) if item.eq_ignore_ascii_case(b"chunked") => {}
        _ => {
            return Err(HttpError::Malformed(
                "transfer-encoding does not end in chunked",
            ))
        }
    }
    if chunked > 1 {
        return Err(HttpError::Malformed("chunked applied more than once"));
    }
    if count > 1 {
        return Err(HttpError::UnsupportedTransferCoding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_trim_and_skip_empty() {
        let items: Vec<&[u8]> = list_items(b" a ,, \tb\t,").collect();
        assert_eq!(items, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(list_items(b"").count(), 0);
        assert_eq!(list_items(b" , ").count(), 0);
    }

    #[test]
    fn span_of_rejects_foreign_slices() {
        let base = b"abcdef";
        let other = b"xyz";
        assert_eq!(Span::of(base, &base[2..4]).map(|s| s.range()), Ok(2..4));
        // Distinct objects never overlap, so a foreign slice always ends past `base`.
        assert!(Span::of(base, other).is_err());
        assert_eq!(Span::of(base, b""), Ok(Span::default()));
    }
}
