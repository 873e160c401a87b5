//! Reads a Drover config repo into typed objects, with every problem located at
//! `path:line:column`.
//!
//! Layout (docs/model.md): `clusters/**/*.yaml` hold `Cluster` documents;
//! `environments/<env>/**/*.yaml` hold one `Environment` named `<env>` plus that
//! environment's services, quotas and secrets. Files may hold many documents.
//!
//! Loading never stops at the first problem: every document of every file is read,
//! and each broken one yields a diagnostic while the others still load.

mod de;
mod document;
pub mod edit;
pub mod limits;
mod parse;
mod read;
mod refuse;
mod stream;
mod yaml;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use drover_diagnostics::Code;
use drover_model::{
    ClusterSpec, EnvironmentSpec, Kind, Manifest, QuotaSpec, SecretSpec, ServiceSpec,
};

pub use drover_diagnostics::{Diagnostic, Location};
pub use limits::Limits;
pub use parse::SOPS_BLOCK;
pub use read::{
    FOLDERS, FileProblem, ReadError, SourceFile, read_dir, read_dir_within, resolve_link,
};
pub use yaml::{Node as YamlNode, Value as YamlValue};

/// Where a document came from: its file, and what it takes to find the position of
/// any of its fields. The positioned tree is built only when a diagnostic first asks
/// for a position: most documents never need one.
#[derive(Debug, Clone)]
pub struct Source {
    file: Arc<str>,
    /// The document's text (empty when the tree was built while parsing).
    text: Box<str>,
    /// Lines of the file before the document.
    line_offset: u32,
    /// Where the document starts.
    start: (u32, u32),
    tree: std::sync::OnceLock<Option<yaml::Node>>,
}

impl Source {
    /// A source whose tree is built on first use from `text`.
    fn lazy(file: Arc<str>, text: &str, line_offset: u32, start: (u32, u32)) -> Source {
        Source {
            file,
            text: text.into(),
            line_offset,
            start,
            tree: std::sync::OnceLock::new(),
        }
    }

    /// A source whose tree was already built.
    fn with_tree(file: Arc<str>, root: yaml::Node) -> Source {
        let start = (root.line, root.column);
        Source {
            file,
            text: Box::from(""),
            line_offset: 0,
            start,
            tree: std::sync::OnceLock::from(Some(root)),
        }
    }

    /// The document as a tree of positioned nodes, in the order it is written (what
    /// SOPS's MAC walks).
    pub fn tree(&self) -> Option<&yaml::Node> {
        self.tree
            .get_or_init(|| yaml::parse(&self.text, self.line_offset).ok().flatten())
            .as_ref()
    }

    /// The file the document is in (relative to the repo root).
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Where the document starts.
    pub fn start(&self) -> Location {
        self.at(self.start)
    }

    /// Where the field at `path` (`spec.routes[0].host`) is; for a missing field,
    /// where its closest present parent is.
    pub fn locate(&self, path: &str) -> Location {
        self.at(self.tree().map_or(self.start, |root| root.locate(path)))
    }

    fn at(&self, (line, column): (u32, u32)) -> Location {
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }
}

/// One YAML document as a positioned tree, for tools that rewrite a file (`drover
/// secret`). The error says where (`line:column`) and why.
pub fn parse_document(text: &str) -> Result<Option<YamlNode>, String> {
    yaml::parse(text, 0).map_err(|e| match e {
        yaml::TreeError::Syntax {
            line,
            column,
            message,
        } => format!("{line}:{column}: invalid YAML: {message}"),
        yaml::TreeError::DuplicateKey {
            line, column, key, ..
        } => format!("{line}:{column}: duplicate key `{key}`"),
        yaml::TreeError::TooLarge { line, column } => {
            format!("{line}:{column}: aliases expand this document too far")
        }
        yaml::TreeError::TooDeep { line, column } => {
            format!("{line}:{column}: the document nests too deep")
        }
        yaml::TreeError::TooLong { line, column, .. } => {
            format!("{line}:{column}: a string is longer than the limit")
        }
    })
}

/// A typed object together with where it came from.
#[derive(Debug, Clone)]
pub struct Object<S> {
    /// The document, parsed.
    /// Shared, so that reusing an unchanged document for a new revision costs a
    /// reference count, not a copy.
    pub manifest: Arc<Manifest<S>>,
    /// Where each of its fields is, for diagnostics.
    pub source: Arc<Source>,
}

impl<S> Object<S> {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }

    /// The object's spec.
    pub fn spec(&self) -> &S {
        &self.manifest.spec
    }

    /// Where the field at `path` (`spec.replicas`) is, or its closest parent.
    pub fn locate(&self, path: &str) -> Location {
        self.source.locate(path)
    }
}

/// A plain Kubernetes object of an environment (`apiVersion` outside `drover.dev`),
/// kept as it is written: the Kubernetes engine applies it as it is.
#[derive(Debug, Clone)]
pub struct RawObject {
    /// Its name in Drover: `Kind/name`, or `Kind.group/name` (see
    /// [`drover_model::manifest_name`]).
    pub name: String,
    /// The document, as JSON.
    pub value: Arc<serde_json::Value>,
    /// Where each of its fields is, for diagnostics.
    pub source: Arc<Source>,
}

impl RawObject {
    /// Where the field at `path` (`metadata.namespace`) is, or its closest parent.
    pub fn locate(&self, path: &str) -> Location {
        self.source.locate(path)
    }
}

/// One `environments/<name>/` folder.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentDir {
    /// The folder name, which is the environment's name.
    pub name: String,
    /// Its `Environment` document (absent when the folder lacks one: an error).
    pub environment: Option<Object<EnvironmentSpec>>,
    /// Its services, in file order.
    pub services: Vec<Object<ServiceSpec>>,
    /// Its quotas.
    pub quotas: Vec<Object<QuotaSpec>>,
    /// Its secrets.
    pub secrets: Vec<Object<SecretSpec>>,
    /// Its plain Kubernetes objects, in file order.
    pub manifests: Vec<RawObject>,
}

/// Everything a config repo declares.
#[derive(Debug, Clone, Default)]
pub struct Repo {
    /// Clusters, by file order.
    pub clusters: Vec<Object<ClusterSpec>>,
    /// Environments, sorted by name.
    pub environments: Vec<EnvironmentDir>,
    /// Objects whose documents name them but failed to parse, as (environment — empty
    /// for clusters —, kind, name). Reference rules treat them as present, so one
    /// broken document yields one error, not one more per object that refers to it.
    pub unparsed: BTreeSet<(String, Kind, String)>,
}

impl Repo {
    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&Object<ClusterSpec>> {
        self.clusters.iter().find(|c| c.name() == name)
    }

    /// The environment with this name.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentDir> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Did a document meant to define this object fail to parse?
    pub fn failed_to_parse(&self, environment: &str, kind: Kind, name: &str) -> bool {
        self.unparsed
            .contains(&(environment.to_owned(), kind, name.to_owned()))
    }

    /// Number of services over all environments.
    pub fn service_count(&self) -> usize {
        self.environments.iter().map(|e| e.services.len()).sum()
    }
}

/// The result of loading: whatever parsed, and every problem found on the way.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects that parsed.
    pub repo: Repo,
    /// Problems, unsorted.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads a repo from a directory on disk.
pub fn load_dir(root: &std::path::Path) -> Result<Loaded, ReadError> {
    let files = read_dir(root)?;
    Ok(load(&files))
}

/// Where a file sits in the layout.
enum Place<'a> {
    Clusters,
    Environment(&'a str),
    /// Directly in `environments/`, outside any environment folder.
    EnvironmentsRoot,
}

fn place_of(path: &str) -> Option<Place<'_>> {
    if path.starts_with("clusters/") {
        return Some(Place::Clusters);
    }
    let rest = path.strip_prefix("environments/")?;
    Some(match rest.split_once('/') {
        Some((env, _)) => Place::Environment(env),
        None => Place::EnvironmentsRoot,
    })
}

/// Loads a repo from files already in memory (a directory, or a Git revision).
/// Paths are relative to the repo root, with `/` separators.
pub fn load(files: &[SourceFile]) -> Loaded {
    load_cached(files, &mut DocumentCache::default())
}

/// Like [`load`], reusing what `cache` holds from the previous load for files whose
/// path and content id are unchanged.
pub fn load_cached(files: &[SourceFile], cache: &mut DocumentCache) -> Loaded {
    let mut loaded = Loaded::default();
    let mut environments: BTreeMap<String, EnvironmentDir> = BTreeMap::new();
    // Where each (kind, env, name) was first defined, to point duplicates at it. The
    // position itself is only worked out when there is a duplicate.
    let mut seen: BTreeMap<(Kind, String, String), Arc<Source>> = BTreeMap::new();

    let has_layout = files.iter().any(|f| place_of(&f.path).is_some());
    if !has_layout {
        loaded.diagnostics.push(
            Diagnostic::new(
                Code::NotARepo,
                Location { file: "environments/".into(), line: 1, column: 1 },
                "no `clusters/` or `environments/` folder with YAML files: this is not a Drover config repo",
            )
            .with_hint("put clusters in `clusters/*.yaml` and each environment in `environments/<name>/*.yaml` (see docs/model.md)"),
        );
        return loaded;
    }

    let limits = Limits::current();
    for file in files {
        if let Some(problem) = &file.problem {
            loaded
                .diagnostics
                .push(refuse::unreadable(file, problem, &limits));
        }
    }
    let counted = refuse::count(files, cache, &limits);
    loaded.diagnostics.extend(counted.diagnostics);
    if counted.refused {
        cache.files.clear();
        return loaded;
    }
    let parsed = parse_files(files, cache, &counted.skip);
    for (file, docs) in files.iter().zip(parsed) {
        let Some(place) = place_of(&file.path) else {
            continue;
        };
        if let Place::Environment(env) = place {
            environments
                .entry(env.to_owned())
                .or_insert_with(|| EnvironmentDir {
                    name: env.to_owned(),
                    ..EnvironmentDir::default()
                });
        }
        for doc in docs {
            let doc = match doc {
                Ok(doc) => doc,
                Err(failed) => {
                    if let Some((kind, name)) = failed.identity {
                        let env = match place {
                            Place::Environment(env) => env,
                            _ => "",
                        };
                        loaded.repo.unparsed.insert((env.to_owned(), kind, name));
                    }
                    loaded.diagnostics.extend(failed.diagnostics);
                    continue;
                }
            };
            let kind = doc.kind();
            let start = doc.source().start();
            let env_name = match (&place, kind) {
                (Place::Clusters, Kind::Cluster) => String::new(),
                (Place::Environment(env), k) if k.is_environment_scoped() => (*env).to_owned(),
                (Place::Clusters, _) => {
                    loaded.diagnostics.push(misplaced(
                        start,
                        kind,
                        "clusters/ holds only `Cluster` documents",
                        "move it into `environments/<name>/`",
                    ));
                    continue;
                }
                (Place::Environment(_), _) => {
                    loaded.diagnostics.push(misplaced(
                        start,
                        kind,
                        "environment folders hold no `Cluster` documents",
                        "move it into `clusters/`",
                    ));
                    continue;
                }
                (Place::EnvironmentsRoot, _) => {
                    loaded.diagnostics.push(misplaced(
                        start,
                        kind,
                        "documents in `environments/` belong in an environment's folder",
                        "move it into `environments/<name>/`",
                    ));
                    continue;
                }
            };
            match seen.entry((kind, env_name.clone(), doc.name().to_owned())) {
                Entry::Occupied(first) => {
                    let scope = if kind == Kind::Cluster {
                        "in this repo".to_owned()
                    } else {
                        format!("in environment `{env_name}`")
                    };
                    loaded.diagnostics.push(
                        Diagnostic::new(
                            Code::DuplicateObject,
                            doc.source().locate("metadata.name"),
                            format!("{kind} `{}` is defined twice {scope}", doc.name()),
                        )
                        .with_hint(format!(
                            "the first definition is at {}; rename or remove one",
                            first.get().locate("metadata.name")
                        )),
                    );
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(doc.shared_source());
                }
            }
            match doc {
                parse::Doc::Cluster(o) => loaded.repo.clusters.push(o),
                other => {
                    let dir = environments
                        .get_mut(&env_name)
                        .expect("folder registered above");
                    match other {
                        parse::Doc::Environment(o) => match &dir.environment {
                            Some(first) => loaded.diagnostics.push(
                                Diagnostic::new(
                                    Code::EnvironmentDocument,
                                    o.locate("metadata.name"),
                                    format!("folder `environments/{env_name}/` has a second `Environment` document"),
                                )
                                .with_hint(format!(
                                    "one folder is one environment; the first is at {}",
                                    first.locate("metadata.name")
                                )),
                            ),
                            None => dir.environment = Some(o),
                        },
                        parse::Doc::Service(o) => dir.services.push(o),
                        parse::Doc::Quota(o) => dir.quotas.push(o),
                        parse::Doc::Secret(o) => dir.secrets.push(o),
                        parse::Doc::Raw(o) => dir.manifests.push(o),
                        parse::Doc::Cluster(_) => unreachable!("handled above"),
                    }
                }
            }
        }
    }

    for (name, dir) in &environments {
        match &dir.environment {
            None => {
                let first_file = files
                    .iter()
                    .find(|f| matches!(place_of(&f.path), Some(Place::Environment(e)) if e == name))
                    .map(|f| f.path.as_str())
                    .unwrap_or("environments");
                loaded.diagnostics.push(
                    Diagnostic::new(
                        Code::EnvironmentDocument,
                        Location { file: first_file.into(), line: 1, column: 1 },
                        format!("environment folder `environments/{name}/` has no `Environment` document"),
                    )
                    .with_hint(format!(
                        "add `environments/{name}/environment.yaml` with `kind: Environment` and `metadata.name: {name}`"
                    )),
                );
            }
            Some(env) if env.name() != name => {
                loaded.diagnostics.push(
                    Diagnostic::new(
                        Code::EnvironmentDocument,
                        env.locate("metadata.name"),
                        format!(
                            "Environment `{}` is in folder `environments/{name}/`",
                            env.name()
                        ),
                    )
                    .with_hint(format!(
                        "name it `{name}`, or move it to `environments/{}/`",
                        env.name()
                    )),
                );
            }
            Some(_) => {}
        }
    }
    loaded.repo.environments = environments.into_values().collect();
    loaded
}

type Parsed = Vec<Result<parse::Doc, parse::Failed>>;

/// Parsed files of the last load, by path and content id (a Git blob id), so that a
/// file unchanged between two revisions is parsed once. Objects reused this way share
/// their [`Source`]: a diff can tell at a glance that they did not change.
#[derive(Debug, Default)]
pub struct DocumentCache {
    files: HashMap<(String, Arc<str>), Parsed>,
}

impl DocumentCache {
    /// Number of files held.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Holds nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Holds the file with this path and content id: a [`SourceFile`] for it needs no
    /// text (its parse will be reused).
    pub fn contains(&self, path: &str, id: &str) -> bool {
        self.files.contains_key(&(path.to_owned(), Arc::from(id)))
    }

    /// Documents the file with this path and content id held, if it is held.
    fn documents(&self, path: &str, id: &Arc<str>) -> Option<usize> {
        self.files.get(&(path.to_owned(), id.clone())).map(Vec::len)
    }
}

fn parse_file(file: &SourceFile) -> Parsed {
    if place_of(&file.path).is_none() || file.problem.is_some() {
        return Vec::new();
    }
    let name: Arc<str> = file.path.as_str().into();
    document::split(&file.text)
        .iter()
        .filter_map(|chunk| parse::parse(&name, chunk).transpose())
        .collect()
}

/// Parses every document of every file in the layout, reusing the cache for files it
/// holds and keeping in it exactly the files of this load. Misses are parsed on all
/// cores: files are independent, and parsing is most of the time a load takes.
/// Results come back in file order, so output does not depend on scheduling.
/// Files in `skip` (refused by a limit) and unreadable files yield nothing and are
/// not kept: the next load must find their problem again.
fn parse_files(
    files: &[SourceFile],
    cache: &mut DocumentCache,
    skip: &BTreeSet<usize>,
) -> Vec<Parsed> {
    let key = |f: &SourceFile| f.id.as_ref().map(|id| (f.path.clone(), id.clone()));
    let mut results: Vec<Option<Parsed>> = files
        .iter()
        .map(|f| key(f).and_then(|k| cache.files.get(&k).cloned()))
        .collect();
    for i in skip {
        results[*i] = Some(Vec::new());
    }
    let misses: Vec<&SourceFile> = files
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(f, _)| f)
        .collect();
    let mut parsed = parse_in_parallel(&misses).into_iter();
    for result in results.iter_mut().filter(|r| r.is_none()) {
        *result = parsed.next();
    }
    let results: Vec<Parsed> = results
        .into_iter()
        .map(|r| r.expect("every miss was parsed"))
        .collect();
    cache.files = files
        .iter()
        .zip(&results)
        .enumerate()
        .filter(|(i, (f, _))| f.problem.is_none() && !skip.contains(i))
        .filter_map(|(_, (f, r))| key(f).map(|k| (k, r.clone())))
        .collect();
    results
}

fn parse_in_parallel(files: &[&SourceFile]) -> Vec<Parsed> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().div_ceil(64))
        .max(1);
    if threads == 1 {
        return files.iter().map(|f| parse_file(f)).collect();
    }
    // Contiguous slices of roughly equal bytes, one per thread.
    let total: usize = files.iter().map(|f| f.text.len()).sum();
    let mut slices = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0);
    for (i, file) in files.iter().enumerate() {
        acc += file.text.len();
        if acc * threads >= total * (slices.len() + 1) && slices.len() + 1 < threads {
            slices.push(&files[start..=i]);
            start = i + 1;
        }
    }
    slices.push(&files[start..]);
    std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .into_iter()
            .map(|slice| {
                scope.spawn(move || slice.iter().map(|f| parse_file(f)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a parser thread does not panic"))
            .collect()
    })
}

fn misplaced(at: Location, kind: Kind, why: &str, fix: &str) -> Diagnostic {
    let what = match kind {
        Kind::Manifest => "a plain Kubernetes object".to_owned(),
        kind => format!("a `{kind}` document"),
    };
    Diagnostic::new(Code::Misplaced, at, format!("{what} cannot be here: {why}")).with_hint(fix)
}

#[cfg(test)]
mod tests;
