//! The form of a service's artifact fields, `version` and `image`: the same rule for
//! what is committed to the repo and what a deploy request asks to commit, so that a
//! newline or a control character never reaches a file, a commit message or a log.

/// Longest version: Docker's limit for a tag.
const VERSION_MOST: usize = 128;
/// Longest image reference.
const IMAGE_MOST: usize = 512;

/// Why `value` breaks its form, if it does: 1 to `most` characters, each allowed.
fn form_problem(
    value: &str,
    most: usize,
    allowed: impl Fn(char) -> bool,
    what: &str,
    holds: &str,
) -> Option<String> {
    if value.is_empty() || value.len() > most {
        return Some(format!("{what} is 1 to {most} characters"));
    }
    (!value.chars().all(allowed))
        .then(|| format!("{what} holds only {holds} (no spaces or control characters)"))
}

/// Why `version` is not a valid version, if it is not.
pub fn version_problem(version: &str) -> Option<String> {
    form_problem(
        version,
        VERSION_MOST,
        |c| c.is_ascii_alphanumeric() || "._+-".contains(c),
        "a version",
        "letters, digits, `.`, `_`, `+` and `-`",
    )
}

/// Why `image` is not a valid image reference, if it is not.
pub fn image_problem(image: &str) -> Option<String> {
    form_problem(
        image,
        IMAGE_MOST,
        |c| c.is_ascii_alphanumeric() || "._+-/:@".contains(c),
        "an image reference",
        "letters, digits and `._+-/:@`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_images_refuse_newlines_and_control_characters() {
        assert_eq!(version_problem("v1.4.0"), None);
        assert_eq!(version_problem("2.0.0+build.7"), None);
        assert!(version_problem("v2\nDrover-Promotion: forged").is_some());
        assert!(version_problem("v2\u{1b}[31m").is_some());
        assert!(version_problem("").is_some());
        assert_eq!(
            image_problem("registry.example:5000/shop/web:v2@sha256:ab12"),
            None
        );
        assert!(image_problem("web:v2 --privileged").is_some());
        assert!(image_problem("web\r\n").is_some());
    }
}
