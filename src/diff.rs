//! Desired versus live, field by field, on one normalized container model.
//!
//! Both sides are a [`ContainerConfig`] (defined with the engine mapping in
//! [`crate::keys`]): the desired one from the spec ([`desired_config`]),
//! the live one from `docker inspect` (`keys::read`, through `live`).
//! Values the image supplies and values the engine fills in are taken out
//! of both sides (`strip_defaults`, `align_to`, each key's group in
//! `keys` doing its part), so they are never drift. The config flattens
//! into `key: value` lines ([`ContainerConfig::fields`]); changes
//! ([`compare`]), their reasons in words ([`reason`]), what is hidden
//! ([`Shown`]) and the unified diff all come from those lines. Networks
//! are compared the same way in [`network`].
//!
//! Invariant: pure; knows nothing about bollard.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

pub use crate::keys::lifecycle::hook_labels;
pub use crate::keys::{ContainerConfig, Health, ImageDefaults, MountDesc, desired_config};
use crate::names::labels;
use crate::spec::secrets::Masker;

pub mod network;

/// Which hooks differ between two containers' labels (live, desired), in
/// words: `post_start hooks changed`, `pre_stop hooks added`. The digests
/// are never shown (they are derived from hook environments, which may hold secrets).
pub fn hook_changes(
    live: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Vec<String> {
    [
        (labels::POST_START, "post_start"),
        (labels::PRE_STOP, "pre_stop"),
    ]
    .into_iter()
    .filter_map(|(label, key)| {
        let what = match (live.get(label), desired.get(label)) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "changed",
            _ => return None,
        };
        Some(format!("{key} hooks {what}"))
    })
    .collect()
}

/// The spec hash: changes whenever anything that shapes the container
/// changes, including secret contents (only a digest of them is kept).
pub fn spec_hash(config: &ContainerConfig, extra: &[&str]) -> String {
    let mut h = Sha256::new();
    let mut c = config.clone();
    c.image_id = None;
    h.update(serde_json::to_vec(&c).expect("config serializes"));
    for e in extra {
        h.update([0]);
        h.update(e.as_bytes());
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// One changed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        key: String,
        value: String,
    },
    Removed {
        key: String,
        value: String,
    },
    Changed {
        key: String,
        live: String,
        desired: String,
    },
}

/// The lines that differ between live and desired.
pub fn compare(live: &BTreeMap<String, String>, desired: &BTreeMap<String, String>) -> Vec<Change> {
    let keys: BTreeSet<&String> = live.keys().chain(desired.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (live.get(k), desired.get(k)) {
            (Some(l), Some(d)) if l != d => Some(Change::Changed {
                key: k.clone(),
                live: l.clone(),
                desired: d.clone(),
            }),
            (None, Some(d)) => Some(Change::Added {
                key: k.clone(),
                value: d.clone(),
            }),
            (Some(l), None) => Some(Change::Removed {
                key: k.clone(),
                value: l.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The reason for one change, in words, with secret values hidden.
pub fn reason(change: &Change, masker: &Masker) -> String {
    // Limits `docker update` changes: said as host versus git.
    let limit = |key: &str| {
        matches!(
            key,
            "memory limit"
                | "memory reservation"
                | "cpus"
                | "cpu shares"
                | "cpu period"
                | "cpu quota"
                | "cpu rt period"
                | "cpu rt runtime"
                | "cpuset"
                | "memory swap"
        )
    };
    match change {
        Change::Changed { key, live, desired } if limit(key) || key == "restart" => {
            format!("{key} {live} on the host, {desired} in git")
        }
        Change::Changed { key, live, desired } if key == "image id" => {
            format!("image re-pointed: the container runs {live}, the tag now names {desired}")
        }
        Change::Changed { .. } => change_words(change, masker),
        Change::Added { key, value } if limit(key) => {
            format!("{key} {value} in git, none on the host")
        }
        Change::Removed { key, value } if limit(key) => {
            format!("{key} {value} on the host, none in git")
        }
        Change::Added { key, .. } if key.starts_with("network ") => {
            format!("{key} disconnected on the host")
        }
        Change::Removed { key, .. } if key.starts_with("network ") => {
            format!("{key} connected on the host, not in git")
        }
        Change::Added { .. } | Change::Removed { .. } => change_words(change, masker),
    }
}

/// One change in words without saying where each side is (`env FOO changed:
/// 1 → 2`, `env DB_PASSWORD changed (value hidden)`, `cpus added: 0.5`,
/// `healthcheck interval 5s → 10s`): the words of [`reason`] that fit two
/// revisions of git as well as live and git. Values already shown (see
/// [`Shown`]) pass through unchanged.
pub fn change_words(change: &Change, masker: &Masker) -> String {
    let show = |key: &str, value: &str| match key.strip_prefix("env ") {
        Some(name) => masker.mask_var(name, value).into_owned(),
        None => masker.mask(value).into_owned(),
    };
    // A value that holds a secret hides both sides: the live one may hold an
    // old secret the masker never saw (`DATABASE_URL=postgres://u:<old>@db`).
    let hidden = |key: &str, a: &str, b: &str| {
        let (x, y) = (show(key, a), show(key, b));
        x != a || y != b || x == y || x.contains(MASK) || y.contains(MASK)
    };
    match change {
        Change::Changed { key, live, desired } if hidden(key, live, desired) => {
            format!("{key} changed (value hidden)")
        }
        // A part of a setting: the part is named, its two values follow.
        Change::Changed { key, live, desired } if names_its_part(key) => {
            format!("{key} {} → {}", show(key, live), show(key, desired))
        }
        Change::Changed { key, live, desired } => format!(
            "{key} changed: {} → {}",
            show(key, live),
            show(key, desired)
        ),
        Change::Added { key, value } => format!("{key} added: {}", show(key, value)),
        Change::Removed { key, .. } => format!("{key} removed"),
    }
}

/// Lines whose change reads `key old → new` (`restart on-failure:3 → always`).
fn names_its_part(key: &str) -> bool {
    (key.starts_with("healthcheck ") && key != "healthcheck")
        || matches!(
            key,
            "restart"
                | "memory limit"
                | "memory reservation"
                | "memory swap"
                | "cpus"
                | "pids limit"
        )
}

use crate::spec::secrets::MASK;

/// How the settings of one service are shown: the masker, and which of the
/// service's fields were built from secret variables (masked whole, both sides).
#[derive(Clone, Copy)]
pub struct Shown<'a> {
    pub masker: &'a Masker,
    pub stack: &'a str,
    pub service: &'a str,
}

/// Lines whose key carries a value of the field (`extra host db:10.0.0.2`):
/// when the field is hidden, the key is shown as `<prefix> ********`.
const VALUE_KEYS: &[&str] = &[
    "extra host ",
    "cap add ",
    "cap drop ",
    "group add ",
    "security opt ",
    "device cgroup rule ",
    "device ",
    "tmpfs ",
    "mount ",
    "port ",
    "network ",
    "ulimit ",
];

impl Shown<'_> {
    /// The Compose keys (relative to the service) a line comes from.
    fn compose_keys(key: &str) -> Vec<Vec<&str>> {
        let entry = |prefix: &str, of: &'static str| {
            key.strip_prefix(prefix).map(|name| vec![vec![of, name]])
        };
        if let Some(k) = entry("env ", "environment")
            .or_else(|| entry("label ", "labels"))
            .or_else(|| entry("sysctl ", "sysctls"))
            .or_else(|| entry("storage opt ", "storage_opt"))
        {
            return k;
        }
        let whole: &[&str] = match key {
            k if k.starts_with("healthcheck") => &["healthcheck"],
            "image" | "image id" => &["image"],
            "restart" => &["restart", "deploy"],
            "replicas" => &["scale", "deploy"],
            "memory limit" => &["mem_limit", "deploy"],
            "memory reservation" => &["mem_reservation", "deploy"],
            "cpus" => &["cpus", "deploy"],
            "pids limit" => &["pids_limit", "deploy"],
            "working dir" => &["working_dir"],
            "stop grace period" => &["stop_grace_period"],
            "logging" => &["logging"],
            k if k.starts_with("extra host ") => &["extra_hosts"],
            k if k.starts_with("cap add ") => &["cap_add"],
            k if k.starts_with("cap drop ") => &["cap_drop"],
            k if k.starts_with("group add ") => &["group_add"],
            k if k.starts_with("security opt") => &["security_opt"],
            k if k.starts_with("device cgroup rule ") => &["device_cgroup_rules"],
            k if k.starts_with("device request") => &["gpus", "deploy"],
            k if k.starts_with("device ") => &["devices"],
            k if k.starts_with("mount ") => &["volumes", "tmpfs"],
            k if k.starts_with("tmpfs ") => &["tmpfs"],
            k if k.starts_with("port ") => &["ports"],
            k if k.starts_with("network ") => &["networks", "network_mode"],
            k if k.starts_with("ulimit ") => &["ulimits"],
            k if k.starts_with("blkio ") => &["blkio_config"],
            k if k.starts_with("dns") => &["dns", "dns_search", "dns_opt"],
            _ => return vec![vec![key]],
        };
        whole.iter().map(|k| vec![*k]).collect()
    }

    /// Whether line `key` shows a field built from a secret variable.
    pub fn hides(&self, key: &str) -> bool {
        let simple = key.replace(' ', "_");
        let mut candidates = Self::compose_keys(key);
        candidates.push(vec![simple.as_str()]);
        candidates.iter().any(|k| {
            let path: Vec<&str> = ["services", self.service]
                .into_iter()
                .chain(k.iter().copied())
                .collect();
            self.masker.hides_field(self.stack, &path)
        })
    }

    /// The key line `key` is shown under.
    pub fn key(&self, key: &str) -> String {
        match VALUE_KEYS.iter().find(|p| key.starts_with(*p)) {
            Some(prefix) if self.hides(key) => format!("{prefix}{MASK}"),
            _ => key.to_string(),
        }
    }

    /// One line's value as shown: hidden whole when built from a secret
    /// variable, by name for a secret variable, else masked by value.
    pub fn value(&self, key: &str, value: &str) -> String {
        if self.hides(key) {
            return MASK.into();
        }
        match key.strip_prefix("env ") {
            Some(name) => self.masker.mask_var(name, value).into_owned(),
            None => self.masker.mask(value).into_owned(),
        }
    }

    /// A container's lines as shown: words masked before they are joined,
    /// then each line by [`Shown::value`].
    pub fn config(&self, config: &ContainerConfig) -> BTreeMap<String, String> {
        self.lines(&config.fields_with(&|w| self.masker.mask(w).into_owned()))
    }

    /// Lines as shown (see [`Shown::config`] for a container's, whose words
    /// are masked before they are joined).
    pub fn lines(&self, fields: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (self.key(k), self.value(k, v)))
            .collect()
    }

    /// The live side's lines as shown beside git's (`desired`, real values):
    /// a live value that differs from a git value holding a masked secret most
    /// likely holds the old secret, which the masker never saw; it is shown
    /// like git's where the text around the secret matches, else hidden.
    pub fn live_lines(
        &self,
        live: &BTreeMap<String, String>,
        desired: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let shown = self.lines(desired);
        let mut out = self.lines(live);
        for (k, v) in live {
            let (Some(want), Some(want_shown)) = (desired.get(k), shown.get(&self.key(k))) else {
                continue;
            };
            if want != v && want_shown != want {
                out.insert(self.key(k), self.masker.mask_like(v, want, want_shown));
            }
        }
        out
    }

    /// The changes (computed on real values) as shown: keys and values of
    /// both sides taken from the shown lines.
    pub fn changes(
        &self,
        changes: &[Change],
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> Vec<Change> {
        let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or(MASK.into());
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in changes {
            let key = match c {
                Change::Added { key, .. }
                | Change::Removed { key, .. }
                | Change::Changed { key, .. } => self.key(key),
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            out.push(match c {
                Change::Added { .. } => Change::Added {
                    value: get(new, &key),
                    key,
                },
                Change::Removed { .. } => Change::Removed {
                    value: get(old, &key),
                    key,
                },
                Change::Changed { .. } => Change::Changed {
                    live: get(old, &key),
                    desired: get(new, &key),
                    key,
                },
            });
        }
        out
    }
}

/// Changes (as shown) that show nothing: a value that changed where only
/// hidden parts differ.
pub fn hidden_only(change: &Change) -> bool {
    matches!(change, Change::Changed { live, desired, .. } if live == desired)
}

/// The reasons for shown `changes`, worded by `words`; when every change
/// is a hidden value, one reason says so and names them
/// (`only hidden values changed: env DB_PASSWORD`).
pub fn reasons_for(changes: &[Change], words: impl Fn(&Change) -> String) -> Vec<String> {
    if !changes.is_empty() && changes.iter().all(hidden_only) {
        let keys: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                Change::Added { key, .. }
                | Change::Removed { key, .. }
                | Change::Changed { key, .. } => key.as_str(),
            })
            .collect();
        return vec![format!("only hidden values changed: {}", keys.join(", "))];
    }
    changes.iter().map(words).collect()
}

/// A unified diff of two sets of lines already shown (`old` → `new`,
/// headed by `names`); `None` when they read the same.
pub fn unified(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    names: (&str, &str),
) -> Option<String> {
    let text = |fields: &BTreeMap<String, String>| {
        fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    };
    let (a, b) = (text(old), text(new));
    (a != b).then(|| {
        similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .header(names.0, names.1)
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::logging::DEFAULT_LOG_DRIVER;
    use crate::keys::resources::DEFAULT_SHM_SIZE;
    use crate::spec::model::{Service, Stack};

    /// Each change from `a` to `b`, in `words`.
    fn worded(
        a: &ContainerConfig,
        b: &ContainerConfig,
        words: fn(&Change, &Masker) -> String,
        m: &Masker,
    ) -> Vec<String> {
        compare(&a.fields(), &b.fields())
            .iter()
            .map(|c| words(c, m))
            .collect()
    }

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            name: "s-a-1".into(),
            image: "busybox:1".into(),
            image_id: Some("sha256:0123456789abcdef".into()),
            restart: "no".into(),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn device_requests_blkio_and_endpoints_read_as_field_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    gpus: all\n    blkio_config:\n      weight: 300\n      device_read_bps: [{path: /dev/sda, rate: 1mb}]\n    networks:\n      back: {ipv4_address: 10.1.0.5, link_local_ips: [169.254.1.2]}\n    deploy:\n      resources:\n        reservations:\n          devices: [{capabilities: [tpu], driver: acme, count: 1}]\nnetworks:\n  back: {}\n",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let stack = &desired.stacks[0];
        let svc = &stack.services["a"];
        let fields = desired_config(stack, "a", svc, 1, None).fields();
        let get = |k: &str| fields.get(k).map(String::as_str);
        assert_eq!(
            get("device request 1"),
            Some("all devices, capabilities gpu")
        );
        assert_eq!(
            get("device request 2"),
            Some("driver acme, 1 device, capabilities tpu")
        );
        assert_eq!(get("blkio weight"), Some("300"));
        assert_eq!(get("blkio read bps /dev/sda"), Some("1048576"));
        assert_eq!(
            get("network s_back endpoint"),
            Some("ipv4 10.1.0.5, link-local 169.254.1.2")
        );
    }

    #[test]
    fn a_discarded_blkio_weight_is_not_drift() {
        let mut desired = cfg();
        desired.blkio_weight = 300;
        desired
            .blkio_devices
            .insert("weight /dev/sda".into(), "400".into());
        desired
            .blkio_devices
            .insert("read bps /dev/sda".into(), "1048576".into());
        let mut live = cfg();
        live.blkio_devices
            .insert("read bps /dev/sda".into(), "1048576".into());
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
        // A throttle the engine dropped is drift.
        live.blkio_devices.remove("read bps /dev/sda");
        assert_ne!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    #[test]
    fn image_defaults_are_not_drift() {
        let image = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            env: BTreeMap::from([("PATH".into(), "/bin".into())]),
            volumes: BTreeSet::from(["/data".into()]),
            ..ImageDefaults::default()
        };
        let mut live = cfg();
        live.command = Some(vec!["sh".into()]);
        live.env.insert("PATH".into(), "/bin".into());
        live.env.insert("A".into(), "1".into());
        live.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: None,
                read_only: false,
            },
        );
        live.log = Some((DEFAULT_LOG_DRIVER.into(), BTreeMap::new()));
        live.strip_defaults(&image);
        let mut desired = cfg();
        desired.env.insert("A".into(), "1".into());
        desired.strip_defaults(&image);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    #[test]
    fn entrypoint_drops_the_image_command() {
        let image = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            ..ImageDefaults::default()
        };
        let mut c = cfg();
        c.entrypoint = Some(vec!["/init".into()]);
        c.command = Some(vec![]);
        c.strip_defaults(&image);
        assert_eq!(c.command, None);
    }

    #[test]
    fn reasons_in_words_with_secrets_hidden() {
        let mut m = Masker::new(Default::default());
        m.observe("DB_PASSWORD", "s3cret-canary");
        let mut live = cfg();
        live.env.insert("FOO".into(), "1".into());
        live.env
            .insert("DB_PASSWORD".into(), "old-canary-value".into());
        live.memory = 256 << 20;
        let mut desired = cfg();
        desired.env.insert("FOO".into(), "2".into());
        desired
            .env
            .insert("DB_PASSWORD".into(), "s3cret-canary".into());
        desired.memory = 128 << 20;
        let reasons = worded(&live, &desired, reason, &m);
        assert_eq!(
            reasons,
            vec![
                "env DB_PASSWORD changed (value hidden)",
                "env FOO changed: 1 → 2",
                "memory limit 256 MiB on the host, 128 MiB in git",
            ]
        );
    }

    /// A field built from a secret variable is hidden whole on both sides,
    /// however short; words are masked before quoting could change them.
    #[test]
    fn secret_fields_are_hidden_whole_on_both_sides() {
        let mut m = Masker::new(Default::default());
        m.add_field("s", ["services", "a", "command"].map(String::from).to_vec());
        m.add_field(
            "s",
            ["services", "a", "labels", "pin"]
                .map(String::from)
                .to_vec(),
        );
        m.add_field(
            "s",
            ["services", "a", "extra_hosts"].map(String::from).to_vec(),
        );
        m.observe("API_TOKEN", "it's-a-long-secret");
        let shown = Shown {
            masker: &m,
            stack: "s",
            service: "a",
        };
        let mut live = cfg();
        live.command = Some(vec!["run".into(), "Zq".into()]);
        live.labels.insert("pin".into(), "Wx".into());
        live.labels.insert("team".into(), "web".into());
        live.entrypoint = Some(vec![
            "sh".into(),
            "-c".into(),
            "echo it's-a-long-secret".into(),
        ]);
        let mut desired = live.clone();
        desired.command = Some(vec!["run".into(), "Kv".into()]);
        desired.labels.insert("pin".into(), "Yy".into());
        desired.extra_hosts.insert("Q1:10.0.0.2".into());
        let (old, new) = (
            shown.live_lines(&live.fields(), &desired.fields()),
            shown.config(&desired),
        );
        assert_eq!(new["command"], MASK);
        assert_eq!(old["command"], MASK);
        assert_eq!(new["label pin"], MASK);
        assert_eq!(new["label team"], "web");
        assert_eq!(new["extra host ********"], MASK);
        // Quoting would have turned the secret into `'it'"'"'s-a-long-secret'`.
        assert_eq!(new["entrypoint"], "sh -c 'echo ********'");
        let changes = shown.changes(&compare(&live.fields(), &desired.fields()), &old, &new);
        let reasons = reasons_for(&changes, |c| change_words(c, &m));
        assert_eq!(
            reasons,
            vec![
                "command changed (value hidden)",
                "extra host ******** added: ********",
                "label pin changed (value hidden)",
            ]
        );
        let text = format!("{reasons:?}{:?}", unified(&old, &new, ("live", "git")));
        for leak in ["Zq", "Kv", "Wx", "Yy", "Q1", "long-secret"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }

    /// Only hidden values changed: said so, and no diff to show.
    #[test]
    fn only_hidden_values_changed_is_said() {
        let mut m = Masker::new(Default::default());
        m.observe("DB_PASSWORD", "new-secret-1");
        m.observe("DB_PASSWORD", "old-secret-1");
        let shown = Shown {
            masker: &m,
            stack: "s",
            service: "a",
        };
        let mut old = cfg();
        old.env.insert("DB_PASSWORD".into(), "old-secret-1".into());
        old.env
            .insert("URL".into(), "postgres://u:old-secret-1@db/x".into());
        let mut new = cfg();
        new.env.insert("DB_PASSWORD".into(), "new-secret-1".into());
        new.env
            .insert("URL".into(), "postgres://u:new-secret-1@db/x".into());
        let (a, b) = (shown.config(&old), shown.config(&new));
        assert_eq!(a["env URL"], "postgres://u:********@db/x");
        assert_eq!(a["env URL"], b["env URL"]);
        let changes = shown.changes(&compare(&old.fields(), &new.fields()), &a, &b);
        assert_eq!(
            reasons_for(&changes, |c| change_words(c, &m)),
            vec!["only hidden values changed: env DB_PASSWORD, env URL"]
        );
        assert_eq!(unified(&a, &b, ("a", "b")), None);
        // The live side's old secret, which the masker never saw, is shown like git's.
        let mut seen = Masker::new(Default::default());
        seen.observe("DB_PASSWORD", "new-secret-1");
        let shown = Shown {
            masker: &seen,
            ..shown
        };
        let live = shown.live_lines(&old.fields(), &new.fields());
        assert_eq!(live["env URL"], "postgres://u:********@db/x");
    }

    /// A health check, restart policy or limit names the part that changed.
    #[test]
    fn changed_parts_are_named() {
        let m = Masker::new(Default::default());
        let mut a = cfg();
        a.healthcheck = Some(Health {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 3,
            ..Health::default()
        });
        a.restart = "on-failure:3".into();
        a.memory = 256 << 20;
        let mut b = a.clone();
        b.healthcheck.as_mut().unwrap().interval = 10_000_000_000;
        b.restart = "always".into();
        b.memory = 512 << 20;
        let words = worded(&a, &b, change_words, &m);
        assert_eq!(
            words,
            vec![
                "healthcheck interval 5s → 10s",
                "memory limit 256 MiB → 512 MiB",
                "restart on-failure:3 → always",
            ]
        );
    }

    fn stack_of(services: &[(&str, Service)]) -> Stack {
        Stack {
            name: "s".into(),
            services: services
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// What the engine fills in for a container that does not declare these
    /// keys (and `docker update` cannot change) is not drift.
    #[test]
    fn engine_defaults_of_namespaces_and_sizes_are_not_drift() {
        let mut live = cfg();
        live.ipc = Some("private".into());
        live.cgroupns = Some("host".into());
        live.runtime = Some("runc".into());
        live.shm_size = DEFAULT_SHM_SIZE;
        live.security_opt.insert("label=disable".into());
        live.memory = 128 << 20;
        live.memory_swap = 256 << 20;
        live.endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:02".into());
        let mut desired = cfg();
        desired.memory = 128 << 20;
        // Discarded by an engine on cgroup v2 or without swap accounting.
        desired.memory_swappiness = Some(30);
        desired.oom_kill_disable = true;
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);
    }

    /// Declared keys are compared; limits `docker update` changes read as host versus git.
    #[test]
    fn declared_keys_are_compared() {
        let m = Masker::new(Default::default());
        let mut desired = cfg();
        desired.shm_size = 32 << 20;
        desired.ipc = Some("shareable".into());
        desired.cpu_shares = 512;
        desired.memory = 128 << 20;
        desired.memory_swap = 256 << 20;
        desired
            .sysctls
            .insert("net.core.somaxconn".into(), "1024".into());
        desired.dns = vec!["1.1.1.1".into()];
        let mut live = desired.clone();
        live.shm_size = DEFAULT_SHM_SIZE;
        live.cpu_shares = 256;
        live.memory_swap = 512 << 20;
        live.sysctls.clear();
        live.dns.clear();
        live.align_to(&desired);
        let reasons = worded(&live, &desired, reason, &m);
        assert_eq!(
            reasons,
            vec![
                "cpu shares 256 on the host, 512 in git",
                "dns added: 1.1.1.1",
                "memory swap 512 MiB on the host, 256 MiB in git",
                "shm size changed: 64 MiB → 32 MiB",
                "sysctl net.core.somaxconn added: 1024",
            ]
        );
    }

    /// `service:NAME` namespaces, links and volumes_from name the other
    /// service's container, as the engine takes them.
    #[test]
    fn desired_config_names_the_containers_of_services() {
        let db = Service {
            container_name: Some("the-db".into()),
            ..Service::default()
        };
        let web = Service {
            network_mode: Some("service:db".into()),
            ipc: Some("service:db".into()),
            pid: Some("host".into()),
            links: vec!["db:database".into(), "cache".into()],
            external_links: vec!["redis_1".into(), "legacy_db_1:mysql".into()],
            volumes_from: vec![
                "db:ro".into(),
                "container:outside:rw".into(),
                "cache".into(),
            ],
            devices: vec![crate::spec::model::Device {
                source: "/dev/fuse".into(),
                target: "/dev/fuse".into(),
                permissions: None,
            }],
            cpus: Some(1.5),
            pids_limit: Some(-1),
            ..Service::default()
        };
        let cache = Service::default();
        let stack = stack_of(&[("db", db), ("web", web.clone()), ("cache", cache)]);
        let c = desired_config(&stack, "web", &web, 1, None);
        assert_eq!(c.network_mode.as_deref(), Some("container:the-db"));
        assert_eq!(c.ipc.as_deref(), Some("container:the-db"));
        assert_eq!(c.pid.as_deref(), Some("host"));
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            c.links,
            set(&[
                "the-db:database",
                "s-cache-1:cache",
                "redis_1:redis_1",
                "legacy_db_1:mysql"
            ])
        );
        assert_eq!(
            c.volumes_from,
            set(&["the-db:ro", "outside:rw", "s-cache-1"])
        );
        assert_eq!(c.devices["/dev/fuse"], "/dev/fuse rwm");
        assert_eq!(c.nano_cpus, 1_500_000_000);
        assert!(c.fields().contains_key("cpus") && !c.fields().contains_key("pids limit"));
    }

    /// Mounts a container gets through `volumes_from`, a MAC address the
    /// engine assigned, and annotations an older engine does not report are
    /// not drift; a declared MAC address that differs is.
    #[test]
    fn inherited_mounts_assigned_macs_and_unreported_annotations() {
        let mut desired = cfg();
        desired.volumes_from.insert("s-data-1:ro".into());
        desired.annotations = Some(BTreeMap::from([("a".into(), "b".into())]));
        let mut live = desired.clone();
        live.annotations = None;
        live.mounts.insert(
            "/data".into(),
            MountDesc {
                kind: "volume",
                source: None,
                read_only: true,
            },
        );
        live.endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:05".into());
        live.align_to(&desired);
        assert_eq!(compare(&live.fields(), &desired.fields()), vec![]);

        desired.mac_address = Some("02:42:ac:11:00:02".into());
        let mut live2 = desired.clone();
        live2.mac_address = None;
        live2
            .endpoint_macs
            .insert("s_default".into(), "02:42:ac:11:00:05".into());
        live2.align_to(&desired);
        assert_eq!(
            compare(&live2.fields(), &desired.fields()),
            vec![Change::Changed {
                key: "mac address".into(),
                live: "02:42:ac:11:00:05".into(),
                desired: "02:42:ac:11:00:02".into(),
            }]
        );
    }

    /// Hooks are in the spec hash (through their labels) but no field line:
    /// the engine does not show them. A service without hooks gets no hook
    /// label, so its containers keep the hash they had before hooks existed.
    #[test]
    fn hooks_change_the_spec_hash_only_when_set() {
        use crate::spec::model::Hook;
        let plain = Service::default();
        let hooked = Service {
            post_start: vec![Hook {
                command: vec!["touch".into(), "/ready".into()],
                environment: BTreeMap::from([("API_TOKEN".into(), Some("tok-canary-1".into()))]),
                ..Hook::default()
            }],
            ..Service::default()
        };
        let stack = stack_of(&[("web", plain.clone())]);
        let config = |svc: &Service| desired_config(&stack, "web", svc, 1, None);
        let json = serde_json::to_string(&config(&plain)).unwrap();
        assert!(!json.contains("post-start") && !json.contains("pre-stop"));
        assert_eq!(hook_labels(&plain), BTreeMap::new());
        assert_ne!(
            spec_hash(&config(&plain), &[]),
            spec_hash(&config(&hooked), &[])
        );
        assert_eq!(config(&plain).fields(), config(&hooked).fields());
        let mut other_secret = hooked.clone();
        other_secret.post_start[0].environment =
            BTreeMap::from([("API_TOKEN".into(), Some("tok-canary-2".into()))]);
        let (a, b) = (config(&hooked).labels, config(&other_secret).labels);
        assert_eq!(hook_changes(&a, &b), vec!["post_start hooks changed"]);
        assert!(!b[labels::POST_START].contains("canary"));
        assert_eq!(hook_changes(&a, &a), Vec::<String>::new());
    }

    /// The keys added later stay out of the serialized config while unset, so
    /// the spec hash of a container that uses none of them does not change.
    #[test]
    fn unset_new_keys_keep_the_spec_hash() {
        let json = serde_json::to_value(cfg()).unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for new in [
            "network_mode",
            "ipc",
            "shm_size",
            "sysctls",
            "tty",
            "devices",
            "dns",
            "links",
            "volumes_from",
            "annotations",
            "memory_swap",
            "cpu_shares",
            "platform",
        ] {
            assert!(!keys.contains(new), "{new} is serialized while unset");
        }
        assert!(keys.contains("log") && keys.contains("extra_hosts"));
    }
}
