//! Quantities users write as text — CPU, memory, durations — held as exact integers.
//!
//! Each parses the spellings users know from Kubernetes and Docker (`0.5`, `500m`,
//! `512Mi`, `1m30s`) and prints one canonical spelling, so that two spellings of the
//! same amount never show up as a change in a diff.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity that did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    /// What was written.
    pub input: String,
    /// What a valid value looks like.
    pub expected: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not {}", self.input, self.expected)
    }
}

impl std::error::Error for QuantityError {}

/// CPU in millicores: `2` (cores), `0.25` (cores) and `250m` all parse; 1 core = 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(pub u64);

/// Memory in bytes: `512Mi`, `1Gi`, `1G`, `1048576` all parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Memory(pub u64);

/// A span of time in milliseconds: `500ms`, `5s`, `1m30s`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

const CPU_EXPECTED: &str =
    "a CPU amount such as `2`, `0.25` or `250m` (cores, or millicores with `m`)";
const MEMORY_EXPECTED: &str =
    "a memory amount such as `512Mi`, `1Gi` or `1G` (bytes, or a suffix Ki/Mi/Gi/Ti/k/M/G/T)";
const DURATION_EXPECTED: &str = "a duration such as `500ms`, `5s`, `1m30s` or `2h`";

/// CPU and memory, for rules that treat both resources alike.
pub trait Amount: Copy + Ord + fmt::Display {
    /// The field name: `cpu` or `memory`.
    const FIELD: &'static str;
    /// How people name it in a sentence: `CPU` or `memory`.
    const LABEL: &'static str;
    /// The exact integer (millicores or bytes).
    fn raw(self) -> u64;
    /// A limit of 0 means "no limit".
    fn is_unlimited(self) -> bool {
        self.raw() == 0
    }
}

impl Amount for Cpu {
    const FIELD: &'static str = "cpu";
    const LABEL: &'static str = "CPU";
    fn raw(self) -> u64 {
        self.0
    }
}

impl Amount for Memory {
    const FIELD: &'static str = "memory";
    const LABEL: &'static str = "memory";
    fn raw(self) -> u64 {
        self.0
    }
}

impl Cpu {
    /// Whole cores.
    pub fn cores(n: u64) -> Self {
        Cpu(n * 1000)
    }
    /// Millicores.
    pub fn millis(self) -> u64 {
        self.0
    }
}

impl Memory {
    /// Mebibytes.
    pub fn mib(n: u64) -> Self {
        Memory(n << 20)
    }
    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl Duration {
    /// Whole seconds.
    pub fn secs(n: u64) -> Self {
        Duration(n * 1000)
    }
    /// Milliseconds.
    pub fn millis(self) -> u64 {
        self.0
    }
    /// As a standard library duration.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

/// Parses a non-negative decimal (`2`, `0.25`, `1.5`) scaled by `scale`, exactly.
/// Fractions finer than one unit after scaling are rejected rather than rounded,
/// because a silently rounded request is a surprise at scheduling time.
fn parse_decimal_scaled(text: &str, scale: u64) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 18 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let denominator = 10u128.pow(frac.len() as u32);
    let scale = u128::from(scale);
    let fraction = frac_value * scale;
    if !fraction.is_multiple_of(denominator) {
        return None;
    }
    u64::try_from(whole.checked_mul(scale)? + fraction / denominator).ok()
}

impl FromStr for Cpu {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError {
            input: s.to_owned(),
            expected: CPU_EXPECTED,
        };
        let t = s.trim();
        let parsed = match t.strip_suffix('m') {
            Some(m) if !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()) => m.parse().ok(),
            Some(_) => None,
            None => parse_decimal_scaled(t, 1000),
        };
        parsed.map(Cpu).ok_or_else(err)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const MEMORY_SUFFIXES: [(&str, u64); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

impl FromStr for Memory {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError {
            input: s.to_owned(),
            expected: MEMORY_EXPECTED,
        };
        let t = s.trim();
        let (number, scale) = MEMORY_SUFFIXES
            .iter()
            .find_map(|(suffix, scale)| t.strip_suffix(suffix).map(|n| (n, *scale)))
            .unwrap_or((t, 1));
        parse_decimal_scaled(number, scale)
            .map(Memory)
            .ok_or_else(err)
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest binary unit that divides exactly, so the text is exact and short.
        for (suffix, scale) in MEMORY_SUFFIXES[..4].iter().rev() {
            if self.0 != 0 && self.0.is_multiple_of(*scale) {
                return write!(f, "{}{}", self.0 / scale, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

const DURATION_UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl FromStr for Duration {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError {
            input: s.to_owned(),
            expected: DURATION_EXPECTED,
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..letters];
            rest = &rest[letters..];
            let scale = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(err)?;
            total = n
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (unit, scale) in DURATION_UNITS {
            if rest >= scale {
                write!(f, "{}{}", rest / scale, unit)?;
                rest %= scale;
            }
        }
        Ok(())
    }
}

/// Deserializes from a string, an integer or a float (YAML `cpu: 0.5` is a float).
struct QuantityVisitor<T>(std::marker::PhantomData<T>, &'static str);

impl<T: FromStr<Err = QuantityError>> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        if v < 0 {
            return Err(E::invalid_value(de::Unexpected::Signed(v), &self));
        }
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::invalid_value(de::Unexpected::Float(v), &self));
        }
        self.visit_str(&v.to_string())
    }
}

macro_rules! quantity_serde {
    ($ty:ty, $expected:expr, $name:literal, $pattern:literal, $numbers:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(QuantityVisitor(std::marker::PhantomData, $expected))
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                // Kubernetes' own spelling for "number or string" (as for Quantity),
                // so the same schema is a valid structural CRD schema.
                if $numbers {
                    json_schema!({
                        "description": $expected,
                        "x-kubernetes-int-or-string": true,
                        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": $pattern}]
                    })
                } else {
                    json_schema!({
                        "description": $expected,
                        "type": "string",
                        "pattern": $pattern
                    })
                }
            }
        }
    };
}

quantity_serde!(
    Cpu,
    CPU_EXPECTED,
    "Cpu",
    "^([0-9]+m|[0-9]*\\.?[0-9]+)$",
    true
);
quantity_serde!(
    Memory,
    MEMORY_EXPECTED,
    "Memory",
    "^[0-9]*\\.?[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$",
    true
);
quantity_serde!(
    Duration,
    DURATION_EXPECTED,
    "Duration",
    "^([0-9]+(ms|h|m|s))+$",
    false
);

#[cfg(feature = "proptest")]
mod arbitrary {
    use proptest::prelude::*;

    use super::{Cpu, Duration, Memory};

    impl Arbitrary for Cpu {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            (0u64..1_000_000).prop_map(Cpu).boxed()
        }
    }
    impl Arbitrary for Memory {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            prop_oneof![
                (0u64..1 << 44).prop_map(Memory),
                (0u64..4096).prop_map(Memory::mib)
            ]
            .boxed()
        }
    }
    impl Arbitrary for Duration {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            (0u64..1 << 40).prop_map(Duration).boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_spellings_of_the_same_amount_are_equal() {
        assert_eq!("0.25".parse::<Cpu>().unwrap(), Cpu(250));
        assert_eq!("250m".parse::<Cpu>().unwrap(), Cpu(250));
        assert_eq!("2".parse::<Cpu>().unwrap(), Cpu::cores(2));
        assert_eq!(".5".parse::<Cpu>().unwrap(), Cpu(500));
        assert_eq!(Cpu(250).to_string(), "250m");
        assert_eq!(Cpu(3000).to_string(), "3");
    }

    #[test]
    fn cpu_rejects_what_it_cannot_hold_exactly() {
        for bad in ["", "m", "-1", "1.0005", "2 cores", "1e3", "0.5m"] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn memory_knows_binary_and_decimal_suffixes() {
        assert_eq!("512Mi".parse::<Memory>().unwrap(), Memory::mib(512));
        assert_eq!("1Gi".parse::<Memory>().unwrap(), Memory::mib(1024));
        assert_eq!("1G".parse::<Memory>().unwrap(), Memory(1_000_000_000));
        assert_eq!("1.5Gi".parse::<Memory>().unwrap(), Memory::mib(1536));
        assert_eq!(Memory::mib(1536).to_string(), "1536Mi");
        assert_eq!(Memory(1_000_000_000).to_string(), "1000000000");
        assert!("12 MB".parse::<Memory>().is_err());
    }

    #[test]
    fn durations_compose_units_and_print_canonically() {
        assert_eq!("1m30s".parse::<Duration>().unwrap(), Duration(90_000));
        assert_eq!("500ms".parse::<Duration>().unwrap(), Duration(500));
        assert_eq!("0s".parse::<Duration>().unwrap(), Duration(0));
        assert_eq!(Duration(90_000).to_string(), "1m30s");
        assert_eq!(Duration(3_600_500).to_string(), "1h500ms");
        for bad in ["", "5", "5x", "s", "-1s", "1.5s"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn yaml_numbers_and_strings_both_deserialize() {
        #[derive(Deserialize)]
        struct R {
            cpu: Cpu,
            memory: Memory,
        }
        let r: R = serde_saphyr::from_str("cpu: 0.5\nmemory: 1024\n").unwrap();
        assert_eq!((r.cpu, r.memory), (Cpu(500), Memory(1024)));
        let r: R = serde_saphyr::from_str("cpu: 2\nmemory: 1Gi\n").unwrap();
        assert_eq!((r.cpu, r.memory), (Cpu(2000), Memory::mib(1024)));
    }
}
