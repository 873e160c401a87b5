//! Property: for any model, serialize → parse (through the real loader) gives the same
//! model back. This is what lets diffs, previews and promotions rewrite YAML safely:
//! quoting, numbers, durations and quantities all survive the trip.

use drover_load::{SourceFile, load};
use drover_model::{
    ClusterSpec, EnvironmentSpec, Kind, Manifest, Metadata, QuotaSpec, SecretSpec, ServiceSpec,
};
use proptest::prelude::*;

fn manifest<S: Arbitrary + 'static>(kind: Kind) -> impl Strategy<Value = Manifest<S>> {
    (any::<Metadata>(), any::<S>()).prop_map(move |(metadata, spec)| {
        let mut m = Manifest::new(kind, String::new(), spec);
        m.metadata = metadata;
        m
    })
}

fn to_yaml<S: serde::Serialize>(m: &Manifest<S>) -> String {
    serde_saphyr::to_string(m).expect("a model serializes")
}

fn reload(path: &str, text: String) -> drover_load::Loaded {
    let loaded = load(&[SourceFile::new(path.to_owned(), text)]);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code.id() != "E011")
        .map(|d| format!("{}: {}", d.location, d.message))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    loaded
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn services_survive_serialize_then_parse(m in manifest::<ServiceSpec>(Kind::Service)) {
        let loaded = reload("environments/e/s.yaml", to_yaml(&m));
        prop_assert_eq!(&*loaded.repo.environments[0].services[0].manifest, &m);
    }

    #[test]
    fn clusters_survive_serialize_then_parse(m in manifest::<ClusterSpec>(Kind::Cluster)) {
        let loaded = reload("clusters/c.yaml", to_yaml(&m));
        prop_assert_eq!(&*loaded.repo.clusters[0].manifest, &m);
    }

    #[test]
    fn environments_quotas_and_secrets_survive_serialize_then_parse(
        e in manifest::<EnvironmentSpec>(Kind::Environment),
        q in manifest::<QuotaSpec>(Kind::Quota),
        s in manifest::<SecretSpec>(Kind::Secret),
    ) {
        // All three in one multi-document file, as a repo would hold them.
        let text = format!("{}---\n{}---\n{}", to_yaml(&e), to_yaml(&q), to_yaml(&s));
        let loaded = reload("environments/e/all.yaml", text);
        let dir = &loaded.repo.environments[0];
        prop_assert_eq!(&*dir.environment.as_ref().unwrap().manifest, &e);
        prop_assert_eq!(&*dir.quotas[0].manifest, &q);
        prop_assert_eq!(&*dir.secrets[0].manifest, &s);
    }
}
