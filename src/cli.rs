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
use crate::spec::model::PullPolicy;
use crate::spec::{self, Desired, render};
use crate::state::StateDir;

pub mod docs;

/// A command's "Examples:" section (its `after_long_help`): each example a `# what it does`
/// line over the command line, indented two spaces; a line ending in `\` continues on the next.
/// `docs` reads the section back for the short help and the man pages, and a test parses every
/// example with the real flags, so keep to this shape.
macro_rules! examples {
    ($($what:literal => $line:literal),+ $(,)?) => {
        concat!("Examples:", $("\n  # ", $what, "\n  ", $line, "\n"),+)
    };
}

mod secret;

/// Keeps plain Docker hosts exactly where git says they should be.
///
/// A config repository in git holds Compose stacks; plimsoll loads them as Docker Compose does,
/// checks them against the policy in plimsoll.yaml, compares them field by field with the live
/// containers of the engine DOCKER_HOST names, and applies the smallest change in health-gated
/// waves, rolling back a replacement that does not become healthy.
///
/// PATH is a config repository root (plimsoll.yaml, stacks/<name>/compose.yaml), one stack
/// directory or one Compose file; the default is the current directory. stdout carries only the
/// result; logs, warnings and errors go to stderr. Exit status: 0 success, 1 any error (usage
/// errors too), 2 changes pending (`reconcile --dry-run`, `diff`).
#[derive(Debug, Parser)]
#[command(
    name = "plimsoll",
    version,
    propagate_version = true,
    after_long_help = examples!(
        "Check a config repository before pushing it" => "plimsoll validate",
        "Show what would change on this host (exit 2 when something would)" => "plimsoll reconcile --dry-run",
        "Apply it" => "plimsoll reconcile",
        "Keep this host following git" => "plimsoll agent --repo https://git.example.com/ops/hosts.git --branch main",
    )
)]
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
    /// Enable this Compose profile (repeatable; the variable takes a comma-separated list).
    /// Replaces `profiles` in plimsoll.yaml and `COMPOSE_PROFILES`; `*` enables every profile.
    #[arg(
        long = "profile",
        global = true,
        env = "PLIMSOLL_PROFILES",
        value_delimiter = ',',
        value_name = "PROFILE"
    )]
    pub profiles: Vec<String>,
    /// age identity file that decrypts `*.age` files of the repository. Default: <state-dir>/age.key when it exists.
    #[arg(
        long,
        global = true,
        env = "PLIMSOLL_AGE_IDENTITY",
        value_name = "FILE"
    )]
    pub age_identity: Option<PathBuf>,
    /// Also let the desired state read files under this host directory (repeatable; the
    /// variable takes a comma-separated list), e.g. secret files kept on the host. Without it,
    /// plimsoll reads only files inside the repository; /proc, /sys and /dev are never read.
    #[arg(
        long = "allow-read",
        global = true,
        env = "PLIMSOLL_ALLOW_READ",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub allow_read: Vec<PathBuf>,
    /// Pass this variable of the process environment to Compose files (repeatable; the
    /// variable takes a comma-separated list). No other process variable is interpolated; a
    /// passed value whose name looks secret is masked, as in `.env`.
    #[arg(
        long = "pass-env",
        global = true,
        env = "PLIMSOLL_PASS_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub pass_env: Vec<String>,
    /// Pass this variable of the process environment to Compose files and mask its value as a
    /// secret, whatever its name (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "pass-secret-env",
        global = true,
        env = "PLIMSOLL_PASS_SECRET_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub pass_secret_env: Vec<String>,
    /// The host's policy: a file with the keys of `policy:` in plimsoll.yaml, checked
    /// besides the repository's. The repository can add rules, never remove or relax these.
    #[arg(long, global = true, env = "PLIMSOLL_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
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
    /// Check the desired state: parse, interpolate, graph and policy.
    ///
    /// Loads every stack as Docker Compose would, builds the dependency graph and checks the
    /// policy in plimsoll.yaml. Exit 0 when valid, 1 with every error found (file, line, key and
    /// a hint for each). When plimsoll.yaml assigns stacks to hosts, also lists which host runs
    /// which stacks. Needs no engine.
    #[command(after_long_help = examples!(
        "Check the config repository in the current directory" => "plimsoll validate",
        "Check the bundled example repository" => "plimsoll validate examples/stacks",
        "Check a fleet repository and list the stacks of each host" => "plimsoll validate examples/fleet",
        "Check one Compose file, with the services of the profile `debug` enabled" => "plimsoll validate stacks/shop/compose.yaml --profile debug",
    ))]
    Validate {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print the desired state as `docker compose config` would.
    ///
    /// Interpolated and normalized: environment and labels as maps, ports and volumes in long
    /// form, values as the container receives them. Secret values are masked unless
    /// --show-secrets. A repository of several stacks prints one YAML document per stack, or
    /// one JSON object keyed by stack name.
    #[command(after_long_help = examples!(
        "One stack of the example repository, as JSON" => "plimsoll render examples/stacks --stack shop --format json",
        "Every stack of the repository in the current directory, as YAML" => "plimsoll render",
        "Show secret values too (they end up in your terminal)" => "plimsoll render stacks/shop --show-secrets",
    ))]
    Render {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RenderFormat::Yaml)]
        format: RenderFormat,
        /// Print secret values instead of masking them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the dependency graph (text, Graphviz dot or Mermaid).
    ///
    /// As text: the waves of services that start together, each service with the condition it
    /// waits for. As dot or Mermaid: a drawing, edges labelled with their condition.
    #[command(after_long_help = examples!(
        "The waves of every stack" => "plimsoll graph examples/stacks",
        "A Mermaid flowchart for a README or a pull request" => "plimsoll graph examples/stacks --format mermaid",
        "An SVG drawing (needs Graphviz)" => "plimsoll graph --format dot | dot -Tsvg > graph.svg",
        "Which host runs which stacks, as a Mermaid diagram" => "plimsoll graph examples/fleet --hosts --format mermaid",
    ))]
    Graph {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
        /// Group the stacks by the host that runs them (`hosts:`, `placement` in plimsoll.yaml).
        #[arg(long)]
        hosts: bool,
    },
    /// Bring this host to git's state (--dry-run: only show the plan).
    ///
    /// Computes the plan that brings the engine's containers, networks, volumes and images to
    /// the desired state and applies it: services wave by wave in dependency order, behind health
    /// gates, a replacement rolled back when it does not become healthy. Only containers whose
    /// settings changed are replaced; containers plimsoll did not create are never touched.
    ///
    /// With --dry-run: print the plan and change nothing; exit 0 in sync, 2 changes pending, 1
    /// error.
    #[command(after_long_help = examples!(
        "Show what would change, and why (exit 2 when something would)" => "plimsoll reconcile --dry-run",
        "The plan of the example repository as markdown, for a pull request comment" => "plimsoll reconcile examples/stacks --dry-run --format markdown > plan.md",
        "Apply the repository in the current directory" => "plimsoll reconcile",
        "Apply one stack only, waiting up to 5 minutes for another apply to finish" => "plimsoll reconcile --stack shop --lock-timeout 5m",
        "Also remove the containers and networks git no longer declares" => "plimsoll reconcile --prune",
        "Remove a whole stack that was deleted from the repository" => "plimsoll reconcile --prune --allow-empty",
    ))]
    Reconcile {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print the plan and stop; nothing on the engine changes.
        #[arg(long)]
        dry_run: bool,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = plan::Format::Text)]
        format: plan::Format,
        /// How long to wait for another plimsoll's apply on this host to finish.
        #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
        lock_timeout: std::time::Duration,
        /// Remove containers and networks that git no longer declares (also `prune: true` per stack in plimsoll.yaml).
        #[arg(long)]
        prune: bool,
        /// Allow prune to remove every container of a stack (an empty stack, or one removed from the repository).
        #[arg(long)]
        allow_empty: bool,
        /// Allow prune to remove named volumes of stacks that opt in with `prune_volumes: true` in plimsoll.yaml.
        #[arg(long)]
        prune_volumes: bool,
        #[command(flatten)]
        parallel: ParallelArg,
    },
    /// Re-apply a stack's last good (or a named) revision, without git.
    ///
    /// Every apply stores the stack it applied in the state directory; rollback re-applies one
    /// of them with the same plan, gates and audit log as `reconcile`, even when the repository
    /// is unreachable. `plimsoll history` lists the revisions.
    #[command(after_long_help = examples!(
        "Put the stack `shop` back to its last good revision" => "plimsoll rollback shop",
        "Put it back to a revision named by `plimsoll history`" => "plimsoll rollback shop --to local:3f2a9c1e0b7d",
        "Roll back every stack with a stored revision" => "plimsoll rollback",
    ))]
    Rollback {
        /// The stack; default every stack with a stored revision.
        stack: Option<String>,
        /// A revision (or the start of its content hash) from `plimsoll history`.
        #[arg(long, value_name = "REV")]
        to: Option<String>,
        /// How long to wait for another plimsoll's apply on this host to finish.
        #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
        lock_timeout: std::time::Duration,
        #[command(flatten)]
        parallel: ParallelArg,
    },
    /// Show the audit log: every apply, its revision and outcome.
    ///
    /// Read from the state directory; the agent and the CLI write to the same log on a host.
    #[command(after_long_help = examples!(
        "The last five applies" => "plimsoll history --limit 5",
        "Every record with its actions, as JSON" => "plimsoll history --format json",
        "The audit log of an agent whose state directory is mounted elsewhere" => "plimsoll --state-dir /srv/plimsoll/state history",
    ))]
    History {
        /// Only the newest N records.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Per service: in sync, drifted, missing or stopped, and health.
    ///
    /// Compares the desired state with the engine without changing anything: per service in sync,
    /// drifted (and how), missing, stopped or in conflict with a container plimsoll does not
    /// manage; its health; and the containers on the host that plimsoll does not know.
    #[command(after_long_help = examples!(
        "Every stack of the example repository" => "plimsoll status examples/stacks",
        "One stack, as JSON for a monitoring script" => "plimsoll status --stack shop --format json",
    ))]
    Status {
        /// A config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Follow a git repository and keep this host where it says.
    ///
    /// Polls every --interval, syncs on a signed webhook or `POST /sync`, heals drift seen in
    /// Docker events, and serves /healthz, /metrics and /status on --listen. Every flag can also
    /// be set by its environment variable; `agent:` in plimsoll.yaml sets the defaults of
    /// --interval, --resync, --host, --stack and --prune. Usually run as a container:
    /// see deploy/agent/compose.yaml.
    #[command(after_long_help = examples!(
        "Follow the branch `main` over https, with a token and a signed webhook" => "plimsoll agent --repo https://git.example.com/ops/hosts.git --branch main \\\n      --git-token-file /run/secrets/git-token --webhook-secret-file /run/secrets/webhook",
        "Follow a tag over ssh; the server's key must be in the known_hosts file" => "plimsoll agent --repo git@git.example.com:ops/hosts.git --tag v1.4.0 \\\n      --ssh-key /run/secrets/deploy-key --known-hosts /etc/plimsoll/known_hosts",
        "Apply only commits signed by an SSH key of the ops team (git's allowed_signers format)" => "plimsoll agent --repo https://git.example.com/ops/hosts.git \\\n      --git-token-file /run/secrets/git-token --allowed-signers /etc/plimsoll/allowed_signers",
        "Only the stacks of this host in a monorepo's subdirectory, pruning what git drops" => "plimsoll agent --repo https://git.example.com/ops/fleet.git --path hosts/web-1 \\\n      --host web-1 --prune",
        "Development: watch a local directory and apply every change" => "plimsoll agent --repo ./examples/stacks --interval 5s --listen 127.0.0.1:9301",
    ))]
    Agent(Box<AgentArgs>),
    /// Freeze changes to a stack or the whole host.
    ///
    /// Without STACK, every stack on this host is frozen. A paused stack is still observed and
    /// reported; the agent and `reconcile` change nothing in it until `plimsoll resume`. With the
    /// agent in a container, run it there: `docker compose exec agent plimsoll pause shop`.
    #[command(after_long_help = examples!(
        "Freeze the stack `shop` during an incident" => "plimsoll pause shop",
        "Freeze every stack on this host" => "plimsoll pause",
    ))]
    Pause {
        /// The stack; without it, the whole host.
        stack: Option<String>,
    },
    /// Lift `plimsoll pause` from a stack or the whole host.
    ///
    /// Without STACK, from the host and every stack. The next check (the agent's, or the next
    /// `reconcile`) converges what changed meanwhile.
    #[command(after_long_help = examples!(
        "Let the agent change the stack `shop` again" => "plimsoll resume shop",
        "Lift every pause on this host" => "plimsoll resume",
    ))]
    Resume {
        /// The stack; without it, the host and every stack.
        stack: Option<String>,
    },
    /// Clear the agent's self-heal counters of a stack or one service.
    ///
    /// After too many failed heals in a row the agent stops healing a service (`gave_up` in
    /// /status); clearing its counters makes the agent heal it again. A new revision clears them
    /// too.
    #[command(after_long_help = examples!(
        "Let the agent heal the service `api` of the stack `shop` again" => "plimsoll heal --reset shop/api",
        "Clear the counters of every service of the stack" => "plimsoll heal --reset shop",
    ))]
    Heal {
        /// STACK or STACK/SERVICE.
        #[arg(long, value_name = "STACK[/SERVICE]")]
        reset: String,
        /// How long to wait for another plimsoll's apply on this host to finish.
        #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
        lock_timeout: std::time::Duration,
    },
    /// Exit 0 if a running agent's loop is alive (for HEALTHCHECK).
    ///
    /// Asks the agent at --listen for GET /healthz; exit 0 if it answers 200, else 1. The agent's
    /// image runs it as its HEALTHCHECK.
    #[command(after_long_help = examples!(
        "Check the agent on the default address" => "plimsoll healthcheck",
        "Check an agent listening elsewhere" => "plimsoll healthcheck --listen 127.0.0.1:9301",
    ))]
    Healthcheck {
        /// The agent's --listen address.
        #[arg(long, env = "PLIMSOLL_LISTEN", default_value = crate::agent::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Show what a commit range changes, per host, from git alone
    ///
    /// Per host, stack and service: what the range adds, removes and changes in the desired state.
    /// Both revisions are read from git objects: no checkout, no engine, no state directory.
    /// Exit 0 no changes, 2 changes, 1 error (also when --to does not load or breaks the policy).
    #[command(after_long_help = examples!(
        "What a pull request changes, as a comment for it (exit 2 when it changes something)" => "plimsoll diff --from origin/main --to HEAD --format markdown > diff.md",
        "The last commit, as one host sees it" => "plimsoll diff --from HEAD~1 --to HEAD --host web-1",
    ))]
    Diff {
        /// A directory or file inside a git repository: the config repository root, a stack directory, or a Compose file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The base revision (branch, tag, SHA, `HEAD~1`, `origin/main`).
        #[arg(long, value_name = "REV")]
        from: String,
        /// The revision compared with it.
        #[arg(long, value_name = "REV")]
        to: String,
        /// Only what changes on this host (its stacks and those that run on every host).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// text for people, json (schemas/diff.json), markdown for a pull-request comment.
        #[arg(long, value_enum, default_value_t = plan::Format::Text)]
        format: plan::Format,
    },
    /// Print a JSON Schema generated from plimsoll's types.
    ///
    /// `plimsoll` describes plimsoll.yaml, `stack` a stack as plimsoll loads it, `plan` the plan of
    /// `reconcile --format json`, `diff` the output of `diff --format json`. The same files are in schemas/.
    #[command(after_long_help = examples!(
        "The schema of plimsoll.yaml, for an editor's YAML language server" => "plimsoll schema plimsoll > plimsoll.schema.json",
        "The schema of `reconcile --dry-run --format json`, for a CI check" => "plimsoll schema plan",
    ))]
    Schema {
        /// Which schema: plimsoll.yaml, a loaded stack, or the JSON plan.
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// Print the completion script of a shell.
    ///
    /// Generated from the command line's definition, so it always matches this binary. Needs no
    /// configuration, engine or state directory.
    #[command(after_long_help = examples!(
        "bash, for the current user (bash-completion loads it on demand)" => "plimsoll completions bash > ~/.local/share/bash-completion/completions/plimsoll",
        "zsh: a directory in $fpath, then restart the shell" => "plimsoll completions zsh > ~/.zfunc/_plimsoll",
        "fish" => "plimsoll completions fish > ~/.config/fish/completions/plimsoll.fish",
    ))]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command with --dir.
    ///
    /// Without --dir: the whole program on one page (every command, its options and examples) as
    /// roff on stdout. With --dir: plimsoll.1 and one page per command (plimsoll-reconcile.1, ...)
    /// into DIR, created if missing, as packages install them. Needs no configuration, engine or
    /// state directory.
    #[command(after_long_help = examples!(
        "Read it now" => "plimsoll man | man -l -",
        "Install the pages for every user" => "plimsoll man --dir /usr/local/share/man/man1",
    ))]
    Man {
        /// Write plimsoll.1 and plimsoll-<command>.1 into this directory instead of stdout.
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
    /// Encrypt, edit and create age-encrypted secret files (`*.age`).
    ///
    /// Files encrypted with age are decrypted in memory when the repository is loaded, with the
    /// host's identity (--age-identity, PLIMSOLL_AGE_IDENTITY, else <state-dir>/age.key), and
    /// masked like every secret. These commands write them.
    #[command(subcommand, after_long_help = examples!(
        "Create this host's identity and print its recipient (age1...)" => "plimsoll secret keygen",
        "Encrypt a secret file to the recipients in plimsoll.yaml" => "plimsoll secret encrypt stacks/shop/db_password",
        "Edit an encrypted env file in $EDITOR" => "plimsoll secret edit stacks/shop/secrets.env.age",
    ))]
    Secret(secret::SecretCommand),
}

/// `plimsoll agent`'s flags.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The config repository: an https://, ssh:// or file:// URL, user@host:path, or a local
    /// path (a git repository is followed like a remote; a plain directory is watched for changes).
    #[arg(long, env = "PLIMSOLL_REPO", value_name = "URL")]
    pub repo: String,
    /// Follow this branch (default: the repository's default branch).
    #[arg(long, env = "PLIMSOLL_BRANCH", group = "gitref")]
    pub branch: Option<String>,
    /// Follow this tag.
    #[arg(long, env = "PLIMSOLL_TAG", group = "gitref")]
    pub tag: Option<String>,
    /// Stay on this commit.
    #[arg(long, env = "PLIMSOLL_REV", group = "gitref", value_name = "SHA")]
    pub rev: Option<String>,
    /// The config repository's root inside the repository (plimsoll.yaml, stacks/).
    #[arg(long, env = "PLIMSOLL_PATH")]
    pub path: Option<PathBuf>,
    /// How often to look for a new revision (default 30s, or `agent.interval`).
    #[arg(long, env = "PLIMSOLL_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Option<std::time::Duration>,
    /// How often to check every container even without events (default 5m, or `agent.resync`).
    #[arg(long, env = "PLIMSOLL_RESYNC", value_parser = parse_duration, value_name = "DURATION")]
    pub resync: Option<std::time::Duration>,
    /// Address of the HTTP endpoint (default 127.0.0.1:9300).
    #[arg(long, env = "PLIMSOLL_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// File holding the webhook secret (GitHub/Gitea/Forgejo HMAC, or the GitLab token).
    #[arg(long, env = "PLIMSOLL_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the bearer token of `POST /sync`.
    #[arg(long, env = "PLIMSOLL_SYNC_TOKEN_FILE", value_name = "FILE")]
    pub sync_token_file: Option<PathBuf>,
    /// Serve `/status` and `/metrics` on this address only (`/healthz` on both), so that
    /// the --listen port (webhooks) can be published alone.
    #[arg(long, env = "PLIMSOLL_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// File holding a bearer token that `/status` and `/metrics` then want (`/healthz` stays open).
    #[arg(long, env = "PLIMSOLL_STATUS_TOKEN_FILE", value_name = "FILE")]
    pub status_token_file: Option<PathBuf>,
    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "PLIMSOLL_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub http_header_timeout: std::time::Duration,
    /// How long a client may take to send a request's body once its headers arrived.
    #[arg(long, env = "PLIMSOLL_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub http_body_timeout: std::time::Duration,
    /// HTTP connections open at once, per listener; more are refused with 503 (default:
    /// a quarter of the file-descriptor limit, at most 256).
    #[arg(long, env = "PLIMSOLL_HTTP_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub http_max_connections: Option<u32>,
    /// File holding the https token of the repository (or set PLIMSOLL_GIT_TOKEN).
    #[arg(long, env = "PLIMSOLL_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// ssh private key for ssh:// repositories.
    #[arg(long, env = "PLIMSOLL_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file that must hold the ssh server's key (unknown or changed keys are refused).
    #[arg(long, env = "PLIMSOLL_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for https repositories.
    #[arg(long, env = "PLIMSOLL_GIT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Accept http:// and git:// repositories, which are neither encrypted nor authenticated
    /// (refused without it).
    #[arg(long, env = "PLIMSOLL_ALLOW_INSECURE_TRANSPORT")]
    pub allow_insecure_transport: bool,
    /// Apply only commits signed by an SSH key of this allowed_signers file (the format of
    /// git's gpg.ssh.allowedSignersFile).
    #[arg(long, env = "PLIMSOLL_ALLOWED_SIGNERS", value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// Apply only commits signed by one of these OpenPGP public keys (ASCII-armored, as
    /// `gpg --export --armor` writes them).
    #[arg(long, env = "PLIMSOLL_TRUSTED_KEYS", value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,
    /// Only these stacks (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "stack",
        env = "PLIMSOLL_STACKS",
        value_delimiter = ',',
        value_name = "STACK"
    )]
    pub stacks: Vec<String>,
    /// This host's name in plimsoll.yaml (default: the engine's name, or `agent.host`).
    #[arg(long, env = "PLIMSOLL_HOST")]
    pub host: Option<String>,
    /// Remove what git no longer declares (default: `agent.prune` and per-stack `prune:`).
    #[arg(long, env = "PLIMSOLL_PRUNE")]
    pub prune: bool,
    /// How long to wait for another plimsoll's apply on this host.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub lock_timeout: std::time::Duration,
    #[command(flatten)]
    pub parallel: ParallelArg,
}

/// `--parallel N` of the commands that apply (`reconcile`, `rollback`, `agent`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ParallelArg {
    /// How many services of one wave to change at once; a service starts as soon as another
    /// finishes. -1 (or `unlimited`): every service of the wave at once, as `docker compose up`.
    #[arg(
        long = "parallel",
        env = "PLIMSOLL_PARALLEL",
        default_value = "64",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub n: crate::apply::Parallel,
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

/// The command line as the binary parses it: `Cli`'s definition, with each command's short
/// help (`-h`) showing its first example and where the others are (see `docs::short_help`).
pub fn command() -> clap::Command {
    docs::short_help(<Cli as clap::CommandFactory>::command())
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

/// What the host lets the desired state see: the process variables it passes
/// (`--pass-env`, `--pass-secret-env`) and the host directories it allows
/// (`--allow-read`). Nothing in a repository widens these.
#[derive(Debug, Clone, Default)]
struct HostView {
    pass_env: Vec<String>,
    pass_secret_env: Vec<String>,
    allow_read: Vec<PathBuf>,
}

impl HostView {
    /// The passed variables that are set (a passed name that is unset stays unset).
    fn env(&self) -> BTreeMap<String, String> {
        self.pass_env
            .iter()
            .chain(&self.pass_secret_env)
            .filter_map(|k| Some((k.clone(), std::env::var(k).ok()?)))
            .collect()
    }

    /// The passed names the host marks secret.
    fn secret_env(&self) -> std::collections::BTreeSet<String> {
        self.pass_secret_env.iter().cloned().collect()
    }

    /// The file system, confined to the repository that holds `path`.
    fn files(&self, path: &std::path::Path) -> Result<source::ConfinedFs> {
        let confine = source::Confine::for_path(path, &self.allow_read)
            .context("cannot find the desired state")?;
        Ok(source::ConfinedFs::new(confine))
    }
}

/// The load options of `--profile` (none given: plimsoll.yaml and `COMPOSE_PROFILES` decide).
fn load_options(profiles: &[String]) -> spec::LoadOptions {
    spec::LoadOptions {
        profiles: (!profiles.is_empty()).then(|| profiles.to_vec()),
        ..Default::default()
    }
}

/// Reads the host policy of `--policy` / `PLIMSOLL_POLICY`.
fn host_policy(
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
struct Loading {
    profiles: Vec<String>,
    age: secret::IdentitySource,
    host: HostView,
    host_policy: Option<std::sync::Arc<spec::policy::HostPolicy>>,
}

impl Loading {
    /// The loader's options: the profiles, the age identity when there is
    /// one, and the passed variables the host marks secret.
    fn options(&self) -> Result<spec::LoadOptions> {
        let mut options = load_options(&self.profiles);
        options.age = self.age.identities()?;
        options.secret_env = self.host.secret_env();
        options.host_policy = self.host_policy.clone();
        Ok(options)
    }
}

/// Loads the desired state at `path`; prints warnings; an error lists every problem.
fn load(path: &std::path::Path, stacks: &[String], loading: &Loading) -> Result<Desired> {
    let files = loading.host.files(path)?;
    let layout = source::discover_in(&files, path).context("cannot find the desired state")?;
    let options = loading.options()?;
    let desired = spec::load_with(&layout, &files, &loading.host.env(), stacks, &options)?;
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
    let loading = Loading {
        profiles: cli.profiles.clone(),
        age: secret::IdentitySource {
            flag: cli.age_identity.clone(),
            state_dir: state_dir(cli.state_dir.clone()),
        },
        host: HostView {
            pass_env: cli.pass_env.clone(),
            pass_secret_env: cli.pass_secret_env.clone(),
            allow_read: cli.allow_read.clone(),
        },
        host_policy: host_policy(cli.policy.as_deref())?,
    };
    match cli.command {
        Command::Secret(command) => secret::run(command, &loading.age)?,
        Command::Validate { path } => {
            let desired = load(&path, &[], &loading)?;
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
            if desired.config.assigns_hosts() {
                let names: Vec<&str> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
                let assignment = desired.config.assignment(&names);
                out.push_str("hosts:\n");
                out.push_str(&assignment.to_text(&desired.config));
                for s in &assignment.nowhere {
                    tracing::warn!(
                        "stack {s} runs on no host: its `hosts`/`placement` in plimsoll.yaml match no host of `hosts:`; name a host, or give one the placement's labels"
                    );
                }
            }
            print(&out)?;
        }
        Command::Render {
            path,
            stacks,
            format,
            show_secrets,
        } => {
            let desired = load(&path, &stacks, &loading)?;
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
        Command::Graph {
            path,
            format,
            hosts,
        } => {
            let desired = load(&path, &[], &loading)?;
            let graphs: Vec<StackGraph> = desired
                .stacks
                .iter()
                .map(|s| StackGraph::build(s).expect("validation rejected cycles"))
                .collect();
            let names: Vec<&str> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
            let assignment = desired.config.assignment(&names);
            let view = graph::HostsView {
                assignment: &assignment,
                config: &desired.config,
                graphs: &graphs,
            };
            let out = match (format, hosts) {
                (GraphFormat::Text, false) => graph::to_text(&graphs),
                (GraphFormat::Dot, false) => graph::to_dot(&graphs),
                (GraphFormat::Mermaid, false) => graph::to_mermaid(&graphs),
                (GraphFormat::Text, true) => view.to_text(),
                (GraphFormat::Dot, true) => view.to_dot(),
                (GraphFormat::Mermaid, true) => view.to_mermaid(),
            };
            print(&out)?;
        }
        Command::Schema { kind } => print(&schema::generate(kind))?,
        // Both come from the definition alone: no configuration, engine or state directory.
        Command::Completions { shell } => print(&docs::completions(command(), shell))?,
        Command::Man { dir: None } => print(&docs::man_page(command()))?,
        Command::Man { dir: Some(dir) } => {
            let written = docs::man_pages(command(), &dir)?;
            eprintln!("wrote {} man pages to {}", written.len(), dir.display());
        }
        Command::Diff {
            path,
            from,
            to,
            host,
            format,
        } => {
            use crate::range::{self, RangeError};
            let env = loading.host.env();
            let loaded = range::load(
                &path,
                (&from, &to),
                host.as_deref(),
                &env,
                &loading.options()?,
            )
            .map_err(|e| match e {
                RangeError::Load { rev, source } => {
                    // `main` prints the located diagnostics of a LoadError as they are.
                    eprintln!("error: {rev} does not load:");
                    anyhow::Error::from(source)
                }
                e => e.into(),
            })?;
            for w in loaded
                .warnings
                .iter()
                .map(ToString::to_string)
                .chain(loaded.diff.warnings.iter().map(|w| format!("warning: {w}")))
            {
                eprintln!("{w}");
            }
            let d = &loaded.diff;
            print(&match format {
                plan::Format::Text => range::to_text(d, use_color()),
                plan::Format::Json => serde_json::to_string_pretty(d)? + "\n",
                plan::Format::Markdown => range::to_markdown(d),
            })?;
            return Ok(ExitCode::from(if d.is_empty() { 0 } else { 2 }));
        }
        Command::Agent(args) => {
            let mut opts = agent_options(*args, state_dir(cli.state_dir.clone()))?;
            opts.profiles = load_options(&cli.profiles).profiles;
            opts.age = loading.age.identities()?;
            opts.compose_env = loading.host.env();
            opts.secret_env = loading.host.secret_env();
            opts.allow_read = loading.host.allow_read.clone();
            opts.host_policy = loading.host_policy.clone();
            runtime()?.block_on(async {
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                let cancel = crate::apply::Cancel::default();
                let on_signal = cancel.clone();
                tokio::spawn(async move {
                    let Ok(mut term) =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    tracing::info!("stopping: finishing or rolling back the current apply");
                    on_signal.cancel();
                    let _ = stop.send(true);
                });
                crate::agent::run(opts, shutdown, cancel).await
            })?;
            tracing::info!("stopped");
        }
        Command::Pause { stack } => {
            let state = StateDir::open(&state_dir(cli.state_dir.clone()))?;
            state.set_paused(stack.as_deref(), true)?;
            eprintln!(
                "{}: paused; it is observed and reported, and nothing changes until `plimsoll resume{}`",
                stack.as_deref().unwrap_or("this host"),
                stack
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default()
            );
        }
        Command::Resume { stack } => {
            let state = StateDir::open(&state_dir(cli.state_dir.clone()))?;
            state.set_paused(stack.as_deref(), false)?;
            eprintln!(
                "{}: resumed; the next check converges it",
                stack.as_deref().unwrap_or("this host")
            );
        }
        Command::Heal {
            reset,
            lock_timeout,
        } => {
            let run = Run {
                format: plan::Format::Text,
                log_format: cli.log_format,
                state_dir: state_dir(cli.state_dir.clone()),
                lock_timeout,
                parallel: Default::default(),
            };
            let (state, _lock) = take_lock(&run)?;
            let mut book: crate::agent::heal::HealBook =
                state.read_json(crate::agent::heal::FILE)?;
            let n = book.reset(&reset);
            state.write_json(crate::agent::heal::FILE, &book)?;
            eprintln!(
                "{reset}: cleared the self-heal counters of {n} service{}",
                if n == 1 { "" } else { "s" }
            );
        }
        Command::Healthcheck { listen } => return healthcheck(&listen),
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
            let desired = load(&path, &stacks, &loading)?;
            let state_dir = state_dir(cli.state_dir.clone());
            let run = Run {
                format,
                log_format: cli.log_format,
                state_dir,
                lock_timeout,
                parallel: parallel.n,
            };
            let pruning = reconcile::Pruning {
                flag: prune,
                allow_empty,
                volumes: prune_volumes,
            };
            return runtime()?.block_on(reconcile_cmd(
                &desired,
                dry_run,
                &run,
                &pruning,
                &path.display().to_string(),
            ));
        }
        Command::Rollback {
            stack,
            to,
            lock_timeout,
            parallel,
        } => {
            let run = Run {
                format: plan::Format::Text,
                log_format: cli.log_format,
                state_dir: state_dir(cli.state_dir.clone()),
                lock_timeout,
                parallel: parallel.n,
            };
            return runtime()?.block_on(rollback_cmd(
                stack.as_deref(),
                to.as_deref(),
                &run,
                loading.host_policy.as_deref(),
            ));
        }
        Command::History { limit, format } => {
            let state = StateDir::open(&state_dir(cli.state_dir.clone()))?;
            let mut records = state.audit_records()?;
            if let Some(n) = limit {
                records = records.split_off(records.len().saturating_sub(n));
            }
            let out = match format {
                StatusFormat::Json => serde_json::to_string_pretty(&records)? + "\n",
                StatusFormat::Text => history_text(&records),
            };
            print(&out)?;
        }
        Command::Status {
            path,
            stacks,
            format,
        } => {
            let desired = load(&path, &stacks, &loading)?;
            let state = StateDir::open(&state_dir(cli.state_dir.clone())).ok();
            let (status, unknown_ok) = runtime()?.block_on(async {
                let mut observed = reconcile::observe(&desired, None).await?;
                if let Some(state) = &state {
                    observed = frozen(observed, state)?;
                    let applied = state.applied_mounts()?;
                    reconcile::with_applied_mounts(&mut observed, &applied, &desired.masker);
                }
                Ok::<_, anyhow::Error>((
                    reconcile::status(&observed),
                    check_unknown(&desired, &observed),
                ))
            })?;
            let out = match format {
                StatusFormat::Text => reconcile::status_text(&status),
                StatusFormat::Json => serde_json::to_string_pretty(&status)? + "\n",
            };
            print(&desired.masker.mask(&out))?;
            unknown_ok?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's settings from its flags (and their environment variables).
fn agent_options(a: AgentArgs, state_dir: PathBuf) -> Result<crate::agent::Options> {
    use crate::agent::{Options, Source, git};
    let read = |what: &str, path: &PathBuf| -> Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            anyhow::bail!("the {what} file {} is empty", path.display());
        }
        Ok(text)
    };
    let reference = match (a.branch, a.tag, a.rev) {
        (Some(b), _, _) => git::GitRef::Branch(b),
        (_, Some(t), _) => git::GitRef::Tag(t),
        (_, _, Some(r)) => git::GitRef::Rev(r),
        _ => git::GitRef::Default,
    };
    let token = match &a.git_token_file {
        Some(f) => Some(read("git token", f)?),
        None => std::env::var("PLIMSOLL_GIT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let trust = crate::agent::signing::Trust::load(
        a.allowed_signers.as_deref(),
        a.trusted_keys.as_deref(),
    )?
    .map(std::sync::Arc::new);
    let source = match git::classify(&a.repo)? {
        git::RepoKind::Git(url) => {
            git::check_transport(&url, a.allow_insecure_transport)?;
            Source::Git {
                url,
                reference,
                auth: git::GitAuth {
                    token,
                    ssh_key: a.ssh_key,
                    known_hosts: a.known_hosts,
                    ca_file: a.ca_file,
                    allow_insecure: a.allow_insecure_transport,
                    trust,
                },
            }
        }
        git::RepoKind::Directory(dir) => {
            if trust.is_some() {
                anyhow::bail!(
                    "{} is a directory, not a git repository: --allowed-signers and --trusted-keys check commit signatures and need a git repository",
                    dir.display()
                );
            }
            if !matches!(reference, git::GitRef::Default) {
                anyhow::bail!(
                    "{} is a directory, not a git repository: --branch, --tag and --rev need a git repository",
                    dir.display()
                );
            }
            Source::Directory(dir)
        }
    };
    if a.http_header_timeout.is_zero() || a.http_body_timeout.is_zero() {
        anyhow::bail!(
            "--http-header-timeout and --http-body-timeout must be longer than 0s (the defaults are 10s and 30s)"
        );
    }
    Ok(Options {
        source,
        path: a.path,
        interval: a.interval,
        resync: a.resync,
        listen: a.listen,
        metrics_listen: a.metrics_listen,
        status_token: a
            .status_token_file
            .as_ref()
            .map(|f| read("status token", f))
            .transpose()?,
        http: crate::agent::listener::Limits {
            header_timeout: a.http_header_timeout,
            body_timeout: a.http_body_timeout,
            max_connections: a
                .http_max_connections
                .map_or_else(crate::agent::listener::default_max_connections, |n| {
                    n as usize
                }),
        },
        webhook_secret: a
            .webhook_secret_file
            .as_ref()
            .map(|f| read("webhook secret", f).map(String::into_bytes))
            .transpose()?,
        sync_token: a
            .sync_token_file
            .as_ref()
            .map(|f| read("sync token", f))
            .transpose()?,
        stacks: a.stacks,
        host: a.host,
        prune: a.prune.then_some(true),
        state_dir,
        lock_timeout: a.lock_timeout,
        parallel: a.parallel.n,
        compose_env: BTreeMap::new(),
        secret_env: Default::default(),
        allow_read: Vec::new(),
        profiles: None,
        age: None,
        host_policy: None,
    })
}

/// `plimsoll healthcheck`: GET /healthz of the agent at `listen`.
fn healthcheck(listen: &str) -> Result<ExitCode> {
    use std::io::Read as _;
    use std::net::ToSocketAddrs as _;
    let timeout = std::time::Duration::from_secs(5);
    let addr = listen
        .to_socket_addrs()
        .with_context(|| format!("invalid address {listen}"))?
        .next()
        .with_context(|| format!("{listen} resolves to no address"))?;
    // An agent listening on every address answers on loopback.
    let addr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("no agent answers on {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("healthy");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("unhealthy: {status}");
        Ok(ExitCode::from(1))
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

fn render_plan(plan: &plan::Plan, format: plan::Format) -> Result<String> {
    Ok(match format {
        plan::Format::Text => plan::to_text(plan, use_color()),
        plan::Format::Json => serde_json::to_string_pretty(plan)? + "\n",
        plan::Format::Markdown => plan::to_markdown(plan),
    })
}

/// Settings of a run that changes the engine.
struct Run {
    format: plan::Format,
    log_format: LogFormat,
    state_dir: PathBuf,
    lock_timeout: std::time::Duration,
    /// How many services of a wave an apply changes at once.
    parallel: crate::apply::Parallel,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::spec::model::GoDuration::parse(s)
        .map(|d| d.0)
        .ok_or_else(|| format!("invalid duration `{s}`: write e.g. 60s, 2m or 1m30s"))
}

fn progress_for(log_format: LogFormat, masker: &crate::spec::secrets::Masker) -> Box<dyn Progress> {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() && log_format == LogFormat::Text {
        Box::new(TerminalProgress::new(masker.clone()))
    } else {
        Box::new(LogProgress::new(masker.clone()))
    }
}

/// SIGINT and SIGTERM ask a running apply to stop: the current step
/// finishes, what is half done is rolled back, and the run exits 1.
fn interrupts() -> crate::apply::Cancel {
    let cancel = crate::apply::Cancel::default();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: finishing the current step and rolling back what is half done");
        on_signal.cancel();
    });
    cancel
}

fn take_lock(run: &Run) -> Result<(StateDir, crate::state::Lock)> {
    let state = StateDir::open(&run.state_dir)?;
    let lock = state.lock(run.lock_timeout, &|holder| {
        eprintln!(
            "waiting for the lock on {} (held by {holder})",
            run.state_dir.display()
        );
    })?;
    Ok((state, lock))
}

/// The policy on containers plimsoll does not manage: `report` lists them in
/// `status`, `warn` also prints a warning, `fail` fails `reconcile` and `status`
/// before anything changes. Containers `docker compose` made for a stack
/// plimsoll is about to adopt are not unknown.
fn check_unknown(desired: &Desired, observed: &reconcile::Observed<'_>) -> Result<()> {
    use crate::spec::config::UnknownContainers;
    let unknown = reconcile::unknown(observed);
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown.join(", ");
    match desired.config.policy.unknown_containers {
        UnknownContainers::Report => Ok(()),
        UnknownContainers::Warn => {
            eprintln!(
                "warning: {} container(s) not managed by plimsoll run on this host: {list}",
                unknown.len()
            );
            Ok(())
        }
        UnknownContainers::Fail => anyhow::bail!(
            "policy unknown_containers is `fail` and {} container(s) not managed by plimsoll run on this host: {list}; remove them, or declare them in git",
            unknown.len()
        ),
    }
}

async fn reconcile_cmd(
    desired: &Desired,
    dry_run: bool,
    run: &Run,
    pruning: &reconcile::Pruning,
    source: &str,
) -> Result<ExitCode> {
    let masker = &desired.masker;
    if dry_run {
        let cache = crate::live::CacheAt::ReadOnly(&run.state_dir);
        let mut observed = reconcile::observe_cached(desired, None, cache).await?;
        // Read as it is: a dry run creates nothing in the state directory.
        let applied = crate::state::applied_mounts_at(&run.state_dir)?;
        reconcile::with_applied_mounts(&mut observed, &applied, masker);
        check_unknown(desired, &observed)?;
        let plan = reconcile::pruned(observed.plan.clone(), &observed, &desired.config, pruning);
        print(&masker.mask(&render_plan(&plan, run.format)?))?;
        return Ok(if !plan.conflicts.is_empty() {
            ExitCode::from(1)
        } else if plan.is_noop() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    // Plan under the lock, so two applies never plan from the same live state.
    let (state, _lock) = take_lock(run)?;
    // `pull_policy: always` and the refresh policies: pull before planning, so a moved tag is followed.
    if desired
        .stacks
        .iter()
        .flat_map(|s| s.services.values())
        .any(|s| {
            matches!(
                s.pull_policy,
                Some(PullPolicy::Always | PullPolicy::Refresh { .. })
            )
        })
    {
        let engine = crate::live::Engine::connect().await?;
        let progress = progress_for(run.log_format, masker);
        reconcile::pull_first(&engine, desired, true, progress.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}; nothing was changed"))?;
    }
    let cache = crate::live::CacheAt::ReadWrite(&state);
    let mut observed = frozen(
        reconcile::observe_cached(desired, None, cache).await?,
        &state,
    )?;
    // A run killed mid-replacement left a kept old container: finish or undo that first.
    let repaired = crate::apply::recover(
        &observed.engine,
        &observed.live,
        progress_for(run.log_format, masker).as_ref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("recovering from an interrupted run failed: {e}"))?;
    if repaired > 0 {
        observed = frozen(
            reconcile::observe_cached(desired, None, cache).await?,
            &state,
        )?;
    }
    reconcile::with_applied_mounts(&mut observed, &state.applied_mounts()?, masker);
    check_unknown(desired, &observed)?;
    for p in &observed.paused {
        eprintln!("{p}: paused; changes are shown, not applied");
    }
    let plan = reconcile::pruned(
        observed.applicable_plan(),
        &observed,
        &desired.config,
        pruning,
    );
    print(&masker.mask(&render_plan(&plan, run.format)?))?;
    if plan.is_noop() && plan.conflicts.is_empty() {
        reconcile::note_in_sync(&observed, masker, &state)?;
        return Ok(ExitCode::SUCCESS);
    }
    let origin = reconcile::Origin {
        revision: String::new(),
        source: source.to_string(),
        rollback: false,
        audit: desired.config.audit,
        images: desired.config.images,
    };
    let progress = progress_for(run.log_format, masker);
    finish(
        reconcile::apply_recorded(
            &observed,
            &plan,
            masker,
            &state,
            &origin,
            progress.as_ref(),
            &interrupts(),
            run.parallel,
        )
        .await,
        masker,
    )
}

/// The observation with the stacks `plimsoll pause` froze marked paused.
fn frozen<'a>(
    mut observed: reconcile::Observed<'a>,
    state: &StateDir,
) -> Result<reconcile::Observed<'a>> {
    let paused = state.paused()?;
    let names: Vec<String> = observed
        .stacks
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| paused.contains(s))
        .collect();
    observed.paused.extend(names);
    Ok(observed)
}

fn finish(
    result: Result<crate::apply::Report, crate::apply::ApplyError>,
    masker: &crate::spec::secrets::Masker,
) -> Result<ExitCode> {
    match result {
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

async fn rollback_cmd(
    stack: Option<&str>,
    to: Option<&str>,
    run: &Run,
    host_policy: Option<&spec::policy::HostPolicy>,
) -> Result<ExitCode> {
    let (state, _lock) = take_lock(run)?;
    let records = state.revisions()?;
    let stacks: Vec<String> = match stack {
        Some(s) => vec![s.to_string()],
        None => records
            .iter()
            .map(|r| r.stack.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    if stacks.is_empty() {
        anyhow::bail!(
            "no revision has been applied with the state directory {} yet; nothing to roll back to",
            run.state_dir.display()
        );
    }
    let mut code = ExitCode::SUCCESS;
    for name in stacks {
        let Some(target) = reconcile::rollback_target(&records, &name, to) else {
            anyhow::bail!(
                "stack {name}: no earlier good revision in {} (see `plimsoll history`)",
                run.state_dir.display()
            );
        };
        let bytes = state.load_revision(&target.hash)?;
        let (stack, masker) = spec::load_stored(&bytes, &LocalFs)?;
        if let Some(host) = host_policy {
            spec::check_host_policy(&stack, host, &LocalFs).map_err(|e| {
                anyhow::anyhow!(
                    "{}\nstack {name}: revision {} violates the host policy; roll back to another \
                     revision (--to REV, see `plimsoll history`) or fix the stack in git",
                    masker.mask(&e.to_string()),
                    target.revision
                )
            })?;
        }
        eprintln!(
            "{name}: rolling back to {} (applied {})",
            target.revision, target.time
        );
        let desired = Desired {
            root: run.state_dir.clone(),
            config: Default::default(),
            config_file: None,
            stacks: vec![stack],
            masker: masker.clone(),
            warnings: Vec::new(),
            complete: None,
        };
        let mut observed = reconcile::observe(&desired, None).await?;
        let applied = crate::state::applied_mounts_at(&run.state_dir)?;
        reconcile::with_applied_mounts(&mut observed, &applied, &masker);
        print(&masker.mask(&render_plan(&observed.plan, run.format)?))?;
        if observed.plan.is_noop() && observed.plan.conflicts.is_empty() {
            continue;
        }
        let origin = reconcile::Origin {
            revision: target.revision.clone(),
            source: format!("rollback of {name}"),
            rollback: true,
            audit: Default::default(),
            images: Default::default(),
        };
        let progress = progress_for(run.log_format, &masker);
        if finish(
            reconcile::apply_recorded(
                &observed,
                &observed.plan,
                &masker,
                &state,
                &origin,
                progress.as_ref(),
                &interrupts(),
                run.parallel,
            )
            .await,
            &masker,
        )? != ExitCode::SUCCESS
        {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

fn history_text(records: &[serde_json::Value]) -> String {
    let mut rows = vec![[
        "TIME".to_string(),
        "REVISION".into(),
        "OUTCOME".into(),
        "ACTIONS".into(),
        "SECONDS".into(),
        "USER".into(),
    ]];
    for r in records {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let actions = r["actions"].as_array().map_or(0, Vec::len);
        let outcome = if r["rollback"].as_bool() == Some(true) {
            format!("{} (rollback)", s("outcome"))
        } else {
            s("outcome")
        };
        rows.push([
            s("time"),
            s("revision"),
            outcome,
            actions.to_string(),
            format!("{:.1}", r["seconds"].as_f64().unwrap_or(0.0)),
            s("user"),
        ]);
    }
    reconcile::table(&rows)
}
