//! `plimsoll.yaml`: what is not per stack — which stacks run on which host,
//! the policy, secret name patterns and the agent's defaults.
//!
//! This file is an API boundary: its schema is `schemas/plimsoll.json`,
//! generated from these types.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::GoDuration;

/// The whole of `plimsoll.yaml`. Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-stack settings, by stack name.
    #[serde(default)]
    pub stacks: BTreeMap<String, StackConfig>,
    /// Hosts by name, with labels that stack placements select on.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
    /// Environments (`stage`, `prod`, …), each chosen by host labels or names:
    /// a stack directory's `compose.<env>.yaml` and `.env.<env>` apply on its hosts.
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// Rules every revision must pass before anything changes.
    #[serde(default)]
    pub policy: Policy,
    /// Which variables hold secrets.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Defaults of `plimsoll agent`.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The audit log in the state directory.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Old images: how many per service stay on the host for `plimsoll rollback`.
    #[serde(default)]
    pub images: ImagesConfig,
    /// Where the agent sends notifications (sync failed, drift, self-heal gave up, …).
    #[serde(default)]
    pub notifications: Vec<NotificationTarget>,
    /// The agent's heartbeat: disk, reclaimable space, crash loops, containers
    /// down, secret values in container logs.
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// One notification receiver: a generic JSON webhook or a Slack-compatible one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationTarget {
    /// The URL to POST to. A URL that carries a token is a secret: prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable of the agent that holds the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `json` (plimsoll's event as JSON) or `slack` (`{"text": …}`, also Mattermost, Rocket.Chat, Discord's /slack).
    #[serde(default)]
    pub format: NotificationFormat,
    /// Only these events (default: every event).
    #[serde(default)]
    pub events: Vec<NotificationEvent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationFormat {
    #[default]
    Json,
    Slack,
}

/// What the agent notifies about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    SyncSucceeded,
    SyncFailed,
    DriftDetected,
    SelfHealGaveUp,
    UnknownContainer,
    RevisionRejected,
    /// A heartbeat alert started (or changed severity).
    AlertStarted,
    /// A heartbeat alert resolved.
    AlertResolved,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::SyncSucceeded => "sync_succeeded",
            NotificationEvent::SyncFailed => "sync_failed",
            NotificationEvent::DriftDetected => "drift_detected",
            NotificationEvent::SelfHealGaveUp => "self_heal_gave_up",
            NotificationEvent::UnknownContainer => "unknown_container",
            NotificationEvent::RevisionRejected => "revision_rejected",
            NotificationEvent::AlertStarted => "alert_started",
            NotificationEvent::AlertResolved => "alert_resolved",
        }
    }
}

/// `images:`: after a successful apply, images that plimsoll pulled or built
/// for a service and that no container uses any more are removed, keeping
/// the last `keep` images of each service so a rollback needs no pull or
/// build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Images kept per service, the one it runs included (default 3; at least 1).
    #[serde(default)]
    pub keep: Option<usize>,
    /// `false` keeps every image (default true).
    #[serde(default)]
    pub prune: Option<bool>,
}

impl ImagesConfig {
    pub const DEFAULT_KEEP: usize = 3;

    /// How many images per service stay, at least the one in use.
    pub fn keep(&self) -> usize {
        self.keep.unwrap_or(Self::DEFAULT_KEEP).max(1)
    }
}

/// `audit:`: how the audit log rotates. The defaults are also the minimums:
/// a repository may keep more history, never less (a commit must not be able
/// to erase the record of what was applied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Rotate `audit.jsonl` when it grows past this many MiB (default and minimum 10).
    #[serde(default)]
    pub max_size_mib: Option<u64>,
    /// How many rotated files to keep (default and minimum 5).
    #[serde(default)]
    pub keep: Option<usize>,
}

impl AuditConfig {
    /// The least `max_size_mib` takes effect.
    pub const MIN_SIZE_MIB: u64 = 10;
    /// The least `keep` takes effect.
    pub const MIN_KEEP: usize = 5;

    /// The size at which the log rotates, in bytes: the setting, at least the minimum.
    pub fn max_bytes(&self) -> u64 {
        self.max_size_mib
            .unwrap_or(Self::MIN_SIZE_MIB)
            .clamp(Self::MIN_SIZE_MIB, u64::MAX >> 20)
            << 20
    }

    /// How many rotated files stay: the setting, at least the minimum.
    pub fn keep(&self) -> usize {
        self.keep.unwrap_or(Self::MIN_KEEP).max(Self::MIN_KEEP)
    }
}

/// Settings of one stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Host names this stack runs on. With neither `hosts` nor `placement`, it runs on every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Runs on every host whose labels include all of these.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Remove containers and networks of this stack that git no longer declares.
    #[serde(default)]
    pub prune: Option<bool>,
    /// Allow `--prune-volumes` to remove this stack's named volumes.
    #[serde(default)]
    pub prune_volumes: bool,
    /// Revert drift automatically (agent).
    #[serde(default)]
    pub self_heal: Option<bool>,
    /// Freeze changes: observed and reported, never changed.
    #[serde(default)]
    pub paused: bool,
    /// The Compose profiles active for this stack (instead of `COMPOSE_PROFILES`;
    /// `--profile` wins over both).
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A host of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Freeze changes on this whole host.
    #[serde(default)]
    pub paused: bool,
}

/// An environment: the hosts whose labels include all of `labels`, and the hosts named in `hosts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Labels (under `hosts:`) a host must all carry to be in this environment.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hosts in this environment by name.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Rules the stacks on this environment's hosts must pass besides the
    /// repository's `policy:` (e.g. `pinned_images` in prod only).
    #[serde(default)]
    pub policy: Option<Policy>,
}

impl EnvironmentConfig {
    /// Whether `host` (with `labels` from `hosts:`) is in this environment.
    pub fn contains(&self, host: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.hosts.iter().any(|h| h == host)
            || (!self.labels.is_empty()
                && labels.is_some_and(|l| self.labels.iter().all(|(k, v)| l.get(k) == Some(v))))
    }
}

/// The policy: organisational rules turned into checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Privileged containers are forbidden unless listed here.
    #[serde(default)]
    pub privileged: Option<PrivilegedRule>,
    /// Images must come from one of these registries.
    #[serde(default)]
    pub registries: Option<RegistriesRule>,
    /// Images must be pinned by digest (or an immutable tag) in these stacks.
    #[serde(default)]
    pub pinned_images: Option<PinnedRule>,
    /// Host ports services may publish.
    #[serde(default)]
    pub host_ports: Option<HostPortsRule>,
    /// Labels every service must carry.
    #[serde(default)]
    pub required_labels: Vec<String>,
    /// Variables every stack must define (in `.env` or the environment).
    #[serde(default)]
    pub required_variables: Vec<String>,
    /// Restart policies services may use; a service must set one of them.
    #[serde(default)]
    pub restart: Vec<String>,
    /// What to do about containers that plimsoll did not create.
    #[serde(default)]
    pub unknown_containers: UnknownContainers,
}

/// `policy.privileged`: every way a container gets root on the host —
/// `privileged: true`, bind mounts of the engine's socket or of `/`, `/etc`,
/// `/proc`, `/sys`, `/dev`, `/var/lib/docker`, capabilities beyond Docker's
/// default set, the host's pid/ipc/uts/user/cgroup/network namespaces,
/// devices, and `security_opt` that turn confinement off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivilegedRule {
    /// `stack/service` names allowed any of it.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Capabilities `cap_add` may add beyond Docker's default set (e.g. `NET_ADMIN`);
    /// `ALL` is never allowed this way.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `policy.registries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistriesRule {
    /// Registry hosts (`docker.io`, `ghcr.io`, `registry.example.com:5000`).
    pub allow: Vec<String>,
}

/// `policy.pinned_images`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinnedRule {
    /// Stacks the rule applies to; empty means every stack.
    #[serde(default)]
    pub stacks: Vec<String>,
    /// A regular expression for tags treated as immutable (e.g. `^v\d+\.\d+\.\d+$`);
    /// without it only `@sha256:` digests count as pinned.
    #[serde(default)]
    pub immutable_tag: Option<String>,
}

/// `policy.host_ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPortsRule {
    /// Ports or ranges (`"80"`, `"8000-8999"`).
    pub allow: Vec<PortSpec>,
}

/// A port or a range, written as a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Range(String),
}

/// `policy.unknown_containers` (ordered from the least to the most strict).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UnknownContainers {
    /// List them in plans and status.
    #[default]
    Report,
    /// Also print a warning.
    Warn,
    /// Fail `reconcile` and `status` while one runs.
    Fail,
}

/// `secrets:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Name patterns of secret variables (`*` wildcard, case-insensitive), added to the defaults.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// The age recipients (`age1…`, one per host and per person who edits secrets)
    /// that `plimsoll secret encrypt` and `plimsoll secret edit` encrypt to
    /// when no `-r`/`-R` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub age_recipients: Vec<String>,
}

/// `agent:` defaults; a command-line flag or its environment variable wins.
/// The repository, its ref, path, secret files and the listen address are
/// not here: the agent needs them before it can read this file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The host name stacks are assigned by (default: the engine's name).
    #[serde(default)]
    pub host: Option<String>,
    /// Only these stacks (default: every stack assigned to this host).
    #[serde(default)]
    pub stacks: Vec<String>,
    /// How often to poll the repository (default 30s).
    #[serde(default)]
    pub interval: Option<GoDuration>,
    /// How often to re-check everything even without events (default 5m).
    #[serde(default)]
    pub resync: Option<GoDuration>,
    /// Prune by default (default false).
    #[serde(default)]
    pub prune: Option<bool>,
    /// Self-heal by default (default true).
    #[serde(default)]
    pub self_heal: Option<bool>,
    /// Failed heal attempts of one service before giving up (default 3).
    #[serde(default)]
    pub heal_attempts: Option<u32>,
    /// Wait after the first failed heal of a service; doubles per failure (default 10s).
    #[serde(default)]
    pub heal_backoff: Option<GoDuration>,
    /// More heals than this of one service within `crash_loop_window` is a crash loop: heals back off (default 5).
    #[serde(default)]
    pub crash_loop_heals: Option<u32>,
    /// The window of `crash_loop_heals` (default 10m).
    #[serde(default)]
    pub crash_loop_window: Option<GoDuration>,
}

/// `alerts:`: the agent's heartbeat, every `interval`. Each alert is
/// notified once when it starts and once when it resolves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often the heartbeat looks at the host (default 1m, at least 1s).
    #[serde(default)]
    pub interval: Option<GoDuration>,
    /// Disk use of the engine's data root and of each named volume's file system.
    #[serde(default)]
    pub disk: DiskAlerts,
    /// A warning when unused images, build cache and stopped containers could
    /// free more than this (`10g`, `500m`, binary units as Docker writes sizes;
    /// default 10g).
    #[serde(default)]
    pub reclaimable: Option<Size>,
    /// A managed container stopped for longer than this is alerted (default 1h).
    #[serde(default)]
    pub down_after: Option<GoDuration>,
    /// Restarts of one service that make a crash loop.
    #[serde(default)]
    pub crash_loop: CrashLoopAlerts,
    /// Follow the logs of managed containers and alert when a secret value
    /// appears in them (default true).
    #[serde(default)]
    pub log_secrets: Option<bool>,
}

/// `alerts.disk`: percentages of a file system in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskAlerts {
    /// A warning at or above this percentage (default 85).
    #[serde(default)]
    pub warn_percent: Option<u8>,
    /// An alert at or above this percentage (default 90).
    #[serde(default)]
    pub alert_percent: Option<u8>,
}

/// `alerts.crash_loop`: more than `restarts` restarts (Docker's restart
/// policy and the agent's heals together) within `window`. The defaults are
/// the agent's own crash-loop notion: `agent.crash_loop_heals` (5) and
/// `agent.crash_loop_window` (10m).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrashLoopAlerts {
    #[serde(default)]
    pub restarts: Option<u32>,
    #[serde(default)]
    pub window: Option<GoDuration>,
}

/// A size in bytes: a number, or Docker's notation (`512m`, `10g`, `1.5GiB`; binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct Size(pub u64);

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        super::model::Bytes::parse(&s).map(|b| Size(b.0)).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size `{s}`: use a number of bytes or a number with a unit, like 500m or 10g"
            ))
        })
    }
}

/// [`AlertsConfig`] with its defaults filled in: what the heartbeat compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub interval: std::time::Duration,
    pub disk_warn_percent: u8,
    pub disk_alert_percent: u8,
    pub reclaimable_bytes: u64,
    pub down_after: std::time::Duration,
    pub crash_restarts: u32,
    pub crash_window: std::time::Duration,
    pub log_secrets: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from_config(&Config::default())
    }
}

impl Thresholds {
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
    pub const DEFAULT_DISK_WARN: u8 = 85;
    pub const DEFAULT_DISK_ALERT: u8 = 90;
    pub const DEFAULT_RECLAIMABLE: u64 = 10 << 30;
    pub const DEFAULT_DOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
    /// `agent.crash_loop_heals`'s default.
    pub const DEFAULT_CRASH_RESTARTS: u32 = 5;
    /// `agent.crash_loop_window`'s default.
    pub const DEFAULT_CRASH_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

    /// The thresholds of `config` (`alerts:`, crash loops defaulting to `agent:`).
    pub fn from_config(config: &Config) -> Thresholds {
        let a = &config.alerts;
        Thresholds {
            interval: a.interval.map_or(Self::DEFAULT_INTERVAL, |d| d.0),
            disk_warn_percent: a.disk.warn_percent.unwrap_or(Self::DEFAULT_DISK_WARN),
            disk_alert_percent: a.disk.alert_percent.unwrap_or(Self::DEFAULT_DISK_ALERT),
            reclaimable_bytes: a.reclaimable.map_or(Self::DEFAULT_RECLAIMABLE, |s| s.0),
            down_after: a.down_after.map_or(Self::DEFAULT_DOWN_AFTER, |d| d.0),
            crash_restarts: a
                .crash_loop
                .restarts
                .or(config.agent.crash_loop_heals)
                .unwrap_or(Self::DEFAULT_CRASH_RESTARTS),
            crash_window: a
                .crash_loop
                .window
                .or(config.agent.crash_loop_window)
                .map_or(Self::DEFAULT_CRASH_WINDOW, |d| d.0),
            log_secrets: a.log_secrets.unwrap_or(true),
        }
    }

    /// What is wrong with `alerts:`: (key path under `alerts`, message, hint).
    pub fn problems(a: &AlertsConfig) -> Vec<(&'static [&'static str], String, String)> {
        let mut out: Vec<(&'static [&'static str], String, String)> = Vec::new();
        let percent = |v: Option<u8>| v.filter(|p| !(1..=100).contains(p));
        if let Some(p) = percent(a.disk.warn_percent) {
            out.push((
                &["disk", "warn_percent"],
                format!("{p} is not a percentage from 1 to 100"),
                "write e.g. `warn_percent: 85`".into(),
            ));
        }
        if let Some(p) = percent(a.disk.alert_percent) {
            out.push((
                &["disk", "alert_percent"],
                format!("{p} is not a percentage from 1 to 100"),
                "write e.g. `alert_percent: 90`".into(),
            ));
        }
        let warn = a.disk.warn_percent.unwrap_or(Self::DEFAULT_DISK_WARN);
        let alert = a.disk.alert_percent.unwrap_or(Self::DEFAULT_DISK_ALERT);
        if warn > alert && out.is_empty() {
            out.push((
                &["disk", "warn_percent"],
                format!("the warning ({warn} %) is above the alert ({alert} %)"),
                "set `warn_percent` at or below `alert_percent`".into(),
            ));
        }
        let short = |d: Option<GoDuration>| d.filter(|d| d.0 < std::time::Duration::from_secs(1));
        for (key, d) in [
            (&["interval"][..], short(a.interval)),
            (&["down_after"][..], short(a.down_after)),
            (&["crash_loop", "window"][..], short(a.crash_loop.window)),
        ] {
            if let Some(d) = d {
                out.push((
                    key,
                    format!("{d} is shorter than the least, 1s"),
                    "write a duration of 1s or more, like 30s or 1m".into(),
                ));
            }
        }
        if a.crash_loop.restarts == Some(0) {
            out.push((
                &["crash_loop", "restarts"],
                "0 restarts would call every container a crash loop".into(),
                "write 1 or more (default 5)".into(),
            ));
        }
        out
    }
}

/// Which stacks run on which host ([`Config::assignment`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment<'s> {
    /// Each known host and the stacks it runs (those for every host included).
    pub hosts: BTreeMap<String, Vec<&'s str>>,
    /// Stacks without `hosts` or `placement`: they run on every host.
    pub everywhere: Vec<&'s str>,
    /// Stacks whose assignment matches no known host: they run nowhere yet.
    pub nowhere: Vec<&'s str>,
}

impl Assignment<'_> {
    /// `host: stack, stack` lines for people, and the stacks that run nowhere.
    pub fn to_text(&self, config: &Config) -> String {
        let mut out = String::new();
        for (host, stacks) in &self.hosts {
            let list = if stacks.is_empty() {
                "(no stacks)".to_string()
            } else {
                stacks.join(", ")
            };
            out.push_str(&format!("  {}: {list}\n", config.host_title(host)));
        }
        if !self.everywhere.is_empty() {
            out.push_str(&format!(
                "  every host (also hosts not listed): {}\n",
                self.everywhere.join(", ")
            ));
        }
        out
    }
}

impl Config {
    /// Whether `stack` runs on the host called `host`: named in the stack's
    /// `hosts`, or the host's labels (from `hosts:`) include every label of the
    /// stack's `placement`. A stack with neither runs on every host.
    pub fn runs_on(&self, stack: &str, host: &str) -> bool {
        let Some(sc) = self.stacks.get(stack) else {
            return true;
        };
        if self.runs_everywhere(stack) {
            return true;
        }
        let placement = sc.placement.as_ref().filter(|p| !p.labels.is_empty());
        if sc.hosts.iter().any(|h| h == host) {
            return true;
        }
        let labels = self.hosts.get(host).map(|h| &h.labels);
        placement.is_some_and(|p| {
            labels.is_some_and(|l| p.labels.iter().all(|(k, v)| l.get(k) == Some(v)))
        })
    }

    /// Whether `stack` has no assignment (neither `hosts` nor `placement`): it runs on every host.
    pub fn runs_everywhere(&self, stack: &str) -> bool {
        self.stacks.get(stack).is_none_or(|sc| {
            sc.hosts.is_empty() && sc.placement.as_ref().is_none_or(|p| p.labels.is_empty())
        })
    }

    /// The hosts this file names: the keys of `hosts:`, every stack's and every environment's `hosts` list.
    pub fn host_names(&self) -> BTreeSet<String> {
        self.hosts
            .keys()
            .chain(self.stacks.values().flat_map(|s| &s.hosts))
            .chain(self.environments.values().flat_map(|e| &e.hosts))
            .cloned()
            .collect()
    }

    /// A host's name with its labels: `web-1 (role=web, zone=a)`.
    pub fn host_title(&self, host: &str) -> String {
        let labels: Vec<String> = self
            .hosts
            .get(host)
            .map(|h| h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        if labels.is_empty() {
            host.to_string()
        } else {
            format!("{host} ({})", labels.join(", "))
        }
    }

    /// Whether `plimsoll.yaml` says anything about hosts: a `hosts:` entry, or
    /// a stack with `hosts` or `placement`. Without that, every stack runs on
    /// every host and no host needs a name.
    pub fn assigns_hosts(&self) -> bool {
        !self.hosts.is_empty()
            || self
                .stacks
                .values()
                .any(|s| !s.hosts.is_empty() || s.placement.is_some())
    }

    /// Which of `stacks` run where: every host named in `hosts:` or in a
    /// stack's `hosts` list, with the stacks assigned to it (stacks without
    /// an assignment run on every host, and are listed under each).
    pub fn assignment<'s>(&self, stacks: &[&'s str]) -> Assignment<'s> {
        let everywhere: Vec<&str> = stacks
            .iter()
            .copied()
            .filter(|s| self.runs_everywhere(s))
            .collect();
        let hosts: BTreeMap<String, Vec<&str>> = self
            .host_names()
            .into_iter()
            .map(|h| {
                let mine = stacks
                    .iter()
                    .copied()
                    .filter(|s| self.runs_on(s, &h))
                    .collect();
                (h, mine)
            })
            .collect();
        let nowhere = stacks
            .iter()
            .copied()
            .filter(|s| !everywhere.contains(s) && !hosts.values().any(|v| v.contains(s)))
            .collect();
        Assignment {
            hosts,
            everywhere,
            nowhere,
        }
    }

    /// The environments `host` is in (more than one is an error of `validate`).
    pub fn environments_of(&self, host: &str) -> Vec<&str> {
        let labels = self.hosts.get(host).map(|h| &h.labels);
        self.environments
            .iter()
            .filter(|(_, e)| e.contains(host, labels))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Whether a host of environment `env` runs the stack named `stack`.
    pub fn runs_in(&self, stack: &str, env: &str) -> bool {
        self.host_names()
            .iter()
            .any(|h| self.environment_of(h) == Some(env) && self.runs_on(stack, h))
    }

    /// The environment of `host`: the first it is in (see [`Config::environments_of`]).
    pub fn environment_of(&self, host: &str) -> Option<&str> {
        self.environments_of(host).into_iter().next()
    }

    /// Whether changes to `stack` on `host` are frozen (`paused:` on the stack or the host).
    pub fn is_paused(&self, stack: &str, host: &str) -> bool {
        self.stacks.get(stack).is_some_and(|s| s.paused)
            || self.hosts.get(host).is_some_and(|h| h.paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;

    fn config(src: &str) -> Config {
        yaml::from_node(&yaml::parse(src, std::path::Path::new("plimsoll.yaml")).unwrap()).unwrap()
    }

    #[test]
    fn host_assignment() {
        let c = config(
            "hosts:\n  web-1: {labels: {role: web, zone: a}}\n  db-1: {labels: {role: db}, paused: true}\n\
             stacks:\n  shop: {placement: {labels: {role: web}}}\n  pinned: {hosts: [db-1]}\n  both: {hosts: [db-1], placement: {labels: {zone: a}}}\n",
        );
        assert!(c.runs_on("shop", "web-1"));
        assert!(!c.runs_on("shop", "db-1"));
        assert!(!c.runs_on("shop", "unlisted"));
        assert!(c.runs_on("pinned", "db-1"));
        assert!(!c.runs_on("pinned", "web-1"));
        assert!(c.runs_on("both", "db-1") && c.runs_on("both", "web-1"));
        assert!(
            c.runs_on("anything-else", "any-host"),
            "no settings: every host"
        );
        assert!(c.is_paused("shop", "db-1") && !c.is_paused("shop", "web-1"));

        let a = c.assignment(&["shop", "pinned", "both", "free"]);
        assert_eq!(a.hosts["web-1"], ["shop", "both", "free"]);
        assert_eq!(a.hosts["db-1"], ["pinned", "both", "free"]);
        assert_eq!(a.everywhere, ["free"]);
        assert!(a.nowhere.is_empty());
        assert_eq!(
            a.to_text(&c),
            "  db-1 (role=db): pinned, both, free\n  web-1 (role=web, zone=a): shop, both, free\n  every host (also hosts not listed): free\n"
        );
        // A placement no host matches: the stack runs nowhere (validate warns).
        let c = config(
            "stacks:\n  lost: {placement: {labels: {role: gpu}}}\n  named: {hosts: [x-1]}\n",
        );
        assert!(c.assigns_hosts());
        let a = c.assignment(&["lost", "named"]);
        assert_eq!(a.nowhere, ["lost"]);
        assert_eq!(a.hosts["x-1"], ["named"]);
        assert!(!config("stacks:\n  s: {prune: true}\n").assigns_hosts());
    }

    #[test]
    fn environments_by_label_and_name() {
        let c = config(
            "hosts:\n  a: {labels: {env: prod}}\n  b: {labels: {env: stage}}\n  c: {}\n\
             environments:\n  prod: {labels: {env: prod}}\n  stage: {labels: {env: stage}, hosts: [c]}\n",
        );
        assert_eq!(c.environment_of("a"), Some("prod"));
        assert_eq!(c.environment_of("b"), Some("stage"));
        assert_eq!(c.environment_of("c"), Some("stage"));
        assert_eq!(c.environment_of("unlisted"), None);
    }

    #[test]
    fn empty_sections_and_durations() {
        let c = config("policy:\nagent:\n  interval: 1m30s\n");
        assert_eq!(c.agent.interval.unwrap().to_string(), "1m30s");
        let e = yaml::from_node::<Config>(
            &yaml::parse("agent:\n  interval: 30\n", std::path::Path::new("p")).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert!(e.message.contains("invalid duration"), "{}", e.message);
    }
}
