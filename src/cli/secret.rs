//! `plimsoll secret encrypt|edit|keygen` and the host's age identity
//! (`--age-identity`, `PLIMSOLL_AGE_IDENTITY`, `<state-dir>/age.key`).
//!
//! Invariant: decrypted content is never printed and never written to disk,
//! except by `edit`, to a 0600 file in a private 0700 directory (under
//! `/dev/shm` when there is one) that is removed before `edit` returns.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use crate::spec::age::{self, Identities};
use crate::spec::config::Config;

/// The default identity file in the state directory.
pub const IDENTITY_FILE: &str = "age.key";

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Encrypt a file with age (writes FILE.age; keep FILE out of git).
    ///
    /// Recipients: -r/-R, else `secrets.age_recipients` of the plimsoll.yaml above FILE.
    #[command(after_long_help = examples!(
        "To the recipients of plimsoll.yaml; writes stacks/shop/db_password.age" => "plimsoll secret encrypt stacks/shop/db_password",
        "To two hosts, from standard input" => "plimsoll secret encrypt -r age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq -R hosts.txt -o stacks/shop/token.age -",
    ))]
    Encrypt {
        #[command(flatten)]
        to: Recipients,
        /// Where to write (default FILE.age).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// The file to encrypt; `-` reads standard input (needs -o).
        file: PathBuf,
    },
    /// Edit FILE.age in $VISUAL/$EDITOR and encrypt it again.
    ///
    /// The clear text lives in a private 0600 file under /dev/shm while the editor runs and is
    /// removed after; unchanged content is not rewritten. A FILE.age that does not exist starts
    /// empty.
    #[command(after_long_help = examples!(
        "Edit an encrypted env file (recipients from plimsoll.yaml)" => "plimsoll secret edit stacks/shop/secrets.env.age",
        "Re-encrypt to a recipients file while editing" => "plimsoll secret edit -R hosts.txt stacks/shop/db_password.age",
    ))]
    Edit {
        #[command(flatten)]
        to: Recipients,
        /// The age file to edit.
        file: PathBuf,
    },
    /// Create an age identity and print its recipient (age1...).
    ///
    /// Writes <state-dir>/age.key (or -o FILE), mode 0600, never over an existing file. Add the
    /// printed recipient to `secrets.age_recipients` in plimsoll.yaml.
    #[command(after_long_help = examples!(
        "This host's identity, where the CLI and the agent look for it" => "plimsoll secret keygen",
        "An identity file to hand to an agent container as a secret" => "plimsoll secret keygen -o agent-age.key",
    ))]
    Keygen {
        /// Where to write the identity (never overwritten).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Recipients {
    /// Encrypt to this recipient (age1...; repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    recipients: Vec<String>,
    /// Encrypt to the recipients listed in this file (one per line, # comments).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Where the host's age identity comes from.
#[derive(Debug, Clone)]
pub struct IdentitySource {
    /// `--age-identity` / `PLIMSOLL_AGE_IDENTITY`.
    pub flag: Option<PathBuf>,
    pub state_dir: PathBuf,
}

impl IdentitySource {
    /// The identities: the named file (it must be readable), else
    /// `<state-dir>/age.key` when it exists, else none.
    pub fn identities(&self) -> Result<Option<Arc<Identities>>> {
        let (path, named) = match &self.flag {
            Some(p) => (p.clone(), true),
            None => (self.state_dir.join(IDENTITY_FILE), false),
        };
        if !named && !path.exists() {
            return Ok(None);
        }
        let read = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the age identity file {}", path.display()))
            .and_then(|text| Ok(Identities::parse(&text, &path)?));
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "the age identity file {} is readable by other users: chmod 600 it",
                path.display()
            );
        }
        match read {
            Ok(ids) => Ok(Some(Arc::new(ids))),
            Err(e) if named => Err(e.context("--age-identity / PLIMSOLL_AGE_IDENTITY")),
            // The default file only matters to repositories with `*.age` files:
            // those fail to load, saying no identity is configured.
            Err(e) => {
                tracing::warn!("{e:#}; `*.age` files cannot be decrypted");
                Ok(None)
            }
        }
    }
}

/// Runs `plimsoll secret ...`.
pub fn run(command: SecretCommand, source: &IdentitySource) -> Result<()> {
    match command {
        SecretCommand::Encrypt { to, output, file } => encrypt(&to, output, &file),
        SecretCommand::Edit { to, file } => edit(&to, &file, source),
        SecretCommand::Keygen { output } => {
            keygen(&output.unwrap_or_else(|| source.state_dir.join(IDENTITY_FILE)))
        }
    }
}

fn encrypt(to: &Recipients, output: Option<PathBuf>, file: &Path) -> Result<()> {
    let stdin = file == Path::new("-");
    let output = match output {
        Some(o) => o,
        None if stdin => bail!("reading standard input needs -o OUT (the name of the .age file)"),
        None => {
            let mut name = file.as_os_str().to_owned();
            name.push(age::SUFFIX);
            PathBuf::from(name)
        }
    };
    let recipients = to.resolve(&output)?;
    let mut plaintext = Vec::new();
    if stdin {
        std::io::stdin()
            .read_to_end(&mut plaintext)
            .context("cannot read standard input")?;
    } else {
        plaintext =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let ciphertext = age::encrypt(&recipients, &plaintext).map_err(anyhow::Error::msg)?;
    write_atomic(&output, &ciphertext)?;
    eprintln!(
        "wrote {} (encrypted to {} recipient{}){}",
        output.display(),
        recipients.len(),
        if recipients.len() == 1 { "" } else { "s" },
        if stdin {
            String::new()
        } else {
            format!("; delete {} and keep it out of git", file.display())
        }
    );
    Ok(())
}

fn edit(to: &Recipients, file: &Path, source: &IdentitySource) -> Result<()> {
    let ids = source.identities()?.with_context(|| {
        format!(
            "no age identity to decrypt {}: {}",
            file.display(),
            age::IDENTITY_HINT
        )
    })?;
    let recipients = to.resolve(file)?;
    let mine: Vec<String> = ids.recipients().iter().map(ToString::to_string).collect();
    if !recipients.iter().any(|r| mine.contains(&r.to_string())) {
        eprintln!(
            "note: the identity {} ({}) is not among the recipients: it will not decrypt {} after this edit",
            ids.file().display(),
            mine.join(", "),
            file.display()
        );
    }
    let before = match std::fs::read(file) {
        Ok(bytes) => Some(ids.decrypt(&bytes).map_err(|e| {
            anyhow::anyhow!("cannot decrypt {}: {e}; {}", file.display(), e.hint())
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let dir = private_dir()?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(age::SUFFIX).unwrap_or(n))
        .filter(|n| !n.is_empty())
        .unwrap_or("secret");
    let clear = dir.path().join(name);
    let result = (|| -> Result<Vec<u8>> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&clear)
            .with_context(|| format!("cannot create {}", clear.display()))?;
        f.write_all(before.as_deref().unwrap_or_default())?;
        drop(f);
        run_editor(&clear)?;
        std::fs::read(&clear)
            .with_context(|| format!("cannot read {} after the editor exited", clear.display()))
    })();
    // Overwrite, then remove the clear file and everything the editor left
    // next to it, whatever happened.
    if let Ok(meta) = std::fs::metadata(&clear) {
        let _ = std::fs::write(&clear, vec![0u8; meta.len() as usize]);
    }
    let removed = dir.close();
    let after = result?;
    removed.context("cannot remove the temporary clear file")?;
    if before.as_deref() == Some(after.as_slice()) {
        eprintln!("{}: unchanged, not rewritten", file.display());
        return Ok(());
    }
    let ciphertext = age::encrypt(&recipients, &after).map_err(anyhow::Error::msg)?;
    write_atomic(file, &ciphertext)?;
    eprintln!(
        "{}: encrypted again to {} recipient{}",
        file.display(),
        recipients.len(),
        if recipients.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// A private directory for the clear file: 0700, in memory (`/dev/shm`) when possible.
fn private_dir() -> Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder
        .prefix("plimsoll-secret-")
        .permissions(std::fs::Permissions::from_mode(0o700));
    let dir = match builder.tempdir_in(shm) {
        Ok(d) => d,
        Err(_) => builder
            .tempdir()
            .context("cannot create a private temporary directory")?,
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Runs `$VISUAL`, else `$EDITOR`, else `vi`, through `sh` (so `code --wait` works).
fn run_editor(file: &Path) -> Result<()> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        bail!("the editor `{editor}` failed ({status}); nothing was changed");
    }
    Ok(())
}

fn keygen(output: &Path) -> Result<()> {
    if output.exists() {
        bail!(
            "{} already exists: plimsoll never overwrites an identity (remove it first, or give -o FILE)",
            output.display()
        );
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let ids = Identities::generate(output);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let now = jiff::Timestamp::now();
    f.write_all(format!("# created: {now}\n{}", ids.to_file_text()).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "wrote {} (keep it secret; the agent reads it from the state directory or --age-identity)",
        output.display()
    );
    for r in ids.recipients() {
        println!("{r}");
    }
    Ok(())
}

impl Recipients {
    /// The recipients of the flags, else of the plimsoll.yaml above `near`.
    fn resolve(&self, near: &Path) -> Result<Vec<age::Recipient>> {
        let mut lines: Vec<String> = self.recipients.clone();
        for f in &self.files {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the recipients file {}", f.display()))?;
            lines.extend(text.lines().map(str::to_string));
        }
        let mut from = "-r/-R".to_string();
        if self.recipients.is_empty() && self.files.is_empty() {
            let Some((path, config)) = find_config(near)? else {
                bail!(
                    "no recipients: give -r age1... or -R FILE, or list them in secrets.age_recipients of plimsoll.yaml"
                );
            };
            lines = config.secrets.age_recipients;
            from = format!("secrets.age_recipients in {}", path.display());
        }
        let recipients = age::parse_recipients(lines.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
        if recipients.is_empty() {
            bail!("{from}: no recipients listed (age1...)");
        }
        Ok(recipients)
    }
}

/// The plimsoll.yaml in the directory of `near` or above it.
fn find_config(near: &Path) -> Result<Option<(PathBuf, Config)>> {
    let start = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    for dir in start.ancestors() {
        let path = dir.join(crate::source::CONFIG_FILE);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let node = crate::spec::yaml::parse(&text, &path).map_err(|d| anyhow::anyhow!("{d}"))?;
        let config = crate::spec::yaml::from_node::<Config>(&node)
            .map_err(|e| anyhow::anyhow!("{}", e.into_diag(&path)))?;
        return Ok(Some((path, config)));
    }
    Ok(None)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".plimsoll-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write to {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
