//! The command line: flags in, one result on stdout, logs and errors on stderr.
//!
//! This module is an API boundary: command names, flags and exit codes are a
//! contract. Exit codes ([`Exit`], mapped here and nowhere else): 0 success,
//! 1 any error (usage errors too, not clap's 2), and 2 is reserved for
//! "changes pending" (`reconcile --dry-run`, `diff`).
//!
//! Two stages, as ripgrep has them: [`args`] holds the raw flags (clap),
//! [`Global`] and each command's settings are what they mean, checked and
//! built; [`run`] matches on the command and calls one function per
//! command, in a file per command or family (`validate`, `diff`, `promote`,
//! `reconcile`, `rollback`, `status`, `history`, `agent`, `secret`). Errors
//! are `anyhow` here (the edge), typed below.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

/// A command's "Examples:" section (its `after_long_help`): each example a `# what it does`
/// line over the command line, indented two spaces; a line ending in `\` continues on the next.
/// `docs` reads the section back for the short help and the man pages, and a test parses every
/// example with the real flags, so keep to this shape.
macro_rules! examples {
    ($($what:literal => $line:literal),+ $(,)?) => {
        concat!("Examples:", $("\n  # ", $what, "\n  ", $line, "\n"),+)
    };
}

mod agent;
mod args;
mod diff;
pub mod docs;
mod drift;
mod history;
mod load;
mod promote;
mod reconcile;
mod rollback;
mod secret;
mod status;
mod validate;

pub use args::{
    AgentArgs, Cli, Command, DriftArgs, GraphFormat, InvalidDuration, LogFormat, ParallelArg,
    RenderFormat, StatusFormat, command,
};

/// How the process exits (an API boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Any error, usage errors too; a conflict in a dry run.
    Failure,
    /// Changes pending: `reconcile --dry-run` and `diff` found something to do.
    Pending,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::from(1),
            Exit::Pending => ExitCode::from(2),
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match command().try_get_matches().and_then(|m| {
        <Cli as clap::FromArgMatches>::from_arg_matches(&m).map_err(|e| e.format(&mut command()))
    }) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => Exit::Failure.into(),
            };
        }
    };
    init_logging(&cli);
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            // A load error is a list of located diagnostics, each already prefixed.
            match e.downcast_ref::<crate::spec::LoadError>() {
                Some(load) => eprintln!("{load}"),
                None => eprintln!("error: {e:#}"),
            }
            Exit::Failure.into()
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLIMSOLL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("plimsoll={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi({
            use std::io::IsTerminal as _;
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        });
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The state directory: the flag, else `/var/lib/plimsoll` as root, else the XDG state directory.
pub fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if is_root() {
        return PathBuf::from("/var/lib/plimsoll");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("plimsoll")
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The settings every command shares, built from the global flags.
struct Global {
    state_dir: PathBuf,
    log_format: LogFormat,
    loading: load::Loading,
}

impl Global {
    fn new(cli: &Cli) -> Result<Global> {
        let state_dir = state_dir(cli.state_dir.clone());
        tracing::debug!(state_dir = %state_dir.display(), "state directory");
        let loading = load::Loading {
            profiles: cli.profiles.clone(),
            age: secret::IdentitySource {
                flag: cli.age_identity.clone(),
                state_dir: state_dir.clone(),
            },
            host: load::HostView {
                pass_env: cli.pass_env.clone(),
                pass_secret_env: cli.pass_secret_env.clone(),
                allow_read: cli.allow_read.clone(),
            },
            host_policy: load::host_policy(cli.policy.as_deref())?,
        };
        Ok(Global {
            state_dir,
            log_format: cli.log_format,
            loading,
        })
    }
}

/// Runs one command: one function per command.
fn run(cli: Cli) -> Result<Exit> {
    let global = Global::new(&cli)?;
    let g = &global;
    match cli.command {
        Command::Secret(command) => {
            secret::run(command, &g.loading.age)?;
            Ok(Exit::Success)
        }
        Command::Validate { path } => validate::validate(&path, g),
        Command::Render {
            path,
            stacks,
            format,
            show_secrets,
            host,
        } => validate::render(&path, &stacks, format, (show_secrets, host.as_deref()), g),
        Command::Graph {
            path,
            format,
            hosts,
        } => validate::graph(&path, format, hosts, g),
        Command::Schema { kind } => done(print(&crate::schema::generate(kind))),
        // Both come from the definition alone: no configuration, engine or state directory.
        Command::Completions { shell } => done(print(&docs::completions(command(), shell))),
        Command::Man { dir: None } => done(print(&docs::man_page(command()))),
        Command::Man { dir: Some(dir) } => {
            let written = docs::man_pages(command(), &dir)?;
            eprintln!("wrote {} man pages to {}", written.len(), dir.display());
            Ok(Exit::Success)
        }
        Command::Diff {
            path,
            from,
            to,
            host,
            format,
        } => diff::run(&path, (&from, &to), host.as_deref(), format, g),
        Command::Promote {
            path,
            from,
            to,
            stacks,
        } => promote::run(&path, (&from, &to), &stacks, g),
        Command::Agent(args) => agent::run(*args, g),
        Command::Drift(args) => drift::run(*args, g),
        Command::Pause { stack } => history::pause(stack.as_deref(), true, g),
        Command::Resume { stack } => history::pause(stack.as_deref(), false, g),
        Command::Heal {
            reset,
            lock_timeout,
        } => history::heal(&reset, lock_timeout, g),
        Command::Healthcheck { listen } => agent::healthcheck(&listen),
        Command::Reconcile {
            path,
            dry_run,
            stacks,
            format,
            lock_timeout,
            prune,
            allow_empty,
            prune_volumes,
            parallel,
        } => {
            let pruning = crate::reconcile::Pruning {
                flag: prune,
                allow_empty,
                volumes: prune_volumes,
            };
            let a = reconcile::ReconcileArgs {
                path,
                dry_run,
                stacks,
                format,
                lock_timeout,
                pruning,
                parallel,
            };
            reconcile::run(a, g)
        }
        Command::Rollback {
            stack,
            to,
            lock_timeout,
            parallel,
        } => rollback::run(stack.as_deref(), to.as_deref(), lock_timeout, parallel, g),
        Command::History { limit, format } => history::history(limit, format, g),
        Command::Status {
            path,
            stacks,
            format,
        } => status::run(&path, &stacks, format, g),
    }
}

/// A command that prints and exits 0.
fn done(printed: Result<()>) -> Result<Exit> {
    printed.map(|()| Exit::Success)
}

fn print(out: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`plimsoll render | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn use_color() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
