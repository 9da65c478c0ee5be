//! Registry credentials, read the way the docker CLI reads them:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), its
//! `auths` entries (base64 `user:password`), and credential helpers
//! (`credHelpers` per registry, `credsStore` for all) run as
//! `docker-credential-<name> get`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use crate::spec::policy::registry_of;

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The keys Docker Hub's credentials may be stored under.
fn server_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    }
}

/// Credentials for pulling `image`, if the docker CLI's configuration has any.
pub fn credentials_for(image: &str) -> Option<DockerCredentials> {
    let text = std::fs::read_to_string(config_path()?).ok()?;
    let config: ConfigFile = serde_json::from_str(&text).ok()?;
    let registry = registry_of(image);
    let keys = server_keys(registry);
    let helper = config
        .cred_helpers
        .get(registry)
        .or(config.creds_store.as_ref());
    if let Some(helper) = helper
        && let Some(c) = from_helper(helper, &keys[0])
    {
        return Some(c);
    }
    let entry = keys.iter().find_map(|k| config.auths.get(k))?;
    if let Some(token) = &entry.identity_token {
        return Some(DockerCredentials {
            identitytoken: Some(token.clone()),
            serveraddress: Some(keys[0].clone()),
            ..Default::default()
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(keys[0].clone()),
        ..Default::default()
    })
}

fn from_helper(helper: &str, server: &str) -> Option<DockerCredentials> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let a: HelperAnswer = serde_json::from_slice(&out.stdout).ok()?;
    Some(DockerCredentials {
        username: Some(a.username),
        password: Some(a.secret),
        serveraddress: Some(server.to_string()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-canary");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths": {{"localhost:5000": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        // SAFETY: this test is the only one in this binary that reads DOCKER_CONFIG.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        let c = credentials_for("localhost:5000/app:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3cret-canary"));
        assert!(credentials_for("ghcr.io/x/y").is_none());
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }
}
