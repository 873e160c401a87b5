//! Writing promotions and deploys to the config repo: the gate is asked, the target's
//! files at the branch's tip get the new versions (see [`drover_release::promotion`]), and the
//! result is committed to the tracked branch (or, with `mode: pull-request`, to a new
//! branch with the `drover preview` Markdown to post). From there the target
//! reconciles it like any commit; the control plane follows the release.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use drover_diff::{Options, diff_repos, render};
use drover_load::SourceFile;
use drover_release::PromotionState;
use drover_release::promotion::{Artifact, Change, changes, with_written, write};
use drover_source::{Follower, GitSource};
use drover_store::Promotion;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::controller::{ControlError, Controller, Verified};
use crate::engine::Engine;

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

    /// Asks for a promotion. Returns it and whether it is new; a retry with the same
    /// idempotency key returns the same promotion (a gated one is evaluated again).
    pub async fn promote(
        self: &Arc<Self>,
        request: PromotionRequest,
        key: Option<String>,
        who: &str,
    ) -> Result<(Promotion, bool), ControlError> {
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
            // Gated: asked again, checked again. Pending: the control plane stopped
            // while writing it (requests are one at a time), so it is checked again
            // too; the commit, if it landed, is at the tip and nothing is changed twice.
            if p.state != PromotionState::Gated && p.state != PromotionState::Pending {
                return Ok((p.clone(), false));
            }
        }
        let verified = match self.control.gate(&request.from, &request.to).await {
            Ok(v) => Ok(v),
            Err(gate @ ControlError::Gate(_)) => Err(gate.to_string()),
            Err(other) => return Err(other),
        };
        let mut p = match existing {
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
                let p = self.control.with_store(|s| s.promotion(p.id))?.unwrap_or(p);
                return Ok((p, true));
            }
        };
        let this = self.clone();
        let (p, _) = tokio::task::spawn_blocking(move || this.write_promotion(p, &verified))
            .await
            .map_err(|e| ControlError::Refused(format!("promotion task failed: {e}")))??;
        self.written.notify_one();
        let p = self.control.with_store(|s| s.promotion(p.id))?.unwrap_or(p);
        Ok((p, true))
    }

    fn write_promotion(
        &self,
        mut p: Promotion,
        verified: &Verified,
    ) -> Result<(Promotion, ()), ControlError> {
        let follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        let source = follower.source();
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
            self.control.promotion_moved(&p)?;
            return Ok((p, ()));
        }
        let written = match write(&files, &p.target, &found) {
            Ok(w) => w,
            Err(reason) => {
                p.state = PromotionState::Gated;
                p.reason = format!("gate not met: {reason}");
                self.control.promotion_moved(&p)?;
                return Ok((p, ()));
            }
        };
        let lines: Vec<String> = found.iter().map(Change::line).collect();
        let short = drover_model::short_id(&verified.revision);
        let message = format!(
            "Promote {} to {}: {}\n\nVerified in {} at {short}, healthy for {}s.\n\n{}\n\nDrover-Promotion: {}#{} (requested by {})\n",
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
            p.requested_by
        );
        let branch = verified
            .pull_request
            .then(|| format!("drover/promote-{}-to-{}-{}", p.source, p.target, p.id));
        let author = (self.author.0.as_str(), self.author.1.as_str());
        match source.commit_files(&written, &message, author, branch.as_deref()) {
            Ok(commit) => {
                let head = format!(
                    "`{}` (promotion #{})",
                    drover_model::short_id(&commit),
                    p.id
                );
                p.preview = Some(preview(&base, &files, &written, &head));
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
            }
        }
        self.control.promotion_moved(&p)?;
        Ok((p, ()))
    }

    /// Commits new artifact versions to an environment's files (what CI does after a
    /// build). Nothing to change is not an error.
    pub async fn deploy(
        self: &Arc<Self>,
        env: String,
        request: DeployRequest,
        who: String,
    ) -> Result<Deployed, ControlError> {
        let _one = self.one_at_a_time.lock().await;
        let this = self.clone();
        let deployed = tokio::task::spawn_blocking(move || this.write_deploy(&env, &request, &who))
            .await
            .map_err(|e| ControlError::Refused(format!("deploy task failed: {e}")))??;
        if deployed.commit.is_some() {
            self.written.notify_one();
        }
        Ok(deployed)
    }

    fn write_deploy(
        &self,
        env: &str,
        request: &DeployRequest,
        who: &str,
    ) -> Result<Deployed, ControlError> {
        let follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        let source = follower.source();
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
        let written = write(&files, env, &found).map_err(ControlError::Refused)?;
        let message = format!(
            "Deploy to {env}: {}\n\nDrover-Deploy: {env} (requested by {who})\n",
            lines.join(", ")
        );
        let author = (self.author.0.as_str(), self.author.1.as_str());
        let commit = source
            .commit_files(&written, &message, author, None)
            .map_err(|e| ControlError::Refused(format!("cannot write to Git: {e}")))?;
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
