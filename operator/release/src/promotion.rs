//! What a promotion carries and how it is written, as pure functions: the artifact
//! versions a verified source environment runs, compared with the target's, become
//! one-line edits of the target's service files (`spec.version`, `spec.image`); the
//! result must pass every validation rule before anything is committed. Nothing else
//! of the source environment travels (arguments, replicas, hosts stay the target's).

use std::collections::BTreeMap;

use drover_diagnostics::{RenderOptions, render_human};
use drover_load::SourceFile;
use drover_load::edit::{Edit, apply, set_scalar};
use serde::{Deserialize, Serialize};

/// What identifies the build a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Artifact {
    pub version: Option<String>,
    pub image: Option<String>,
}

/// One service's artifact change in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub service: String,
    pub from: Artifact,
    pub to: Artifact,
}

impl Change {
    /// `web: v1.4.0 → v1.5.0` (the image when there is no version).
    pub fn line(&self) -> String {
        let show = |a: &Artifact| {
            a.version
                .clone()
                .or_else(|| a.image.clone())
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "{}: {} → {}",
            self.service,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// The changes that bring `target`'s artifacts to `source`'s, for the services in
/// `only` (all services both have, when empty). Only what the source sets travels.
pub fn changes(
    source_env: &str,
    target_env: &str,
    source: &BTreeMap<String, Artifact>,
    target: &BTreeMap<String, Artifact>,
    only: &[String],
) -> Result<Vec<Change>, String> {
    for name in only {
        if !source.contains_key(name) {
            return Err(format!("{source_env} has no service `{name}`"));
        }
        if !target.contains_key(name) {
            return Err(format!(
                "{target_env} has no service `{name}`: add it to environments/{target_env}/ first (a promotion carries versions, not services)"
            ));
        }
    }
    let mut out = Vec::new();
    for (name, from) in target {
        let Some(verified) = source.get(name) else {
            continue;
        };
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let to = Artifact {
            version: verified.version.clone().or_else(|| from.version.clone()),
            image: verified.image.clone().or_else(|| from.image.clone()),
        };
        if &to != from {
            out.push(Change {
                service: name.clone(),
                from: from.clone(),
                to,
            });
        }
    }
    Ok(out)
}

/// `image` re-tagged for `new` when its tag is the `old` version
/// (`ghcr.io/x/web:v1.4.0` → `ghcr.io/x/web:v1.5.0`); `None` otherwise.
pub fn retag(image: &str, old: &str, new: &str) -> Option<String> {
    let (name, tag) = image.rsplit_once(':')?;
    (tag == old && !name.is_empty() && !tag.contains('/')).then(|| format!("{name}:{new}"))
}

/// `files` with the `written` ones in place of theirs.
pub fn with_written(files: &[SourceFile], written: &[(String, String)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|f| match written.iter().find(|(p, _)| *p == f.path) {
            Some((_, text)) => SourceFile::new(f.path.clone(), text.clone()),
            None => f.clone(),
        })
        .collect()
}

/// The target's files with the changes written in, checked against every validation
/// rule; an error says what is wrong at file:line:column.
pub fn write(
    files: &[SourceFile],
    target_env: &str,
    changes: &[Change],
) -> Result<Vec<(String, String)>, String> {
    let loaded = drover_load::load(files);
    let env = loaded
        .repo
        .environment(target_env)
        .ok_or_else(|| format!("no environment `{target_env}` at the branch's tip"))?;
    let mut edits: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for change in changes {
        let service = env
            .services
            .iter()
            .find(|s| s.name() == change.service)
            .ok_or_else(|| format!("{target_env} has no service `{}`", change.service))?;
        let file = service.source.file().to_string();
        let text = &files
            .iter()
            .find(|f| f.path == file)
            .ok_or_else(|| format!("{file} is not in the revision"))?
            .text;
        for (path, value, old) in [
            ("spec.version", &change.to.version, &change.from.version),
            ("spec.image", &change.to.image, &change.from.image),
        ] {
            if let Some(value) = value.as_ref().filter(|v| Some(*v) != old.as_ref()) {
                let edit =
                    set_scalar(text, &service.source, path, value).map_err(|e| e.to_string())?;
                edits.entry(file.clone()).or_default().push(edit);
            }
        }
    }
    let written: Vec<(String, String)> = edits
        .into_iter()
        .map(|(file, edits)| {
            let text = &files
                .iter()
                .find(|f| f.path == file)
                .expect("found above")
                .text;
            (file, apply(text, edits))
        })
        .collect();
    let checked = drover_validate::check(&with_written(files, &written));
    if !checked.is_valid() {
        let errors: Vec<_> = checked
            .diagnostics
            .into_iter()
            .filter(|d| d.is_error())
            .collect();
        return Err(format!(
            "the promoted revision would not be valid:\n{}",
            render_human(&errors, RenderOptions::default())
        ));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(list: &[(&str, &str)]) -> BTreeMap<String, Artifact> {
        list.iter()
            .map(|(n, v)| {
                (
                    (*n).to_owned(),
                    Artifact {
                        version: Some((*v).to_owned()),
                        image: Some(format!("ghcr.io/x/{n}:{v}")),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_image_tagged_with_the_old_version_is_retagged() {
        assert_eq!(
            retag("ghcr.io/x/web:v1", "v1", "v2").as_deref(),
            Some("ghcr.io/x/web:v2")
        );
        assert_eq!(retag("ghcr.io/x/web:latest", "v1", "v2"), None);
        assert_eq!(retag("localhost:5000/web", "v1", "v2"), None);
    }

    #[test]
    fn versions_are_written_into_every_document_of_a_shared_file_and_nothing_else() {
        let cluster = "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata: {name: local}\nspec:\n  engine: local\n  local:\n    nodes:\n      - name: n1\n        capacity: {cpu: 2, memory: 1Gi}\n";
        let environment = "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: {cluster: local}\n";
        let services = "# both services\napiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata: {name: web}\nspec:\n  version: v1\n  command: [web]\n---\napiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata: {name: api}\nspec:\n  command: [api]   # no version yet\n";
        let file = |path: &str, text: &str| SourceFile::new(path, text);
        let files = vec![
            file("clusters/local.yaml", cluster),
            file("environments/prod/environment.yaml", environment),
            file("environments/prod/services.yaml", services),
        ];
        let change = |service: &str, from: Option<&str>, to: &str| Change {
            service: service.into(),
            from: Artifact {
                version: from.map(Into::into),
                image: None,
            },
            to: Artifact {
                version: Some(to.into()),
                image: None,
            },
        };
        let written = write(
            &files,
            "prod",
            &[change("web", Some("v1"), "v2"), change("api", None, "v7")],
        )
        .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(
            written[0].1,
            services
                .replace("  version: v1\n", "  version: v2\n")
                .replace(
                    "spec:\n  command: [api]",
                    "spec:\n  version: v7\n  command: [api]"
                )
        );
    }

    #[test]
    fn only_services_whose_artifact_differs_travel() {
        let staging = artifacts(&[("web", "v2"), ("api", "v1"), ("new", "v1")]);
        let production = artifacts(&[("web", "v1"), ("api", "v1")]);
        let out = changes("staging", "production", &staging, &production, &[]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line(), "web: v1 → v2");
        assert_eq!(out[0].to.image.as_deref(), Some("ghcr.io/x/web:v2"));
    }

    #[test]
    fn a_named_service_the_target_lacks_is_refused() {
        let staging = artifacts(&[("web", "v2"), ("new", "v1")]);
        let production = artifacts(&[("web", "v1")]);
        let error = changes(
            "staging",
            "production",
            &staging,
            &production,
            &["new".into()],
        )
        .unwrap_err();
        assert!(
            error.starts_with("production has no service `new`"),
            "{error}"
        );
        let only_api = changes(
            "staging",
            "production",
            &staging,
            &production,
            &["web".into()],
        );
        assert_eq!(only_api.unwrap().len(), 1);
    }
}
