//! The mount keys of a service: `volumes` (short and long syntax), `tmpfs`,
//! `volumes_from`, and the service's `secrets` and `configs`.

use super::{Cx, SWARM, join};
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    /// Loads a mount key. `false` for a key of another group.
    pub(super) fn mount_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "configs" => svc.configs = self.file_refs(n, p),
            "secrets" => {
                svc.secrets = self.file_refs(n, p);
                // Compose mounts a secret at /run/secrets/<source> unless told otherwise.
                for r in &mut svc.secrets {
                    r.target
                        .get_or_insert_with(|| format!("/run/secrets/{}", r.source));
                }
            }
            "tmpfs" => svc.tmpfs = self.string_or_list(n, p),
            "volumes" => svc.volumes = self.mounts(n, p),
            "volumes_from" => svc.volumes_from = self.volumes_from(n, p),
            _ => return false,
        }
        true
    }

    fn mounts(&mut self, node: &Node, path: &str) -> Vec<Mount> {
        self.long_or_short(
            node,
            path,
            "a list of volumes",
            |this, item, p| {
                let m = this.long_mount(item, p)?;
                Some(this.mark_volume(path, item, m))
            },
            |this, item, p, s| match parse_short_volume(s) {
                Ok(mut m) => {
                    if m.kind == MountType::Bind {
                        m.source = m.source.map(|s| this.host_path(&s));
                    }
                    Some(this.mark_volume(path, item, m))
                }
                Err(why) => {
                    this.err(item.mark, p, format!("invalid volume `{s}`: {why}"))
                        .hint("write [SOURCE:]TARGET[:ro|rw], e.g. data:/var/lib/data or ./conf:/etc/app:ro");
                    None
                }
            },
        )
    }

    /// Notes where a mount of a named volume stands, for diagnostics about that volume.
    fn mark_volume(&mut self, path: &str, item: &Node, m: Mount) -> Mount {
        if let Some(src) = &m.source
            && m.kind == MountType::Volume
        {
            self.marks.insert(format!("{path}.{src}"), item.mark);
        }
        m
    }

    fn long_mount(&mut self, node: &Node, path: &str) -> Option<Mount> {
        let known = [
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ];
        let (fields, _) = self.fields(
            node,
            path,
            &known,
            &[
                (
                    "image",
                    "an image mount needs engine API 1.47 (Docker 28); plimsoll supports engines from API 1.41",
                ),
                ("cluster", SWARM),
                ("npipe", "a Windows-only setting"),
            ],
        );
        let mut kind = None;
        let mut m = Mount {
            kind: MountType::Volume,
            source: None,
            target: String::new(),
            read_only: false,
            bind: None,
            volume: None,
            tmpfs: None,
        };
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "type" => kind = Some(self.mount_type(n, &p)?),
                "source" => m.source = self.opt_string(n, &p).filter(|s| !s.is_empty()),
                "target" => m.target = self.string(n, &p).unwrap_or_default(),
                "read_only" => m.read_only = self.boolean(n, &p).unwrap_or(false),
                "consistency" => {}
                "bind" => m.bind = Some(self.bind_options(n, &p)),
                "volume" => m.volume = Some(self.volume_options(n, &p)),
                "tmpfs" => m.tmpfs = Some(self.tmpfs_options(n, &p)),
                _ => unreachable!(),
            }
        }
        let Some(kind) = kind else {
            self.err(node.mark, path, "a volume in long form needs `type:`")
                .hint("use type: volume, bind or tmpfs");
            return None;
        };
        m.kind = kind;
        self.checked_mount(node, path, m)
    }

    /// A long-form mount's `type:`; `None` (reported) for a type plimsoll
    /// does not mount.
    fn mount_type(&mut self, n: &Node, p: &str) -> Option<MountType> {
        let t = self.string(n, p).unwrap_or_default();
        match t.as_str() {
            "volume" => Some(MountType::Volume),
            "bind" => Some(MountType::Bind),
            "tmpfs" => Some(MountType::Tmpfs),
            _ => {
                let why = match t.as_str() {
                    "image" => {
                        ": an image mount needs engine API 1.47 (Docker 28); plimsoll supports engines from API 1.41"
                    }
                    "npipe" => ": a Windows-only mount type",
                    "cluster" => ": a Swarm-only mount type",
                    _ => "",
                };
                self.err(n.mark, p, format!("unsupported mount type `{t}`{why}"))
                    .hint("use volume, bind or tmpfs");
                None
            }
        }
    }

    /// `bind:` of a long-form mount.
    fn bind_options(&mut self, n: &Node, p: &str) -> BindOptions {
        let (bf, _) = self.fields(n, p, &["propagation", "create_host_path", "selinux"], &[]);
        // The long syntax does not imply create_host_path (Compose's rule).
        let mut b = BindOptions::default();
        for (k, v, _) in bf {
            let kp = join(p, k);
            match k {
                "propagation" => b.propagation = self.opt_string(v, &kp),
                "create_host_path" => b.create_host_path = self.boolean(v, &kp).unwrap_or(false),
                "selinux" => b.selinux = self.opt_string(v, &kp),
                _ => unreachable!(),
            }
        }
        b
    }

    /// `volume:` of a long-form mount.
    fn volume_options(&mut self, n: &Node, p: &str) -> VolumeOptions {
        let (vf, _) = self.fields(n, p, &["nocopy", "subpath"], &[]);
        let mut o = VolumeOptions::default();
        for (k, v, _) in vf {
            let kp = join(p, k);
            match k {
                "nocopy" => o.nocopy = self.boolean(v, &kp).unwrap_or(false),
                "subpath" => o.subpath = self.opt_string(v, &kp),
                _ => unreachable!(),
            }
        }
        o
    }

    /// `tmpfs:` of a long-form mount.
    fn tmpfs_options(&mut self, n: &Node, p: &str) -> TmpfsOptions {
        let (tf, _) = self.fields(n, p, &["size", "mode"], &[]);
        let mut o = TmpfsOptions::default();
        for (k, v, _) in tf {
            let kp = join(p, k);
            match k {
                "size" => o.size = self.bytes(v, &kp),
                "mode" => o.mode = self.int(v, &kp).and_then(|x| u32::try_from(x).ok()),
                _ => unreachable!(),
            }
        }
        o
    }

    /// A long-form mount with a `target:` that is absolute and, for a bind
    /// mount, a `source:` (resolved against the stack directory).
    fn checked_mount(&mut self, node: &Node, path: &str, mut m: Mount) -> Option<Mount> {
        if m.target.is_empty() {
            self.err(node.mark, path, "a volume in long form needs `target:`")
                .hint("add `target:` with the absolute path in the container");
            return None;
        }
        if !m.target.starts_with('/') {
            let mark = node.get("target").map_or(node.mark, |t| t.mark);
            let target = m.target.clone();
            self.err(
                mark,
                &join(path, "target"),
                format!("the container path `{target}` must be absolute"),
            )
            .hint(format!(
                "write the path from the container's root, e.g. `/{target}`"
            ));
            return None;
        }
        if m.kind == MountType::Bind {
            match &m.source {
                Some(s) => m.source = Some(self.host_path(s)),
                None => {
                    self.err(node.mark, path, "a bind mount needs `source:`")
                        .hint("add `source:` with the host path, e.g. `source: ./conf`");
                    return None;
                }
            }
        }
        Some(m)
    }

    /// `volumes_from`: `SERVICE` or `container:NAME`, each optionally `:ro` or `:rw`.
    fn volumes_from(&mut self, node: &Node, path: &str) -> Vec<String> {
        let list = self.string_list(node, path);
        self.check_entries(
            node,
            path,
            &list,
            |v| {
                let rest = v.strip_prefix("container:").unwrap_or(v);
                let (name, mode) = match rest.split_once(':') {
                    Some((n, m)) => (n, Some(m)),
                    None => (rest, None),
                };
                !name.is_empty() && mode.is_none_or(|m| m == "ro" || m == "rw")
            },
            "volumes_from",
            "write SERVICE or container:NAME, optionally followed by :ro or :rw",
        );
        list
    }

    fn file_refs(&mut self, node: &Node, path: &str) -> Vec<FileRef> {
        self.long_or_short(
            node,
            path,
            "a list",
            |this, item, p| {
                let r = this.long_file_ref(item, p)?;
                this.marks.insert(format!("{path}.{}", r.source), item.mark);
                Some(r)
            },
            |this, item, _, s| {
                this.marks.insert(format!("{path}.{s}"), item.mark);
                Some(FileRef::named(s))
            },
        )
    }

    fn long_file_ref(&mut self, node: &Node, path: &str) -> Option<FileRef> {
        let mut r = FileRef::named("");
        let (fields, _) = self.fields(node, path, &["source", "target", "uid", "gid", "mode"], &[]);
        for (f, n, _) in fields {
            let fp = join(path, f);
            match f {
                "source" => r.source = self.string(n, &fp).unwrap_or_default(),
                "target" => r.target = self.opt_string(n, &fp),
                "uid" => r.uid = self.opt_string(n, &fp),
                "gid" => r.gid = self.opt_string(n, &fp),
                "mode" => {
                    r.mode = match &n.value {
                        Value::Int(m) => u32::try_from(*m).ok(),
                        Value::Str(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
                        _ => None,
                    };
                    if r.mode.is_none() {
                        self.err(n.mark, &fp, "invalid file mode")
                            .hint("write an octal mode such as 0440");
                    }
                }
                _ => unreachable!(),
            }
        }
        if r.source.is_empty() {
            self.err(node.mark, path, "needs `source:`")
                .hint("name the top-level secret or config with `source:`");
            return None;
        }
        Some(r)
    }
}

/// Why a volume in Compose's short syntax is invalid (the text after
/// "invalid volume `SPEC`: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShortVolumeError {
    #[error("too many `:`")]
    TooManyColons,
    #[error("the container path `{0}` must be absolute")]
    RelativeTarget(String),
    #[error("unknown mode `{0}`")]
    Mode(String),
}

/// Parses Compose's short volume syntax `[SOURCE:]TARGET[:MODE]`. A source
/// starting with `.`, `/` or `~` is a bind mount (left relative; the caller
/// resolves it), any other source a named volume, none an anonymous volume.
pub fn parse_short_volume(spec: &str) -> Result<Mount, ShortVolumeError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] if t.starts_with('/') => (Some(*s), *t, None),
        // `/cache:ro`: an anonymous volume with a mode; any other pair is
        // SOURCE:TARGET, as in Compose, so a relative target is named as such.
        [t, m] if t.starts_with('/') => (None, *t, Some(*m)),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(ShortVolumeError::TooManyColons),
    };
    if !target.starts_with('/') {
        return Err(ShortVolumeError::RelativeTarget(target.to_string()));
    }
    let mut m = Mount {
        kind: MountType::Volume,
        source: source.filter(|s| !s.is_empty()).map(str::to_string),
        target: target.to_string(),
        read_only: false,
        bind: None,
        volume: None,
        tmpfs: None,
    };
    let is_path = |s: &str| s.starts_with('.') || s.starts_with('/') || s.starts_with('~');
    // Compose fills in the options of the type (`bind: {create_host_path: true}`, `volume: {}`).
    if m.source.as_deref().is_some_and(is_path) {
        m.kind = MountType::Bind;
        m.bind = Some(BindOptions {
            create_host_path: true,
            ..BindOptions::default()
        });
    } else {
        m.volume = Some(VolumeOptions::default());
    }
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" if m.kind == MountType::Bind => {
                m.bind.get_or_insert_with(BindOptions::default).selinux = Some(opt.to_string());
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                if m.kind == MountType::Bind =>
            {
                m.bind.get_or_insert_with(BindOptions::default).propagation = Some(opt.to_string());
            }
            "nocopy" if m.kind == MountType::Volume => {
                m.volume.get_or_insert_with(VolumeOptions::default).nocopy = true;
            }
            "consistent" | "cached" | "delegated" => {}
            other => return Err(ShortVolumeError::Mode(other.to_string())),
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_volumes() {
        let m = parse_short_volume("data:/var/lib/data").unwrap();
        assert_eq!(
            (m.kind, m.source.as_deref()),
            (MountType::Volume, Some("data"))
        );
        let m = parse_short_volume("./conf:/etc/app:ro").unwrap();
        assert_eq!((m.kind, m.read_only), (MountType::Bind, true));
        let m = parse_short_volume("/cache").unwrap();
        assert_eq!((m.kind, m.source), (MountType::Volume, None));
        let m = parse_short_volume("data:/x:nocopy").unwrap();
        assert!(m.volume.unwrap().nocopy);
        assert!(parse_short_volume("data:relative").is_err());
        assert!(parse_short_volume("a:/b:bogus").is_err());
    }

    /// Compose fills the type's options in the short syntax (`docker compose config`).
    #[test]
    fn short_volumes_fill_compose_defaults() {
        let m = parse_short_volume("data:/data").unwrap();
        assert_eq!((m.volume, m.bind), (Some(VolumeOptions::default()), None));
        let m = parse_short_volume("/anonymous").unwrap();
        assert_eq!(m.volume, Some(VolumeOptions::default()));
        let m = parse_short_volume("./conf:/conf").unwrap();
        assert_eq!(m.volume, None);
        assert!(m.bind.unwrap().create_host_path);
    }
}
