//! Placement constraints (`node.labels.zone == a`), parsed once and evaluated by the
//! scheduler against a node's name, role and labels.

use std::collections::BTreeMap;
use std::fmt;

use crate::cluster::NodeRole;

/// What a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `node.name`
    Name,
    /// `node.role`
    Role,
    /// `node.labels.KEY`
    Label(String),
}

/// One parsed constraint: subject, `==` or `!=`, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub subject: Subject,
    /// True for `==`, false for `!=`.
    pub equals: bool,
    pub value: String,
}

/// Why a constraint did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintError(pub String);

impl fmt::Display for ConstraintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConstraintError {}

impl Constraint {
    /// Parses `node.labels.KEY == VALUE`, `node.role != manager`, `node.name == n1`.
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let (left, equals, right) = if let Some((l, r)) = text.split_once("==") {
            (l, true, r)
        } else if let Some((l, r)) = text.split_once("!=") {
            (l, false, r)
        } else {
            return Err(ConstraintError(format!("`{text}` has no `==` or `!=`")));
        };
        let (left, value) = (left.trim(), right.trim());
        if value.is_empty() {
            return Err(ConstraintError(format!(
                "`{text}` has nothing to compare with"
            )));
        }
        let subject = match left {
            "node.name" => Subject::Name,
            "node.role" => {
                if !matches!(value, "manager" | "worker") {
                    return Err(ConstraintError(format!(
                        "`node.role` is `manager` or `worker`, not `{value}`"
                    )));
                }
                Subject::Role
            }
            other => match other.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => Subject::Label(key.to_owned()),
                _ => {
                    return Err(ConstraintError(format!(
                        "`{other}` is not `node.name`, `node.role` or `node.labels.KEY`"
                    )));
                }
            },
        };
        Ok(Constraint {
            subject,
            equals,
            value: value.to_owned(),
        })
    }

    /// Does a node with this name, role and labels satisfy the constraint?
    pub fn matches(&self, name: &str, role: NodeRole, labels: &BTreeMap<String, String>) -> bool {
        let actual = match &self.subject {
            Subject::Name => Some(name),
            Subject::Role => Some(match role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            Subject::Label(key) => labels.get(key).map(String::as_str),
        };
        (actual == Some(self.value.as_str())) == self.equals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_constraints_match_like_swarm() {
        let c = Constraint::parse("node.labels.env == production").unwrap();
        let mut labels = BTreeMap::new();
        assert!(!c.matches("n1", NodeRole::Worker, &labels));
        labels.insert("env".to_owned(), "production".to_owned());
        assert!(c.matches("n1", NodeRole::Worker, &labels));
        let not = Constraint::parse("node.labels.env != production").unwrap();
        assert!(!not.matches("n1", NodeRole::Worker, &labels));
        assert!(not.matches("n1", NodeRole::Worker, &BTreeMap::new()));
    }

    #[test]
    fn malformed_constraints_say_what_is_wrong() {
        assert!(
            Constraint::parse("node.labels.env = a")
                .unwrap_err()
                .0
                .contains("no `==`")
        );
        assert!(
            Constraint::parse("node.role == boss")
                .unwrap_err()
                .0
                .contains("manager")
        );
        assert!(
            Constraint::parse("host == a")
                .unwrap_err()
                .0
                .contains("node.labels.KEY")
        );
        assert!(Constraint::parse("node.name == ").is_err());
    }
}
