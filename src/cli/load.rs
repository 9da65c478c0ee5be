//! What loading commands share: the variables and directories the host
//! lets the desired state see ([`HostView`]), the profiles, the age
//! identity and the host policy ([`Loading`]), and [`load`] itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::secret;
use crate::source;
use crate::spec::{self, Desired};

/// What the host lets the desired state see: the process variables it passes
/// (`--pass-env`, `--pass-secret-env`) and the host directories it allows
/// (`--allow-read`). Nothing in a repository widens these.
#[derive(Debug, Clone, Default)]
pub(super) struct HostView {
    pub(super) pass_env: Vec<String>,
    pub(super) pass_secret_env: Vec<String>,
    pub(super) allow_read: Vec<PathBuf>,
}

impl HostView {
    /// The passed variables that are set (a passed name that is unset stays unset).
    pub(super) fn env(&self) -> BTreeMap<String, String> {
        self.pass_env
            .iter()
            .chain(&self.pass_secret_env)
            .filter_map(|k| Some((k.clone(), std::env::var(k).ok()?)))
            .collect()
    }

    /// The passed names the host marks secret.
    pub(super) fn secret_env(&self) -> std::collections::BTreeSet<String> {
        self.pass_secret_env.iter().cloned().collect()
    }

    /// The file system, confined to the repository that holds `path`.
    pub(super) fn files(&self, path: &std::path::Path) -> Result<source::ConfinedFs> {
        let confine = source::Confine::for_path(path, &self.allow_read)
            .context("cannot find the desired state")?;
        Ok(source::ConfinedFs::new(confine))
    }
}

/// The load options of `--profile` (none given: plimsoll.yaml and `COMPOSE_PROFILES` decide).
pub(super) fn load_options(profiles: &[String]) -> spec::LoadOptions {
    spec::LoadOptions {
        profiles: (!profiles.is_empty()).then(|| profiles.to_vec()),
        ..Default::default()
    }
}

/// Reads the host policy of `--policy` / `PLIMSOLL_POLICY`.
pub(super) fn host_policy(
    file: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<spec::policy::HostPolicy>>> {
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read the host policy {} (--policy, PLIMSOLL_POLICY); check the path",
            file.display()
        )
    })?;
    let policy =
        spec::policy::HostPolicy::parse(file, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(Some(std::sync::Arc::new(policy)))
}

/// What every loading command shares: the profiles, the age identity and the host policy.
pub(super) struct Loading {
    pub(super) profiles: Vec<String>,
    pub(super) age: secret::IdentitySource,
    pub(super) host: HostView,
    pub(super) host_policy: Option<std::sync::Arc<spec::policy::HostPolicy>>,
}

impl Loading {
    /// The loader's options: the profiles, the age identity when there is
    /// one, and the passed variables the host marks secret.
    pub(super) fn options(&self) -> Result<spec::LoadOptions> {
        let mut options = load_options(&self.profiles);
        options.age = self.age.identities()?;
        options.secret_env = self.host.secret_env();
        options.host_policy = self.host_policy.clone();
        Ok(options)
    }
}

/// Loads the desired state at `path`; prints warnings; an error lists every problem.
pub(super) fn load(
    path: &std::path::Path,
    stacks: &[String],
    loading: &Loading,
) -> Result<Desired> {
    let files = loading.host.files(path)?;
    let desired = load_from(&files, path, stacks, loading)?;
    for w in &desired.warnings {
        eprintln!("{w}");
    }
    Ok(desired)
}

/// Loads the desired state at `path` as [`load`] does, through `files` (a
/// patch's, to see the repository as it will be); warnings are not printed.
pub(super) fn load_from(
    files: &dyn source::Files,
    path: &std::path::Path,
    stacks: &[String],
    loading: &Loading,
) -> Result<Desired> {
    let layout = source::discover_in(files, path).context("cannot find the desired state")?;
    let options = loading.options()?;
    Ok(spec::load_with(
        &layout,
        files,
        &loading.host.env(),
        stacks,
        &options,
    )?)
}
