//! plimsoll's integration tests: one test binary, one module per area.
//!
//! Modules:
//! - `age`: age-encrypted secrets and env files (`*.age`) with a key pair the test
//!   generates: decrypted by validate/render/reconcile, masked everywhere, delivered to the
//!   engine, never on disk in clear; identity errors; `plimsoll secret encrypt|edit|keygen`.
//! - `build`: `build:` on the real engine: images built from `FROM scratch` contexts holding
//!   the static busybox, exactly the changed service rebuilt, no-ops never build, failures
//!   change nothing.
//! - `ci`: the README's test command is the one `.ci/run` runs, and `scripts/test.sh` installs
//!   every Debian package a test names as its precondition.
//! - `cli`: the command-line contract (exit codes, stdout/stderr, formats), help examples that
//!   parse, shell completions and man pages.
//! - `compose_files`: several Compose files per stack: profiles (`--profile`, plimsoll.yaml),
//!   override files, `include:` and `extends:`, with errors naming the right file and line.
//! - `conformance`: `plimsoll render` snapshots and the differential test against `docker compose config`.
//! - `dashboard` (with `browser`, a headless Chromium driven over the DevTools pipe): the
//!   agent's pages in a real browser: drift shown live, reverted from the page, actions behind
//!   the sync token and the same origin, the status token, no secret in any page or event;
//!   screenshots in `target/dashboard-screenshots/`.
//! - `diff`: `plimsoll diff --from --to` on a local git repository: per host, secrets never
//!   shown, exit 0/2/1, and the commands of the CI recipes in `examples/ci/` as written.
//! - `drift`: `plimsoll drift` on the real engine: a `docker update --memory` drift accepted
//!   into git (`--patch`, `git apply`, then in sync), a stopped container listed and reverted,
//!   a silence that hides a drift until it expires (and that the agent neither heals nor
//!   notifies, `/status` saying `silenced`), a secret canary in no output or patch.
//! - `environments`: one stack, two environments (`environments:` in plimsoll.yaml): validate,
//!   render --host, graph --hosts and diff --from --to show each host its environment's values.
//! - `git`, `gitserve`: the agent's git source against real servers on loopback (file://,
//!   sshd with its own host key, lighttpd + `git http-backend` over TLS with a test CA).
//! - `container`: the agent's image built offline, run as a container against a git
//!   repository: deploys, turns healthy, runs as uid 10001, logs JSON, stops cleanly;
//!   repository files a stack bind-mounts reach the engine as host paths of the state
//!   volume, and without a volume such a stack is a conflict with a hint.
//! - `heal`: the agent's heals are independent: a service restarting behind its gate
//!   never delays the heal of an unrelated one; a dependent waits for its dependency's heal.
//! - `heartbeat`: the agent's heartbeat alerts on the real engine (a full tmpfs volume and a
//!   low data-root threshold, a crash loop, a container down past a threshold, the canary
//!   printed in a container's logs), each notified once when it starts and once when it resolves.
//! - `hosts`: one repository, two real engines (a second `dockerd` in its own network
//!   namespace), one agent per host: each engine runs exactly its stacks; a moved stack moves; one stack with two
//!   environments runs each engine's environment's values.
//! - `images`: the offline test images (busybox, PostgreSQL) really work on the engine.
//! - `jobs`: `x-plimsoll.job` on the real engine: a pre job dumps a PostgreSQL database before a
//!   change; a failing pre job (or one past its timeout) changes no container and runs the
//!   on-failure job once; runs kept per job; the agent sends a stack whose post test fails back
//!   to its last good revision and rejects the revision, the job's masked log lines in
//!   `/status`, the notification and the audit log.
//! - `keys`: the remaining Compose service keys (namespaces, devices, sysctls, DNS, legacy
//!   limits, links, volumes_from, ipam) applied, held, kept in sync and repaired on the engine;
//!   lifecycle hooks (`post_start`, `pre_stop`) run, roll back and converge.
//!   a changed network recreated with the services on it (rolled back, killed half way).
//! - `malformed`: every malformed input exits 1 naming file, line and key, with a hint.
//! - `mounts`: repository files services bind-mount: the same repository at three paths plans
//!   no changes; a changed mounted file or directory recreates (or, where asked, restarts) its
//!   container, which then sees the new content.
//! - `parallel`: how many services of a wave an apply changes at once (`--parallel`,
//!   `PLIMSOLL_PARALLEL`): a whole wave at once (default 64), one at a time, a sliding window.
//! - `readme_container`: the README's "As a container" steps followed literally on
//!   `examples/stacks` (image built offline, deploy/agent/compose.yaml with `.env` and
//!   secrets, `docker compose up -d`, an HTTPS git server on loopback): healthy, a changed
//!   page served after one sync, a stopped service healed while another crash-loops.
//! - `reconcile`: `plimsoll reconcile` and `status` on the real engine: dry-run, ordered
//!   apply, no-op, drift, conflicts, Compose visibility, secrets, JSON schema, rollback.
//! - `registry`: pulls from a real registry on 127.0.0.1 (`docker-registry`):
//!   missing images, credentials from `DOCKER_CONFIG`, re-pointed tags, failed pulls.
//! - `safety`: the guardrails on the real engine: prune only when asked, never a
//!   whole stack without `--allow-empty`, volume data never lost, adoption from
//!   Compose, the apply lock, rollback without the repository, no secret in the
//!   state directory, malformed repositories change nothing, unknown containers.
//! - `untrusted`: a repository written by an attacker (pull request or commit): every attack of
//!   the threat model against validate, render, reconcile --dry-run, diff and the agent, with a
//!   canary in the environment and a marker file outside the repository.
//! - `support`: shared helpers for tests that drive the engine (unique names,
//!   cleanup guards, building the offline test images on demand).

mod age;
mod agent;
mod browser;
mod build;
mod ci;
mod cli;
mod compose_files;
mod conformance;
mod container;
mod dashboard;
mod diff;
mod drift;
mod environments;
mod git;
mod gitserve;
mod heal;
mod heartbeat;
mod hosts;
mod images;
mod jobs;
mod keys;
mod malformed;
mod mounts;
mod parallel;
mod readme_container;
mod reconcile;
mod registry;
mod safety;
mod support;
mod untrusted;
