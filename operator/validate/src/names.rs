//! Naming rules shared by every kind (domain notes §1).

use drover_diagnostics::Code;
use drover_load::Object;

use crate::{Findings, Hint};

/// Labels under this prefix are Drover's own.
pub(crate) const RESERVED_LABEL_PREFIX: &str = "drover.dev/";

/// Why `name` breaks the naming rule, if it does: at most 63 characters, lowercase
/// letters, digits and `-`, starting with a letter and ending with a letter or digit.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("may only hold lowercase letters, digits and `-`")
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Some("must start with a letter")
    } else if name.ends_with('-') {
        Some("must end with a letter or digit")
    } else {
        None
    }
}

/// A suggested valid spelling of a name, for hints.
fn suggest(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.starts_with(|c: char| !c.is_ascii_lowercase()) && !s.is_empty() {
        s.remove(0);
    }
    s.truncate(63);
    s.trim_end_matches('-').to_owned()
}

/// Checks a name at `path`; `what` says what is being named.
pub(crate) fn check<S>(
    f: &mut Findings<'_>,
    object: &Object<S>,
    path: &str,
    what: &str,
    name: &str,
) {
    if let Some(problem) = name_problem(name) {
        let suggestion = suggest(name);
        let d = f.at(
            object,
            path,
            Code::InvalidName,
            format!("{what} `{name}` {problem}"),
        );
        if suggestion.is_empty() || suggestion == name {
            d.hint("use lowercase letters, digits and `-`, starting with a letter, at most 63 characters");
        } else {
            d.hint(format!("for example `{suggestion}`"));
        }
    }
}

/// The object's own name and labels.
pub(crate) fn object<S>(f: &mut Findings<'_>, object: &Object<S>) {
    let kind = object.manifest.kind.clone();
    check(
        f,
        object,
        "metadata.name",
        &format!("{kind} name"),
        object.name(),
    );
    for key in object.manifest.metadata.labels.keys() {
        reserved_label(f, object, &format!("metadata.labels.{key}"), key);
    }
}

/// Labels under `drover.dev/` are set by Drover and cannot be written.
pub(crate) fn reserved_label<S>(f: &mut Findings<'_>, object: &Object<S>, path: &str, key: &str) {
    if key.starts_with(RESERVED_LABEL_PREFIX) {
        f.at(
            object,
            path,
            Code::ReservedLabel,
            format!("label `{key}` is reserved for Drover"),
        )
        .hint(format!(
            "labels under `{RESERVED_LABEL_PREFIX}` are set by Drover; choose another prefix"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dns_label_rule() {
        assert_eq!(name_problem("web-1"), None);
        assert!(name_problem("Web").is_some());
        assert!(name_problem("1web").is_some());
        assert!(name_problem("web-").is_some());
        assert!(name_problem(&"a".repeat(64)).is_some());
        assert_eq!(suggest("My_Service"), "my-service");
    }
}
