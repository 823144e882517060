//! The config file as an order-preserving JSON tree, and `${VAR}` expansion.
//!
//! Loading goes text → [`Node`] → `${VAR}` expansion → typed file structs. The
//! tree exists because serde_json's `Value` keeps objects in a `BTreeMap` (its
//! `preserve_order` feature is off, and turning it on would change every
//! `Value` on the data path), which would sort `providers[].models`. [`Node`]
//! keeps object members in file order and is itself a serde `Deserializer`, so
//! the typed pass runs under serde_path_to_error and every error names its key.
//!
//! Nothing here knows the config schema.

use super::{index_path, key_path, ConfigError};
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Errors of the typed pass; serde's plain-message error is all it needs.
pub(super) type Error = de::value::Error;

/// A JSON value with object members in file order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    /// Non-negative integers, as serde_json reports them.
    UInt(u64),
    /// Negative integers.
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Node>),
    /// Members in file order; duplicates are kept so the typed pass can reject
    /// them (`duplicate field`) instead of one silently winning.
    Object(Vec<(String, Node)>),
}

/// Parse JSON text. Syntax errors carry line, column and the key path reached.
pub(super) fn parse(text: &str) -> Result<Node, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let node: Node = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(normalize_root(&path), e.into_inner())
    })?;
    // Trailing garbage after the top-level value.
    de.end().map_err(|e| json_error("", e))?;
    Ok(node)
}

fn json_error(path: &str, e: serde_json::Error) -> ConfigError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    // serde_json appends the position to its message; it has its own fields here.
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    ConfigError::Json {
        path_in_file: path.to_owned(),
        message,
        line,
        column,
    }
}

/// serde_path_to_error renders the root as `.`; the rest of this module uses `""`.
pub(super) fn normalize_root(path: &str) -> &str {
    if path == "." {
        ""
    } else {
        path
    }
}

/// Replace `${VAR}` references in every string value (not in object keys) of
/// the tree, depth first, using `env`. `path` is the key path of `node`.
///
/// Expansion is a single pass: a variable's value is inserted literally, never
/// expanded again. `$${` is a literal `${`; any other `$` is kept as is.
pub(super) fn expand_env(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match node {
        Node::String(s) => {
            if let Some(expanded) = expand_str(s, path, env)? {
                *s = expanded;
            }
        }
        Node::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &index_path(path, i), env)?;
            }
        }
        Node::Object(members) => {
            for (key, value) in members.iter_mut() {
                expand_env(value, &key_path(path, key), env)?;
            }
        }
        Node::Null | Node::Bool(_) | Node::UInt(_) | Node::Int(_) | Node::Float(_) => {}
    }
    Ok(())
}

/// Expand one string; `None` when it holds no `$` and stays as is. Error
/// messages never quote the string: it may be a key around the reference.
fn expand_str(
    s: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let bad_reference = || ConfigError::Invalid {
                path: path.to_owned(),
                message: "`${` must be followed by an environment variable name and `}` \
                          (write `$${` for a literal `${`)"
                    .to_owned(),
            };
            let end = after.find('}').ok_or_else(bad_reference)?;
            let var = &after[..end];
            if !is_var_name(var) {
                return Err(bad_reference());
            }
            let value = env(var).ok_or_else(|| ConfigError::MissingEnv {
                var: var.to_owned(),
                path: path.to_owned(),
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// POSIX shell variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        // serde_json reports every non-negative integer through visit_u64;
        // normalise in case another front end does not.
        Ok(u64::try_from(v).map_or(Node::Int(v), Node::UInt))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Node>()? {
            members.push(member);
        }
        Ok(Node::Object(members))
    }
}

impl<'de> Deserializer<'de> for Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_unit(),
            Node::Bool(v) => visitor.visit_bool(v),
            Node::UInt(v) => visitor.visit_u64(v),
            Node::Int(v) => visitor.visit_i64(v),
            Node::Float(v) => visitor.visit_f64(v),
            Node::String(v) => visitor.visit_string(v),
            Node::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Object(members) => {
                let mut map = MapDeserializer::new(members.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    /// `null` is an absent optional value, as in serde_json.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    /// Unit variants are written as strings (`"round-robin"`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::String(v) => visitor.visit_enum(v.into_deserializer()),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node {
    type Deserializer = Node;

    fn into_deserializer(self) -> Node {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${A}".to_owned()),
            _ => None,
        }
    }

    fn expand(s: &str) -> Result<String, ConfigError> {
        Ok(expand_str(s, "k", &env)?.unwrap_or_else(|| s.to_owned()))
    }

    #[test]
    fn objects_keep_file_order_and_duplicates() {
        let node =
            parse(r#"{"z": 1, "a": [true, null, -2, 1.5], "m": "x", "z": 2}"#).expect("valid JSON");
        let Node::Object(members) = node else {
            panic!("object expected");
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m", "z"]);
        assert_eq!(
            members[1].1,
            Node::Array(vec![
                Node::Bool(true),
                Node::Null,
                Node::Int(-2),
                Node::Float(1.5)
            ])
        );
    }

    #[test]
    fn syntax_errors_have_position_and_path() {
        let err = parse("{\n  \"providers\": [\n    {\"id\": \"a\",}\n  ]\n}").expect_err("bad");
        let ConfigError::Json {
            path_in_file,
            line,
            message,
            ..
        } = err
        else {
            panic!("Json error expected, got {err:?}");
        };
        assert_eq!(line, 3);
        assert!(path_in_file.starts_with("providers[0]"), "{path_in_file}");
        assert!(!message.contains(" at line "), "{message}");
        assert!(matches!(
            parse("{} {}"),
            Err(ConfigError::Json { line: 1, .. })
        ));
        assert!(matches!(parse(""), Err(ConfigError::Json { .. })));
    }

    #[test]
    fn whole_and_embedded_references() {
        assert_eq!(expand("${A}").expect("set"), "alpha");
        assert_eq!(expand("Bearer ${A}!").expect("set"), "Bearer alpha!");
        assert_eq!(expand("${A}${A}").expect("set"), "alphaalpha");
        assert_eq!(expand("x${EMPTY}y").expect("set"), "xy");
        assert_eq!(expand("no refs").expect("plain"), "no refs");
    }

    #[test]
    fn dollars_and_escapes() {
        assert_eq!(expand("$5 and $A").expect("literal"), "$5 and $A");
        assert_eq!(expand("a$$b$").expect("literal"), "a$$b$");
        assert_eq!(expand("$${A}").expect("escaped"), "${A}");
        // Values are inserted literally, never expanded twice.
        assert_eq!(expand("${NESTED}").expect("set"), "${A}");
    }

    #[test]
    fn bad_references() {
        for bad in ["${A", "${}", "${1X}", "${A-B}", "pre ${ A }"] {
            assert!(
                matches!(expand(bad), Err(ConfigError::Invalid { .. })),
                "{bad}"
            );
        }
        match expand("x${NOPE}") {
            Err(ConfigError::MissingEnv { var, path }) => {
                assert_eq!(var, "NOPE");
                assert_eq!(path, "k");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expansion_walks_values_not_keys() {
        let mut node = parse(r#"{"${A}": ["${A}", {"k": "${A}"}], "n": 1}"#).expect("valid");
        expand_env(&mut node, "", &env).expect("all set");
        let expected = parse(r#"{"${A}": ["alpha", {"k": "alpha"}], "n": 1}"#).expect("valid");
        assert_eq!(node, expected);

        let mut node = parse(r#"{"p": [{"k": 1}, {"k": "${NOPE}"}]}"#).expect("valid");
        match expand_env(&mut node, "", &env) {
            Err(ConfigError::MissingEnv { path, .. }) => assert_eq!(path, "p[1].k"),
            other => panic!("{other:?}"),
        }
    }
}
