//! The command line: flags in, one result on stdout, logs and errors on stderr.
//!
//! This module is an API boundary: command names, flags and exit codes are a
//! contract. Exit codes: 0 success, 1 any error (usage errors too, not clap's
//! 2), and 2 is reserved for "changes pending" (`reconcile --dry-run`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::events::{LogProgress, Progress, TerminalProgress};
use crate::graph::{self, StackGraph};
use crate::plan;
use crate::reconcile;
use crate::schema::{self, SchemaKind};
use crate::source::{self, LocalFs};
use crate::spec::{self, Desired, render};

/// Keeps plain Docker hosts exactly where git says they should be.
#[derive(Debug, Parser)]
#[command(name = "plimsoll", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// State directory (lock, history, revisions). Default: /var/lib/plimsoll as root, else $XDG_STATE_HOME/plimsoll.
    #[arg(long, global = true, env = "PLIMSOLL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PLIMSOLL_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, interpolate, graph and check the policy; exit 0 when valid, 1 with every error found.
    ///
    /// Example: plimsoll validate examples/stacks
    Validate {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print the desired state as `docker compose config` would (interpolated, normalized).
    ///
    /// Example: plimsoll render examples/stacks --stack shop --format json
    Render {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        #[arg(long, value_enum, default_value_t = RenderFormat::Yaml)]
        format: RenderFormat,
        /// Print secret values instead of masking them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the dependency graph: waves of services that start together.
    ///
    /// Example: plimsoll graph examples/stacks --format mermaid
    Graph {
        #[arg(default_value = ".")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Compute the plan that brings this host to git's state, and apply it.
    ///
    /// With --dry-run: print the plan and change nothing; exit 0 in sync, 2 changes pending, 1 error.
    ///
    /// Example: plimsoll reconcile examples/stacks --dry-run --format markdown
    Reconcile {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print the plan and stop; nothing on the engine changes.
        #[arg(long)]
        dry_run: bool,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        #[arg(long, value_enum, default_value_t = plan::Format::Text)]
        format: plan::Format,
    },
    /// Per service: in sync, drifted (and how), missing, stopped or conflict; health; unknown containers.
    ///
    /// Example: plimsoll status examples/stacks
    Status {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Print a JSON Schema generated from plimsoll's types.
    ///
    /// Example: plimsoll schema plimsoll > plimsoll.schema.json
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    init_logging(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A load error is a list of located diagnostics, each already prefixed.
            match e.downcast_ref::<spec::LoadError>() {
                Some(load) => eprintln!("{load}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(1)
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
        .with_writer(std::io::stderr);
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

fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Loads the desired state at `path`; prints warnings; an error lists every problem.
fn load(path: &std::path::Path, stacks: &[String]) -> Result<Desired> {
    let layout = source::discover(path).context("cannot find the desired state")?;
    let desired = spec::load(&layout, &LocalFs, &process_env(), stacks)?;
    for w in &desired.warnings {
        eprintln!("{w}");
    }
    Ok(desired)
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

fn run(cli: Cli) -> Result<ExitCode> {
    tracing::debug!(state_dir = %state_dir(cli.state_dir.clone()).display(), "state directory");
    match cli.command {
        Command::Validate { path } => {
            let desired = load(&path, &[])?;
            let mut out = String::new();
            let services: usize = desired.stacks.iter().map(|s| s.services.len()).sum();
            out.push_str(&format!(
                "valid: {} stack{}, {services} service{}\n",
                desired.stacks.len(),
                if desired.stacks.len() == 1 { "" } else { "s" },
                if services == 1 { "" } else { "s" }
            ));
            for s in &desired.stacks {
                let names: Vec<&str> = s.services.keys().map(String::as_str).collect();
                out.push_str(&format!("  {}: {}\n", s.name, names.join(", ")));
            }
            print(&out)?;
        }
        Command::Render {
            path,
            stacks,
            format,
            show_secrets,
        } => {
            let desired = load(&path, &stacks)?;
            let values: Vec<serde_json::Value> = desired
                .stacks
                .iter()
                .map(|s| render::to_value(s, &desired.masker, show_secrets))
                .collect();
            let out = match (format, values.as_slice()) {
                (RenderFormat::Json, [one]) => serde_json::to_string_pretty(one)? + "\n",
                (RenderFormat::Json, many) => {
                    let by_name: serde_json::Map<String, serde_json::Value> = desired
                        .stacks
                        .iter()
                        .zip(many)
                        .map(|(s, v)| (s.name.clone(), v.clone()))
                        .collect();
                    serde_json::to_string_pretty(&by_name)? + "\n"
                }
                (RenderFormat::Yaml, many) => many
                    .iter()
                    .map(render::to_yaml)
                    .collect::<Vec<_>>()
                    .join("---\n"),
            };
            print(&out)?;
        }
        Command::Graph { path, format } => {
            let desired = load(&path, &[])?;
            let graphs: Vec<StackGraph> = desired
                .stacks
                .iter()
                .map(|s| StackGraph::build(s).expect("validation rejected cycles"))
                .collect();
            let out = match format {
                GraphFormat::Text => graph::to_text(&graphs),
                GraphFormat::Dot => graph::to_dot(&graphs),
                GraphFormat::Mermaid => graph::to_mermaid(&graphs),
            };
            print(&out)?;
        }
        Command::Schema { kind } => print(&schema::generate(kind))?,
        Command::Reconcile {
            path,
            dry_run,
            stacks,
            format,
        } => {
            let desired = load(&path, &stacks)?;
            return runtime()?.block_on(reconcile_cmd(&desired, dry_run, format, cli.log_format));
        }
        Command::Status {
            path,
            stacks,
            format,
        } => {
            let desired = load(&path, &stacks)?;
            let status = runtime()?.block_on(async {
                let observed = reconcile::observe(&desired, None).await?;
                Ok::<_, anyhow::Error>(reconcile::status(&observed))
            })?;
            let out = match format {
                StatusFormat::Text => reconcile::status_text(&status),
                StatusFormat::Json => serde_json::to_string_pretty(&status)? + "\n",
            };
            print(&desired.masker.mask(&out))?;
        }
    }
    Ok(ExitCode::SUCCESS)
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

fn render_plan(plan: &plan::Plan, format: plan::Format) -> Result<String> {
    Ok(match format {
        plan::Format::Text => plan::to_text(plan, use_color()),
        plan::Format::Json => serde_json::to_string_pretty(plan)? + "\n",
        plan::Format::Markdown => plan::to_markdown(plan),
    })
}

async fn reconcile_cmd(
    desired: &Desired,
    dry_run: bool,
    format: plan::Format,
    log_format: LogFormat,
) -> Result<ExitCode> {
    let observed = reconcile::observe(desired, None).await?;
    let masker = &desired.masker;
    if dry_run {
        print(&masker.mask(&render_plan(&observed.plan, format)?))?;
        return Ok(if !observed.plan.conflicts.is_empty() {
            ExitCode::from(1)
        } else if observed.plan.is_noop() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    for p in &observed.paused {
        eprintln!("{p}: paused; changes are shown, not applied");
    }
    let plan = observed.applicable_plan();
    print(&masker.mask(&render_plan(&plan, format)?))?;
    if plan.is_noop() && plan.conflicts.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::IsTerminal as _;
    let progress: Box<dyn Progress> =
        if std::io::stderr().is_terminal() && log_format == LogFormat::Text {
            Box::new(TerminalProgress::new(masker.clone()))
        } else {
            Box::new(LogProgress::new(masker.clone()))
        };
    let stacks = observed.changeable();
    match crate::apply::apply(
        &observed.engine,
        &stacks,
        &plan,
        &observed.live,
        masker,
        progress.as_ref(),
    )
    .await
    {
        Ok(report) => {
            eprintln!(
                "applied {} action{}",
                report.outcomes.len(),
                if report.outcomes.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", masker.mask(&e.to_string()));
            Ok(ExitCode::from(1))
        }
    }
}
