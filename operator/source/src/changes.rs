//! Who may change which environment, like a protected branch: every commit between
//! the revision in force and a new one is checked against the change rules of each
//! environment it touches (its folder; `clusters/` and `policies/` touch them all), as
//! the revision *in force* states them — a commit cannot loosen the rules it is judged
//! by. Drover's own commits are known by the random token of their `Drover-Write:`
//! trailer, which only Drover's store holds; people's by author and signature.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_load::Repo;
use drover_model::environment::ChangeRules;
use drover_release::WriteKind;
use git2::{Oid, Sort};

use crate::{GitSource, Revision, SourceError};

/// The kind of Drover's write whose token a commit's trailer carries, if Drover
/// recorded one (the control plane's store answers; tools without one say `None`).
pub type DroverWrites = Arc<dyn Fn(&str) -> Option<WriteKind> + Send + Sync>;

/// The change rules of the environments that have some, as one revision states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(BTreeMap<String, ChangeRules>);

impl Rules {
    /// The rules a repo states.
    pub fn of(repo: &Repo) -> Rules {
        Rules(
            repo.environments
                .iter()
                .filter_map(|d| {
                    let rules = d.environment.as_ref()?.spec().changes.clone()?;
                    Some((d.name.clone(), rules))
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A commit the rules do not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The commit (abbreviated), its author and subject.
    pub commit: String,
    pub author: String,
    pub summary: String,
    pub environment: String,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commit {} by {} ({}) may not change environment {}: {}",
            self.commit, self.author, self.summary, self.environment, self.reason
        )
    }
}

/// The trailer Drover's commits carry.
const TRAILER: &str = "Drover-Write: ";

impl GitSource {
    /// The commits after `from` up to `to` that `rules` do not allow (with no `from`,
    /// `to` alone is judged).
    pub fn refusals(
        &self,
        from: Option<&Revision>,
        to: &Revision,
        rules: &Rules,
        writes: Option<&DroverWrites>,
    ) -> Result<Vec<Refusal>, SourceError> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let error = |e: git2::Error| SourceError::Read {
            revision: to.short().to_owned(),
            path: "/".into(),
            message: e.message().to_owned(),
        };
        let mut walk = self.repo.revwalk().map_err(error)?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
            .map_err(error)?;
        walk.push(Oid::from_str(&to.id).map_err(error)?)
            .map_err(error)?;
        let ids: Vec<Oid> = match from {
            Some(from) => {
                walk.hide(Oid::from_str(&from.id).map_err(error)?)
                    .map_err(error)?;
                walk.collect::<Result<_, _>>().map_err(error)?
            }
            None => vec![Oid::from_str(&to.id).map_err(error)?],
        };
        let mut out = Vec::new();
        for id in ids {
            let touched = self.touched(id).map_err(error)?;
            for (environment, rule) in &rules.0 {
                let shared = touched.iter().any(|p| p == "clusters" || p == "policies");
                if !shared && !touched.contains(environment) {
                    continue;
                }
                if let Some(reason) = self.not_allowed(id, rule, writes).map_err(error)? {
                    let commit = self.repo.find_commit(id).map_err(error)?;
                    let author = commit.author();
                    out.push(Refusal {
                        commit: drover_model::short_id(&id.to_string()).to_owned(),
                        author: format!(
                            "{} <{}>",
                            author.name().unwrap_or_default(),
                            author.email().unwrap_or_default()
                        ),
                        summary: crate::git::summary_of(&commit),
                        environment: environment.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(out)
    }

    /// What a commit changes, as the environments whose folder it touches plus
    /// `clusters` / `policies` when it touches those.
    fn touched(&self, id: Oid) -> Result<Vec<String>, git2::Error> {
        let commit = self.repo.find_commit(id)?;
        let tree = commit.tree()?;
        let parent = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let diff = self
            .repo
            .diff_tree_to_tree(parent.as_ref(), Some(&tree), None)?;
        let mut touched = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                let Some(path) = file.path().and_then(|p| p.to_str()) else {
                    continue;
                };
                let Some(inside) = path.strip_prefix(&self.prefix) else {
                    continue;
                };
                let place = match inside.split_once('/') {
                    Some(("environments", rest)) => rest.split('/').next().map(str::to_owned),
                    Some((top @ ("clusters" | "policies"), _)) => Some(top.to_owned()),
                    _ => None,
                };
                if let Some(place) = place
                    && !touched.contains(&place)
                {
                    touched.push(place);
                }
            }
        }
        Ok(touched)
    }

    /// Why `rule` does not allow the commit, or `None` when it does.
    fn not_allowed(
        &self,
        id: Oid,
        rule: &ChangeRules,
        writes: Option<&DroverWrites>,
    ) -> Result<Option<String>, git2::Error> {
        let commit = self.repo.find_commit(id)?;
        let message = commit.message().unwrap_or_default();
        let token = message
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(TRAILER));
        if let (Some(token), Some(writes)) = (token, writes)
            && let Some(kind) = writes(token)
        {
            let allowed = match kind {
                WriteKind::Revert | WriteKind::Restore => true,
                WriteKind::Promotion => rule.promotions,
                WriteKind::Deploy => rule.deploys,
            };
            return Ok((!allowed).then(|| {
                format!(
                    "it is Drover's {} commit, and {}",
                    kind.as_str(),
                    who_may(rule)
                )
            }));
        }
        let email = commit.author().email().unwrap_or_default().to_owned();
        let by_author = if rule.authors.is_empty() {
            !rule.signers.is_empty()
        } else {
            rule.authors.iter().any(|a| a.eq_ignore_ascii_case(&email))
        };
        if !by_author {
            return Ok(Some(format!("it is by {email}, and {}", who_may(rule))));
        }
        if !rule.signers.is_empty()
            && let Err(why) = crate::signature::verify(&self.repo, id, &rule.signers)
        {
            return Ok(Some(format!("{why}, and {}", who_may(rule))));
        }
        Ok(None)
    }
}

/// "only Drover's promotions and commits by a@x signed by a listed key may change it".
fn who_may(rule: &ChangeRules) -> String {
    let mut ways = Vec::new();
    if rule.promotions {
        ways.push("Drover's promotions".to_owned());
    }
    if rule.deploys {
        ways.push("Drover's deploys".to_owned());
    }
    let people = match (rule.authors.is_empty(), rule.signers.is_empty()) {
        (true, true) => None,
        (true, false) => Some(format!(
            "commits signed by one of its {} listed keys",
            rule.signers.len()
        )),
        (false, true) => Some(format!("commits by {}", rule.authors.join(", "))),
        (false, false) => Some(format!(
            "commits by {} signed by one of its {} listed keys",
            rule.authors.join(", "),
            rule.signers.len()
        )),
    };
    ways.extend(people);
    if ways.is_empty() {
        "only Drover's reverts may change it".to_owned()
    } else {
        format!("only {} may change it", ways.join(" and "))
    }
}
