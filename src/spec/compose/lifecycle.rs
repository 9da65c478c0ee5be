//! The lifecycle keys of a service: `restart`, `stop_signal`,
//! `stop_grace_period`, `init`, the `post_start` and `pre_stop` hooks, and
//! `depends_on` with the dependencies Compose implies.

use std::collections::BTreeMap;

use super::{Cx, idx, join};
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

/// Keys of one `post_start` / `pre_stop` hook.
const HOOK_KEYS: &[&str] = &[
    "command",
    "user",
    "privileged",
    "working_dir",
    "environment",
];

const HOOK_COMMAND_HINT: &str =
    "give the command to run in the container, e.g. `command: [sh, -c, \"echo started\"]`";

impl Cx<'_, '_> {
    /// Loads a lifecycle key. `false` for a key of another group.
    pub(super) fn lifecycle_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        svc: &mut Service,
    ) -> bool {
        match key {
            "depends_on" => svc.depends_on = self.depends_on(n, p),
            "init" => svc.init = self.boolean(n, p),
            "post_start" => svc.post_start = self.hooks(n, p),
            "pre_stop" => svc.pre_stop = self.hooks(n, p),
            "restart" => svc.restart = self.restart(n, p),
            "stop_grace_period" => svc.stop_grace_period = self.duration(n, p),
            "stop_signal" => svc.stop_signal = self.opt_string(n, p),
            _ => return false,
        }
        true
    }

    fn restart(&mut self, node: &Node, path: &str) -> Option<RestartPolicy> {
        let s = self.string(node, path)?;
        let r = RestartPolicy::parse(&s);
        if r.is_none() {
            self.err(node.mark, path, format!("invalid restart policy `{s}`"))
                .hint("use no, always, unless-stopped, on-failure or on-failure:N");
        }
        r
    }

    /// `post_start` / `pre_stop`: a list of hooks, each a mapping with a
    /// `command` and optionally `user`, `privileged`, `working_dir` and
    /// `environment`. Environment values are secret by the usual rules.
    fn hooks(&mut self, node: &Node, path: &str) -> Vec<Hook> {
        let mut out = Vec::new();
        for (i, item) in self.seq(node, path, "a list of hooks").iter().enumerate() {
            let p = idx(path, i);
            if item.as_map().is_none() {
                self.type_err(item, &p, "a mapping with `command:`");
                continue;
            }
            let (fields, _) = self.fields(item, &p, HOOK_KEYS, &[]);
            let mut hook = Hook::default();
            let mut has_command = false;
            for (f, n, _) in fields {
                let fp = join(&p, f);
                match f {
                    "command" => {
                        has_command = true;
                        let words = if n.is_null() {
                            Some(Vec::new())
                        } else {
                            self.command(n, &fp)
                        };
                        match words {
                            Some(w) if w.is_empty() => {
                                self.err(n.mark, &fp, "the hook's command is empty")
                                    .hint(HOOK_COMMAND_HINT);
                            }
                            Some(w) => hook.command = w,
                            // Unbalanced quotes, reported by `command`.
                            None => {}
                        }
                    }
                    "user" => hook.user = self.opt_string(n, &fp),
                    "privileged" => hook.privileged = self.boolean(n, &fp).unwrap_or(false),
                    "working_dir" => hook.working_dir = self.opt_string(n, &fp),
                    "environment" => hook.environment = self.list_or_dict(n, &fp, true),
                    _ => unreachable!("listed in HOOK_KEYS"),
                }
            }
            if !has_command {
                self.err(item.mark, &p, "a hook needs `command:`")
                    .hint(HOOK_COMMAND_HINT);
            }
            for (k, v) in &hook.environment {
                if let Some(v) = v {
                    self.masker.observe(k, v);
                }
            }
            if !hook.command.is_empty() {
                out.push(hook);
            }
        }
        out
    }

    fn depends_on(&mut self, node: &Node, path: &str) -> BTreeMap<String, Dependency> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &idx(path, i)) {
                        self.marks.insert(format!("{path}.{name}"), item.mark);
                        out.insert(
                            name,
                            Dependency {
                                condition: Condition::ServiceStarted,
                                restart: false,
                                required: true,
                            },
                        );
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let p = join(path, &name);
                    self.marks.insert(p.clone(), k.mark);
                    let mut dep = Dependency {
                        condition: Condition::ServiceStarted,
                        restart: false,
                        required: true,
                    };
                    let (fields, _) =
                        self.fields(v, &p, &["condition", "required", "restart"], &[]);
                    for (f, n, _) in fields {
                        let fp = join(&p, f);
                        match f {
                            "condition" => {
                                let Some(c) = self.string(n, &fp) else {
                                    continue;
                                };
                                match Condition::ALL.iter().find(|(s, _)| *s == c) {
                                    Some((_, cond)) => dep.condition = *cond,
                                    None => {
                                        self.err(n.mark, &fp, format!("invalid condition `{c}`")).hint(
                                            "use service_started, service_healthy or service_completed_successfully",
                                        );
                                    }
                                }
                            }
                            "required" => dep.required = self.boolean(n, &fp).unwrap_or(true),
                            "restart" => dep.restart = self.boolean(n, &fp).unwrap_or(false),
                            _ => unreachable!(),
                        }
                    }
                    out.insert(name, dep);
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list of services or a mapping"),
        }
        out
    }

    /// Compose's implied dependencies: `links` and `service:` namespaces
    /// (restarted with the service they use), `volumes_from` services.
    pub(super) fn implied_dependencies(&mut self, path: &str, svc: &mut Service) {
        let mut implied: Vec<(String, bool, &str)> = Vec::new();
        for link in &svc.links {
            let name = link.split(':').next().unwrap_or(link);
            implied.push((name.to_string(), true, "links"));
        }
        for (key, name) in svc.service_namespaces() {
            implied.push((name.to_string(), true, key));
        }
        for v in &svc.volumes_from {
            if !v.starts_with("container:") {
                let name = v.split(':').next().unwrap_or(v);
                implied.push((name.to_string(), false, "volumes_from"));
            }
        }
        for (name, restart, key) in implied {
            if svc.depends_on.contains_key(&name) {
                continue;
            }
            if let Some(mark) = self.marks.get(&join(path, key)).copied() {
                self.marks
                    .entry(format!("{path}.depends_on.{name}"))
                    .or_insert(mark);
            }
            svc.depends_on.insert(
                name,
                Dependency {
                    condition: Condition::ServiceStarted,
                    restart,
                    required: true,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hooks as Compose reads them: a string command split into words,
    /// interpolated; environment as a list or a map (`- NAME` stays without
    /// a value); booleans as strings. Their secret values are masked.
    #[test]
    fn lifecycle_hooks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox\n    post_start:\n      - command: echo \"hi there\" ${TAG}\n        user: root\n        privileged: \"true\"\n        working_dir: /tmp\n        environment: [A=b, C]\n    pre_stop:\n      - command: [sh, -c, \"echo bye\"]\n        environment: {API_TOKEN: tok-canary-1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "TAG=v1\nC=not-used\n").unwrap();
        let desired = crate::spec::load_path(dir.path());
        let a = &desired.stacks[0].services["a"];
        assert_eq!(
            a.post_start,
            vec![Hook {
                command: vec!["echo".into(), "hi there".into(), "v1".into()],
                user: Some("root".into()),
                privileged: true,
                working_dir: Some("/tmp".into()),
                environment: BTreeMap::from([("A".into(), Some("b".into())), ("C".into(), None)]),
            }]
        );
        assert_eq!(a.pre_stop[0].command, ["sh", "-c", "echo bye"]);
        assert_eq!(desired.masker.mask("got tok-canary-1"), "got ********");
    }
}
