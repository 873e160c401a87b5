//! The Git writer: the commits Drover asks for — a failed release's revert, a manual
//! rollback's restore — written in the order they were asked, each on a blocking
//! thread (Git is synchronous), with the result reported back to the control plane.
//! It is fed by [`Controller::git_writes`], a channel, never polled.

use std::sync::{Arc, Mutex};

use drover_source::{Follower, SourceError};
use tokio::sync::Notify;

use crate::controller::{Controller, GitWrite, RevertRequest, RollbackRequest};
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

/// Writes every commit the control plane asks for until it is dropped. `written` is
/// notified after each, so the follower picks the new commit up at once.
pub async fn run<E: Engine>(
    control: Arc<Controller<E>>,
    follower: Arc<Mutex<Follower>>,
    written: Arc<Notify>,
) {
    let Some(mut writes) = control.git_writes() else {
        return;
    };
    while let Some(write) = writes.recv().await {
        let follower = follower.clone();
        let Ok((write, result)) = tokio::task::spawn_blocking(move || {
            let result = match &write {
                GitWrite::Revert(r) => revert(&follower, r),
                GitWrite::Restore(r) => restore(&follower, r),
            };
            (write, result.map_err(|e| e.to_string()))
        })
        .await
        else {
            // A panic in a write is reported by the runtime; the next write goes on.
            continue;
        };
        match &write {
            GitWrite::Revert(r) => control.reverted(r, result).await,
            GitWrite::Restore(r) => control.rolled_back(r, result).await,
        }
        written.notify_one();
    }
}

/// Writes the commit of a manual rollback.
fn restore(follower: &Mutex<Follower>, request: &RollbackRequest) -> Result<String, SourceError> {
    let follower = follower.lock().unwrap_or_else(|e| e.into_inner());
    let source = follower.source();
    let to = source.resolve(&request.to)?;
    let (name, email) = author();
    let message = format!(
        "Roll back {} to {}\n\nRequested with `drover rollback`: environments/{} as it was at {} (\"{}\").\n",
        request.environment,
        to.short(),
        request.environment,
        to.id,
        to.summary
    );
    source.restore_environment(&request.environment, &to.id, &message, (&name, &email))
}

/// Writes the revert commit of a rolled-back release.
fn revert(follower: &Mutex<Follower>, request: &RevertRequest) -> Result<String, SourceError> {
    let follower = follower.lock().unwrap_or_else(|e| e.into_inner());
    let source = follower.source();
    let bad = source.resolve(&request.revision)?;
    let (name, email) = author();
    // `$DROVER_REVERT_MESSAGE` may replace the message; `{summary}`, `{revision}`,
    // `{short}`, `{environment}`, `{reason}` and `{release}` are filled in. The trailer
    // names the release, which `drover history ENV` shows.
    let template = std::env::var("DROVER_REVERT_MESSAGE").unwrap_or_else(|_| {
        "Revert \"{summary}\"\n\nRelease {short} of environment {environment} failed and was rolled back by Drover:\n{reason}\n\nThis reverts commit {revision}.\n".to_owned()
    });
    let message = format!(
        "{}\nDrover-Release: {}#{} (drover history {})\n",
        template
            .replace("{summary}", &bad.summary)
            .replace("{revision}", &bad.id)
            .replace("{short}", bad.short())
            .replace("{environment}", &request.environment)
            .replace("{reason}", &request.reason)
            .replace("{release}", &request.release.to_string())
            .trim_end(),
        request.environment,
        request.release,
        request.environment
    );
    source.revert(&bad.id, &message, (&name, &email))
}
