//! OpenSSH known_hosts files: parsing (plain and hashed names, `[host]:port`,
//! wildcards, negations, `@revoked`), the verdict for a host's key, and the
//! fingerprints and hashes that needs (SHA-1 and HMAC-SHA1 written here).

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    None,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hosts {
    /// Comma-separated patterns (`*`, `?`, `!negation`, `[host]:port`).
    Patterns(String),
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostEntry {
    /// 1-based line number.
    pub(super) line: usize,
    pub(super) marker: Marker,
    pub(super) hosts: Hosts,
    pub(super) key_type: String,
    /// The SSH wire-format key blob (the base64 field, decoded).
    pub(super) key: Vec<u8>,
}

/// Parses an OpenSSH known_hosts file. Comments, blank and malformed lines
/// and `@cert-authority` lines (host certificates are not supported) are
/// skipped, as OpenSSH skips what it cannot use.
pub(super) fn parse_known_hosts(text: &str) -> Vec<HostEntry> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace().peekable();
        let marker = match fields.peek() {
            Some(&"@revoked") => {
                fields.next();
                Marker::Revoked
            }
            Some(m) if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        let (Some(hosts), Some(key_type), Some(key)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(key) = b64.decode(key) else { continue };
        let hosts = if let Some(rest) = hosts.strip_prefix("|1|") {
            let Some((salt, hash)) = rest.split_once('|') else {
                continue;
            };
            let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
                continue;
            };
            Hosts::Hashed { salt, hash }
        } else {
            Hosts::Patterns(hosts.to_ascii_lowercase())
        };
        out.push(HostEntry {
            line: i + 1,
            marker,
            hosts,
            key_type: key_type.to_string(),
            key,
        });
    }
    out
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub(super) fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

impl HostEntry {
    pub(super) fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()).as_slice() == hash,
            Hosts::Patterns(list) => {
                let mut hit = false;
                for pattern in list.split(',') {
                    let (negated, pattern) = match pattern.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, pattern),
                    };
                    if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                        if negated {
                            return false;
                        }
                        hit = true;
                    }
                }
                hit
            }
        }
    }
}

/// `*` and `?` globbing, as in OpenSSH's `match_pattern`.
pub(in crate::agent) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Trusted,
    Revoked {
        line: usize,
    },
    /// The host is listed, but not with this key: the lines, and the key
    /// types they list.
    Changed {
        lines: Vec<usize>,
        types: Vec<String>,
    },
    Unknown,
}

pub(super) fn check_host_key(entries: &[HostEntry], host: &str, port: u16, key: &[u8]) -> Verdict {
    let name = known_hosts_name(host, port);
    let matching: Vec<&HostEntry> = entries.iter().filter(|e| e.matches(&name)).collect();
    if let Some(e) = matching
        .iter()
        .find(|e| e.marker == Marker::Revoked && e.key == key)
    {
        return Verdict::Revoked { line: e.line };
    }
    let listed: Vec<&&HostEntry> = matching
        .iter()
        .filter(|e| e.marker == Marker::None)
        .collect();
    if listed.iter().any(|e| e.key == key) {
        return Verdict::Trusted;
    }
    if listed.is_empty() {
        return Verdict::Unknown;
    }
    let mut types: Vec<String> = listed.iter().map(|e| e.key_type.clone()).collect();
    types.dedup();
    Verdict::Changed {
        lines: listed.iter().map(|e| e.line).collect(),
        types,
    }
}

/// The key type named at the start of an SSH key blob (`ssh-ed25519`, …).
pub(super) fn key_type_name(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's
/// SHA-256.
pub(super) fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_slice())
    )
}

/// SHA-1 (FIPS 180-4), only for HMAC-SHA1 of hashed known_hosts names (no
/// SHA-1 crate is a dependency; this is the one use).
pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, v) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104).
pub(super) fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}
