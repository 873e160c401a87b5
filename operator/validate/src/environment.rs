//! Environment rules: its cluster exists, its namespace is a valid name, and its
//! promotion source exists without a cycle.

use drover_diagnostics::{Code, closest};
use drover_load::{EnvironmentDir, Repo};
use drover_model::Kind;

use crate::{Findings, Hint, names};

pub(crate) fn check(f: &mut Findings<'_>, repo: &Repo, dir: &EnvironmentDir) {
    let Some(env) = &dir.environment else { return };
    names::object(f, env);
    let spec = env.spec();
    if let Some(changes) = &spec.changes {
        check_changes(f, env, changes);
    }
    if repo.cluster(&spec.cluster).is_none()
        && !repo.failed_to_parse("", Kind::Cluster, &spec.cluster)
    {
        let known: Vec<&str> = repo.clusters.iter().map(|c| c.name()).collect();
        let d = f.at(
            env,
            "spec.cluster",
            Code::UnknownCluster,
            format!(
                "environment `{}` runs on cluster `{}`, which no file in clusters/ defines",
                env.name(),
                spec.cluster
            ),
        );
        match closest(&spec.cluster, known.iter().copied()) {
            Some(c) => d.hint(format!("did you mean `{c}`?")),
            None if known.is_empty() => {
                d.hint("define it in `clusters/<name>.yaml` with `kind: Cluster`")
            }
            None => d.hint(format!("known clusters: {}", known.join(", "))),
        }
    }
    if let Some(ns) = &spec.namespace {
        names::check(f, env, "spec.namespace", "namespace", ns);
    }
    let Some(promotion) = &spec.promotion else {
        return;
    };
    if promotion.from == env.name() {
        f.at(
            env,
            "spec.promotion.from",
            Code::InvalidPromotion,
            format!("environment `{}` cannot promote from itself", env.name()),
        );
        return;
    }
    let Some(source) = repo.environment(&promotion.from) else {
        let known: Vec<&str> = repo.environments.iter().map(|e| e.name.as_str()).collect();
        let d = f.at(
            env,
            "spec.promotion.from",
            Code::InvalidPromotion,
            format!(
                "environment `{}` promotes from `{}`, which is not an environment of this repo",
                env.name(),
                promotion.from
            ),
        );
        if let Some(e) = closest(&promotion.from, known.iter().copied()) {
            d.hint(format!("did you mean `{e}`?"));
        }
        return;
    };
    // Follow the chain of sources; coming back here is a cycle.
    let mut chain = vec![env.name().to_owned(), source.name.clone()];
    let mut current = source;
    while let Some(next) = current
        .environment
        .as_ref()
        .and_then(|e| e.spec().promotion.as_ref())
    {
        if next.from == env.name() {
            // Report the cycle once, at its alphabetically first environment.
            if chain.iter().any(|e| e.as_str() < env.name()) {
                return;
            }
            chain.push(next.from.clone());
            f.at(
                env,
                "spec.promotion.from",
                Code::InvalidPromotion,
                format!("promotions form a cycle: {}", chain.join(" ← ")),
            )
            .hint("releases must flow one way, for example staging → production");
            return;
        }
        match repo.environment(&next.from) {
            Some(e) if !chain.contains(&e.name) => {
                chain.push(e.name.clone());
                current = e;
            }
            _ => return,
        }
    }
}

/// Authors are e-mail addresses; signers SSH public keys or armored OpenPGP keys.
fn check_changes(
    f: &mut Findings<'_>,
    env: &drover_load::Object<drover_model::EnvironmentSpec>,
    changes: &drover_model::environment::ChangeRules,
) {
    for (i, author) in changes.authors.iter().enumerate() {
        if !author.contains('@') || author.contains(char::is_whitespace) {
            f.at(
                env,
                &format!("spec.changes.authors[{i}]"),
                Code::InvalidChangeRules,
                format!("`{author}` is not an e-mail address: authors are matched by a commit's author e-mail"),
            )
            .hint("write the address Git records, as `git log --format=%ae` shows it");
        }
    }
    for (i, key) in changes.signers.iter().enumerate() {
        let key = key.trim_start();
        let ssh = ["ssh-", "ecdsa-", "sk-"].iter().any(|p| key.starts_with(p))
            && key.split_whitespace().count() >= 2;
        let pgp = key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----");
        if !ssh && !pgp {
            f.at(
                env,
                &format!("spec.changes.signers[{i}]"),
                Code::InvalidChangeRules,
                "a signer is an SSH public key (`ssh-ed25519 AAAA…`) or an ASCII-armored OpenPGP public key".into(),
            )
            .hint("paste the line of `~/.ssh/id_ed25519.pub`, or the output of `gpg --armor --export KEYID`");
        }
    }
}
