//! How much a config repo may hold: bounds on files, documents, objects, strings and
//! nesting, so that hostile or broken input is refused early, with a located error,
//! and memory stays bounded. docs/limits.md lists them and how to change them.

use std::sync::OnceLock;

/// The bounds a revision is read within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one YAML file.
    pub file_bytes: u64,
    /// Bytes in all YAML files of a revision together.
    pub revision_bytes: u64,
    /// Documents in one file.
    pub documents_per_file: usize,
    /// Documents (objects) in a revision.
    pub objects: usize,
    /// Bytes in one string (a key or a value).
    pub string_bytes: usize,
    /// Levels of nesting in one document.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: 1 << 20,
            revision_bytes: 256 << 20,
            documents_per_file: 1_000,
            objects: 50_000,
            string_bytes: 128 << 10,
            depth: 64,
        }
    }
}

/// One limit's environment variable, for docs and errors.
#[derive(Debug)]
pub struct Setting {
    /// The variable, `DROVER_MAX_FILE_BYTES`.
    pub variable: &'static str,
    /// What it bounds.
    pub what: &'static str,
    /// Whether it is a size in bytes (accepts `KiB`/`MiB`/`GiB` suffixes).
    pub bytes: bool,
}

/// Every limit's setting, in the order of [`Limits`]' fields.
pub const SETTINGS: [Setting; 6] = [
    Setting {
        variable: "DROVER_MAX_FILE_BYTES",
        what: "bytes in one YAML file",
        bytes: true,
    },
    Setting {
        variable: "DROVER_MAX_REVISION_BYTES",
        what: "bytes in all YAML files of a revision",
        bytes: true,
    },
    Setting {
        variable: "DROVER_MAX_DOCUMENTS_PER_FILE",
        what: "documents in one file",
        bytes: false,
    },
    Setting {
        variable: "DROVER_MAX_OBJECTS",
        what: "documents (objects) in a revision",
        bytes: false,
    },
    Setting {
        variable: "DROVER_MAX_STRING_BYTES",
        what: "bytes in one string (a key or a value)",
        bytes: true,
    },
    Setting {
        variable: "DROVER_MAX_DEPTH",
        what: "levels of nesting in one document",
        bytes: false,
    },
];

/// A limit's variable holds something that is not a positive amount.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not {expected}")]
pub struct LimitError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

static CURRENT: OnceLock<Limits> = OnceLock::new();

impl Limits {
    /// The limits of this process: what [`Limits::install`] set, else the defaults.
    pub fn current() -> Limits {
        *CURRENT.get_or_init(Limits::default)
    }

    /// Sets this process's limits, once, before anything is read (later calls are
    /// ignored: every read of one process uses the same bounds).
    pub fn install(self) {
        let _ = CURRENT.set(self);
    }

    /// The defaults, changed by whichever `DROVER_MAX_*` variables are set.
    pub fn from_env() -> Result<Limits, LimitError> {
        Limits::from_lookup(|name| std::env::var(name).ok())
    }

    /// The defaults, changed by what `lookup` finds for each variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitError> {
        let defaults = Limits::default();
        let mut values = [
            defaults.file_bytes,
            defaults.revision_bytes,
            defaults.documents_per_file as u64,
            defaults.objects as u64,
            defaults.string_bytes as u64,
            defaults.depth as u64,
        ];
        for (setting, value) in SETTINGS.iter().zip(values.iter_mut()) {
            if let Some(text) = lookup(setting.variable) {
                *value = parse_amount(&text, setting.bytes).ok_or_else(|| LimitError {
                    variable: setting.variable,
                    value: text.clone(),
                    expected: if setting.bytes {
                        "a positive size such as 1048576, 512KiB or 4MiB"
                    } else {
                        "a positive whole number"
                    },
                })?;
            }
        }
        let [file, revision, per_file, objects, string, depth] = values;
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Limits {
            file_bytes: file,
            revision_bytes: revision,
            documents_per_file: size(per_file),
            objects: size(objects),
            string_bytes: size(string),
            depth: size(depth),
        })
    }
}

/// `1048576`, `512KiB`, `4MiB`, `1GiB` (sizes) or a plain count; never 0.
fn parse_amount(text: &str, bytes: bool) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale: u64 = match (bytes, unit.trim()) {
        (_, "") => 1,
        (true, "KiB") => 1 << 10,
        (true, "MiB") => 1 << 20,
        (true, "GiB") => 1 << 30,
        _ => return None,
    };
    number
        .parse::<u64>()
        .ok()?
        .checked_mul(scale)
        .filter(|n| *n > 0)
}

/// Bytes in words: `1 MiB`, `512 KiB`, `300 bytes`.
pub fn bytes_in_words(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_change_only_their_own_limit_and_take_size_suffixes() {
        let limits = Limits::from_lookup(|name| match name {
            "DROVER_MAX_FILE_BYTES" => Some("4MiB".to_owned()),
            "DROVER_MAX_OBJECTS" => Some("200".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(limits.file_bytes, 4 << 20);
        assert_eq!(limits.objects, 200);
        assert_eq!(limits.depth, Limits::default().depth);
    }

    #[test]
    fn a_bad_amount_names_its_variable_and_what_it_takes() {
        for bad in ["0", "lots", "-1", "4MB", "2KiB"] {
            let variable = if bad == "2KiB" {
                "DROVER_MAX_DEPTH"
            } else {
                "DROVER_MAX_STRING_BYTES"
            };
            let error =
                Limits::from_lookup(|name| (name == variable).then(|| bad.to_owned())).unwrap_err();
            assert_eq!(error.variable, variable, "{bad}");
            assert!(error.to_string().contains("positive"), "{error}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_in_words(1 << 20), "1 MiB");
        assert_eq!(bytes_in_words(10_485_760 + 1), "10.0 MiB");
        assert_eq!(bytes_in_words(128 << 10), "128 KiB");
        assert_eq!(bytes_in_words(300), "300 bytes");
    }
}

#[cfg(test)]
mod documented {
    #[test]
    fn docs_limits_md_names_every_limit_and_its_default() {
        let docs = include_str!("../../../docs/limits.md");
        let defaults = super::Limits::default();
        let shown = [
            super::bytes_in_words(defaults.file_bytes).replace(' ', ""),
            super::bytes_in_words(defaults.revision_bytes).replace(' ', ""),
            defaults.documents_per_file.to_string(),
            defaults.objects.to_string(),
            super::bytes_in_words(defaults.string_bytes as u64).replace(' ', ""),
            defaults.depth.to_string(),
        ];
        for (setting, default) in super::SETTINGS.iter().zip(shown) {
            let row = format!("| `{}` | {default} |", setting.variable);
            assert!(docs.contains(&row), "docs/limits.md lacks {row}");
        }
    }
}
