//! Opening Secret documents: SOPS's own worked example, files Drover encrypts, and
//! every way a file can be broken.

use std::path::Path;
use std::process::Command;

use drover_load::SourceFile;

use super::*;
use crate::edit;
use crate::metadata;

fn testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/sops")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The data key of a SOPS file wrapped for PGP, opened by the real `gpg`.
fn pgp_data_key(block: &YamlNode) -> Vec<u8> {
    let home = tempfile::tempdir().unwrap();
    let gpg =
        |args: &[&str], input: &str| drover_testkit::git::gpg(home.path(), args, input.as_bytes());
    gpg(&["--import"], &testdata("sops_functional_tests_key.asc"));
    let YamlValue::Seq(stanzas) = &block.get("pgp").unwrap().value else {
        panic!("pgp stanzas")
    };
    let message = stanzas[0].get("enc").unwrap().as_str().unwrap();
    gpg(&["--decrypt"], message)
}

fn text_at<'a>(opened: &'a [(Vec<String>, Plain)], path: &str) -> Vec<&'a str> {
    opened
        .iter()
        .filter(|(p, _)| p.join(".") == path)
        .map(|(_, v)| std::str::from_utf8(v.expose()).unwrap())
        .collect()
}

#[test]
fn sops_documented_example_opens_and_its_mac_matches() {
    let root = drover_load::parse_document(&testdata("example.yaml"))
        .unwrap()
        .unwrap();
    let block = root.get(SOPS_BLOCK).unwrap();
    let data_key = pgp_data_key(block);
    assert_eq!(data_key.len(), 32);
    // Drover reads a block's age stanzas; this one has PGP only, which it refuses.
    let refused = metadata::parse(block).unwrap_err();
    assert_eq!(refused[0].field, "pgp", "{refused:?}");
    let meta = Metadata {
        age: Vec::new(),
        lastmodified: block.get("lastmodified").unwrap().as_str().unwrap().into(),
        mac: block.get("mac").unwrap().as_str().unwrap().into(),
        rule: metadata::Rule::UnencryptedSuffix("_unencrypted".into()),
        mac_only_encrypted: false,
        version: None,
    };
    let leaves = leaves(&root);
    check_rule(&meta, &leaves).unwrap();
    let opened = open_leaves(&meta, &leaves, &data_key).expect("the MAC SOPS wrote matches");
    assert_eq!(text_at(&opened, "app2.db.user"), ["eve"]);
    assert_eq!(text_at(&opened, "somebooleans"), ["true", "false"]);
    assert_eq!(text_at(&opened, "number"), ["1234568000"]);
    assert_eq!(text_at(&opened, "an_array").len(), 4);
    assert!(text_at(&opened, "app2.key")[0].starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(
        text_at(&opened, "nested_unencrypted.this.is.all"),
        ["going to remain in clear text"]
    );
    // One changed leaf, even one left in clear, breaks the MAC.
    let mut changed = leaves;
    changed.last_mut().unwrap().value = Scalar::Str("changed by hand".into());
    let problems = open_leaves(&meta, &changed, &data_key).unwrap_err();
    assert_eq!(problems[0].path, "sops.mac");
}

fn identity() -> (Keys, String) {
    let text = crate::keys::generate();
    let keys = Keys::from_text(&text).unwrap();
    let recipient = keys.recipients()[0].clone();
    (keys, recipient)
}

const CLEAR: &str = "# the shop's database\napiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\nspec:\n  data:\n    password: correct horse battery staple\n    username: shop\n";

fn secret(text: &str) -> Object<SecretSpec> {
    let loaded = drover_load::load(&[
        SourceFile::new(
            "environments/staging/environment.yaml",
            "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: staging\nspec:\n  cluster: local\n",
        ),
        SourceFile::new("environments/staging/db.yaml", text),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.repo.environments[0].secrets[0].clone()
}

fn value(opened: &BTreeMap<String, Plain>, key: &str) -> String {
    String::from_utf8(opened[key].expose().to_vec()).unwrap()
}

#[test]
fn a_file_drover_encrypts_opens_with_the_key_and_shows_no_value() {
    let (keys, recipient) = identity();
    let encrypted = edit::encrypt(CLEAR, std::slice::from_ref(&recipient)).unwrap();
    assert!(!encrypted.contains("horse"), "{encrypted}");
    assert!(
        encrypted
            .starts_with("# the shop's database\napiVersion: drover.dev/v1alpha1\nkind: Secret\n"),
        "{encrypted}"
    );
    assert!(
        encrypted.contains(&format!(
            "    - recipient: {recipient}\n      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n"
        )),
        "{encrypted}"
    );
    assert!(
        encrypted.contains("  encrypted_regex: ^(data|stringData)$\n"),
        "{encrypted}"
    );
    let object = secret(&encrypted);
    let opened = open(&object, Some(&keys)).unwrap();
    assert_eq!(value(&opened, "password"), "correct horse battery staple");
    assert_eq!(value(&opened, "username"), "shop");
    // Without a key only the format is checked.
    assert!(open(&object, None).unwrap().is_empty());
    // Another key opens nothing, and the error says for whom the file is.
    let (other, _) = identity();
    let problems = open(&object, Some(&other)).unwrap_err();
    assert_eq!(problems[0].path, "sops.age");
    assert_eq!(problems[0].kind, ProblemKind::Undecryptable);
    assert!(problems[0].message.contains(&recipient), "{problems:?}");
}

#[test]
fn a_value_moved_or_changed_by_hand_is_rejected() {
    let (keys, recipient) = identity();
    let encrypted = edit::encrypt(CLEAR, &[recipient]).unwrap();
    // Swapping two encrypted values: each is bound to its path.
    let lines: Vec<&str> = encrypted.lines().collect();
    let at = |key: &str| {
        lines
            .iter()
            .position(|l| l.trim_start().starts_with(key))
            .unwrap()
    };
    let (p, u) = (at("password:"), at("username:"));
    let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    swapped[p] = lines[u].replace("username:", "password:");
    swapped[u] = lines[p].replace("password:", "username:");
    let problems = open(&secret(&(swapped.join("\n") + "\n")), Some(&keys)).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.kind == ProblemKind::Undecryptable)
    );
    // A field in clear changed without the key: the MAC says so.
    let renamed = encrypted.replace("  name: db\n", "  name: db2\n");
    let problems = open(&secret(&renamed), Some(&keys)).unwrap_err();
    assert_eq!(problems[0].path, "sops.mac");
    // A value written in clear where the rule encrypts: known without a key.
    let clear = encrypted.replace(lines[p].trim_start(), "password: hunter2");
    let problems = open(&secret(&clear), None).unwrap_err();
    assert_eq!(problems[0].path, "spec.data.password");
    assert_eq!(problems[0].kind, ProblemKind::Format);
    assert!(!format!("{problems:?}").contains("hunter2"));
}

#[test]
fn editing_keeps_the_ciphertext_of_unchanged_values_and_rotating_changes_all() {
    let (keys, recipient) = identity();
    let encrypted = edit::encrypt(CLEAR, std::slice::from_ref(&recipient)).unwrap();
    let opened = edit::decrypt(&encrypted, &keys).unwrap();
    let plain = opened.plain_text();
    assert!(
        plain.contains("password: correct horse battery staple"),
        "{}",
        *plain
    );
    assert!(!plain.contains("sops:"));
    let edited = opened
        .reseal(&plain.replace("username: shop", "username: shop2"))
        .unwrap();
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap()
            .to_owned()
    };
    assert_eq!(line(&edited, "password:"), line(&encrypted, "password:"));
    assert_ne!(line(&edited, "username:"), line(&encrypted, "username:"));
    let reopened = open(&secret(&edited), Some(&keys)).unwrap();
    assert_eq!(value(&reopened, "username"), "shop2");
    // Rotating: a new data key, here for a second recipient too.
    let (second, added) = identity();
    let rotated = edit::decrypt(&edited, &keys)
        .unwrap()
        .rotate(&[recipient, added])
        .unwrap();
    assert_ne!(line(&rotated, "password:"), line(&edited, "password:"));
    let by_second = open(&secret(&rotated), Some(&second)).unwrap();
    assert_eq!(
        value(&by_second, "password"),
        "correct horse battery staple"
    );
}

#[test]
fn encrypted_values_without_a_sops_block_are_a_format_error() {
    let text = "apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\nspec:\n  data:\n    password: ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]\n";
    let problems = open(&secret(text), None).unwrap_err();
    assert_eq!(problems[0].path, "spec.data.password");
    assert_eq!(problems[0].kind, ProblemKind::Format);
}

#[test]
fn yaml_scalars_are_typed_as_sops_types_them() {
    assert_eq!(Scalar::of("true", true), Some(Scalar::Bool(true)));
    assert_eq!(Scalar::of("true", false), Some(Scalar::Str("true".into())));
    assert_eq!(Scalar::of("~", true), None);
    assert_eq!(Scalar::of("0x1F", true), Some(Scalar::Int(31)));
    assert_eq!(Scalar::of("1e3", true).unwrap().bytes(), b"1000");
    assert_eq!(Scalar::of("1234.5678", true).unwrap().bytes(), b"1234.5678");
    assert_eq!(Scalar::of("False", true).unwrap().bytes(), b"False");
    assert_eq!(
        Scalar::of("age1xyz", true),
        Some(Scalar::Str("age1xyz".into()))
    );
}

#[test]
fn a_file_whose_data_key_the_age_cli_wrapped_opens() {
    // The key stanza of a SOPS file is an age file: here the real `age` CLI writes it.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&key_file)
        .output()
        .expect("age-keygen runs (Debian's age package; .ci/install-deps installs it)");
    assert!(keygen.status.success());
    let keys = Keys::from_file(&key_file).unwrap();
    let recipient = keys.recipients()[0].clone();
    let encrypted = edit::encrypt(CLEAR, std::slice::from_ref(&recipient)).unwrap();
    let data_key = edit::decrypt(&encrypted, &keys).unwrap().data_key.clone();
    let raw = dir.path().join("data-key");
    std::fs::write(&raw, &*data_key).unwrap();
    let wrapped = Command::new("age")
        .args(["--encrypt", "--armor", "--recipient", &recipient])
        .arg(&raw)
        .output()
        .expect("age runs");
    assert!(wrapped.status.success());
    let armored = String::from_utf8(wrapped.stdout).unwrap();
    let start = encrypted
        .find("-----BEGIN AGE ENCRYPTED FILE-----")
        .unwrap();
    let end = encrypted.find("-----END AGE ENCRYPTED FILE-----").unwrap()
        + "-----END AGE ENCRYPTED FILE-----".len();
    let indent = "        ";
    let replaced: String = armored
        .trim_end()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_owned()
            } else {
                format!("\n{indent}{l}")
            }
        })
        .collect();
    let by_cli = format!("{}{replaced}{}", &encrypted[..start], &encrypted[end..]);
    assert_ne!(by_cli, encrypted);
    let opened = open(&secret(&by_cli), Some(&keys)).unwrap();
    assert_eq!(value(&opened, "password"), "correct horse battery staple");
}
