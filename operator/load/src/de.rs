//! Reading typed values from a YAML node tree with serde. Every error carries the
//! exact position and field path of the node that caused it, so diagnostics never
//! have to guess where a problem is.
//!
//! Scalars resolve as Kubernetes reads YAML: plain `yes`/`no`/`on`/`off` are booleans
//! when a boolean is wanted, `0644` is octal, quoted text is always text.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::yaml::{Node, Value};

/// The path from the document root to the node being read, as a linked list on the
/// stack: nothing is allocated unless an error needs it.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(parent, key) => {
                let p = parent.render();
                if p.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{p}.{key}")
                }
            }
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// What went wrong reading a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    /// Expected something else: what was expected, and what was found.
    Mismatch {
        expected: String,
        found: String,
    },
    Custom(String),
}

/// A problem at a node: line and column from 1 (in the file), and the field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Error {
    pub problem: Problem,
    pub at: Option<(u32, u32, String)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.problem)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            problem: Problem::Custom(msg.to_string()),
            at: None,
        }
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error {
            problem: Problem::Mismatch {
                expected: exp.to_string(),
                found: unexp.to_string(),
            },
            at: None,
        }
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error {
            problem: Problem::UnknownField {
                field: field.to_owned(),
                expected,
            },
            at: None,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        Error {
            problem: Problem::MissingField(field),
            at: None,
        }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error {
            problem: Problem::UnknownVariant {
                variant: variant.to_owned(),
                expected,
            },
            at: None,
        }
    }
}

/// Reads a `T` from the tree rooted at `node`.
pub(crate) fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, Error> {
    T::deserialize(De {
        node,
        path: &Path::Root,
    })
}

struct De<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
}

/// A plain scalar, resolved to the type YAML gives it.
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(&'a str),
}

pub(crate) fn resolve(text: &str, plain: bool) -> Scalar<'_> {
    if !plain {
        return Scalar::Text(text);
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = if let Some(hex) = digits.strip_prefix("0x") {
        Some((hex, 16))
    } else if let Some(oct) = digits.strip_prefix("0o") {
        Some((oct, 8))
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        // Legacy octal, as kubectl reads `defaultMode: 0644`.
        Some((&digits[1..], 8))
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Some((digits, 10))
    } else {
        None
    };
    if let Some((body, radix)) = radix
        && let Ok(n) = u64::from_str_radix(body, radix)
    {
        return match (negative, i64::try_from(n)) {
            (false, _) => Scalar::Unsigned(n),
            (true, Ok(n)) => Scalar::Signed(-n),
            (true, Err(_)) => Scalar::Text(text),
        };
    }
    let looks_numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return Scalar::Float(f);
    }
    Scalar::Text(text)
}

impl<'a> De<'a, '_> {
    /// Attaches this node's position and path to an error raised below it that has
    /// none yet (the innermost node wins).
    fn here<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|mut e| {
            if e.at.is_none() {
                e.at = Some((self.node.line, self.node.column, self.path.render()));
            }
            e
        })
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.value {
            Value::Scalar { text, plain } => match resolve(text, *plain) {
                Scalar::Null => de::Unexpected::Unit,
                Scalar::Bool(b) => de::Unexpected::Bool(b),
                Scalar::Unsigned(n) => de::Unexpected::Unsigned(n),
                Scalar::Signed(n) => de::Unexpected::Signed(n),
                Scalar::Float(f) => de::Unexpected::Float(f),
                Scalar::Text(t) => de::Unexpected::Str(t),
            },
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }

    fn mismatch<T, V: Visitor<'a>>(&self, visitor: &V) -> Result<T, Error> {
        self.here(Err(de::Error::invalid_type(self.unexpected(), visitor)))
    }

    fn scalar(&self) -> Option<Scalar<'a>> {
        match &self.node.value {
            Value::Scalar { text, plain } => Some(resolve(text, *plain)),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }
}

macro_rules! number {
    ($method:ident) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let result = match self.scalar() {
                Some(Scalar::Unsigned(n)) => visitor.visit_u64(n),
                Some(Scalar::Signed(n)) => visitor.visit_i64(n),
                _ => return self.mismatch(&visitor),
            };
            self.here(result)
        }
    };
}

impl<'a> de::Deserializer<'a> for De<'a, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Scalar { text, plain } => match resolve(text, *plain) {
                Scalar::Null => visitor.visit_unit(),
                Scalar::Bool(b) => visitor.visit_bool(b),
                Scalar::Unsigned(n) => visitor.visit_u64(n),
                Scalar::Signed(n) => visitor.visit_i64(n),
                Scalar::Float(f) => visitor.visit_f64(f),
                Scalar::Text(t) => visitor.visit_str(t),
            },
            Value::Seq(items) => visitor.visit_seq(Seq {
                items,
                next: 0,
                path: self.path,
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                entries,
                next: 0,
                path: self.path,
            }),
        };
        self.here(result)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar() {
            Some(Scalar::Bool(b)) => self.here(visitor.visit_bool(b)),
            _ => self.mismatch(&visitor),
        }
    }

    number!(deserialize_i8);
    number!(deserialize_i16);
    number!(deserialize_i32);
    number!(deserialize_i64);
    number!(deserialize_u8);
    number!(deserialize_u16);
    number!(deserialize_u32);
    number!(deserialize_u64);

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.scalar() {
            Some(Scalar::Float(f)) => visitor.visit_f64(f),
            Some(Scalar::Unsigned(n)) => visitor.visit_f64(n as f64),
            Some(Scalar::Signed(n)) => visitor.visit_f64(n as f64),
            _ => return self.mismatch(&visitor),
        };
        self.here(result)
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            // Any non-null scalar reads as its text: `LOG_LEVEL: 1` is the string "1".
            Value::Scalar { text, .. } if !self.is_null() => self.here(visitor.visit_str(text)),
            _ => self.mismatch(&visitor),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.mismatch(&visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.mismatch(&visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            self.here(visitor.visit_none())
        } else {
            let here = De {
                node: self.node,
                path: self.path,
            };
            here.here(visitor.visit_some(self))
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            self.here(visitor.visit_unit())
        } else {
            self.mismatch(&visitor)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let here = De {
            node: self.node,
            path: self.path,
        };
        here.here(visitor.visit_newtype_struct(self))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(Seq {
                items,
                next: 0,
                path: self.path,
            }),
            // An empty value (`args:`) is an empty list.
            _ if self.is_null() => visitor.visit_seq(Seq {
                items: &[],
                next: 0,
                path: self.path,
            }),
            _ => return self.mismatch(&visitor),
        };
        self.here(result)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(Map {
                entries,
                next: 0,
                path: self.path,
            }),
            // An empty value (`env:`) is an empty mapping.
            _ if self.is_null() => visitor.visit_map(Map {
                entries: &[],
                next: 0,
                path: self.path,
            }),
            _ => return self.mismatch(&visitor),
        };
        self.here(result)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar { text, .. } => {
                let variant: de::value::StrDeserializer<'_, Error> =
                    text.as_str().into_deserializer();
                self.here(visitor.visit_enum(variant))
            }
            _ => self.mismatch(&visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct Seq<'a, 'p> {
    items: &'a [Node],
    next: usize,
    path: &'p Path<'p>,
}

impl<'a> de::SeqAccess<'a> for Seq<'a, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(node) = self.items.get(self.next) else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.next);
        self.next += 1;
        // `path` lives on this stack frame; errors leave it already rendered.
        seed.deserialize(De { node, path: &path }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct Map<'a, 'p> {
    entries: &'a [(Node, Node)],
    next: usize,
    path: &'p Path<'p>,
}

impl<'a> de::MapAccess<'a> for Map<'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let name = key.as_str().unwrap_or("?");
        let path = Path::Key(self.path, name);
        seed.deserialize(De {
            node: key,
            path: &path,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = &self.entries[self.next];
        self.next += 1;
        let path = Path::Key(self.path, key.as_str().unwrap_or("?"));
        seed.deserialize(De {
            node: value,
            path: &path,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::yaml;

    fn read<T: de::DeserializeOwned>(text: &str) -> Result<T, Error> {
        from_node(&yaml::parse(text, 0).unwrap().unwrap())
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Probe {
        period_seconds: u32,
        #[serde(default)]
        enabled: bool,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        probes: Vec<Probe>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        mode: Option<u32>,
    }

    #[test]
    fn errors_carry_the_exact_path_and_position() {
        let e = read::<Doc>("probes:\n  - periodSeconds: 1\n  - periodSecond: 2\n").unwrap_err();
        assert!(
            matches!(e.problem, Problem::UnknownField { ref field, .. } if field == "periodSecond")
        );
        assert_eq!(e.at, Some((3, 5, "probes[1].periodSecond".into())));
        let e = read::<Doc>("probes:\n  - enabled: true\n").unwrap_err();
        assert_eq!(e.problem, Problem::MissingField("periodSeconds"));
        assert_eq!(e.at, Some((2, 5, "probes[0]".into())));
        let e = read::<Doc>("probes:\n  - periodSeconds: lots\n").unwrap_err();
        assert_eq!(e.at, Some((2, 20, "probes[0].periodSeconds".into())));
    }

    #[test]
    fn scalars_resolve_like_kubernetes_yaml() {
        let d: Doc = read("probes: [{periodSeconds: 0o17, enabled: yes}]\nenv: {A: 1, B: on, C: '0644'}\nmode: 0644\n").unwrap();
        assert_eq!(
            d.probes[0],
            Probe {
                period_seconds: 15,
                enabled: true
            }
        );
        assert_eq!(d.env["A"], "1");
        assert_eq!(d.env["B"], "on");
        assert_eq!(d.env["C"], "0644");
        assert_eq!(d.mode, Some(420));
    }

    #[test]
    fn empty_values_are_empty_collections_and_none() {
        let d: Doc = read("probes:\nenv:\nmode:\n").unwrap();
        assert_eq!(
            d,
            Doc {
                probes: vec![],
                env: BTreeMap::new(),
                mode: None
            }
        );
    }
}
