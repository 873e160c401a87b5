//! The Git writer: the commits Drover asks for — a failed release's revert, a manual
//! rollback's restore — written in the order they were asked, each on a blocking
//! thread (Git is synchronous), with the result reported back to the control plane.
//! It is fed by [`Controller::git_writes`], a channel, never polled.

use std::sync::{Arc, Mutex};

use drover_source::{Follower, GitSource, SourceError};
use tokio::sync::Notify;

use crate::controller::{Controller, GitWrite, QueuedWrite, RevertRequest, RollbackRequest};
use crate::engine::Engine;

/// Who Drover's commits are by: `$DROVER_GIT_AUTHOR` (`Name <email>`), else
/// `Drover <drover@localhost>`.
pub fn author() -> (String, String) {
    let author = std::env::var("DROVER_GIT_AUTHOR").unwrap_or_default();
    author
        .split_once('<')
        .map(|(n, e)| {
            (
                n.trim().to_owned(),
                e.trim_end_matches('>').trim().to_owned(),
            )
        })
        .filter(|(n, e)| !n.is_empty() && !e.is_empty())
        .unwrap_or(("Drover".into(), "drover@localhost".into()))
}

/// Writes every commit the control plane asks for until it is dropped: first what the
/// outbox still holds from before a crash, then each new one. `written` is notified
/// after each, so the follower picks the new commit up at once.
pub async fn run<E: Engine>(
    control: Arc<Controller<E>>,
    follower: Arc<Mutex<Follower>>,
    written: Arc<Notify>,
) {
    let Some(mut writes) = control.git_writes() else {
        return;
    };
    match control.pending_git_writes() {
        Ok(pending) => {
            for queued in pending {
                tracing::info!(
                    "carrying out a Git write a stop interrupted: {}",
                    queued.record.kind
                );
                carry_out(&control, &follower, queued, &written).await;
            }
        }
        Err(e) => tracing::error!("the Git outbox cannot be read: {e}"),
    }
    while let Some(queued) = writes.recv().await {
        // Also in the outbox: carried out above if it was queued before the start.
        if control.still_pending(queued.record.id) {
            carry_out(&control, &follower, queued, &written).await;
        }
    }
}

/// One queued write: found already in Git (by its trailer) or written now, on a
/// blocking thread (Git is synchronous); the result goes back to the control plane.
async fn carry_out<E: Engine>(
    control: &Controller<E>,
    follower: &Arc<Mutex<Follower>>,
    queued: QueuedWrite,
    written: &Notify,
) {
    crate::failpoint("before-git-write");
    let follower = follower.clone();
    let Ok((queued, result)) = tokio::task::spawn_blocking(move || {
        let result = write_once(&follower, &queued);
        (queued, result.map_err(|e| e.to_string()))
    })
    .await
    else {
        // A panic in a write is reported by the runtime; the next write goes on.
        return;
    };
    control.written(&queued, result).await;
    written.notify_one();
}

/// The write's commit: the one already in Git carrying its trailer, else a new one.
fn write_once(follower: &Mutex<Follower>, queued: &QueuedWrite) -> Result<String, SourceError> {
    let follower = follower.lock().unwrap_or_else(|e| e.into_inner());
    let source = follower.source();
    source.fetch()?;
    if let Some(commit) = source.find_written(&queued.record.token)? {
        return Ok(commit);
    }
    let trailer = drover_source::trailer(&queued.record.token);
    match &queued.write {
        GitWrite::Revert(r) => revert(source, r, &trailer),
        GitWrite::Restore(r) => restore(source, r, &trailer),
    }
}

/// Writes the commit of a manual rollback.
fn restore(
    source: &GitSource,
    request: &RollbackRequest,
    trailer: &str,
) -> Result<String, SourceError> {
    let to = source.resolve(&request.to)?;
    let (name, email) = author();
    let message = format!(
        "Roll back {} to {}\n\nRequested with `drover rollback`: environments/{} as it was at {} (\"{}\").\n\n{trailer}\n",
        request.environment,
        to.short(),
        request.environment,
        to.id,
        crate::one_line(&to.summary)
    );
    source.restore_environment(&request.environment, &to.id, &message, (&name, &email))
}

/// Writes the revert commit of a rolled-back release.
fn revert(
    source: &GitSource,
    request: &RevertRequest,
    trailer: &str,
) -> Result<String, SourceError> {
    let bad = source.resolve(&request.revision)?;
    let (name, email) = author();
    // `$DROVER_REVERT_MESSAGE` may replace the message; `{summary}`, `{revision}`,
    // `{short}`, `{environment}`, `{reason}` and `{release}` are filled in. The trailer
    // names the release, which `drover history ENV` shows.
    let template = std::env::var("DROVER_REVERT_MESSAGE").unwrap_or_else(|_| {
        "Revert \"{summary}\"\n\nRelease {short} of environment {environment} failed and was rolled back by Drover:\n{reason}\n\nThis reverts commit {revision}.\n".to_owned()
    });
    let message = format!(
        "{}\nDrover-Release: {}#{} (drover history {})\n{trailer}\n",
        template
            .replace("{summary}", &crate::one_line(&bad.summary))
            .replace("{revision}", &bad.id)
            .replace("{short}", bad.short())
            .replace("{environment}", &request.environment)
            .replace("{reason}", &crate::one_line(&request.reason))
            .replace("{release}", &request.release.to_string())
            .trim_end(),
        request.environment,
        request.release,
        request.environment
    );
    source.revert(&bad.id, &message, (&name, &email))
}
