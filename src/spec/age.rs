//! age-encrypted files of the desired state (`*.age`): the host's identities,
//! decrypting while loading, encrypting for `plimsoll secret`.
//!
//! A file whose name ends in `.age` is decrypted in memory when `spec::load`
//! reads it: a stack's `.env.age` and an `env_file:` entry are parsed as
//! dotenv files (every value secret), a `file:` of a top-level secret or config becomes its content
//! (copied into the container, never bind-mounted). Only X25519 identities
//! (`AGE-SECRET-KEY-1…`, as `age-keygen` and `plimsoll secret keygen` write
//! them) are supported; armored and binary files are both read.
//!
//! SOPS files are recognised and rejected (see [`sops_marker`]): no
//! maintained Rust crate decrypts them soundly in every format SOPS writes.
//!
//! Invariant: pure; decrypted bytes are returned to the caller and never
//! written anywhere; no error message or `Debug` output holds key material or
//! plaintext.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use age::x25519;

/// A public key to encrypt to (`age1…`).
pub use ::age::x25519::Recipient;

/// The file name suffix of an age-encrypted file.
pub const SUFFIX: &str = ".age";

/// What to do when no identity can decrypt: the hint of load errors.
pub const IDENTITY_HINT: &str = "give this host's age identity with --age-identity FILE or PLIMSOLL_AGE_IDENTITY, or put it at <state-dir>/age.key (`plimsoll secret keygen` or `age-keygen -o` makes one)";

/// Whether `path` names an age-encrypted file.
pub fn is_encrypted(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(SUFFIX) && n.len() > SUFFIX.len())
}

/// The identities of a host, read from an identity file.
#[derive(Clone)]
pub struct Identities {
    keys: Vec<x25519::Identity>,
    /// The identity file (for messages).
    file: PathBuf,
}

impl fmt::Debug for Identities {
    // Never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("file", &self.file)
            .field("recipients", &self.recipients_text())
            .finish()
    }
}

impl PartialEq for Identities {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.recipients_text() == other.recipients_text()
    }
}

impl Eq for Identities {}

/// An identity file that could not be used. Never quotes the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{file}:{line}: not an age X25519 identity (expected a line starting with AGE-SECRET-KEY-1, or a # comment)"
    )]
    Invalid { file: PathBuf, line: usize },
    #[error("{file}: holds no age identity (expected a line starting with AGE-SECRET-KEY-1)")]
    Empty { file: PathBuf },
}

impl Identities {
    /// Parses an identity file as `age-keygen` writes it: one
    /// `AGE-SECRET-KEY-1…` per line, `#` comments and blank lines ignored.
    pub fn parse(text: &str, file: &Path) -> Result<Identities, IdentityError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = x25519::Identity::from_str(line).map_err(|_| IdentityError::Invalid {
                file: file.to_path_buf(),
                line: i + 1,
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(IdentityError::Empty {
                file: file.to_path_buf(),
            });
        }
        Ok(Identities {
            keys,
            file: file.to_path_buf(),
        })
    }

    /// One new identity (`plimsoll secret keygen`, tests).
    pub fn generate(file: &Path) -> Identities {
        Identities {
            keys: vec![x25519::Identity::generate()],
            file: file.to_path_buf(),
        }
    }

    /// The identity file's text, as `age-keygen` writes it. Holds the secret key:
    /// write it to a 0600 file, never to a log.
    pub fn to_file_text(&self) -> String {
        let mut out = String::new();
        for k in &self.keys {
            out.push_str(&format!(
                "# public key: {}\n{}\n",
                k.to_public(),
                k.to_string().expose_secret()
            ));
        }
        out
    }

    /// The identity file these came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The public recipients (`age1…`) of these identities.
    pub fn recipients(&self) -> Vec<x25519::Recipient> {
        self.keys.iter().map(x25519::Identity::to_public).collect()
    }

    fn recipients_text(&self) -> Vec<String> {
        self.recipients().iter().map(ToString::to_string).collect()
    }

    /// Decrypts an age file (armored or binary).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let reader = age::armor::ArmoredReader::new(ciphertext);
        // A header that does not parse: not an age file (or not one any more).
        let decryptor = age::Decryptor::new_buffered(reader).map_err(|_| DecryptError::NotAge)?;
        if decryptor.is_scrypt() {
            return Err(DecryptError::Passphrase);
        }
        let mut reader = decryptor
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|_| DecryptError::Corrupt)?;
        Ok(out)
    }

    fn error(&self, e: age::DecryptError) -> DecryptError {
        match e {
            age::DecryptError::NoMatchingKeys => DecryptError::NotForThisHost {
                identity: self.file.clone(),
                recipients: self.recipients_text().join(", "),
            },
            _ => DecryptError::Corrupt,
        }
    }
}

/// Why an age file could not be decrypted. Never holds plaintext or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("no age identity is configured to decrypt it")]
    NoIdentity,
    #[error(
        "the age identity {} cannot decrypt it: it was not encrypted to {recipients}", identity.display()
    )]
    NotForThisHost {
        identity: PathBuf,
        recipients: String,
    },
    #[error("it is encrypted with a passphrase; plimsoll decrypts with identity files only")]
    Passphrase,
    #[error("it is not an age file (a name ending in .age means age-encrypted)")]
    NotAge,
    #[error("the age file is damaged or was modified (authentication failed)")]
    Corrupt,
    #[error("its decrypted content is not UTF-8 text")]
    NotText,
}

impl DecryptError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            DecryptError::NoIdentity => IDENTITY_HINT.into(),
            DecryptError::NotForThisHost { recipients, .. } => format!(
                "re-encrypt it to this host: `plimsoll secret encrypt -r {recipients} FILE` (or add the recipient to secrets.age_recipients in plimsoll.yaml), or use the identity it was encrypted to"
            ),
            DecryptError::Passphrase => {
                "re-encrypt it to recipients: `plimsoll secret encrypt -r age1… FILE`".into()
            }
            DecryptError::NotAge => "encrypt it with `plimsoll secret encrypt`, or rename the file if it is not meant to be encrypted".into(),
            DecryptError::Corrupt => "restore the file from git, or encrypt it again".into(),
            DecryptError::NotText => "encrypted secrets and env files must be UTF-8 text".into(),
        }
    }
}

/// Decrypts `ciphertext` with `identities` (none configured is an error) into UTF-8 text.
pub fn decrypt_text(
    identities: Option<&Identities>,
    ciphertext: &[u8],
) -> Result<String, DecryptError> {
    let ids = identities.ok_or(DecryptError::NoIdentity)?;
    let bytes = ids.decrypt(ciphertext)?;
    String::from_utf8(bytes).map_err(|_| DecryptError::NotText)
}

/// A recipient that is not an age X25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{item}` is not an age X25519 recipient (expected age1…)")]
pub struct RecipientError {
    /// The item as written (a public key is not secret).
    pub item: String,
}

/// Parses recipients (`age1…`), one per item; `#` comments and blank lines of
/// a recipients file are skipped by the caller or here.
pub fn parse_recipients<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<x25519::Recipient>, RecipientError> {
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        out.push(
            x25519::Recipient::from_str(item).map_err(|_| RecipientError {
                item: item.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// Why encrypting failed; its message is the age library's.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// No recipients, or recipients that cannot be mixed.
    #[error(transparent)]
    Recipients(#[from] age::EncryptError),
    /// Writing the armored output.
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

/// Encrypts `plaintext` to `recipients`, ASCII-armored (text, so it sits well in git).
pub fn encrypt(
    recipients: &[x25519::Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))?;
    let mut out = Vec::new();
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut writer = encryptor.wrap_output(armored)?;
    writer.write_all(plaintext)?;
    writer.finish().and_then(|a| a.finish())?;
    Ok(out)
}

/// Why a file looks SOPS-encrypted, if it does: a `*.sops.*` name, or
/// SOPS's encrypted-value marker in the content. plimsoll rejects these
/// files instead of passing ciphertext on as values.
pub fn sops_marker(path: &Path, content: &[u8]) -> Option<&'static str> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains(".sops.") || name.ends_with(".sops") {
        return Some("its name marks it as a SOPS file");
    }
    let marker = b"ENC[AES256_GCM,data:";
    content
        .windows(marker.len())
        .any(|w| w == marker)
        .then_some("it holds SOPS-encrypted values (ENC[AES256_GCM,…])")
}

/// The hint for a SOPS file.
pub const SOPS_HINT: &str = "plimsoll does not decrypt SOPS files; convert it to age: `sops -d FILE | plimsoll secret encrypt -o NAME.age -` and point the reference at NAME.age";

#[cfg(test)]
mod tests {
    use super::*;

    fn check_roundtrip(armored: bool) {
        let ids = Identities::generate(Path::new("k"));
        let plain = b"DB_PASSWORD=canary-1234\n";
        let bytes = if armored {
            encrypt(&ids.recipients(), plain).unwrap()
        } else {
            age::encrypt(&ids.recipients()[0], plain).unwrap()
        };
        assert_eq!(
            bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            armored
        );
        assert_eq!(ids.decrypt(&bytes).unwrap(), plain);
    }

    #[test]
    fn age_roundtrip_armored_and_binary() {
        check_roundtrip(true);
        check_roundtrip(false);
    }

    #[test]
    fn age_identity_file_parses_and_errors_name_the_line_only() {
        let ids = Identities::generate(Path::new("a.key"));
        let text = format!("# created by a test\n\n{}", ids.to_file_text());
        let again = Identities::parse(&text, Path::new("a.key")).unwrap();
        assert_eq!(again, ids);
        assert!(!format!("{again:?}").contains("AGE-SECRET-KEY"));

        let secret = ids.to_file_text();
        let broken = format!("{}x\n", secret.trim_end());
        let err = Identities::parse(&broken, Path::new("a.key")).unwrap_err();
        assert_eq!(
            err,
            IdentityError::Invalid {
                file: "a.key".into(),
                line: 2
            }
        );
        let key_line = secret.lines().nth(1).unwrap();
        assert!(!err.to_string().contains(key_line));
        assert_eq!(
            Identities::parse("# nothing\n", Path::new("a.key")).unwrap_err(),
            IdentityError::Empty {
                file: "a.key".into()
            }
        );
    }

    #[test]
    fn age_decrypt_errors() {
        let ids = Identities::generate(Path::new("host.key"));
        let other = Identities::generate(Path::new("other.key"));
        let bytes = encrypt(&other.recipients(), b"canary-secret").unwrap();
        let err = ids.decrypt(&bytes).unwrap_err();
        assert!(matches!(err, DecryptError::NotForThisHost { .. }), "{err}");
        assert!(err.to_string().contains(&ids.recipients()[0].to_string()));
        assert_eq!(
            ids.decrypt(b"plain text").unwrap_err(),
            DecryptError::NotAge
        );
        let mut damaged = age::encrypt(&ids.recipients()[0], b"canary-secret").unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(ids.decrypt(&damaged).unwrap_err(), DecryptError::Corrupt);
        assert_eq!(
            decrypt_text(None, &bytes).unwrap_err(),
            DecryptError::NoIdentity
        );
        let binary = encrypt(&ids.recipients(), &[0xff, 0xfe]).unwrap();
        assert_eq!(
            decrypt_text(Some(&ids), &binary).unwrap_err(),
            DecryptError::NotText
        );
    }

    #[test]
    fn age_names_and_sops_markers() {
        assert!(is_encrypted(Path::new("stacks/a/secrets.env.age")));
        assert!(!is_encrypted(Path::new("stacks/a/.age")));
        assert!(!is_encrypted(Path::new("stacks/a/age")));
        assert!(sops_marker(Path::new("db.sops.yaml"), b"").is_some());
        assert!(
            sops_marker(
                Path::new("x.env"),
                b"A=ENC[AES256_GCM,data:IA46,iv:x,tag:y,type:str]"
            )
            .is_some()
        );
        assert!(sops_marker(Path::new("x.env"), b"A=b").is_none());
        let recipients = parse_recipients(["# team", "", "not-a-key"]);
        assert!(recipients.unwrap_err().to_string().contains("not-a-key"));
    }
}
