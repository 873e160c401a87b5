//! A config repo in Git: opened in place (a local path) or mirrored into Drover's
//! cache (a URL), fetched, and read at any revision straight from the object database,
//! without a checkout.

use std::fmt;
use std::path::{Path, PathBuf};

use drover_load::{DocumentCache, FileProblem, Limits, SourceFile, resolve_link};

/// The file mode Git records for a symbolic link.
const LINK_MODE: i32 = 0o120000;
use drover_validate::Checked;
use git2::{
    Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository, TreeWalkMode,
    TreeWalkResult,
};
use sha2::{Digest, Sha256};

/// What to track in the config repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// The tip of a branch (default `main`).
    Branch(String),
    /// A tag, pinned.
    Tag(String),
    /// A commit, pinned (full or abbreviated id).
    Commit(String),
    /// Whatever a local repository has checked out: `drover up` in a working copy
    /// follows the branch the user is on.
    Head,
}

impl Default for Reference {
    fn default() -> Self {
        Reference::Branch("main".to_owned())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Branch(b) => write!(f, "branch {b}"),
            Reference::Tag(t) => write!(f, "tag {t}"),
            Reference::Commit(c) => write!(f, "commit {c}"),
            Reference::Head => write!(f, "HEAD"),
        }
    }
}

/// A value that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate to a remote. Never logged.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// User for token authentication over HTTPS (default `git`).
    pub username: Option<String>,
    /// A token or password for HTTPS remotes.
    pub token: Option<Redacted>,
    /// A private key file for SSH remotes (default: the SSH agent).
    pub ssh_key: Option<PathBuf>,
}

/// Where the config repo is and what to track in it.
#[derive(Debug, Clone, Default)]
pub struct RepoSpec {
    /// A local path, or a `file://`, `http(s)://`, `ssh://`, `git://` or `user@host:path` URL.
    pub location: String,
    /// The branch, tag or commit to track.
    pub reference: Reference,
    /// Credentials for the remote.
    pub credentials: Credentials,
    /// The config's directory inside the repository (`""` for its root), like Argo
    /// CD's `path`. A local location inside a working copy sets it by itself.
    pub path: String,
}

/// A commit of the config repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The full commit id.
    pub id: String,
    /// The first line of the commit message.
    pub summary: String,
    /// When it was committed (committer time, Unix seconds).
    pub committed_s: i64,
}

impl Revision {
    /// The abbreviated id (7 characters), as people write it.
    pub fn short(&self) -> &str {
        drover_model::short_id(&self.id)
    }
}

/// The first line of a commit's message (empty when it is not UTF-8).
pub(crate) fn summary_of(commit: &git2::Commit<'_>) -> String {
    commit
        .summary()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_owned()
}

/// The desired state at a revision: the repo at that commit, loaded and validated,
/// and the values of its secrets (opened only when the source has keys).
#[derive(Debug)]
pub struct Desired {
    pub revision: Revision,
    pub checked: Checked,
    pub secrets: drover_secrets::Values,
}

/// Why the source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be opened or mirrored.
    #[error("cannot open config repo {location}: {message}")]
    Open { location: String, message: String },
    /// Fetching from the remote failed.
    #[error("cannot fetch {location}: {message}")]
    Fetch { location: String, message: String },
    /// A revision does not name a commit.
    #[error("`{revision}` is not a commit of the config repo: {message}")]
    Resolve { revision: String, message: String },
    /// A commit could not be written or pushed.
    #[error("cannot write to config repo {location}: {message}")]
    Write { location: String, message: String },
    /// The tree at a revision could not be read.
    #[error("cannot read {path} at {revision}: {message}")]
    Read {
        revision: String,
        path: String,
        message: String,
    },
}

/// Removes credentials from a URL (`https://user:token@host/x` → `https://host/x`), so
/// that it can be shown in errors and logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{host}{slash}{path}")
        }
        None => url.to_owned(),
    }
}

/// `a/b/` from `a` and `b` (either may be empty).
fn join_prefix(a: &str, b: &str) -> String {
    let mut prefix = String::new();
    for part in [a, b] {
        let part = part.trim_matches('/');
        if !part.is_empty() {
            prefix.push_str(part);
            prefix.push('/');
        }
    }
    prefix
}

fn is_url(location: &str) -> bool {
    location.contains("://")
        || (location.contains('@') && location.contains(':') && !Path::new(location).exists())
}

/// A config repo, ready to be read.
pub struct GitSource {
    pub(crate) repo: Repository,
    pub(crate) spec: RepoSpec,
    /// `spec.path` plus, for a local location, where it sits in its working copy;
    /// empty or ending in `/`.
    pub(crate) prefix: String,
    pub(crate) remote: bool,
    pub(crate) shown: String,
    /// When this process opened it: a lock file older than that was left by a write
    /// of a process that died.
    pub(crate) opened: std::time::SystemTime,
    /// The age identities secrets are opened with; `None`: their format is checked only.
    pub(crate) keys: Option<std::sync::Arc<drover_secrets::Keys>>,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("location", &self.shown)
            .field("reference", &self.spec.reference)
            .finish()
    }
}

impl GitSource {
    /// Opens a local repository in place, or the cached mirror of a remote one under
    /// `cache` (created on first use; call [`GitSource::fetch`] to fill it).
    pub fn open(spec: RepoSpec, cache: &Path) -> Result<GitSource, SourceError> {
        let shown = redact_url(&spec.location);
        let open_error = |e: git2::Error| SourceError::Open {
            location: shown.clone(),
            message: e.message().to_owned(),
        };
        if !is_url(&spec.location) {
            // Discovery, so that a directory inside a working copy (examples/repo in a
            // clone of Drover) is a config root of its own.
            let repo = Repository::discover(&spec.location).map_err(open_error)?;
            let inside = match repo.workdir() {
                Some(workdir) => {
                    let here = Path::new(&spec.location).canonicalize();
                    let root = workdir.canonicalize();
                    match (here, root) {
                        (Ok(here), Ok(root)) => here
                            .strip_prefix(&root)
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        _ => String::new(),
                    }
                }
                None => String::new(),
            };
            let prefix = join_prefix(&inside, &spec.path);
            return Ok(GitSource {
                repo,
                spec,
                prefix,
                remote: false,
                shown,
                opened: std::time::SystemTime::now(),
                keys: None,
            });
        }
        // One mirror per URL: a readable name plus a hash, so two URLs never share one.
        let digest = hex::encode(&Sha256::digest(shown.as_bytes())[..6]);
        let readable: String = shown
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        // All ASCII now, so slicing by bytes is safe; keep the most telling end.
        let readable = &readable[readable.len().saturating_sub(40)..];
        let dir = cache.join(format!("{}-{digest}", readable.trim_matches('-')));
        let repo = match Repository::open_bare(&dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(&dir).map_err(|e| SourceError::Open {
                    location: shown.clone(),
                    message: e.to_string(),
                })?;
                let repo = Repository::init_bare(&dir).map_err(open_error)?;
                repo.remote("origin", &spec.location).map_err(open_error)?;
                repo
            }
        };
        let prefix = join_prefix("", &spec.path);
        Ok(GitSource {
            repo,
            spec,
            prefix,
            remote: true,
            shown,
            opened: std::time::SystemTime::now(),
            keys: None,
        })
    }

    /// Opens secrets with `keys` from now on: an encrypted secret they cannot open makes
    /// a revision invalid (what the control plane wants). Without keys (the default,
    /// what CLI previews get when no key is configured) only the format is checked.
    pub fn with_keys(mut self, keys: std::sync::Arc<drover_secrets::Keys>) -> GitSource {
        self.keys = Some(keys);
        self
    }

    /// True when the repo is a mirror of a remote (it must be fetched to see changes).
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The location, with any credentials removed.
    pub fn location(&self) -> &str {
        &self.shown
    }

    /// The `.git` directory (or the bare repository), which watchers observe.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Brings the mirror up to date with the remote: every branch and tag.
    pub fn fetch(&self) -> Result<(), SourceError> {
        if !self.remote {
            return Ok(());
        }
        let fetch_error = |e: git2::Error| SourceError::Fetch {
            location: self.shown.clone(),
            message: e.message().to_owned(),
        };
        let mut remote = self.repo.find_remote("origin").map_err(fetch_error)?;
        let callbacks = self.callbacks();
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        options.prune(git2::FetchPrune::On);
        remote
            .fetch(
                &[
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                Some(&mut options),
                None,
            )
            .map_err(fetch_error)
    }

    /// Callbacks with the credentials from the spec, for fetch and push.
    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let credentials = self.spec.credentials.clone();
        let mut attempts = 0;
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, username_from_url, allowed| {
            // libgit2 asks again after a rejected credential; give up rather than loop.
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(token) = &credentials.token
            {
                let user = credentials
                    .username
                    .as_deref()
                    .or(username_from_url)
                    .unwrap_or("git");
                return Cred::userpass_plaintext(user, &token.0);
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                let user = username_from_url
                    .or(credentials.username.as_deref())
                    .unwrap_or("git");
                return match &credentials.ssh_key {
                    Some(key) => Cred::ssh_key(user, None, key, None),
                    None => Cred::ssh_key_from_agent(user),
                };
            }
            Cred::default()
        });
        callbacks
    }

    /// The branch commits go to (`None`: whatever a local repository has checked out);
    /// a pinned tag or commit takes none.
    pub(crate) fn writable_branch(&self) -> Result<Option<&str>, SourceError> {
        match &self.spec.reference {
            Reference::Branch(branch) => Ok(Some(branch.as_str())),
            Reference::Head => Ok(None),
            pinned => Err(SourceError::Write {
                location: self.shown.clone(),
                message: format!("{pinned} is pinned, not a branch: nothing to commit to"),
            }),
        }
    }

    /// Writes a commit reverting `revision` on top of the tracked branch, and pushes it
    /// (a remote) or moves the branch (a local repository; its working tree is updated
    /// only where it is clean). Returns the new commit's id.
    pub fn revert(
        &self,
        revision: &str,
        message: &str,
        author: (&str, &str),
    ) -> Result<String, SourceError> {
        let branch = self.writable_branch()?;
        self.revert_on(revision, message, author, branch)
    }

    fn revert_on(
        &self,
        revision: &str,
        message: &str,
        author: (&str, &str),
        branch: Option<&str>,
    ) -> Result<String, SourceError> {
        let error = |e: git2::Error| SourceError::Write {
            location: self.shown.clone(),
            message: e.message().to_owned(),
        };
        let bad = self
            .repo
            .find_commit(Oid::from_str(revision).map_err(error)?)
            .map_err(error)?;
        let tip = self.tracked()?;
        let tip = self
            .repo
            .find_commit(Oid::from_str(&tip.id).map_err(error)?)
            .map_err(error)?;
        let mut index = self
            .repo
            .revert_commit(&bad, &tip, 0, None)
            .map_err(error)?;
        if index.has_conflicts() {
            return Err(SourceError::Write {
                location: self.shown.clone(),
                message: format!(
                    "reverting {} conflicts with later commits",
                    drover_model::short_id(revision)
                ),
            });
        }
        let tree = index.write_tree_to(&self.repo).map_err(error)?;
        self.publish(tree, &tip, message, author, branch)
    }

    /// Writes a commit on the tracked branch that sets the directory of environment
    /// `environment` to what it was at `revision` (everything else stays as it is), and
    /// publishes it as [`GitSource::revert`] does. For a manual rollback.
    pub fn restore_environment(
        &self,
        environment: &str,
        revision: &str,
        message: &str,
        author: (&str, &str),
    ) -> Result<String, SourceError> {
        let error = |e: git2::Error| SourceError::Write {
            location: self.shown.clone(),
            message: e.message().to_owned(),
        };
        let branch = self.writable_branch()?;
        let path = format!("{}environments/{environment}", self.prefix);
        let old = self.resolve(revision)?;
        let old = self
            .repo
            .find_commit(Oid::from_str(&old.id).map_err(error)?)
            .map_err(error)?;
        let wanted = old
            .tree()
            .map_err(error)?
            .get_path(Path::new(&path))
            .map_err(error)?
            .id();
        let tip = self.tracked()?;
        let tip = self
            .repo
            .find_commit(Oid::from_str(&tip.id).map_err(error)?)
            .map_err(error)?;
        let now = tip
            .tree()
            .map_err(error)?
            .get_path(Path::new(&path))
            .ok()
            .map(|e| e.id());
        if now == Some(wanted) {
            return Err(SourceError::Write {
                location: self.shown.clone(),
                message: format!(
                    "environments/{environment} is already as it was at {}: rolling back would commit nothing",
                    drover_model::short_id(revision)
                ),
            });
        }
        let parts: Vec<&str> = path.split('/').collect();
        let tree = self
            .replace_path(Some(tip.tree().map_err(error)?), &parts, wanted)
            .map_err(error)?;
        self.publish(tree, &tip, message, author, branch)
    }

    /// Writes a commit on the tracked branch that sets the given files (paths relative
    /// to the config root) to the given texts, and publishes it as
    /// [`GitSource::revert`] does. With `to_branch`, the commit goes to that new branch
    /// instead (a pull request's), and the tracked branch stays as it is.
    pub fn commit_files(
        &self,
        files: &[(String, String)],
        message: &str,
        author: (&str, &str),
        to_branch: Option<&str>,
    ) -> Result<String, SourceError> {
        let error = |e: git2::Error| SourceError::Write {
            location: self.shown.clone(),
            message: e.message().to_owned(),
        };
        let branch = match to_branch {
            Some(b) => Some(b),
            None => self.writable_branch()?,
        };
        let tip = self.tracked()?;
        let tip = self
            .repo
            .find_commit(Oid::from_str(&tip.id).map_err(error)?)
            .map_err(error)?;
        let mut tree = tip.tree().map_err(error)?.id();
        for (path, text) in files {
            let blob = self.repo.blob(text.as_bytes()).map_err(error)?;
            let full = format!("{}{path}", self.prefix);
            let parts: Vec<&str> = full.split('/').collect();
            let current = self.repo.find_tree(tree).map_err(error)?;
            tree = self
                .replace_entry(Some(current), &parts, blob, 0o100644)
                .map_err(error)?;
        }
        self.publish(tree, &tip, message, author, branch)
    }

    /// A copy of `tree` with the entry at `path` replaced by the tree `with`.
    fn replace_path(
        &self,
        tree: Option<git2::Tree<'_>>,
        path: &[&str],
        with: Oid,
    ) -> Result<Oid, git2::Error> {
        self.replace_entry(tree, path, with, 0o040000)
    }

    /// A copy of `tree` with the entry at `path` replaced by `with` (of `mode`).
    fn replace_entry(
        &self,
        tree: Option<git2::Tree<'_>>,
        path: &[&str],
        with: Oid,
        mode: i32,
    ) -> Result<Oid, git2::Error> {
        let mut builder = self.repo.treebuilder(tree.as_ref())?;
        let (first, rest) = path.split_first().expect("a non-empty path");
        let id = if rest.is_empty() {
            with
        } else {
            let inner = tree
                .as_ref()
                .and_then(|t| t.get_name(first))
                .and_then(|e| self.repo.find_tree(e.id()).ok());
            self.replace_entry(inner, rest, with, mode)?
        };
        builder.insert(first, id, if rest.is_empty() { mode } else { 0o040000 })?;
        builder.write()
    }

    /// The reference HEAD names (`refs/heads/main`), if it names one.
    fn head_ref(&self) -> Option<String> {
        self.repo
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(str::to_owned))
    }

    /// The reference a commit on `branch` moves: that branch, else what HEAD names.
    pub(crate) fn branch_ref(&self, branch: Option<&str>) -> String {
        match branch {
            Some(b) => format!("refs/heads/{b}"),
            None => self.head_ref().unwrap_or_else(|| "HEAD".into()),
        }
    }

    /// Commits `tree` on top of `tip` and pushes it (a remote) or moves the branch (a
    /// local repository; its working tree follows only where it is clean).
    fn publish(
        &self,
        tree: Oid,
        tip: &git2::Commit<'_>,
        message: &str,
        (name, email): (&str, &str),
        branch: Option<&str>,
    ) -> Result<String, SourceError> {
        let error = |e: git2::Error| SourceError::Write {
            location: self.shown.clone(),
            message: e.message().to_owned(),
        };
        self.clear_stale_locks(branch)?;
        let tree = self.repo.find_tree(tree).map_err(error)?;
        let signature = git2::Signature::now(name, email).map_err(error)?;
        let commit = self
            .repo
            .commit(None, &signature, &signature, message, &tree, &[tip])
            .map_err(error)?;
        if self.remote {
            let branch = branch.unwrap_or("main");
            let mut remote = self.repo.find_remote("origin").map_err(error)?;
            let mut options = git2::PushOptions::new();
            options.remote_callbacks(self.callbacks());
            remote
                .push(
                    &[format!("{commit}:refs/heads/{branch}")],
                    Some(&mut options),
                )
                .map_err(|e| SourceError::Write {
                    location: self.shown.clone(),
                    message: format!("push refused: {}", e.message()),
                })?;
            self.fetch()?;
        } else {
            let reference = self.branch_ref(branch);
            let checked_out = self.head_ref() == Some(reference.clone());
            if checked_out && !self.repo.is_bare() {
                // The working tree first, against the old tip: files the user has not
                // touched follow the new commit, touched ones are left alone.
                let mut checkout = git2::build::CheckoutBuilder::new();
                checkout.safe();
                let _ = self
                    .repo
                    .checkout_tree(tree.as_object(), Some(&mut checkout));
            }
            self.repo
                .reference(&reference, commit, true, message)
                .map_err(error)?;
        }
        Ok(commit.to_string())
    }

    /// The commit the tracked reference points at now.
    pub fn tracked(&self) -> Result<Revision, SourceError> {
        let spec = match &self.spec.reference {
            Reference::Branch(b) if self.remote => format!("refs/remotes/origin/{b}"),
            Reference::Branch(b) => format!("refs/heads/{b}"),
            Reference::Tag(t) => format!("refs/tags/{t}"),
            Reference::Commit(c) => c.clone(),
            Reference::Head => "HEAD".to_owned(),
        };
        self.resolve(&spec)
    }

    /// The commit a revision (`main`, `v1.2`, `3f2a1c0`, `HEAD~1`) names.
    pub fn resolve(&self, revision: &str) -> Result<Revision, SourceError> {
        let error = |e: git2::Error| SourceError::Resolve {
            revision: revision.to_owned(),
            message: e.message().to_owned(),
        };
        let object = self.repo.revparse_single(revision).map_err(error)?;
        let commit = object.peel_to_commit().map_err(error)?;
        Ok(Revision {
            id: commit.id().to_string(),
            summary: summary_of(&commit),
            committed_s: commit.time().seconds(),
        })
    }

    /// The YAML files of `clusters/`, `environments/` and `policies/` at a revision, sorted by path,
    /// read from the object database.
    pub fn files_at(&self, revision: &Revision) -> Result<Vec<SourceFile>, SourceError> {
        self.files_at_cached(revision, &DocumentCache::default())
    }

    /// Like [`GitSource::files_at`], leaving the text empty for files `cache` already
    /// holds (same path and blob id): their parse is reused, so reading them is waste.
    pub fn files_at_cached(
        &self,
        revision: &Revision,
        cache: &DocumentCache,
    ) -> Result<Vec<SourceFile>, SourceError> {
        let read_error = |path: &str, message: String| SourceError::Read {
            revision: revision.short().to_owned(),
            path: path.to_owned(),
            message,
        };
        let oid =
            Oid::from_str(&revision.id).map_err(|e| read_error("/", e.message().to_owned()))?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| read_error("/", e.message().to_owned()))?;
        let tree = commit
            .tree()
            .map_err(|e| read_error("/", e.message().to_owned()))?;
        let mut blobs = Vec::new();
        for top in drover_load::FOLDERS {
            let Ok(entry) = tree.get_path(Path::new(&format!("{}{top}", self.prefix))) else {
                continue;
            };
            let Ok(subtree) = self.repo.find_tree(entry.id()) else {
                continue;
            };
            subtree
                .walk(TreeWalkMode::PreOrder, |dir, entry| {
                    let name = entry.name().unwrap_or_default();
                    if name.starts_with('.') {
                        return TreeWalkResult::Skip;
                    }
                    if entry.kind() == Some(git2::ObjectType::Blob)
                        && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    {
                        let link = entry.filemode() == LINK_MODE;
                        blobs.push((format!("{top}/{dir}{name}"), entry.id(), link));
                    }
                    TreeWalkResult::Ok
                })
                .map_err(|e| read_error(top, e.message().to_owned()))?;
        }
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        let limits = Limits::current();
        let odb = self
            .repo
            .odb()
            .map_err(|e| read_error("/", e.message().to_owned()))?;
        let mut files = Vec::with_capacity(blobs.len());
        let mut total = 0u64;
        for (path, id, link) in blobs {
            let id = if link {
                match self.link_target(&tree, &path, id) {
                    Ok(target) => target,
                    Err(problem) => {
                        files.push(SourceFile::unreadable(path, problem));
                        continue;
                    }
                }
            } else {
                id
            };
            let id_text = id.to_string();
            if cache.contains(&path, &id_text) {
                files.push(SourceFile::new(path, String::new()).with_id(id_text));
                continue;
            }
            // The size from the object's header: an oversized blob is never loaded.
            let (bytes, _) = odb
                .read_header(id)
                .map_err(|e| read_error(&path, e.message().to_owned()))?;
            let bytes = bytes as u64;
            if bytes > limits.file_bytes {
                files.push(SourceFile::unreadable(
                    path,
                    FileProblem::TooLarge { bytes },
                ));
                continue;
            }
            if total + bytes > limits.revision_bytes {
                files.push(SourceFile::unreadable(
                    path,
                    FileProblem::RevisionTooLarge { bytes: total },
                ));
                continue;
            }
            total += bytes;
            let blob = self
                .repo
                .find_blob(id)
                .map_err(|e| read_error(&path, e.message().to_owned()))?;
            files.push(
                SourceFile::from_bytes(path, blob.content().to_vec(), &limits).with_id(id_text),
            );
        }
        Ok(files)
    }

    /// The blob a link at `path` leads to, resolved by its text within the config
    /// tree; a link out of it, or to anything but a regular file, is a problem.
    fn link_target(
        &self,
        root: &git2::Tree<'_>,
        path: &str,
        link: Oid,
    ) -> Result<Oid, FileProblem> {
        let target = self
            .repo
            .find_blob(link)
            .map(|b| String::from_utf8_lossy(b.content()).into_owned())
            .unwrap_or_default();
        let problem = || FileProblem::Symlink {
            target: target.clone(),
        };
        let resolved = resolve_link(path, &target).ok_or_else(problem)?;
        let entry = root
            .get_path(Path::new(&format!("{}{resolved}", self.prefix)))
            .map_err(|_| problem())?;
        let regular = entry.kind() == Some(git2::ObjectType::Blob) && entry.filemode() != LINK_MODE;
        regular.then(|| entry.id()).ok_or_else(problem)
    }

    /// The desired state at a revision: its files, loaded and validated.
    pub fn desired_at(&self, revision: &Revision) -> Result<Desired, SourceError> {
        self.desired_at_cached(revision, &mut DocumentCache::default())
    }

    /// Like [`GitSource::desired_at`], parsing only the files that changed since the
    /// revision `cache` was last used for.
    pub fn desired_at_cached(
        &self,
        revision: &Revision,
        cache: &mut DocumentCache,
    ) -> Result<Desired, SourceError> {
        let files = self.files_at_cached(revision, cache)?;
        let (checked, secrets) = crate::check_revision(&files, cache, self.keys.as_deref());
        Ok(Desired {
            revision: revision.clone(),
            checked,
            secrets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_never_survive_in_a_shown_url() {
        assert_eq!(
            redact_url("https://bot:s3cret@git.example/shop/config.git"),
            "https://git.example/shop/config.git"
        );
        assert_eq!(redact_url("https://git.example/x"), "https://git.example/x");
        assert_eq!(redact_url("ssh://git@host:22/x"), "ssh://host:22/x");
        assert_eq!(redact_url("https://token@host"), "https://host");
    }
}
