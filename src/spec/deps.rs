//! The dependency structure of a stack: which service waits for which, and
//! for what (`started`/`healthy`/`completed`), cycles (Tarjan SCC), waves
//! (longest path over a toposort) and the reverse order for stopping. Part
//! of the desired state: loading rejects cycles with it, and `graph` renders
//! it; `plan` and `apply` take their waves from it.
//!
//! Invariant: pure functions over a loaded [`Stack`]; edges point from a
//! dependency to its dependent (`db -> api`).

use std::collections::BTreeMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use super::model::{Condition, Stack};

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

    /// Every service of the stack, sorted by name.
    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
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
