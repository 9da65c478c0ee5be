//! Signed commits: the keys the host trusts (`--allowed-signers`, git's SSH
//! `allowed_signers` format, and `--trusted-keys`, OpenPGP armored public
//! keys) and the check of a commit's signature against them.
//!
//! Pure Rust (`ssh-key` for SSH signatures, `pgp` for OpenPGP), so the
//! agent's image needs neither `ssh-keygen` nor `gpg`.
//!
//! Invariants: with a [`Trust`], a commit is accepted only when its
//! signature verifies against one of the trusted keys (an SSH signature in
//! the `git` namespace by a key `allowed_signers` lists for that namespace
//! and at the commit's time; an OpenPGP signature by a trusted primary key or
//! one of its bound subkeys, neither revoked). As `git verify-commit` does
//! with `allowed_signers`, the key is what matters, not the principal.
//! The files are read once, when the agent starts: a malformed line refuses
//! the start with the file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable as _, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails as _;
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const GIT_NAMESPACE: &str = "git";

/// Errors reading the trusted keys (at start).
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read the {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}:{line}: {reason} (format: `principals [options] key-type base64-key`, as \
         `ssh-keygen -Y verify` and gpg.ssh.allowedSignersFile read it)",
        path.display()
    )]
    AllowedSigners {
        path: PathBuf,
        line: usize,
        // Not a `#[source]`: the message holds it whole, and `{:#}` would print it twice.
        reason: Box<ParseError>,
    },
    #[error(
        "{}: {reason} (give OpenPGP public keys in ASCII armor, as `gpg --export --armor KEYID` \
         writes them)",
        path.display()
    )]
    TrustedKeys {
        path: PathBuf,
        // Not a `#[source]`, as above.
        reason: Box<ParseError>,
    },
    #[error("{} holds no key: {hint}", path.display())]
    Empty { path: PathBuf, hint: &'static str },
}

/// Why a line of an `allowed_signers` file, or a trusted keys file, does
/// not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("an empty line")]
    EmptyLine,
    #[error("no key after the principals")]
    NoKey,
    #[error("no key after the options")]
    NoKeyAfterOptions,
    #[error("option {option} needs a value")]
    NeedsValue { option: String },
    #[error(
        "cert-authority lines (SSH certificates) are not supported: list the signing keys \
         themselves"
    )]
    CertAuthority,
    #[error(
        "unknown option {option:?} (known: namespaces, valid-after, valid-before, \
         cert-authority)"
    )]
    UnknownOption { option: String },
    #[error("{field:?} is not a key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …)")]
    NotKeyType { field: String },
    #[error("no base64 key after the key type")]
    NoBase64Key,
    #[error("the {key_type} key does not parse ({source})")]
    SshKey {
        key_type: String,
        #[source]
        source: ssh_key::Error,
    },
    #[error("unclosed double quote")]
    UnclosedQuote,
    #[error("an empty option in {options:?}")]
    EmptyOption { options: String },
    #[error("unbalanced quotes in {value:?}")]
    UnbalancedQuotes { value: String },
    #[error(
        "invalid time {value:?}: use YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (a trailing Z \
         for UTC)"
    )]
    InvalidTime {
        value: String,
        #[source]
        source: Option<jiff::Error>,
    },
    #[error("an armored block has no END line")]
    NoEndLine,
    #[error("a public key block does not parse ({source})")]
    PgpBlock {
        #[source]
        source: pgp::errors::Error,
    },
    #[error("a public key does not parse ({source})")]
    PgpKey {
        #[source]
        source: pgp::errors::Error,
    },
    #[error("the key {fingerprint} has a self-signature that does not verify ({source})")]
    SelfSignature {
        fingerprint: String,
        #[source]
        source: pgp::errors::Error,
    },
    #[error("it holds a private key: give the public key only")]
    PrivateKey,
}

/// A line of an `allowed_signers` file that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    // Not a `#[source]`: the message holds it whole.
    pub reason: ParseError,
}

/// Why a commit is refused (said to the operator: what is wrong and what to do).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error(
        "commit {sha} is not signed, and this agent applies only commits signed by a key \
         of {files}: sign it (`git commit -S`, or `git commit --amend -S`) with a trusted \
         key and push"
    )]
    Unsigned { sha: String, files: String },
    #[error(
        "commit {sha} carries a signature plimsoll cannot read (neither SSH nor OpenPGP, \
         an X.509/gpgsm one perhaps): sign with an SSH key or an OpenPGP key of {files}"
    )]
    UnsupportedKind { sha: String, files: String },
    #[error("commit {sha} has a malformed SSH signature ({source}): sign it again")]
    MalformedSsh {
        sha: String,
        #[source]
        source: ssh_key::Error,
    },
    #[error(
        "commit {sha} is signed with the SSH key {fingerprint}, but no --allowed-signers file \
         is configured (only OpenPGP keys are trusted): sign with a trusted OpenPGP key, or \
         list that key in an allowed_signers file"
    )]
    NoAllowedSigners { sha: String, fingerprint: String },
    #[error(
        "commit {sha} is signed with the SSH key {fingerprint}, which {} does not list: sign \
         with an allowed key, or add that key to the file if you trust it",
        path.display()
    )]
    UnknownSshKey {
        sha: String,
        fingerprint: String,
        path: PathBuf,
    },
    #[error(
        "commit {sha} is signed with the SSH key {fingerprint}, which {}:{line} allows for \
         other namespaces than \"git\" only: add git to its namespaces=",
        path.display()
    )]
    NamespaceNotAllowed {
        sha: String,
        fingerprint: String,
        path: PathBuf,
        line: usize,
    },
    #[error(
        "commit {sha} is signed with the SSH key {fingerprint} at a committer time outside the \
         valid-after/valid-before of {}:{line}: sign with a key valid now",
        path.display()
    )]
    OutsideValidity {
        sha: String,
        fingerprint: String,
        path: PathBuf,
        line: usize,
    },
    #[error(
        "commit {sha} carries an SSH signature of namespace {namespace:?}, not \"git\": it was \
         not made by git for a commit; sign it with `git commit -S`"
    )]
    WrongNamespace { sha: String, namespace: String },
    #[error(
        "the SSH signature of commit {sha} by the key {fingerprint} does not verify ({source}): \
         the commit was changed after it was signed; do not apply it, and sign a commit you \
         checked"
    )]
    BadSshSignature {
        sha: String,
        fingerprint: String,
        #[source]
        source: ssh_key::Error,
    },
    #[error("commit {sha} has a malformed OpenPGP signature ({source}): sign it again")]
    MalformedPgp {
        sha: String,
        #[source]
        source: pgp::errors::Error,
    },
    #[error(
        "commit {sha} is signed with the OpenPGP key {issuer}, but no --trusted-keys file \
         is configured (only SSH keys are trusted): sign with an allowed SSH key, or \
         export that OpenPGP key into a trusted keys file"
    )]
    NoTrustedKeys { sha: String, issuer: String },
    #[error(
        "the OpenPGP signature of commit {sha} (key {issuer}) does not verify against \
         {}: the key is not trusted there (or revoked), or the commit was changed after it \
         was signed; sign with a trusted key, or add that public key to the file if you \
         trust it",
        path.display()
    )]
    BadPgpSignature {
        sha: String,
        issuer: String,
        path: PathBuf,
    },
}

/// One usable line of an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// 1-based line number.
    pub line: usize,
    /// Comma-separated principal patterns (informational: the key decides).
    pub principals: String,
    /// `namespaces="…"`: patterns; `None` means every namespace.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after`, Unix seconds.
    pub valid_after: Option<i64>,
    /// `valid-before`, Unix seconds.
    pub valid_before: Option<i64>,
    pub key: PublicKey,
}

/// The keys the host trusts for commit signatures.
#[derive(Clone, Default)]
pub struct Trust {
    allowed_signers: Option<(PathBuf, Vec<AllowedSigner>)>,
    trusted_keys: Option<(PathBuf, Vec<SignedPublicKey>)>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field(
                "allowed_signers",
                &self.allowed_signers.as_ref().map(|(p, s)| (p, s.len())),
            )
            .field(
                "trusted_keys",
                &self.trusted_keys.as_ref().map(|(p, k)| (p, k.len())),
            )
            .finish()
    }
}

/// What the git source gives for a commit: its signature (the `gpgsig`
/// header) if any, the data it signs, and the committer's time.
#[derive(Debug, Clone)]
pub struct CommitSignature {
    pub signature: Option<Vec<u8>>,
    pub signed_data: Vec<u8>,
    /// Unix seconds.
    pub committer_time: i64,
}

impl Trust {
    /// Reads the files; `None` when neither is given.
    pub fn load(
        allowed_signers: Option<&Path>,
        trusted_keys: Option<&Path>,
    ) -> Result<Option<Trust>, SigningError> {
        if allowed_signers.is_none() && trusted_keys.is_none() {
            return Ok(None);
        }
        let read = |what: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| SigningError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let mut trust = Trust::default();
        if let Some(path) = allowed_signers {
            let signers = parse_allowed_signers(&read("allowed signers", path)?).map_err(
                |LineError { line, reason }| SigningError::AllowedSigners {
                    path: path.to_path_buf(),
                    line,
                    reason: Box::new(reason),
                },
            )?;
            if signers.is_empty() {
                return Err(SigningError::Empty {
                    path: path.to_path_buf(),
                    hint: "add a line `you@example.com namespaces=\"git\" ssh-ed25519 AAAA…` \
                           with the public key that signs the commits",
                });
            }
            trust.allowed_signers = Some((path.to_path_buf(), signers));
        }
        if let Some(path) = trusted_keys {
            let keys = parse_trusted_keys(&read("trusted keys", path)?).map_err(|reason| {
                SigningError::TrustedKeys {
                    path: path.to_path_buf(),
                    reason: Box::new(reason),
                }
            })?;
            if keys.is_empty() {
                return Err(SigningError::Empty {
                    path: path.to_path_buf(),
                    hint: "export the signing key with `gpg --export --armor KEYID` into it",
                });
            }
            trust.trusted_keys = Some((path.to_path_buf(), keys));
        }
        Ok(Some(trust))
    }

    /// Ok with who signed (a key fingerprint and the file line, for the
    /// log), or Err with why the commit is refused (said to the operator:
    /// what is wrong and what to do).
    pub fn verify(&self, sha: &str, commit: &CommitSignature) -> Result<String, Rejected> {
        let Some(signature) = &commit.signature else {
            return Err(Rejected::Unsigned {
                sha: sha.to_string(),
                files: self.files(),
            });
        };
        let text = String::from_utf8_lossy(signature);
        if text.contains("-----BEGIN SSH SIGNATURE-----") {
            self.verify_ssh(sha, &text, commit)
        } else if text.contains("-----BEGIN PGP SIGNATURE-----") {
            self.verify_pgp(sha, &text, &commit.signed_data)
        } else {
            Err(Rejected::UnsupportedKind {
                sha: sha.to_string(),
                files: self.files(),
            })
        }
    }

    fn files(&self) -> String {
        let names: Vec<String> = [
            self.allowed_signers.as_ref().map(|(p, _)| p),
            self.trusted_keys.as_ref().map(|(p, _)| p),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
        names.join(" or ")
    }

    fn verify_ssh(
        &self,
        sha: &str,
        text: &str,
        commit: &CommitSignature,
    ) -> Result<String, Rejected> {
        let sig = SshSig::from_pem(text.trim()).map_err(|source| Rejected::MalformedSsh {
            sha: sha.to_string(),
            source,
        })?;
        let fp = sig.public_key().fingerprint(HashAlg::Sha256);
        let Some((path, signers)) = &self.allowed_signers else {
            return Err(Rejected::NoAllowedSigners {
                sha: sha.to_string(),
                fingerprint: fp.to_string(),
            });
        };
        let listed: Vec<&AllowedSigner> = signers
            .iter()
            .filter(|s| s.key.key_data() == sig.public_key())
            .collect();
        if listed.is_empty() {
            return Err(Rejected::UnknownSshKey {
                sha: sha.to_string(),
                fingerprint: fp.to_string(),
                path: path.clone(),
            });
        }
        let usable: Vec<&&AllowedSigner> = listed
            .iter()
            .filter(|s| s.allows_namespace(GIT_NAMESPACE))
            .collect();
        let Some(first) = usable.first() else {
            return Err(Rejected::NamespaceNotAllowed {
                sha: sha.to_string(),
                fingerprint: fp.to_string(),
                path: path.clone(),
                line: listed[0].line,
            });
        };
        let Some(signer) = usable.iter().find(|s| s.valid_at(commit.committer_time)) else {
            return Err(Rejected::OutsideValidity {
                sha: sha.to_string(),
                fingerprint: fp.to_string(),
                path: path.clone(),
                line: first.line,
            });
        };
        if sig.namespace() != GIT_NAMESPACE {
            return Err(Rejected::WrongNamespace {
                sha: sha.to_string(),
                namespace: sig.namespace().to_string(),
            });
        }
        signer
            .key
            .verify(GIT_NAMESPACE, &commit.signed_data, &sig)
            .map_err(|source| Rejected::BadSshSignature {
                sha: sha.to_string(),
                fingerprint: fp.to_string(),
                source,
            })?;
        Ok(format!("SSH key {fp} ({}:{})", path.display(), signer.line))
    }

    fn verify_pgp(&self, sha: &str, text: &str, data: &[u8]) -> Result<String, Rejected> {
        let sig = DetachedSignature::from_string(text)
            .map(|(s, _)| s)
            .map_err(|source| Rejected::MalformedPgp {
                sha: sha.to_string(),
                source,
            })?;
        let issuers: Vec<String> = sig
            .signature
            .issuer_fingerprint()
            .iter()
            .map(|f| hex::encode_upper(f.as_bytes()))
            .chain(
                sig.signature
                    .issuer_key_id()
                    .iter()
                    .map(|k| hex::encode_upper(k.as_ref())),
            )
            .collect();
        let issuer = issuers
            .first()
            .cloned()
            .unwrap_or_else(|| "an unnamed key".into());
        let Some((path, keys)) = &self.trusted_keys else {
            return Err(Rejected::NoTrustedKeys {
                sha: sha.to_string(),
                issuer,
            });
        };
        for key in keys {
            if key.details.revocation_signatures.is_empty() && sig.verify(key, data).is_ok() {
                return Ok(format!("OpenPGP key {issuer} ({})", path.display()));
            }
            for sub in &key.public_subkeys {
                if sub.verify_bindings(&key.primary_key).is_ok() && sig.verify(sub, data).is_ok() {
                    return Ok(format!("OpenPGP key {issuer} ({})", path.display()));
                }
            }
        }
        Err(Rejected::BadPgpSignature {
            sha: sha.to_string(),
            issuer,
            path: path.clone(),
        })
    }
}

impl AllowedSigner {
    fn allows_namespace(&self, ns: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|list| pattern_list_match(list, ns))
    }

    fn valid_at(&self, time: i64) -> bool {
        self.valid_after.is_none_or(|t| time >= t) && self.valid_before.is_none_or(|t| time <= t)
    }
}

/// Parses an OpenSSH `allowed_signers` file; Err names the line.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push(parse_signer_line(trimmed).map_err(|reason| LineError { line, reason })?);
        if let Some(s) = out.last_mut() {
            s.line = line;
        }
    }
    Ok(out)
}

fn parse_signer_line(line: &str) -> Result<AllowedSigner, ParseError> {
    let fields = split_fields(line)?;
    let mut it = fields.iter().map(String::as_str);
    let principals = it.next().ok_or(ParseError::EmptyLine)?.to_string();
    let mut next = it.next().ok_or(ParseError::NoKey)?;
    let mut namespaces = None;
    let (mut valid_after, mut valid_before) = (None, None);
    if !is_key_type(next) {
        for option in split_options(next)? {
            let (name, value) = match option.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v)?)),
                None => (option.to_ascii_lowercase(), None),
            };
            let value = || {
                value.clone().ok_or_else(|| ParseError::NeedsValue {
                    option: name.clone(),
                })
            };
            match name.as_str() {
                "cert-authority" => return Err(ParseError::CertAuthority),
                "namespaces" => {
                    namespaces = Some(value()?.split(',').map(|s| s.trim().to_string()).collect());
                }
                "valid-after" => valid_after = Some(parse_ssh_time(&value()?)?),
                "valid-before" => valid_before = Some(parse_ssh_time(&value()?)?),
                other => {
                    return Err(ParseError::UnknownOption {
                        option: other.to_string(),
                    });
                }
            }
        }
        next = it.next().ok_or(ParseError::NoKeyAfterOptions)?;
    }
    if !is_key_type(next) {
        return Err(ParseError::NotKeyType {
            field: next.to_string(),
        });
    }
    let b64 = it.next().ok_or(ParseError::NoBase64Key)?;
    let key =
        PublicKey::from_openssh(&format!("{next} {b64}")).map_err(|source| ParseError::SshKey {
            key_type: next.to_string(),
            source,
        })?;
    Ok(AllowedSigner {
        line: 0,
        principals,
        namespaces,
        valid_after,
        valid_before,
        key,
    })
}

fn is_key_type(s: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| s.starts_with(p))
}

/// Whitespace-separated fields; double quotes group (and are kept).
fn split_fields(line: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(ParseError::UnclosedQuote);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Comma-separated options; commas inside double quotes stay.
fn split_options(s: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    if out.iter().any(String::is_empty) {
        return Err(ParseError::EmptyOption {
            options: s.to_string(),
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, ParseError> {
    match v.strip_prefix('"') {
        Some(rest) => {
            rest.strip_suffix('"')
                .map(str::to_string)
                .ok_or_else(|| ParseError::UnbalancedQuotes {
                    value: v.to_string(),
                })
        }
        None => Ok(v.to_string()),
    }
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as ssh-keygen reads valid-after/valid-before:
/// UTC with a trailing `Z`, the system's time zone without.
fn parse_ssh_time(s: &str) -> Result<i64, ParseError> {
    let bad = |source: Option<jiff::Error>| ParseError::InvalidTime {
        value: s.to_string(),
        source,
    };
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(None));
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).map_or(Ok(0), str::parse::<i16>);
    let (y, mo, d) = (num(0..4), num(4..6), num(6..8));
    let (h, mi, sec) = (num(8..10), num(10..12), num(12..14));
    let (Ok(y), Ok(mo), Ok(d), Ok(h), Ok(mi), Ok(sec)) = (y, mo, d, h, mi, sec) else {
        return Err(bad(None));
    };
    let dt = jiff::civil::DateTime::new(y, mo as i8, d as i8, h as i8, mi as i8, sec as i8, 0)
        .map_err(|e| bad(Some(e)))?;
    let tz = if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::system()
    };
    tz.to_timestamp(dt)
        .map(|t| t.as_second())
        .map_err(|e| bad(Some(e)))
}

/// OpenSSH's `match_pattern_list` for a list already split: `*`/`?`
/// globbing, `!negation` wins.
fn pattern_list_match(patterns: &[String], name: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        if super::git::wildcard_match(p.as_bytes(), name.as_bytes()) {
            if neg {
                return false;
            }
            hit = true;
        }
    }
    hit
}

/// Every public key of every armored block of the file.
fn parse_trusted_keys(text: &str) -> Result<Vec<SignedPublicKey>, ParseError> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block
            .find("-----END PGP PUBLIC KEY BLOCK-----")
            .ok_or(ParseError::NoEndLine)?;
        let end = end + "-----END PGP PUBLIC KEY BLOCK-----".len();
        let (parsed, _) = SignedPublicKey::from_string_many(&block[..end])
            .map_err(|source| ParseError::PgpBlock { source })?;
        for key in parsed {
            let key = key.map_err(|source| ParseError::PgpKey { source })?;
            key.verify_bindings()
                .map_err(|source| ParseError::SelfSignature {
                    fingerprint: hex::encode_upper(key.primary_key.fingerprint().as_bytes()),
                    source,
                })?;
            keys.push(key);
        }
        rest = &block[end..];
    }
    if keys.is_empty() && text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return Err(ParseError::PrivateKey);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPcSfbJ6RT+DAhG3rlcbpzlTbFu8A58WGoVl+aRD3qQc";

    #[test]
    fn allowed_signers_lines_parse() {
        let text = format!(
            "# comment\n\n\
             alice@example.com {ED} alice's laptop\n\
             bob@example.com,*@ops.example.com namespaces=\"git,file\",valid-after=\"20240101\",valid-before=20300101Z {ED}\n\
             \"carol@example.com\" NAMESPACES=\"!git,*\" {ED}\n"
        );
        let s = parse_allowed_signers(&text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].line, s[0].principals.as_str()),
            (3, "alice@example.com")
        );
        assert_eq!(s[0].namespaces, None);
        assert!(s[0].allows_namespace("git") && s[0].valid_at(0));
        assert_eq!(s[1].line, 4);
        assert_eq!(
            s[1].namespaces.as_deref(),
            Some(&["git".to_string(), "file".to_string()][..])
        );
        assert_eq!(s[1].valid_before, Some(1_893_456_000));
        assert!(s[1].allows_namespace("git") && !s[1].allows_namespace("email"));
        assert!(s[1].valid_at(1_800_000_000) && !s[1].valid_at(1_900_000_000));
        assert!(!s[1].valid_at(1_000_000_000));
        assert!(!s[2].allows_namespace("git") && s[2].allows_namespace("file"));
    }

    #[test]
    fn allowed_signers_errors_name_the_line() {
        for (text, want) in [
            (format!("a cert-authority {ED}"), "cert-authority"),
            (format!("a nope=\"x\" {ED}"), "unknown option"),
            (format!("a valid-after=\"2024\" {ED}"), "invalid time"),
            ("a ssh-ed25519 !!!notbase64".to_string(), "does not parse"),
            ("a".to_string(), "no key"),
            ("a namespaces=\"git\" c".to_string(), "not a key type"),
            ("a b c".to_string(), "unknown option \"b\""),
            (format!("a \"namespaces=git {ED}"), "unclosed"),
        ] {
            let text = format!("# first\n{text}\n");
            let LineError { line, reason } = parse_allowed_signers(&text).unwrap_err();
            let reason = reason.to_string();
            assert_eq!(line, 2, "{text}");
            assert!(reason.contains(want), "{text}: {reason}");
        }
    }

    #[test]
    fn trust_load_refuses_empty_and_private_files() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("allowed");
        std::fs::write(&empty, "# nobody\n").unwrap();
        let err = Trust::load(Some(&empty), None).unwrap_err().to_string();
        assert!(err.contains("holds no key"), "{err}");
        let private = tmp.path().join("keys.asc");
        std::fs::write(
            &private,
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n-----END PGP PRIVATE KEY BLOCK-----\n",
        )
        .unwrap();
        let err = Trust::load(None, Some(&private)).unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(Trust::load(None, None).unwrap().is_none());
        let missing = tmp.path().join("missing");
        let err = Trust::load(Some(&missing), None).unwrap_err().to_string();
        assert!(
            err.contains("cannot read the allowed signers file"),
            "{err}"
        );
    }

    #[test]
    fn unsigned_and_unreadable_signatures_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("allowed");
        std::fs::write(&file, format!("a {ED}\n")).unwrap();
        let trust = Trust::load(Some(&file), None).unwrap().unwrap();
        let mut commit = CommitSignature {
            signature: None,
            signed_data: b"tree x\n".to_vec(),
            committer_time: 0,
        };
        let err = trust.verify("abc123", &commit).unwrap_err().to_string();
        assert!(err.contains("commit abc123 is not signed"), "{err}");
        commit.signature = Some(b"-----BEGIN SIGNED MESSAGE-----".to_vec());
        let err = trust.verify("abc123", &commit).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        commit.signature =
            Some(b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n".to_vec());
        let err = trust.verify("abc123", &commit).unwrap_err().to_string();
        assert!(
            err.contains("OpenPGP") || err.contains("malformed"),
            "{err}"
        );
    }

    #[test]
    fn ssh_times_parse() {
        assert_eq!(parse_ssh_time("19700101Z").unwrap(), 0);
        assert_eq!(parse_ssh_time("197001010001Z").unwrap(), 60);
        assert_eq!(parse_ssh_time("19700101000001Z").unwrap(), 1);
        assert!(parse_ssh_time("1970010").is_err());
        assert!(parse_ssh_time("19701301Z").is_err());
    }
}
