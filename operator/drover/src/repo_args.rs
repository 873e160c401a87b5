//! The command-line arguments that say which config repo to follow and what to track
//! in it, shared by `drover watch` and `drover up`.

use drover_source::{Credentials, Redacted, Reference, RepoSpec};

/// Which repo, which reference, which directory.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// The config repo: a directory in a local Git working copy, or a URL (`file://`,
    /// `http(s)://`, `ssh://`, `git://`).
    #[arg(default_value = ".")]
    pub repo: String,
    /// Track this branch (default: what a local working copy has checked out, `main`
    /// for a remote).
    #[arg(long, conflicts_with_all = ["tag", "commit"])]
    branch: Option<String>,
    /// Pin this tag.
    #[arg(long, conflicts_with = "commit")]
    tag: Option<String>,
    /// Pin this commit.
    #[arg(long)]
    commit: Option<String>,
    /// The config's directory inside the repository.
    #[arg(long, default_value = "")]
    path: String,
}

impl RepoArgs {
    /// The repo spec; credentials come from the environment only, so that they are
    /// never in argv (visible to every user of the machine) or in logs.
    pub fn spec(&self) -> RepoSpec {
        let remote = self.repo.contains("://");
        let reference = match (&self.branch, &self.tag, &self.commit) {
            (_, Some(tag), _) => Reference::Tag(tag.clone()),
            (_, _, Some(commit)) => Reference::Commit(commit.clone()),
            (Some(branch), _, _) => Reference::Branch(branch.clone()),
            _ if remote => Reference::default(),
            _ => Reference::Head,
        };
        RepoSpec {
            location: self.repo.clone(),
            reference,
            credentials: Credentials {
                username: std::env::var("DROVER_GIT_USERNAME").ok(),
                token: std::env::var("DROVER_GIT_TOKEN").ok().map(Redacted),
                ssh_key: std::env::var_os("DROVER_GIT_SSH_KEY").map(Into::into),
            },
            path: self.path.clone(),
        }
    }
}
