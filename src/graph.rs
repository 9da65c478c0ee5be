//! The dependency graph of a stack's services: typed edges, cycle detection,
//! waves (services that can start together) and the reverse order for stopping.
//!
//! Invariant: pure functions over a loaded [`Stack`]; edges point from a
//! dependency to its dependent (`db -> api`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::spec::model::{Condition, Stack};

/// A stack's services and what each waits for.
#[derive(Debug, Clone)]
pub struct StackGraph {
    pub stack: String,
    graph: DiGraph<String, Condition>,
    index: BTreeMap<String, NodeIndex>,
}

/// Services in a dependency cycle, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

/// One edge: `dependent` waits for `dependency` to reach `condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub dependency: String,
    pub dependent: String,
    pub condition: Condition,
}

impl StackGraph {
    /// Builds the graph; dependencies on services that do not exist are left
    /// out (validation reports them). Fails with every cycle found.
    pub fn build(stack: &Stack) -> Result<StackGraph, Vec<Cycle>> {
        let mut graph = DiGraph::new();
        let index: BTreeMap<String, NodeIndex> = stack
            .services
            .keys()
            .map(|name| (name.clone(), graph.add_node(name.clone())))
            .collect();
        for (name, svc) in &stack.services {
            for (dep, d) in &svc.depends_on {
                if let Some(&from) = index.get(dep) {
                    graph.add_edge(from, index[name], d.condition);
                }
            }
        }
        let mut cycles: Vec<Cycle> = tarjan_scc(&graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
            .map(|scc| {
                let mut names: Vec<String> = scc.iter().map(|i| graph[*i].clone()).collect();
                names.sort();
                Cycle(names)
            })
            .collect();
        if !cycles.is_empty() {
            cycles.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(cycles);
        }
        Ok(StackGraph {
            stack: stack.name.clone(),
            graph,
            index,
        })
    }

    /// Services grouped into waves: a service's wave is one after the latest
    /// wave of its dependencies. Services inside a wave are sorted by name.
    pub fn waves(&self) -> Vec<Vec<String>> {
        let order =
            petgraph::algo::toposort(&self.graph, None).expect("cycles were rejected in build");
        let mut level: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for n in order {
            let l = self
                .graph
                .edges_directed(n, petgraph::Direction::Incoming)
                .map(|e| level[&e.source()] + 1)
                .max()
                .unwrap_or(0);
            level.insert(n, l);
        }
        let depth = level.values().copied().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for (n, l) in level {
            waves[l].push(self.graph[n].clone());
        }
        for w in &mut waves {
            w.sort();
        }
        waves
    }

    /// The order to stop services in: dependents before their dependencies.
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        let mut w = self.waves();
        w.reverse();
        w
    }

    /// Every edge, sorted by dependent then dependency.
    pub fn edges(&self) -> Vec<Edge> {
        let mut edges: Vec<Edge> = self
            .graph
            .edge_references()
            .map(|e| Edge {
                dependency: self.graph[e.source()].clone(),
                dependent: self.graph[e.target()].clone(),
                condition: *e.weight(),
            })
            .collect();
        edges.sort_by(|a, b| (&a.dependent, &a.dependency).cmp(&(&b.dependent, &b.dependency)));
        edges
    }

    /// What `service` waits for, sorted by dependency name.
    pub fn dependencies(&self, service: &str) -> Vec<(String, Condition)> {
        let Some(&n) = self.index.get(service) else {
            return Vec::new();
        };
        let mut deps: Vec<(String, Condition)> = self
            .graph
            .edges_directed(n, petgraph::Direction::Incoming)
            .map(|e| (self.graph[e.source()].clone(), *e.weight()))
            .collect();
        deps.sort();
        deps
    }
}

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
        let _ = writeln!(
            out,
            "  subgraph {} {{\n    label={};",
            quote(&format!("cluster_{}", g.stack)),
            quote(&g.stack)
        );
        for name in g.index.keys() {
            let _ = writeln!(
                out,
                "    {} [label={}];",
                quote(&format!("{}/{name}", g.stack)),
                quote(name)
            );
        }
        for e in g.edges() {
            let _ = writeln!(
                out,
                "    {} -> {} [label={}];",
                quote(&format!("{}/{}", g.stack, e.dependency)),
                quote(&format!("{}/{}", g.stack, e.dependent)),
                quote(condition_word(e.condition))
            );
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// The graphs as a Mermaid flowchart: one subgraph per stack.
pub fn to_mermaid(graphs: &[StackGraph]) -> String {
    let id = |stack: &str, svc: &str| {
        format!("{stack}__{svc}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    let mut out = String::from("flowchart LR\n");
    for g in graphs {
        let _ = writeln!(out, "  subgraph {}[{}]", id(&g.stack, ""), g.stack);
        for name in g.index.keys() {
            let _ = writeln!(out, "    {}[\"{name}\"]", id(&g.stack, name));
        }
        for e in g.edges() {
            let _ = writeln!(
                out,
                "    {} -->|{}| {}",
                id(&g.stack, &e.dependency),
                condition_word(e.condition),
                id(&g.stack, &e.dependent)
            );
        }
        out.push_str("  end\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
