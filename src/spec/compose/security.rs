//! The security keys of a service: capabilities, `privileged`,
//! `read_only`, `user`, `group_add`, `sysctls` and `security_opt`, whose
//! seccomp profiles named by file are read here.

use std::path::PathBuf;

use super::{Cx, join};
use crate::spec::model::*;
use crate::spec::yaml::Node;

impl Cx<'_, '_> {
    /// Loads a security key. `false` for a key of another group.
    pub(super) fn security_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "cap_add" => svc.cap_add = self.string_list(n, p),
            "cap_drop" => svc.cap_drop = self.string_list(n, p),
            "group_add" => svc.group_add = self.string_list(n, p),
            "privileged" => svc.privileged = self.boolean(n, p).unwrap_or(false),
            "read_only" => svc.read_only = self.boolean(n, p).unwrap_or(false),
            "security_opt" => svc.security_opt = self.string_list(n, p),
            "sysctls" => svc.sysctls = self.string_map(n, p),
            "user" => svc.user = self.opt_string(n, p),
            _ => return false,
        }
        true
    }

    /// Reads the seccomp profiles `security_opt` names by file, as Compose
    /// does (the engine takes the profile itself, not a path).
    pub(super) fn seccomp_profiles(&mut self, path: &str, svc: &mut Service) {
        let key = join(path, "security_opt");
        let mark = self.marks.get(&key).copied().unwrap_or_default();
        for opt in svc.security_opt.clone() {
            let (name, value) = match opt.split_once('=') {
                Some(kv) => kv,
                None => match opt.split_once(':') {
                    Some(kv) => kv,
                    None => continue,
                },
            };
            if name != "seccomp" || value == "unconfined" || value == "builtin" {
                continue;
            }
            // A profile given inline (a stored revision holds them so), or
            // a file.
            let (text, what, hint) = if value.starts_with('{') {
                (
                    value.as_bytes().to_vec(),
                    "the inline seccomp profile".to_string(),
                    "write seccomp=<file> with a JSON profile, or seccomp=unconfined",
                )
            } else {
                let file = PathBuf::from(self.host_path(value));
                let text = match self.input.files.read(&file) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => {
                        self.err(
                            mark,
                            &key,
                            format!("seccomp profile {} not found", file.display()),
                        )
                        .hint("point seccomp= at a JSON profile file, or use seccomp=unconfined");
                        continue;
                    }
                    Err(e) => {
                        let hint = crate::source::read_hint(
                            &e,
                            "point seccomp= at a readable JSON profile file",
                        );
                        self.err(
                            mark,
                            &key,
                            format!("cannot read seccomp profile {}: {e}", file.display()),
                        )
                        .hint(hint);
                        continue;
                    }
                };
                (
                    text,
                    format!("seccomp profile {}", file.display()),
                    "a seccomp profile is a JSON document (see the engine's default profile)",
                )
            };
            match serde_json::from_slice::<serde_json::Value>(&text) {
                Ok(profile) => {
                    svc.seccomp_profiles
                        .insert(opt.clone(), format!("seccomp={profile}"));
                }
                Err(e) => {
                    self.err(mark, &key, format!("{what} is not JSON: {e}"))
                        .hint(hint);
                }
            }
        }
    }
}
