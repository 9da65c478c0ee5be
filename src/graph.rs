//! The dependency graph shown: text, dot and Mermaid renderings of each
//! stack's [`StackGraph`] (built in `spec::deps`, which loading uses to reject
//! cycles), also grouped by host ([`HostsView`]).
//!
//! Invariant: pure functions over a loaded [`Stack`]; edges point from a
//! dependency to its dependent (`db -> api`).

use std::fmt::Write as _;

use crate::spec::config::{Assignment, Config};
pub use crate::spec::deps::{Cycle, Edge, StackGraph};
use crate::spec::model::Condition;

fn condition_word(c: Condition) -> &'static str {
    match c {
        Condition::ServiceStarted => "started",
        Condition::ServiceHealthy => "healthy",
        Condition::ServiceCompletedSuccessfully => "completed",
    }
}

/// The graphs as text: one block per stack, one line per wave.
pub fn to_text(graphs: &[StackGraph]) -> String {
    let mut out = String::new();
    for g in graphs {
        let _ = writeln!(out, "stack {}", g.stack);
        for (i, wave) in g.waves().iter().enumerate() {
            let items: Vec<String> = wave
                .iter()
                .map(|s| {
                    let deps = g.dependencies(s);
                    if deps.is_empty() {
                        s.clone()
                    } else {
                        let d: Vec<String> = deps
                            .iter()
                            .map(|(d, c)| format!("{d} {}", condition_word(*c)))
                            .collect();
                        format!("{s} (after {})", d.join(", "))
                    }
                })
                .collect();
            let _ = writeln!(out, "  wave {}: {}", i + 1, items.join(", "));
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The graphs in Graphviz dot: one cluster per stack.
pub fn to_dot(graphs: &[StackGraph]) -> String {
    let mut out = String::from("digraph plimsoll {\n  rankdir=LR;\n");
    for g in graphs {
        dot_stack(&mut out, g, "", "  ");
    }
    out.push_str("}\n");
    out
}

/// One stack's cluster; node IDs start with `prefix` (a host, or nothing).
fn dot_stack(out: &mut String, g: &StackGraph, prefix: &str, indent: &str) {
    let id = |svc: &str| quote(&format!("{prefix}{}/{svc}", g.stack));
    let _ = writeln!(
        out,
        "{indent}subgraph {} {{\n{indent}  label={};",
        quote(&format!("cluster_{prefix}{}", g.stack)),
        quote(&g.stack)
    );
    for name in g.services() {
        let _ = writeln!(out, "{indent}  {} [label={}];", id(name), quote(name));
    }
    for e in g.edges() {
        let _ = writeln!(
            out,
            "{indent}  {} -> {} [label={}];",
            id(&e.dependency),
            id(&e.dependent),
            quote(condition_word(e.condition))
        );
    }
    let _ = writeln!(out, "{indent}}}");
}

/// A Mermaid identifier: letters, digits and `_`.
fn mermaid_id(parts: &[&str]) -> String {
    parts
        .join("__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The graphs as a Mermaid flowchart (renders in GitHub and GitLab markdown).
pub fn to_mermaid(graphs: &[StackGraph]) -> String {
    let mut out = String::from("flowchart LR\n");
    for g in graphs {
        mermaid_stack(&mut out, g, "", "  ");
    }
    out
}

fn mermaid_stack(out: &mut String, g: &StackGraph, prefix: &str, indent: &str) {
    let id = |svc: &str| {
        let parts: Vec<&str> = [prefix, &g.stack, svc]
            .into_iter()
            .enumerate()
            .filter(|(i, p)| *i > 0 || !p.is_empty())
            .map(|(_, p)| p)
            .collect();
        mermaid_id(&parts)
    };
    let _ = writeln!(out, "{indent}subgraph {}[{}]", id(""), g.stack);
    for name in g.services() {
        let _ = writeln!(out, "{indent}  {}[\"{name}\"]", id(name));
    }
    for e in g.edges() {
        let _ = writeln!(
            out,
            "{indent}  {} -->|{}| {}",
            id(&e.dependency),
            condition_word(e.condition),
            id(&e.dependent)
        );
    }
    let _ = writeln!(out, "{indent}end");
}

/// `graph --hosts`: each host with the stacks it runs (and their graphs),
/// then the stacks that run on every host and those that run nowhere.
pub struct HostsView<'a> {
    pub assignment: &'a Assignment<'a>,
    pub config: &'a Config,
    pub graphs: &'a [StackGraph],
    /// Per environment, the graphs of the stacks that differ there (their variants).
    pub variants: &'a std::collections::BTreeMap<String, Vec<StackGraph>>,
}

impl HostsView<'_> {
    /// The graphs of `stacks` as `host` runs them (its environment's variants).
    fn graphs_of<'g>(
        &'g self,
        host: Option<&'g str>,
        stacks: &'g [&str],
    ) -> impl Iterator<Item = &'g StackGraph> {
        let variants = host
            .and_then(|h| self.config.environment_of(h))
            .and_then(|e| self.variants.get(e));
        self.graphs
            .iter()
            .filter(move |g| stacks.contains(&g.stack.as_str()))
            .map(move |g| {
                variants
                    .and_then(|v| v.iter().find(|x| x.stack == g.stack))
                    .unwrap_or(g)
            })
    }

    /// Sections: (title, host, stacks); a host list, or "every host" alone when no host is known.
    fn sections(&self) -> Vec<(String, Option<&str>, &[&str])> {
        let a = self.assignment;
        let mut out: Vec<(String, Option<&str>, &[&str])> = a
            .hosts
            .iter()
            .map(|(h, stacks)| {
                let env = self
                    .config
                    .environment_of(h)
                    .map(|e| format!(", environment {e}"))
                    .unwrap_or_default();
                (
                    format!("host {}{env}", self.config.host_title(h)),
                    Some(h.as_str()),
                    stacks.as_slice(),
                )
            })
            .collect();
        if a.hosts.is_empty() && !a.everywhere.is_empty() {
            out.push(("every host".into(), None, a.everywhere.as_slice()));
        }
        if !a.nowhere.is_empty() {
            out.push((
                "no host (placement matches none)".into(),
                None,
                a.nowhere.as_slice(),
            ));
        }
        out
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (title, host, stacks) in self.sections() {
            let _ = writeln!(out, "{title}");
            let graphs: Vec<StackGraph> = self.graphs_of(host, stacks).cloned().collect();
            if graphs.is_empty() {
                out.push_str("  (no stacks)\n");
            }
            for line in to_text(&graphs).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !self.assignment.hosts.is_empty() && !self.assignment.everywhere.is_empty() {
            let _ = writeln!(
                out,
                "every host (also hosts not listed): {}",
                self.assignment.everywhere.join(", ")
            );
        }
        out
    }

    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph plimsoll {\n  rankdir=LR;\n");
        for (i, (title, host, stacks)) in self.sections().into_iter().enumerate() {
            let _ = writeln!(
                out,
                "  subgraph {} {{\n    label={};",
                quote(&format!("cluster_host{i}")),
                quote(&title)
            );
            for g in self.graphs_of(host, stacks) {
                dot_stack(&mut out, g, &format!("{title}/"), "    ");
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, (title, name, stacks)) in self.sections().into_iter().enumerate() {
            let host = format!("host{i}");
            let _ = writeln!(out, "  subgraph {host}[\"{title}\"]");
            for g in self.graphs_of(name, stacks) {
                mermaid_stack(&mut out, g, &host, "    ");
            }
            out.push_str("  end\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::model::Stack;
    use crate::spec::model::{Dependency, Service};

    fn stack(deps: &[(&str, &[(&str, Condition)])]) -> Stack {
        let mut services = BTreeMap::new();
        for (name, ds) in deps {
            let mut s = Service::default();
            for (d, c) in *ds {
                s.depends_on.insert(
                    d.to_string(),
                    Dependency {
                        condition: *c,
                        restart: false,
                        required: true,
                    },
                );
            }
            services.insert(name.to_string(), s);
        }
        Stack {
            name: "t".into(),
            services,
            networks: Default::default(),
            volumes: Default::default(),
            secrets: Default::default(),
            configs: Default::default(),
            extensions: Default::default(),
            jobs: Default::default(),
            source: Default::default(),
        }
    }

    #[test]
    fn three_tier_waves() {
        use Condition::*;
        let s = stack(&[
            ("db", &[]),
            ("api", &[("db", ServiceHealthy)]),
            ("worker", &[("api", ServiceStarted), ("db", ServiceHealthy)]),
            ("cache", &[]),
        ]);
        let g = StackGraph::build(&s).unwrap();
        assert_eq!(
            g.waves(),
            vec![vec!["cache", "db"], vec!["api"], vec!["worker"]]
        );
        assert_eq!(g.stop_waves()[0], vec!["worker"]);
        assert_eq!(
            to_text(&[g]),
            "stack t\n  wave 1: cache, db\n  wave 2: api (after db healthy)\n  wave 3: worker (after api started, db healthy)\n"
        );
    }

    #[test]
    fn cycles_name_every_member() {
        use Condition::*;
        let s = stack(&[
            ("a", &[("c", ServiceStarted)]),
            ("b", &[("a", ServiceStarted)]),
            ("c", &[("b", ServiceStarted)]),
            ("d", &[("d", ServiceStarted)]),
            ("e", &[]),
        ]);
        let cycles = StackGraph::build(&s).unwrap_err();
        assert_eq!(
            cycles,
            vec![
                Cycle(vec!["a".into(), "b".into(), "c".into()]),
                Cycle(vec!["d".into()])
            ]
        );
    }

    #[test]
    fn dot_and_mermaid() {
        let s = stack(&[("db", &[]), ("api", &[("db", Condition::ServiceHealthy)])]);
        let g = StackGraph::build(&s).unwrap();
        let dot = to_dot(std::slice::from_ref(&g));
        assert!(
            dot.contains("\"t/db\" -> \"t/api\" [label=\"healthy\"];"),
            "{dot}"
        );
        let m = to_mermaid(&[g]);
        assert!(m.contains("t__db -->|healthy| t__api"), "{m}");
    }
}
