//! `plimsoll agent` (its flags made into [`crate::agent::Options`], then
//! the agent run until SIGINT or SIGTERM) and `plimsoll healthcheck`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::args::AgentArgs;
use super::load::load_options;
use super::{Exit, Global, runtime};

/// `plimsoll agent`: runs until SIGINT or SIGTERM, finishing or rolling back the current apply.
pub(super) fn run(args: AgentArgs, global: &Global) -> Result<Exit> {
    let loading = &global.loading;
    let mut opts = agent_options(args, global.state_dir.clone())?;
    opts.profiles = load_options(&loading.profiles).profiles;
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
    Ok(Exit::Success)
}

/// The agent's settings from its flags (and their environment variables).
pub(super) fn agent_options(a: AgentArgs, state_dir: PathBuf) -> Result<crate::agent::Options> {
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
pub(super) fn healthcheck(listen: &str) -> Result<Exit> {
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
        Ok(Exit::Success)
    } else {
        eprintln!("unhealthy: {status}");
        Ok(Exit::Failure)
    }
}
