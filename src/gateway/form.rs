//! `multipart/form-data` request bodies (RFC 7578 on RFC 2046 §5.1), as the
//! audio endpoints take them: a `file` part and small text fields.
//!
//! The body is read once and never copied: [`parse_form`] walks it with a
//! SIMD search for the delimiter and returns byte ranges, so that the
//! gateway can forward `prefix | upstream model | suffix` slices of the
//! client's own body, the file untouched, exactly as it does for JSON.

use std::ops::Range;

use memchr::memmem;

use crate::api::ApiError;

/// The longest boundary RFC 2046 §5.1.1 allows.
const MAX_BOUNDARY: usize = 70;
/// The most parts a form may have: the audio forms have a handful.
const MAX_PARTS: usize = 64;
/// The most header bytes of one part.
const MAX_PART_HEAD: usize = 4096;
/// The longest text field value read (file contents are never read).
const MAX_FIELD: usize = 4096;

/// What the gateway reads from an audio form. Ranges are into the body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// The `model` field's value (raw text, not JSON).
    pub model: Range<usize>,
    /// `stream` was `true` (transcriptions of newer models stream events).
    pub stream: bool,
    /// The `file` part's content.
    pub file: Option<Range<usize>>,
    /// The `file` part's `filename` parameter.
    pub filename: Option<String>,
    /// `response_format` (`json`, `text`, `srt`, `verbose_json`, `vtt`).
    pub response_format: Option<String>,
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type
/// (RFC 7578 §4.1), quoted or not; the 400 to answer otherwise.
pub fn boundary(content_type: Option<&[u8]>) -> Result<&[u8], ApiError> {
    let ct = content_type.unwrap_or_default();
    let (media, params) = match memchr::memchr(b';', ct) {
        Some(i) => (&ct[..i], &ct[i + 1..]),
        None => (ct, &[][..]),
    };
    if !media
        .trim_ascii()
        .eq_ignore_ascii_case(b"multipart/form-data")
    {
        return Err(ApiError::invalid(
            "This endpoint takes a multipart/form-data body (a 'file' part and a 'model' field).",
            None,
        ));
    }
    let mut found = None;
    for param in params.split(|b| *b == b';') {
        let param = param.trim_ascii();
        let Some(eq) = memchr::memchr(b'=', param) else {
            continue;
        };
        if !param[..eq].trim_ascii().eq_ignore_ascii_case(b"boundary") {
            continue;
        }
        // Parsers differ on which of two boundaries counts: refuse both.
        if found.is_some() {
            return Err(ApiError::invalid(
                "The multipart/form-data Content-Type gives its boundary twice.",
                None,
            ));
        }
        let value = param[eq + 1..].trim_ascii();
        found = Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        );
    }
    match found {
        Some(value) if !value.is_empty() && value.len() <= MAX_BOUNDARY => Ok(value),
        _ => Err(ApiError::invalid(
            "The multipart/form-data Content-Type has no valid boundary parameter (1 to 70 characters).",
            None,
        )),
    }
}

/// Read the fields of a form body with the given `boundary`: `model`
/// (required), `stream`, `response_format` and where the `file` is. A
/// body that does not follow RFC 2046 §5.1.1 (no opening delimiter, a part
/// without its blank line, no closing delimiter) is a 400.
pub fn parse_form(body: &[u8], boundary: &[u8]) -> Result<Form, ApiError> {
    let bad = |what: &str| {
        ApiError::invalid(
            format!("The multipart/form-data body is malformed: {what}."),
            None,
        )
    };
    // Every delimiter but a first one at the very start follows a CRLF.
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delimiter);
    // A delimiter is a whole line (RFC 2046 §5.1.1): `--boundary` then `--`,
    // or padding and CRLF. A match followed by other text is content.
    let ends_line = |at: usize| {
        let rest = &body[at..];
        let pad = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        rest.starts_with(b"--") || rest[pad..].starts_with(b"\r\n")
    };
    // The end of the next delimiter at or after `from`, and where it starts.
    let next_delimiter = |mut from: usize| loop {
        let start = from + finder.find(&body[from..])?;
        let end = start + delimiter.len();
        if ends_line(end) {
            return Some((start, end));
        }
        from = start + 1;
    };
    let mut at = if body.starts_with(&delimiter[2..]) && ends_line(delimiter.len() - 2) {
        delimiter.len() - 2
    } else {
        match next_delimiter(0) {
            Some((_, end)) => end,
            None => {
                let mut lf = b"\n--".to_vec();
                lf.extend_from_slice(boundary);
                return Err(match memmem::find(body, &lf) {
                    Some(_) => bad("its lines end in LF alone; RFC 2046 asks for CRLF"),
                    None => bad("it has no opening boundary"),
                });
            }
        }
    };
    let mut form = Form::default();
    let mut model = None;
    // Fields that decide routing or how the answer is read: given twice,
    // the gateway and the upstream could each read another one.
    const ONCE: [&str; 4] = ["model", "stream", "file", "response_format"];
    let mut seen = [false; ONCE.len()];
    for _ in 0..=MAX_PARTS {
        // After a delimiter: `--` closes the form; else transport padding
        // (spaces, tabs) and a CRLF open a part.
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return match model {
                Some(m) => {
                    form.model = m;
                    Ok(form)
                }
                None => Err(ApiError::invalid(
                    "Missing required parameter: 'model' (chat2api routes every request by its model; GET /v1/models lists them).",
                    Some("model"),
                )),
            };
        }
        let pad = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let head_start = at + pad + 2;
        // The part's header lines, then a blank line (none at all: the
        // blank line comes first).
        // The delimiter that ends this part, found once: the head is looked
        // for before it (and within its bound), so that a head never runs
        // into the next part; the content ends at it.
        let next = next_delimiter(head_start);
        let (head, content_start) = if body[head_start..].starts_with(b"\r\n") {
            (&[][..], head_start + 2)
        } else {
            let window = (head_start + MAX_PART_HEAD + 4).min(body.len());
            let window = next.map_or(window, |(start, _)| window.min(start + 2));
            match memmem::find(&body[head_start..window], b"\r\n\r\n") {
                Some(n) => (&body[head_start..head_start + n], head_start + n + 4),
                None if window - head_start > MAX_PART_HEAD => {
                    return Err(bad(&format!(
                        "a part's headers are longer than {MAX_PART_HEAD} bytes"
                    )))
                }
                None => return Err(bad("a part's headers do not end in a blank line")),
            }
        };
        let Some((content_end, after)) = next.filter(|(start, _)| *start >= content_start) else {
            return Err(bad("it ends before its closing boundary"));
        };
        let content = content_start..content_end;
        at = after;
        let (name, filename) = disposition(head).map_err(bad)?;
        // The text fields the gateway reads are text: a file there would
        // be read as one by the upstream.
        if filename.is_some() && matches!(&name[..], "model" | "stream" | "response_format") {
            return Err(bad(&format!(
                "the '{name}' field is a file; it must be text"
            )));
        }
        let text = || {
            let value = &body[content.clone()];
            (value.len() <= MAX_FIELD)
                .then(|| std::str::from_utf8(value).ok())
                .flatten()
        };
        let once = ONCE.iter().position(|n| *n == name);
        if let Some(i) = once {
            if std::mem::replace(&mut seen[i], true) {
                return Err(bad(&format!("the '{name}' field is given twice")));
            }
        }
        match &name[..] {
            "model" => {
                if content.len() > MAX_FIELD {
                    return Err(ApiError::invalid(
                        format!("'model' is longer than {MAX_FIELD} bytes."),
                        Some("model"),
                    ));
                }
                if text().is_none_or(str::is_empty) {
                    return Err(ApiError::invalid(
                        "'model' must be a non-empty UTF-8 text field.",
                        Some("model"),
                    ));
                }
                model = Some(content.clone());
            }
            "stream" => form.stream = text().is_some_and(|t| t.trim() == "true"),
            "response_format" => form.response_format = text().map(|t| t.trim().to_owned()),
            "file" => {
                form.file = Some(content.clone());
                form.filename = filename;
            }
            _ => {}
        }
    }
    Err(bad("it has too many parts"))
}

/// The `name` and `filename` parameters of a part's
/// `Content-Disposition: form-data` header (RFC 7578 §4.2), from its header
/// block (lines separated by CRLF). What parsers read differently is
/// refused, so that the upstream cannot see another field than the gateway
/// routed on: a second `Content-Disposition` line, a parameter given twice.
fn disposition(head: &[u8]) -> Result<(String, Option<String>), &'static str> {
    const MISSING: &str = "a part has no Content-Disposition: form-data header with a name";
    let mut lines = head.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-disposition")
            .then(|| &line[colon + 1..])
    });
    let line = lines.next().ok_or(MISSING)?;
    if lines.next().is_some() {
        return Err("a part has two Content-Disposition headers");
    }
    let line = std::str::from_utf8(line).map_err(|_| MISSING)?;
    let mut params = line.split(';');
    if !params
        .next()
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("form-data"))
    {
        return Err(MISSING);
    }
    const MALFORMED: &str = "a part's Content-Disposition parameters are malformed";
    let (mut name, mut filename) = (None, None);
    // `split(';')` would cut a quoted value holding `;`: each parameter is
    // read from the line itself, `key=value` then `;` or the end, and
    // anything else refused (parsers would read it differently).
    let mut rest = line.find(';').map_or("", |i| &line[i + 1..]);
    while !rest.trim().is_empty() {
        let eq = rest.find('=').ok_or(MALFORMED)?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '"' || c == ';') {
            return Err(MALFORMED);
        }
        let (value, after) = param_value(&rest[eq + 1..]).ok_or(MALFORMED)?;
        let slot = match &key.to_ascii_lowercase()[..] {
            "name" => Some(&mut name),
            "filename" => Some(&mut filename),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.replace(value).is_some() {
                return Err("a part's Content-Disposition gives a parameter twice");
            }
        }
        let after = after.trim_start();
        rest = match after.strip_prefix(';') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return Err(MALFORMED),
        };
    }
    Ok((name.ok_or(MISSING)?, filename))
}

/// A parameter value, quoted (with `\"` escapes, as browsers and HTTP
/// libraries write it) or a token; and the text after it. `None` for a
/// quoted value that never ends.
fn param_value(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(';').unwrap_or(text.len());
        return Some((text[..end].trim().to_owned(), &text[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &quoted[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

/// Fuzzing entry point: a form of any bytes is read or refused without a
/// panic, and what is read lies inside the body, clear of any delimiter.
#[doc(hidden)]
pub fn fuzz_form(data: &[u8]) {
    let _ = boundary(Some(data));
    if let Ok(form) = parse_form(data, b"XyZ") {
        let delimiter = b"\r\n--XyZ";
        for range in std::iter::once(&form.model).chain(form.file.as_ref()) {
            assert!(range.start <= range.end && range.end <= data.len());
            let part = &data[range.clone()];
            // Delimiter-like bytes may sit in a part only when not a line.
            if let Some(at) = memmem::find(part, delimiter) {
                let after = &data[range.start + at + delimiter.len()..];
                assert!(!after.starts_with(b"--") && !after.starts_with(b"\r\n"));
            }
        }
        assert!(!data[form.model].is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, value) in parts {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.push(b'"');
            if let Some(f) = filename {
                body.extend_from_slice(
                    format!("; filename=\"{f}\"\r\nContent-Type: audio/wav").as_bytes(),
                );
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn boundaries_are_read_quoted_or_not() {
        assert_eq!(
            boundary(Some(b"multipart/form-data; boundary=abc")).unwrap(),
            b"abc"
        );
        assert_eq!(
            boundary(Some(b"Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a-b\"")).unwrap(),
            b"a-b"
        );
        assert_eq!(
            boundary(Some(b"multipart/form-data; boundary=\"a b\"")).unwrap(),
            b"a b"
        );
        for bad in [
            &b"application/json"[..],
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b"multipart/form-data; boundary=B; boundary=C",
        ] {
            assert!(boundary(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(boundary(None).is_err());
    }

    #[test]
    fn fields_and_file_are_found_and_the_file_is_not_read() {
        // File bytes that hold a CRLF, a partial delimiter and the field names.
        let audio: &[u8] = b"RIFF\r\n--XyZ-not\r\n--Xy name=\"model\"\x00\xff";
        let body = form(&[
            ("file", Some("speech.wav"), audio),
            ("model", None, b"whisper-1"),
            ("response_format", None, b"text"),
            ("stream", None, b"true"),
        ]);
        let f = parse_form(&body, b"XyZ").unwrap();
        assert_eq!(&body[f.model.clone()], b"whisper-1");
        assert_eq!(&body[f.file.clone().unwrap()], audio);
        assert_eq!(f.filename.as_deref(), Some("speech.wav"));
        assert_eq!(f.response_format.as_deref(), Some("text"));
        assert!(f.stream);
    }

    #[test]
    fn a_preamble_and_padding_are_allowed() {
        let body =
            b"preamble\r\n--b  \r\ncontent-disposition: form-data; name=model\r\n\r\nm\r\n--b--";
        let f = parse_form(body, b"b").unwrap();
        assert_eq!(&body[f.model], b"m");
    }

    #[test]
    fn malformed_forms_are_clear_400s() {
        let ok = form(&[("model", None, b"m"), ("file", Some("a.wav"), b"x")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"no delimiter".to_vec(), "opening boundary"),
            (ok[..ok.len() - 9].to_vec(), "closing boundary"),
            (form(&[("file", Some("a.wav"), b"x")]), "'model'"),
            (form(&[("model", None, b"")]), "non-empty"),
            (
                b"--XyZ\r\nContent-Type: text/plain\r\n\r\nm\r\n--XyZ--".to_vec(),
                "Content-Disposition",
            ),
            (b"--XyZ junk\r\n".to_vec(), "opening boundary"),
            (
                b"--XyZ\nContent-Disposition: form-data; name=\"model\"\n\nm\n--XyZ--".to_vec(),
                "LF alone",
            ),
            (
                form(&[
                    ("model", None, b"a"),
                    ("file", Some("f"), b"x"),
                    ("model", None, b"b"),
                ]),
                "'model' field is given twice",
            ),
            (
                form(&[
                    ("model", None, b"a"),
                    ("file", Some("f"), b"x"),
                    ("file", Some("g"), b"y"),
                ]),
                "'file' field is given twice",
            ),
            (form(&[("model", None, &[b'm'; 5000])]), "longer than 4096"),
            (
                b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"".to_vec(),
                "blank line",
            ),
        ];
        for (body, says) in cases {
            let err = parse_form(&body, b"XyZ").expect_err(says);
            assert_eq!(err.status(), 400);
            let text = String::from_utf8_lossy(&err.body()).into_owned();
            assert!(text.contains(says), "{text} should say {says}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let body = form(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a.wav"), b"RIFF...."),
        ]);
        for end in 0..body.len() - 2 {
            let _ = parse_form(&body[..end], b"XyZ");
        }
        assert!(parse_form(&body, b"XyZ").is_ok());
    }

    #[test]
    fn quoted_names_keep_escapes_and_semicolons() {
        let head = b"Content-Disposition: form-data; name=\"file\"; filename=\"a;\\\"b\\\".wav\"";
        assert_eq!(
            disposition(head),
            Ok(("file".to_owned(), Some("a;\"b\".wav".to_owned())))
        );
        for (head, says) in [
            (&b"Content-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\""[..], "two Content-Disposition"),
            (b"Content-Disposition: form-data; name=\"x\"; name=\"model\"", "twice"),
            (b"Content-Type: text/plain", "no Content-Disposition"),
            (b"Content-Disposition: form-data; name=\"x\"junk; name=\"model\"", "malformed"),
            (b"Content-Disposition: form-data; foo; name=\"model\"", "malformed"),
            (b"Content-Disposition: form-data; name=\"model", "malformed"),
        ] {
            assert!(disposition(head).expect_err(says).contains(says), "{says}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the file holds (CRLFs, dashes, pieces of the boundary),
        /// the file comes back whole and the model is found.
        #[test]
        fn any_file_round_trips(file in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'X'), Just(b'y'), Just(b'Z'), any::<u8>()],
            0..200,
        )) {
            let boundary = b"XyZ";
            let mut delimiter = b"\r\n--".to_vec();
            delimiter.extend_from_slice(boundary);
            // A client picks a boundary its content does not hold.
            prop_assume!(memmem::find(&file, &delimiter).is_none() && !file.starts_with(b"--XyZ"));
            let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n".to_vec();
            let start = body.len();
            body.extend_from_slice(&file);
            let end = body.len();
            body.extend_from_slice(b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm-1\r\n--XyZ--\r\n");
            let form = parse_form(&body, boundary).unwrap();
            prop_assert_eq!(form.file, Some(start..end));
            prop_assert_eq!(&body[form.model], b"m-1");
        }
    }
}
