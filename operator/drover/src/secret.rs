//! `drover secret`: encrypt a Secret file for age recipients, edit it in clear in
//! `$EDITOR`, rotate its data key — writing the SOPS format, so `sops -d` reads what
//! Drover writes and the reverse. Recipients come from `--age`, `SOPS_AGE_RECIPIENTS`
//! or the nearest `.sops.yaml`'s creation rules, as with `sops`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use drover_secrets::Keys;
use drover_secrets::edit;

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Encrypt a Secret file written in clear, in place: each value of `data` with
    /// AES-256-GCM, the data key wrapped for each age recipient.
    Encrypt(EncryptArgs),
    /// Decrypt a Secret file into `$EDITOR` (in memory where the system allows), and
    /// encrypt it again when the editor exits. Unchanged values keep their ciphertext.
    Edit(EditArgs),
    /// Encrypt a Secret file again with a new data key, for its recipients plus
    /// `--age` and minus `--rm-age`. Every value's ciphertext changes.
    Rotate(RotateArgs),
    /// Create an age identity file, as `age-keygen -o FILE` does; prints its public key.
    Keygen {
        /// Where to write it (0600); refuses to overwrite.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct EncryptArgs {
    pub file: PathBuf,
    /// age recipients (`age1…`), repeated or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub age: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    pub file: PathBuf,
    /// Recipients to add.
    #[arg(long, value_delimiter = ',')]
    pub age: Vec<String>,
    /// Recipients to remove.
    #[arg(long = "rm-age", value_delimiter = ',')]
    pub rm_age: Vec<String>,
}

pub fn run(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Encrypt(args) => encrypt(args),
        SecretCommand::Edit(args) => edit_file(args),
        SecretCommand::Rotate(args) => rotate(args),
        SecretCommand::Keygen { output } => keygen(&output),
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    drover_control::files::write_atomic(file, text.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

fn encrypt(args: EncryptArgs) -> anyhow::Result<ExitCode> {
    let recipients = recipients(&args.file, args.age)?;
    let text = read(&args.file)?;
    let encrypted = edit::encrypt(&text, &recipients)
        .with_context(|| format!("cannot encrypt {}", args.file.display()))?;
    write(&args.file, &encrypted)?;
    eprintln!(
        "{}: encrypted for {}",
        args.file.display(),
        recipients.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The age identities a command for people opens secrets with, if any is configured:
/// without one, secrets are checked for format only.
pub fn configured_keys() -> anyhow::Result<Option<std::sync::Arc<Keys>>> {
    let keys = Keys::from_env()?;
    Ok((!keys.is_empty()).then(|| std::sync::Arc::new(keys)))
}

fn keys() -> anyhow::Result<Keys> {
    let keys = Keys::from_env()?;
    if keys.is_empty() {
        bail!(
            "no age key: set {} to your age identity file (or {})",
            drover_secrets::keys::KEY_FILE_VAR,
            drover_secrets::keys::KEY_VAR
        );
    }
    Ok(keys)
}

fn edit_file(args: EditArgs) -> anyhow::Result<ExitCode> {
    let text = read(&args.file)?;
    let opened = edit::decrypt(&text, &keys()?)
        .with_context(|| format!("cannot decrypt {}", args.file.display()))?;
    let plain = opened.plain_text();
    let scratch = Scratch::new(&args.file)?;
    scratch.write(&plain)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // Through the shell, as git runs `core.editor`: `EDITOR="code --wait"` works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("drover-secret-edit")
        .arg(&scratch.path)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        bail!(
            "the editor `{editor}` failed ({status}); {} is unchanged",
            args.file.display()
        );
    }
    let edited = zeroize::Zeroizing::new(read(&scratch.path)?);
    if *edited == *plain {
        eprintln!("{}: unchanged", args.file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let sealed = opened
        .reseal(&edited)
        .with_context(|| format!("cannot encrypt {} again", args.file.display()))?;
    write(&args.file, &sealed)?;
    eprintln!("{}: encrypted again", args.file.display());
    Ok(ExitCode::SUCCESS)
}

fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let text = read(&args.file)?;
    let opened = edit::decrypt(&text, &keys()?)
        .with_context(|| format!("cannot decrypt {}", args.file.display()))?;
    let mut recipients = opened.recipients.clone();
    for added in args.age {
        if !recipients.contains(&added) {
            recipients.push(added);
        }
    }
    recipients.retain(|r| !args.rm_age.contains(r));
    let rotated = opened
        .rotate(&recipients)
        .with_context(|| format!("cannot rotate {}", args.file.display()))?;
    write(&args.file, &rotated)?;
    eprintln!(
        "{}: a new data key, for {}",
        args.file.display(),
        recipients.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(output: &Path) -> anyhow::Result<ExitCode> {
    let text = drover_secrets::keys::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    file.write_all(text.as_bytes())?;
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_default();
    eprintln!("Public key: {public}");
    Ok(ExitCode::SUCCESS)
}

/// A private file for the text in clear while it is edited: in memory where there is
/// one (`$XDG_RUNTIME_DIR`, `/dev/shm`), 0600, removed (and so gone) on drop.
struct Scratch {
    /// Removed with everything in it when dropped.
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn new(file: &Path) -> anyhow::Result<Scratch> {
        let memory = drover_control::files::memory_dir().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("drover-secret-")
            .tempdir_in(memory)
            .context("cannot create a private directory to edit in")?;
        // The editor sees the file's own name (and so its syntax highlighting).
        let name = file
            .file_name()
            .map_or("secret.yaml".into(), |n| n.to_owned());
        let path = dir.path().join(name);
        Ok(Scratch { _dir: dir, path })
    }

    fn write(&self, text: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// The recipients to encrypt for: `--age`, else `SOPS_AGE_RECIPIENTS`, else the first
/// creation rule of the nearest `.sops.yaml` whose `path_regex` matches the file.
fn recipients(file: &Path, given: Vec<String>) -> anyhow::Result<Vec<String>> {
    let clean = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect()
    };
    let given = clean(given);
    if !given.is_empty() {
        return Ok(given);
    }
    if let Ok(env) = std::env::var("SOPS_AGE_RECIPIENTS") {
        let from_env = clean(env.split(',').map(str::to_owned).collect());
        if !from_env.is_empty() {
            return Ok(from_env);
        }
    }
    if let Some(found) = sops_config_recipients(file)? {
        return Ok(found);
    }
    bail!(
        "no recipient for {}: pass `--age age1…`, set SOPS_AGE_RECIPIENTS, or add a creation rule with `age:` to .sops.yaml",
        file.display()
    )
}

#[derive(serde::Deserialize)]
struct SopsConfig {
    #[serde(default)]
    creation_rules: Vec<CreationRule>,
}

#[derive(serde::Deserialize)]
struct CreationRule {
    path_regex: Option<String>,
    age: Option<String>,
}

fn sops_config_recipients(file: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let absolute = std::path::absolute(file)?;
    for dir in absolute.ancestors().skip(1) {
        let config = dir.join(".sops.yaml");
        if !config.is_file() {
            continue;
        }
        let parsed: SopsConfig = serde_saphyr::from_str(&read(&config)?)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let relative = absolute.strip_prefix(dir).unwrap_or(&absolute);
        for rule in parsed.creation_rules {
            let matches = match &rule.path_regex {
                Some(pattern) => regex::Regex::new(pattern)
                    .with_context(|| format!("{}: bad path_regex `{pattern}`", config.display()))?
                    .is_match(&relative.to_string_lossy()),
                None => true,
            };
            if matches {
                return Ok(rule
                    .age
                    .map(|a| a.split(',').map(|r| r.trim().to_owned()).collect()));
            }
        }
        return Ok(None);
    }
    Ok(None)
}
