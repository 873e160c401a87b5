//! Writing promotions and deploys to the config repo: the gate is asked, the target's
//! files at the branch's tip get the new versions (see [`drover_release::promotion`]), and the
//! result is committed to the tracked branch (or, with `mode: pull-request`, to a new
//! branch with the `drover preview` Markdown to post). From there the target
//! reconciles it like any commit; the control plane follows the release.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use drover_diff::{Options, diff_repos, render};
use drover_load::SourceFile;
use drover_release::promotion::{Artifact, Change, changes, with_written, write};
use drover_release::{PromotionState, WriteKind, WriteState};
use drover_source::{Follower, GitSource};
use drover_store::{GitWriteRecord, Promotion};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::controller::{ControlError, Controller, Verified};
use crate::engine::Engine;
use crate::one_line;

/// `POST /api/v1/promotions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionRequest {
    pub from: String,
    pub to: String,
    /// Only these services (default: every service both environments have).
    #[serde(default)]
    pub services: Vec<String>,
}

/// `POST /api/v1/environments/{env}/deploy`: new artifact versions, set by CI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    /// Service → version. An image tagged with the old version is re-tagged.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Service → image, to set an image outright.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
}

/// How a promotion request relates to the promotion it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A new promotion.
    New,
    /// A retry (its Idempotency-Key) of one asked before.
    Again,
    /// A retry of a gated one, still gated: a pipeline polling through the soak,
    /// recorded once (when it was first gated), not once per poll.
    StillGated,
}

/// A deploy as the outbox keeps it: what was asked, by whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeployTask {
    env: String,
    request: DeployRequest,
    who: String,
}

/// `written` if the repo with it in place is still valid: nothing invalid is ever
/// committed. Otherwise every error, located.
fn still_valid(
    files: &[SourceFile],
    written: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let checked = drover_validate::check(&with_written(files, &written));
    if checked.is_valid() {
        return Ok(written);
    }
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.location, d.message))
        .collect();
    Err(format!(
        "the change would make the repo invalid: {}",
        errors.join("; ")
    ))
}

/// What a deploy wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub commit: Option<String>,
    pub changes: Vec<Change>,
    pub message: String,
}

/// Writes promotion and deploy commits; one at a time.
pub struct Promoter<E: Engine> {
    control: Arc<Controller<E>>,
    follower: Arc<Mutex<Follower>>,
    author: (String, String),
    /// Told after a commit, so that the new revision is picked up at once.
    written: Arc<Notify>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl<E: Engine> std::fmt::Debug for Promoter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter").finish_non_exhaustive()
    }
}

/// The files of the tracked branch's tip and its artifacts in `env`.
type Tip = (
    drover_source::Revision,
    Vec<SourceFile>,
    BTreeMap<String, Artifact>,
);

fn tip(source: &GitSource, env: &str) -> Result<Tip, ControlError> {
    let git = |e: drover_source::SourceError| ControlError::Refused(e.to_string());
    let revision = source.tracked().map_err(git)?;
    let files = source.files_at(&revision).map_err(git)?;
    let loaded = drover_load::load(&files);
    let artifacts = loaded
        .repo
        .environment(env)
        .ok_or_else(|| ControlError::NotFound(format!("no environment `{env}` in Git")))?
        .services
        .iter()
        .map(|s| {
            (
                s.name().to_owned(),
                Artifact {
                    version: s.spec().version.clone(),
                    image: s.spec().image.clone(),
                },
            )
        })
        .collect();
    Ok((revision, files, artifacts))
}

/// The `drover preview` Markdown of `files` → `written`.
fn preview(
    base: &drover_source::Revision,
    files: &[SourceFile],
    written: &[(String, String)],
    head: &str,
) -> String {
    let old = drover_validate::check(files);
    let new = drover_validate::check(&with_written(files, written));
    let set = diff_repos(&old.repo, &new.repo, Options::default());
    render::markdown(
        &set,
        &render::Preview {
            base: format!("`{}` ({})", base.short(), base.summary),
            head: head.to_owned(),
            diagnostics: &new.diagnostics,
        },
    )
}

impl<E: Engine> Promoter<E> {
    pub fn new(
        control: Arc<Controller<E>>,
        follower: Arc<Mutex<Follower>>,
        author: (String, String),
        written: Arc<Notify>,
    ) -> Promoter<E> {
        Promoter {
            control,
            follower,
            author,
            written,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Asks for a promotion. Returns it and how it was asked; a retry with the same
    /// idempotency key returns the same promotion (a gated one is evaluated again).
    pub async fn promote(
        self: &Arc<Self>,
        request: PromotionRequest,
        key: Option<String>,
        who: &str,
    ) -> Result<(Promotion, Asked), ControlError> {
        let _one = self.one_at_a_time.lock().await;
        let existing = match &key {
            Some(k) => self.control.with_store(|s| s.promotion_by_key(k))?,
            None => None,
        };
        if let Some(p) = &existing {
            if p.source != request.from || p.target != request.to || p.services != request.services
            {
                return Err(ControlError::Refused(format!(
                    "Idempotency-Key already used for promotion #{} ({}→{}); use a new key for a different promotion",
                    p.id, p.source, p.target
                )));
            }
            // Gated: asked again, checked again. Pending: a stop interrupted it, and
            // the restart has not carried it on yet; it is carried on now (its commit,
            // if it landed, is found by its trailer: nothing is written twice).
            if p.state != PromotionState::Gated && p.state != PromotionState::Pending {
                return Ok((p.clone(), Asked::Again));
            }
            if let Some(done) = self.found_in_git(p).await? {
                return Ok((done, Asked::Again));
            }
        }
        let verified = self.verify(&request.from, &request.to).await?;
        let existing_state = existing.as_ref().map(|p| p.state);
        let p = match existing {
            Some(p) => p,
            None => {
                let mut p = Promotion {
                    key: key.clone(),
                    source: request.from.clone(),
                    target: request.to.clone(),
                    services: request.services.clone(),
                    state: PromotionState::Pending,
                    requested_by: who.to_owned(),
                    ..Promotion::default()
                };
                p.id = self.control.with_store(|s| s.add_promotion(&p))?;
                p
            }
        };
        let was_gated = existing_state == Some(PromotionState::Gated);
        let p = self.advance(p, verified).await?;
        let asked = match existing_state {
            None => Asked::New,
            Some(_) if was_gated && p.state == PromotionState::Gated => Asked::StillGated,
            Some(_) => Asked::Again,
        };
        Ok((p, asked))
    }

    /// The gate's answer: verified, or why not (`Err` inside); other errors stop.
    async fn verify(&self, from: &str, to: &str) -> Result<Result<Verified, String>, ControlError> {
        match self.control.gate(from, to).await {
            Ok(v) => Ok(Ok(v)),
            Err(gate @ ControlError::Gate(_)) => Ok(Err(gate.to_string())),
            Err(other) => Err(other),
        }
    }

    /// A promotion, gated or written.
    async fn advance(
        self: &Arc<Self>,
        mut p: Promotion,
        verified: Result<Verified, String>,
    ) -> Result<Promotion, ControlError> {
        let verified = match verified {
            Ok(v) => v,
            Err(reason) => {
                let again = p.state == PromotionState::Gated;
                p.state = PromotionState::Gated;
                p.reason = reason;
                if again {
                    // A pipeline polling through the soak: no event per try.
                    self.control.with_store(|s| s.update_promotion(&p))?;
                } else {
                    self.control.promotion_moved(&p)?;
                }
                return Ok(self.control.with_store(|s| s.promotion(p.id))?.unwrap_or(p));
            }
        };
        let this = self.clone();
        let p = tokio::task::spawn_blocking(move || this.write_promotion(p, &verified))
            .await
            .map_err(|e| ControlError::Refused(format!("promotion task failed: {e}")))??;
        self.written.notify_one();
        Ok(self.control.with_store(|s| s.promotion(p.id))?.unwrap_or(p))
    }

    /// Carries on what a stop interrupted, by itself: each promotion left `pending` is
    /// found in Git, gated or written; each deploy still in the outbox is found in Git
    /// or written. Nothing is left pending, and nothing is written twice.
    pub async fn resume(self: &Arc<Self>) {
        // A gate is judged from live state: wait for the first pass that synced.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.control.has_synced().await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Pending promotions, and any whose commit was being written (a gated one
        // asked again, say) when the stop came.
        let pending = self.control.with_store(|s| {
            let mut pending = s.pending_promotions()?;
            for record in s.pending_writes(&[WriteKind::Promotion])? {
                let id = serde_json::from_str::<serde_json::Value>(&record.request)
                    .ok()
                    .and_then(|r| r["promotion"].as_i64());
                if let Some(p) = id.map(|id| s.promotion(id)).transpose()?.flatten()
                    && !pending.iter().any(|q| q.id == p.id)
                {
                    pending.push(p);
                }
            }
            Ok(pending)
        });
        for mut p in pending.unwrap_or_default() {
            let _one = self.one_at_a_time.lock().await;
            // Its commit may have landed before the stop: then it is not gated again.
            let outcome = match self.found_in_git(&p).await {
                Ok(Some(done)) => Ok(done),
                // Not in Git, and asked for again by its client when it is.
                Ok(None) if p.state == PromotionState::Gated => continue,
                Ok(None) => match self.verify(&p.source, &p.target).await {
                    Ok(verified) => self.advance(p.clone(), verified).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(done) => tracing::info!(
                    "promotion #{} ({}→{}), interrupted by a stop: {}",
                    done.id,
                    done.source,
                    done.target,
                    done.state
                ),
                Err(e) => {
                    p.state = PromotionState::Failed;
                    p.reason = format!("carried on after a restart, and failed: {e}");
                    let _ = self.control.promotion_moved(&p);
                }
            }
        }
        let deploys = self
            .control
            .with_store(|s| s.pending_writes(&[WriteKind::Deploy]));
        for record in deploys.unwrap_or_default() {
            let _one = self.one_at_a_time.lock().await;
            match serde_json::from_str::<DeployTask>(&record.request) {
                Ok(task) => match self.run_deploy(record, task).await {
                    Ok(d) => tracing::info!("deploy interrupted by a stop: {}", d.message),
                    Err(e) => tracing::warn!("deploy interrupted by a stop failed: {e}"),
                },
                Err(e) => {
                    let why = format!("unreadable deploy request: {e}");
                    let _ = self
                        .control
                        .with_store(|s| s.finish_write(record.id, WriteState::Failed, &why));
                }
            }
        }
    }

    /// The outbox record of a promotion's commit, made on its first attempt.
    fn promotion_write(&self, p: &Promotion) -> Result<GitWriteRecord, ControlError> {
        let request = serde_json::json!({ "promotion": p.id }).to_string();
        let key = format!("promotion:{}", p.id);
        let token = crate::write_token();
        self.control
            .with_store(|s| s.queue_write(WriteKind::Promotion, &request, Some(&key), &token))
    }

    fn finish(&self, record: &GitWriteRecord, state: WriteState, result: &str) {
        if let Err(e) = self
            .control
            .with_store(|s| s.finish_write(record.id, state, result))
        {
            tracing::error!("the Git outbox: {e}");
        }
    }

    /// The promotion as committed, when its commit is in Git already: written before
    /// a stop, never recorded. Recorded now, never written again.
    fn committed_before(
        &self,
        source: &GitSource,
        p: &Promotion,
        record: &GitWriteRecord,
    ) -> Result<Option<Promotion>, ControlError> {
        let git = |e: drover_source::SourceError| ControlError::Refused(e.to_string());
        source.fetch().map_err(git)?;
        let Some(commit) = source.find_written(&record.token).map_err(git)? else {
            return Ok(None);
        };
        let mut p = p.clone();
        p.reason = format!(
            "committed as {} before a restart",
            drover_model::short_id(&commit)
        );
        p.commit = Some(commit.clone());
        p.state = PromotionState::Committed;
        self.finish(record, WriteState::Written, &commit);
        self.control.promotion_moved(&p)?;
        Ok(Some(p))
    }

    /// [`Promoter::committed_before`] for a promotion whose write was queued, if it was,
    /// on a blocking thread (Git is synchronous).
    async fn found_in_git(
        self: &Arc<Self>,
        p: &Promotion,
    ) -> Result<Option<Promotion>, ControlError> {
        let key = format!("promotion:{}", p.id);
        let Some(record) = self.control.with_store(|s| s.write_by_key(&key))? else {
            return Ok(None);
        };
        let (this, p) = (self.clone(), p.clone());
        tokio::task::spawn_blocking(move || {
            let follower = this.follower.lock().unwrap_or_else(|e| e.into_inner());
            this.committed_before(follower.source(), &p, &record)
        })
        .await
        .map_err(|e| ControlError::Refused(format!("promotion task failed: {e}")))?
    }

    fn write_promotion(
        &self,
        mut p: Promotion,
        verified: &Verified,
    ) -> Result<Promotion, ControlError> {
        let follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        let source = follower.source();
        let record = self.promotion_write(&p)?;
        if let Some(p) = self.committed_before(source, &p, &record)? {
            return Ok(p);
        }
        let (base, files, current) = tip(source, &p.target)?;
        p.source_revision = Some(verified.revision.clone());
        let found = changes(
            &p.source,
            &p.target,
            &verified.artifacts,
            &current,
            &p.services,
        )
        .map_err(ControlError::Refused)?;
        p.changes = serde_json::to_string(&found).expect("changes serialize");
        if found.is_empty() {
            p.state = PromotionState::Succeeded;
            p.reason = format!("{} already runs what {} verified", p.target, p.source);
            self.finish(&record, WriteState::Written, "");
            self.control.promotion_moved(&p)?;
            return Ok(p);
        }
        let written = match write(&files, &p.target, &found).and_then(|w| still_valid(&files, w)) {
            Ok(w) => w,
            Err(reason) => {
                p.state = PromotionState::Gated;
                p.reason = format!("gate not met: {reason}");
                self.finish(&record, WriteState::Failed, &p.reason);
                self.control.promotion_moved(&p)?;
                return Ok(p);
            }
        };
        let lines: Vec<String> = found.iter().map(Change::line).collect();
        let short = drover_model::short_id(&verified.revision);
        let message = format!(
            "Promote {} to {}: {}\n\nVerified in {} at {short}, healthy for {}s.\n\n{}\n\nDrover-Promotion: {}#{} (requested by {})\n{}\n",
            p.source,
            p.target,
            lines.join(", "),
            p.source,
            verified.healthy_ms / 1000,
            lines
                .iter()
                .map(|l| format!("- {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            p.target,
            p.id,
            one_line(&p.requested_by),
            drover_source::trailer(&record.token)
        );
        let branch = verified
            .pull_request
            .then(|| format!("drover/promote-{}-to-{}-{}", p.source, p.target, p.id));
        let author = (self.author.0.as_str(), self.author.1.as_str());
        match source.commit_files(&written, &message, author, branch.as_deref()) {
            Ok(commit) => {
                crate::failpoint("after-git-commit");
                let head = format!(
                    "`{}` (promotion #{})",
                    drover_model::short_id(&commit),
                    p.id
                );
                p.preview = Some(preview(&base, &files, &written, &head));
                self.finish(&record, WriteState::Written, &commit);
                p.commit = Some(commit);
                p.branch = branch.clone();
                p.state = PromotionState::Committed;
                p.reason = match &branch {
                    Some(b) => format!("branch {b} is ready for a pull request (preview attached)"),
                    None => lines.join(", "),
                };
            }
            Err(e) => {
                p.state = PromotionState::Failed;
                p.reason = format!("cannot write the promotion to Git: {e}");
                self.finish(&record, WriteState::Failed, &p.reason);
            }
        }
        self.control.promotion_moved(&p)?;
        Ok(p)
    }

    /// Commits new artifact versions to an environment's files (what CI does after a
    /// build). Nothing to change is not an error. A retry with the same idempotency
    /// key answers what the first did, and never commits twice.
    pub async fn deploy(
        self: &Arc<Self>,
        env: String,
        request: DeployRequest,
        who: String,
        key: Option<String>,
    ) -> Result<Deployed, ControlError> {
        let _one = self.one_at_a_time.lock().await;
        let task = DeployTask { env, request, who };
        let asked = serde_json::to_string(&task).expect("deploys serialize");
        let key = key.map(|k| format!("deploy:{k}"));
        let token = crate::write_token();
        let record = self
            .control
            .with_store(|s| s.queue_write(WriteKind::Deploy, &asked, key.as_deref(), &token))?;
        if record.request != asked {
            return Err(ControlError::Refused(
                "Idempotency-Key already used for a different deploy; use a new key".into(),
            ));
        }
        match record.state {
            WriteState::Written => serde_json::from_str(&record.result)
                .map_err(|e| ControlError::Refused(format!("the recorded deploy: {e}"))),
            WriteState::Failed => Err(ControlError::Refused(record.result)),
            WriteState::Pending => self.run_deploy(record, task).await,
        }
    }

    /// A queued deploy carried out, and its result recorded in the outbox.
    async fn run_deploy(
        self: &Arc<Self>,
        record: GitWriteRecord,
        task: DeployTask,
    ) -> Result<Deployed, ControlError> {
        let this = self.clone();
        let token = record.token.clone();
        let deployed = tokio::task::spawn_blocking(move || this.write_deploy(&task, &token))
            .await
            .map_err(|e| ControlError::Refused(format!("deploy task failed: {e}")))?;
        match &deployed {
            Ok(d) => {
                let text = serde_json::to_string(d).expect("deploys serialize");
                self.finish(&record, WriteState::Written, &text);
                if d.commit.is_some() {
                    self.written.notify_one();
                }
            }
            Err(e) => self.finish(&record, WriteState::Failed, &e.to_string()),
        }
        deployed
    }

    fn write_deploy(&self, task: &DeployTask, token: &str) -> Result<Deployed, ControlError> {
        let DeployTask { env, request, who } = task;
        let follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        let source = follower.source();
        let git = |e: drover_source::SourceError| ControlError::Refused(e.to_string());
        source.fetch().map_err(git)?;
        if let Some(commit) = source.find_written(token).map_err(git)? {
            return Ok(Deployed {
                message: format!(
                    "committed {} to {env} before a restart",
                    drover_model::short_id(&commit)
                ),
                commit: Some(commit),
                changes: Vec::new(),
            });
        }
        let (_, files, current) = tip(source, env)?;
        let mut wanted = BTreeMap::new();
        for name in request.versions.keys().chain(request.images.keys()) {
            let now = current.get(name).ok_or_else(|| {
                ControlError::NotFound(format!("{env} has no service `{name}` in Git"))
            })?;
            let version = request.versions.get(name).cloned();
            let image = request.images.get(name).cloned().or_else(|| {
                let (image, old, new) = (
                    now.image.as_ref()?,
                    now.version.as_ref()?,
                    version.as_ref()?,
                );
                drover_release::promotion::retag(image, old, new)
            });
            wanted.insert(name.clone(), Artifact { version, image });
        }
        let only: Vec<String> = wanted.keys().cloned().collect();
        let found =
            changes("the request", env, &wanted, &current, &only).map_err(ControlError::Refused)?;
        let lines: Vec<String> = found.iter().map(Change::line).collect();
        if found.is_empty() {
            return Ok(Deployed {
                commit: None,
                changes: found,
                message: format!("{env} already has these versions in Git; nothing to commit"),
            });
        }
        let written = write(&files, env, &found)
            .and_then(|w| still_valid(&files, w))
            .map_err(ControlError::Invalid)?;
        let message = format!(
            "Deploy to {env}: {}\n\nDrover-Deploy: {env} (requested by {})\n{}\n",
            lines.join(", "),
            one_line(who),
            drover_source::trailer(token)
        );
        let author = (self.author.0.as_str(), self.author.1.as_str());
        let commit = source
            .commit_files(&written, &message, author, None)
            .map_err(|e| ControlError::Refused(format!("cannot write to Git: {e}")))?;
        crate::failpoint("after-git-commit");
        Ok(Deployed {
            message: format!(
                "committed {} to {env}: {}",
                drover_model::short_id(&commit),
                lines.join(", ")
            ),
            commit: Some(commit),
            changes: found,
        })
    }
}

/// What a revision changed, as `GET /api/v1/revisions/{rev}/diff` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RevisionDiff {
    pub revision: String,
    pub summary: String,
    /// Its first parent (none for the first commit).
    pub parent: Option<String>,
    pub changes: drover_diff::ChangeSet,
}

impl<E: Engine> Promoter<E> {
    /// What `revision` changed against its first parent, normalized as the engines see
    /// it (secret values as fingerprints).
    pub async fn diff(&self, revision: &str) -> Result<RevisionDiff, ControlError> {
        let follower = self.follower.clone();
        let revision = revision.to_owned();
        tokio::task::spawn_blocking(move || {
            let follower = follower.lock().unwrap_or_else(|e| e.into_inner());
            let source = follower.source();
            let found = source
                .resolve(&revision)
                .map_err(|e| ControlError::NotFound(e.to_string()))?;
            let mut cache = drover_load::DocumentCache::default();
            let unreadable = |e: drover_source::SourceError| ControlError::Invalid(e.to_string());
            let new = source
                .desired_at_cached(&found, &mut cache)
                .map_err(unreadable)?;
            let parent = source.resolve(&format!("{}~1", found.id)).ok();
            let old = match &parent {
                Some(p) => {
                    source
                        .desired_at_cached(p, &mut cache)
                        .map_err(unreadable)?
                        .checked
                        .repo
                }
                None => drover_load::Repo::default(),
            };
            Ok(RevisionDiff {
                changes: diff_repos(&old, &new.checked.repo, Options::default()),
                revision: found.id,
                summary: found.summary,
                parent: parent.map(|p| p.id),
            })
        })
        .await
        .map_err(|e| ControlError::Invalid(format!("the diff stopped: {e}")))?
    }
}
