//! Host paths for repository files: where plimsoll runs in a container (the
//! agent as `deploy/agent/compose.yaml` runs it, or `docker compose exec agent
//! plimsoll reconcile`), its checkout is at a path inside that container, but
//! the engine resolves a bind mount's source on the host. A [`PathMap`] maps a
//! path of this container onto the host path of the volume or bind mount
//! that holds it (longest mount point first; a named volume's source is its
//! mountpoint), so that `./www:/www:ro` reaches the engine as the host's path
//! of that directory.
//!
//! The map is plain data: the engine inspect of the own container is in
//! [`crate::live`] (the module that talks to the engine); this module finds
//! the candidates for the own container's ID in `/proc` and maps paths.
//! Outside a container (no own container on this engine), the map is the
//! identity and nothing changes.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::diff::ContainerConfig;
use crate::names::labels;

/// A mount of plimsoll's own container, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Where it is mounted inside the container.
    pub destination: PathBuf,
    /// `bind`, `volume`, `tmpfs`, ...
    pub kind: String,
    /// Its path on the engine's host: a bind mount's source, a volume's
    /// mountpoint; `None` when it has none (a tmpfs, a volume driver without a
    /// local path).
    pub source: Option<PathBuf>,
    /// The volume's name, for messages.
    pub name: Option<String>,
}

/// Where paths of this process's container are on the engine's host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMap {
    /// The own container's name, `None` outside a container (the identity).
    container: Option<String>,
    /// Its mounts, as the engine reports them.
    mounts: Vec<HostMount>,
    /// The mount points of this process's mount namespace with their file
    /// system types (`/proc/self/mountinfo`), when readable: the mount that
    /// really holds a path, which may be one the engine does not list (a
    /// `--tmpfs`).
    local: Option<Vec<(PathBuf, String)>>,
}

/// Where a path of plimsoll's container is when no mount the engine lists holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elsewhere {
    /// Not even `/` in this process's mount points.
    NoMount,
    OwnFileSystem,
    /// A mount the engine does not list (a `--tmpfs`).
    Unlisted {
        fstype: String,
        point: PathBuf,
    },
}

impl std::fmt::Display for Elsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Elsewhere::NoMount => f.write_str("no mount at all"),
            Elsewhere::OwnFileSystem => f.write_str("the container's own file system"),
            Elsewhere::Unlisted { fstype, point } => {
                write!(f, "a {fstype} mounted at {}", point.display())
            }
        }
    }
}

/// A path inside plimsoll's container that the engine cannot see.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{path} is inside plimsoll's container {container}, on {place}, which the Docker engine \
     cannot see, so it cannot mount it into a container; put the directory that holds the \
     repository on a volume or bind mount: for the agent, its state directory \
     (`state:/var/lib/plimsoll` as in deploy/agent/compose.yaml, or \
     `docker run -v plimsoll-state:/var/lib/plimsoll`)"
)]
pub struct Unmappable {
    pub path: PathBuf,
    pub container: String,
    /// Where it is instead: "the container's own file system", "a tmpfs at /x".
    pub place: String,
}

impl PathMap {
    /// The map of a process that does not run in a container of the engine:
    /// every path stays as it is.
    pub fn identity() -> PathMap {
        PathMap::default()
    }

    /// The map of container `container` with `mounts` (the engine's view)
    /// and `local` (this process's mount points and their file system types,
    /// when known).
    pub fn new(
        container: impl Into<String>,
        mounts: Vec<HostMount>,
        local: Option<Vec<(PathBuf, String)>>,
    ) -> PathMap {
        PathMap {
            container: Some(container.into()),
            mounts,
            local,
        }
    }

    /// The map of a container from its engine inspect (`local` as for [`PathMap::new`]).
    pub fn from_inspect(
        c: &bollard::models::ContainerInspectResponse,
        local: Option<Vec<(PathBuf, String)>>,
    ) -> PathMap {
        let mounts = c
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                Some(HostMount {
                    destination: PathBuf::from(m.destination.as_ref()?),
                    kind: m.typ.clone().unwrap_or_default(),
                    source: m
                        .source
                        .as_ref()
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from),
                    name: m.name.clone().filter(|n| !n.is_empty()),
                })
            })
            .collect();
        let name = c
            .name
            .as_deref()
            .map(|n| n.trim_start_matches('/').to_string())
            .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
            .unwrap_or_default();
        PathMap::new(name, mounts, local)
    }

    /// Whether paths stay as they are (not in a container).
    pub fn is_identity(&self) -> bool {
        self.container.is_none()
    }

    /// The own container's name, in a container.
    pub fn container(&self) -> Option<&str> {
        self.container.as_deref()
    }

    /// The mount of this container that holds `path`, if the engine lists
    /// it; else where `path` is instead.
    fn holder(&self, path: &Path) -> Result<&HostMount, Elsewhere> {
        let longest = |m: &&HostMount| m.destination.components().count();
        match &self.local {
            Some(local) => {
                let (point, fstype) = local
                    .iter()
                    .filter(|(p, _)| path.starts_with(p))
                    .max_by_key(|(p, _)| p.components().count())
                    .ok_or(Elsewhere::NoMount)?;
                self.mounts
                    .iter()
                    .find(|m| &m.destination == point)
                    .ok_or_else(|| {
                        if point == Path::new("/") {
                            Elsewhere::OwnFileSystem
                        } else {
                            Elsewhere::Unlisted {
                                fstype: fstype.clone(),
                                point: point.clone(),
                            }
                        }
                    })
            }
            None => self
                .mounts
                .iter()
                .filter(|m| path.starts_with(&m.destination))
                .max_by_key(longest)
                .ok_or(Elsewhere::OwnFileSystem),
        }
    }

    /// `path` (absolute, inside this container) as a path on the engine's
    /// host: the same path outside a container.
    pub fn map(&self, path: &Path) -> Result<PathBuf, Unmappable> {
        let Some(container) = &self.container else {
            return Ok(path.to_path_buf());
        };
        let unmappable = |place: String| Unmappable {
            path: path.to_path_buf(),
            container: container.clone(),
            place,
        };
        let mount = self
            .holder(path)
            .map_err(|place| unmappable(place.to_string()))?;
        let source = match (mount.kind.as_str(), &mount.source) {
            ("bind" | "volume", Some(source)) => source,
            ("bind" | "volume", None) => {
                return Err(unmappable(format!(
                    "{} {}, which has no path on the host",
                    mount.kind,
                    mount
                        .name
                        .as_deref()
                        .unwrap_or(&mount.destination.display().to_string())
                )));
            }
            (kind, _) => {
                return Err(unmappable(format!(
                    "a {kind} mounted at {}",
                    mount.destination.display()
                )));
            }
        };
        let rest = path
            .strip_prefix(&mount.destination)
            .expect("the holder's destination is a prefix of the path");
        Ok(if rest.as_os_str().is_empty() {
            source.clone()
        } else {
            source.join(rest)
        })
    }

    /// Maps the repository paths of a desired container onto the host:
    /// bind-mount sources inside `root` (the stack's repository, or its
    /// directory) from service `volumes:` and `secrets:`/`configs:` `file:`,
    /// and Compose's project labels (`working_dir`, `config_files`), which
    /// describe the container in host terms where they can. Paths outside
    /// `root` (`/var/run/docker.sock`, `/etc/ssl`) are the host's own and stay.
    /// A bind source the engine cannot see is an error, and `config` is then
    /// left unchanged.
    pub fn apply(&self, config: &mut ContainerConfig, root: &Path) -> Result<(), Unmappable> {
        if self.is_identity() {
            return Ok(());
        }
        let mut mapped = Vec::new();
        for (target, m) in &config.mounts {
            let Some(source) = m.source.as_deref().filter(|_| m.kind == "bind") else {
                continue;
            };
            let source = Path::new(source);
            if source.starts_with(root) {
                mapped.push((target.clone(), self.map(source)?));
            }
        }
        for (target, host) in mapped {
            if let Some(m) = config.mounts.get_mut(&target) {
                m.source = Some(host.display().to_string());
            }
        }
        for key in [labels::COMPOSE_WORKING_DIR, labels::COMPOSE_CONFIG_FILES] {
            let Some(value) = config.labels.get(key) else {
                continue;
            };
            // Compose's list is comma-separated; a label that cannot be mapped
            // stays as it is (it only describes the container).
            let host: Result<Vec<String>, Unmappable> = value
                .split(',')
                .map(|p| {
                    let path = Path::new(p);
                    if path.starts_with(root) {
                        self.map(path).map(|h| h.display().to_string())
                    } else {
                        Ok(p.to_string())
                    }
                })
                .collect();
            if let Ok(host) = host {
                config.labels.insert(key.to_string(), host.join(","));
            }
        }
        Ok(())
    }
}

/// What may name this process's own container, most reliable first: the
/// ID in the source of the `/etc/hostname`, `/etc/hosts` or
/// `/etc/resolv.conf` bind mount (`.../containers/<id>/hostname`), the ID in
/// `/proc/self/cgroup` (cgroup v1, or the systemd driver's
/// `docker-<id>.scope`), and the host name, which is the container's short
/// ID by default. None outside a container (no `/.dockerenv`, which the
/// engine puts in every container, nor Podman's `/run/.containerenv`): on a
/// host, nothing is read (the mount table of a busy host is long). The
/// caller asks the engine about each in turn.
pub fn own_container_candidates() -> Vec<Candidate> {
    let in_container =
        Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists();
    if !in_container {
        return Vec::new();
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |c: Candidate| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    if let Some(id) = id_from_mountinfo(&read("/proc/self/mountinfo")) {
        add(Candidate::Id(id));
    }
    if let Some(id) = id_from_cgroup(&read("/proc/self/cgroup")) {
        add(Candidate::Id(id));
    }
    let hostname = read("/etc/hostname").trim().to_string();
    if !hostname.is_empty() {
        add(Candidate::Hostname(hostname));
    }
    out
}

/// A way to find the own container on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A full container ID: the container with this ID.
    Id(String),
    /// The host name: the container it names (an ID prefix or a name) only
    /// if that container's host name is the same.
    Hostname(String),
}

/// The mount points of this process's mount namespace, with their file
/// system types, or `None` when `/proc/self/mountinfo` cannot be read.
pub fn local_mounts() -> Option<Vec<(PathBuf, String)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    Some(parse_mountinfo(&text))
}

/// `(mount point, fstype)` of each line of a mountinfo file.
fn parse_mountinfo(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space) decoded.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if bytes[i] == b'\\'
            && let Some(d) = octal
        {
            let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container ID in the root of a mount of the engine's
/// `containers/<id>/hostname` and friends (podman's
/// `overlay-containers/<id>/userdata/hostname` too).
fn id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let root = line.split(' ').nth(3)?;
        let (_, rest) = root.split_once("containers/")?;
        let (id, file) = rest.split_once('/')?;
        let file = file.rsplit('/').next().unwrap_or(file);
        (is_id(id) && matches!(file, "hostname" | "hosts" | "resolv.conf")).then(|| id.to_string())
    })
}

/// The last 64-hex-digit token of `/proc/self/cgroup`.
fn id_from_cgroup(text: &str) -> Option<String> {
    text.lines()
        .flat_map(|l| l.split(|c: char| !c.is_ascii_hexdigit()))
        .rfind(|t| is_id(t))
        .map(str::to_string)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::MountDesc;

    fn mount(dest: &str, kind: &str, source: Option<&str>) -> HostMount {
        HostMount {
            destination: dest.into(),
            kind: kind.into(),
            source: source.map(PathBuf::from),
            name: None,
        }
    }

    /// The agent as deploy/agent/compose.yaml runs it.
    fn agent() -> PathMap {
        PathMap::new(
            "plimsoll-agent-1",
            vec![
                mount("/var/run/docker.sock", "bind", Some("/var/run/docker.sock")),
                mount(
                    "/var/lib/plimsoll",
                    "volume",
                    Some("/var/lib/docker/volumes/plimsoll_state/_data"),
                ),
                mount(
                    "/var/lib/plimsoll/git/worktree/stacks/big",
                    "bind",
                    Some("/srv/big"),
                ),
                mount("/run/secrets/sync_token", "bind", Some("/opt/a/secrets/s")),
            ],
            None,
        )
    }

    #[test]
    fn the_longest_mount_holding_a_path_maps_it() {
        let m = agent();
        assert_eq!(
            m.map(Path::new(
                "/var/lib/plimsoll/git/worktree/stacks/shop/nginx.conf"
            ))
            .unwrap(),
            Path::new(
                "/var/lib/docker/volumes/plimsoll_state/_data/git/worktree/stacks/shop/nginx.conf"
            )
        );
        assert_eq!(
            m.map(Path::new("/var/lib/plimsoll/git/worktree/stacks/big/www"))
                .unwrap(),
            Path::new("/srv/big/www")
        );
        assert_eq!(
            m.map(Path::new("/var/lib/plimsoll/git/worktree/stacks/big"))
                .unwrap(),
            Path::new("/srv/big")
        );
        // A prefix by path components, not by characters.
        assert_eq!(
            m.map(Path::new("/var/lib/plimsoll-other/x"))
                .unwrap_err()
                .place,
            "the container's own file system"
        );
    }

    #[test]
    fn outside_a_container_paths_stay() {
        let m = PathMap::identity();
        assert!(m.is_identity());
        assert_eq!(
            m.map(Path::new("/srv/ops/x")).unwrap(),
            Path::new("/srv/ops/x")
        );
        let mut c = config("/srv/ops");
        let before = c.clone();
        m.apply(&mut c, Path::new("/srv/ops")).unwrap();
        assert_eq!(c, before);
    }

    #[test]
    fn a_path_on_no_mount_or_on_a_tmpfs_cannot_be_mapped() {
        let m = PathMap::new(
            "agent",
            vec![mount("/var/lib/plimsoll", "tmpfs", None)],
            None,
        );
        let e = m
            .map(Path::new("/var/lib/plimsoll/git/worktree/a"))
            .unwrap_err();
        assert_eq!(e.place, "a tmpfs mounted at /var/lib/plimsoll");
        let text = e.to_string();
        assert!(text.contains("state:/var/lib/plimsoll"), "{text}");
        assert!(text.contains("deploy/agent/compose.yaml"), "{text}");
        assert_eq!(
            m.map(Path::new("/repo/a")).unwrap_err().place,
            "the container's own file system"
        );
        let no_path = PathMap::new(
            "agent",
            vec![HostMount {
                name: Some("nfs-state".into()),
                ..mount("/var/lib/plimsoll", "volume", None)
            }],
            None,
        );
        assert!(
            no_path
                .map(Path::new("/var/lib/plimsoll/x"))
                .unwrap_err()
                .place
                .contains("nfs-state")
        );
    }

    #[test]
    fn the_mount_that_really_holds_a_path_decides() {
        // An anonymous volume the engine lists, under a --tmpfs it does not.
        let mounts = vec![mount(
            "/var/lib/plimsoll",
            "volume",
            Some("/var/lib/docker/volumes/abc/_data"),
        )];
        let local = |points: &[(&str, &str)]| {
            Some(
                points
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
            )
        };
        let m = PathMap::new(
            "agent",
            mounts.clone(),
            local(&[("/", "overlay"), ("/var/lib/plimsoll", "ext4")]),
        );
        assert_eq!(
            m.map(Path::new("/var/lib/plimsoll/x")).unwrap(),
            Path::new("/var/lib/docker/volumes/abc/_data/x")
        );
        let m = PathMap::new(
            "agent",
            mounts,
            local(&[("/", "overlay"), ("/var/lib/plimsoll/git", "tmpfs")]),
        );
        assert_eq!(
            m.map(Path::new("/var/lib/plimsoll/git/x"))
                .unwrap_err()
                .place,
            "a tmpfs mounted at /var/lib/plimsoll/git"
        );
        let m = PathMap::new("agent", vec![], local(&[("/", "overlay")]));
        assert_eq!(
            m.map(Path::new("/repo")).unwrap_err().place,
            "the container's own file system"
        );
    }

    fn config(root: &str) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        let bind = |s: &str, ro| MountDesc {
            kind: "bind",
            source: Some(s.to_string()),
            read_only: ro,
        };
        c.mounts
            .insert("/www".into(), bind(&format!("{root}/stacks/web/www"), true));
        c.mounts.insert(
            "/run/secrets/key".into(),
            bind(&format!("{root}/stacks/web/key.txt"), true),
        );
        c.mounts.insert(
            "/var/run/docker.sock".into(),
            bind("/var/run/docker.sock", false),
        );
        c.mounts.insert("/etc/ssl".into(), bind("/etc/ssl", true));
        c.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: Some("web_data".into()),
                read_only: false,
            },
        );
        c.labels.insert(
            labels::COMPOSE_WORKING_DIR.into(),
            format!("{root}/stacks/web"),
        );
        c.labels.insert(
            labels::COMPOSE_CONFIG_FILES.into(),
            format!("{root}/stacks/web/compose.yaml"),
        );
        c
    }

    #[test]
    fn only_paths_inside_the_repository_are_mapped() {
        let root = "/var/lib/plimsoll/git/worktree";
        let mut c = config(root);
        agent().apply(&mut c, Path::new(root)).unwrap();
        let host = "/var/lib/docker/volumes/plimsoll_state/_data/git/worktree";
        let source = |t: &str| c.mounts[t].source.clone().unwrap();
        assert_eq!(source("/www"), format!("{host}/stacks/web/www"));
        assert_eq!(
            source("/run/secrets/key"),
            format!("{host}/stacks/web/key.txt")
        );
        assert!(c.mounts["/www"].read_only);
        // Host paths the Compose file names literally, and volumes, stay.
        assert_eq!(source("/var/run/docker.sock"), "/var/run/docker.sock");
        assert_eq!(source("/etc/ssl"), "/etc/ssl");
        assert_eq!(source("/data"), "web_data");
        assert_eq!(
            c.labels[labels::COMPOSE_WORKING_DIR],
            format!("{host}/stacks/web")
        );
        assert_eq!(
            c.labels[labels::COMPOSE_CONFIG_FILES],
            format!("{host}/stacks/web/compose.yaml")
        );
    }

    #[test]
    fn an_unmappable_bind_source_fails_and_changes_nothing() {
        let root = "/repo";
        let mut c = config(root);
        let before = c.clone();
        let e = agent().apply(&mut c, Path::new(root)).unwrap_err();
        assert_eq!(e.path, Path::new("/repo/stacks/web/key.txt"));
        assert_eq!(c, before);
        // Labels alone never fail: they stay as they are.
        let mut c = ContainerConfig::default();
        c.labels.insert(
            labels::COMPOSE_WORKING_DIR.into(),
            "/repo/stacks/web".into(),
        );
        agent().apply(&mut c, Path::new(root)).unwrap();
        assert_eq!(c.labels[labels::COMPOSE_WORKING_DIR], "/repo/stacks/web");
    }

    #[test]
    fn the_own_container_is_found_in_mountinfo_and_cgroup() {
        let id = "0123456789abcdef".repeat(4);
        let mountinfo = format!(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             640 600 254:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw\n\
             641 600 254:1 /docker/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(id_from_mountinfo(&mountinfo), Some(id.clone()));
        assert_eq!(
            id_from_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n"),
            None
        );
        assert_eq!(
            id_from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id.clone())
        );
        assert_eq!(
            id_from_cgroup(&format!("12:memory:/docker/{id}\n")),
            Some(id.clone())
        );
        assert_eq!(
            id_from_cgroup("0::/\n4:memory:/process_api/6c0333c2f5b989b7\n"),
            None
        );
        let points = parse_mountinfo(&format!(
            "{mountinfo}700 600 0:50 / /var/lib/my\\040state rw - tmpfs tmpfs rw\n"
        ));
        assert!(points.contains(&(PathBuf::from("/etc/hostname"), "ext4".into())));
        assert!(points.contains(&(PathBuf::from("/var/lib/my state"), "tmpfs".into())));
    }
}
