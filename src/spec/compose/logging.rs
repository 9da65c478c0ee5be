//! The logging key of a service: `logging` (driver and options).

use super::{Cx, join};
use crate::spec::model::*;
use crate::spec::yaml::Node;

impl Cx<'_, '_> {
    /// Loads `logging`. `false` for a key of another group.
    pub(super) fn logging_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "logging" => svc.logging = self.logging(n, p),
            _ => return false,
        }
        true
    }

    fn logging(&mut self, node: &Node, path: &str) -> Option<Logging> {
        let (fields, _) = self.fields(node, path, &["driver", "options"], &[]);
        let mut l = Logging::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "driver" => l.driver = self.opt_string(n, &p),
                "options" => l.options = self.string_map(n, &p),
                _ => unreachable!(),
            }
        }
        Some(l)
    }
}
