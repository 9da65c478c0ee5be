//! The command line's definition, the raw flags: [`Cli`], its commands and
//! their arguments (clap derive). An API boundary: command names, flags and
//! their environment variables are a contract; [`super::docs`] renders the
//! help, man pages and completions from it. What the flags mean is checked
//! and built into settings by the command modules (`super::Global`, `Run`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::secret;
use crate::plan;
use crate::schema::SchemaKind;

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
        /// The stacks as this host runs them: only those plimsoll.yaml assigns
        /// to it, each with its environment's files (`environments:`).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
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
    /// Review drift: revert it, silence it, or accept it into git.
    ///
    /// Lists the services whose containers differ from git (changed by hand, stopped, removed,
    /// scaled), each with the drift in words and a unified diff of its settings, live -> git,
    /// secrets masked; exit 0 no drift, 2 drift, 1 error (a silenced drift does not count).
    /// --revert puts the drifted services back to git through the normal plan and apply (under
    /// the lock, in the audit log). --silence hides a service's drift (or some fields of it) for
    /// --for, with a --reason: the agent neither notifies nor heals it until it expires.
    /// --patch prints a patch for `git apply` that makes git say what the host runs, editing the
    /// Compose file (or the .env a value came from) and listing what Compose cannot express;
    /// secret values are never written.
    #[command(after_long_help = examples!(
        "What drifted on this host, and why (exit 2 when something did)" => "plimsoll drift",
        "The drift of one service as JSON" => "plimsoll drift --stack shop --service web --format json",
        "Put every drifted service of a stack back to git" => "plimsoll drift --stack shop --revert",
        "Live with a service's memory limit for two hours" => "plimsoll drift --stack shop --service web --silence --for 2h --reason \"load test\" --field \"memory limit\"",
        "Lift the silences of a service" => "plimsoll drift --stack shop --service web --unsilence",
        "Accept what the host runs into git" => "plimsoll drift --patch > drift.patch && git apply drift.patch",
    ))]
    Drift(Box<DriftArgs>),
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
    /// Pin the digests one environment runs in another (a patch).
    ///
    /// For each stack that hosts of both environments run (plimsoll.yaml `environments:`), asks
    /// the registry, through the engine and with the docker CLI's credentials, which digest each
    /// image of the --from environment's variant resolves to, and prints a patch for `git apply`
    /// that pins those digests in the --to environment's override file (`compose.<to>.yaml`,
    /// created when the stack has none). Committed, the patch is the promotion a reviewer sees in
    /// a pull request; the --to hosts then run exactly what the --from hosts run. Images built on
    /// the host are not promoted. Exit 0 when --to already pins them all, 2 with a patch (or an
    /// edit it names for a person), 1 on an error (an image its registry does not have, an
    /// environment plimsoll.yaml does not name).
    #[command(after_long_help = examples!(
        "Promote what staging runs to production, as a patch to commit" => "plimsoll promote --from stage --to prod > promote.patch",
        "Only the stack shop, of the config repository in ./config" => "plimsoll promote ./config --from stage --to prod --stack shop",
    ))]
    Promote {
        /// The config repository root (or a directory inside it).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The environment whose images are promoted (it follows tags).
        #[arg(long, value_name = "ENV")]
        from: String,
        /// The environment that pins them (its override file is edited).
        #[arg(long, value_name = "ENV")]
        to: String,
        /// Only this stack (repeatable).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<String>,
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

/// The flags of `plimsoll drift`.
#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// A config repository root, a stack directory, or a Compose file.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Only this stack (repeatable).
    #[arg(long = "stack", value_name = "STACK")]
    pub stacks: Vec<String>,
    /// Only this service.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    /// Print a patch for `git apply` that accepts the drift into git.
    #[arg(long, conflicts_with_all = ["revert", "silence", "unsilence"])]
    pub patch: bool,
    /// Put the drifted services back to git (plan and apply, audited).
    #[arg(long, conflicts_with_all = ["silence", "unsilence"])]
    pub revert: bool,
    /// Silence the drift of --stack/--service for --for, with --reason.
    #[arg(long, requires_all = ["silence_for", "reason"], conflicts_with = "unsilence")]
    pub silence: bool,
    /// How long a silence lasts (`30m`, `2h`).
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub silence_for: Option<std::time::Duration>,
    /// Why the drift is silenced (kept with it and in the audit log).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Silence only this field, as the drift names it (`memory limit`, `env FOO`; repeatable).
    #[arg(long = "field", value_name = "FIELD")]
    pub fields: Vec<String>,
    /// Lift the silences of --stack (and --service).
    #[arg(long)]
    pub unsilence: bool,
    /// How long --revert waits for another plimsoll's apply on this host to finish.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub lock_timeout: std::time::Duration,
    #[command(flatten)]
    pub parallel: ParallelArg,
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
    super::docs::short_help(<Cli as clap::CommandFactory>::command())
}

/// A duration flag (`60s`, `2m`, `1m30s`), as Compose writes them.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration `{0}`: write e.g. 60s, 2m or 1m30s")]
pub struct InvalidDuration(String);

fn parse_duration(s: &str) -> Result<std::time::Duration, InvalidDuration> {
    crate::spec::model::GoDuration::parse(s)
        .map(|d| d.0)
        .ok_or_else(|| InvalidDuration(s.to_string()))
}
