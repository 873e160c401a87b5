//! `PortRef`: a port given by number (`8080`) or by the name of a service port (`http`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A port by number or by name, as in Kubernetes' `IntOrString` ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// The name of one of the service's `ports`.
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortRef::Number(n) => s.serialize_u16(*n),
            PortRef::Name(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (1-65535) or the name of a service port")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRef, E> {
                match u16::try_from(v) {
                    Ok(n) if n > 0 => Ok(PortRef::Number(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRef, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRef, E> {
                Ok(PortRef::Name(v.to_owned()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

impl JsonSchema for PortRef {
    fn schema_name() -> Cow<'static, str> {
        "PortRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A port number (1-65535) or the name of a service port.",
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}]
        })
    }
}
