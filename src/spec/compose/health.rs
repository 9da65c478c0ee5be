//! The health key of a service: `healthcheck`.

use super::{Cx, join};
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    /// Loads `healthcheck`. `false` for a key of another group.
    pub(super) fn health_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "healthcheck" => svc.healthcheck = self.healthcheck(n, p),
            _ => return false,
        }
        true
    }

    fn healthcheck(&mut self, node: &Node, path: &str) -> Option<Healthcheck> {
        let known = [
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ];
        let (fields, _) = self.fields(node, path, &known, &[]);
        let mut hc = Healthcheck::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "test" => {
                    hc.test = match &n.value {
                        Value::Seq(_) => {
                            let t = self.string_list(n, &p);
                            match t.first().map(String::as_str) {
                                Some("CMD" | "CMD-SHELL" | "NONE") => {}
                                _ => {
                                    self.err(n.mark, &p, "a health check test list starts with CMD, CMD-SHELL or NONE")
                                        .hint("write [\"CMD\", \"prog\", \"arg\"], [\"CMD-SHELL\", \"command line\"], or a plain string");
                                }
                            }
                            t
                        }
                        _ => match self.string(n, &p) {
                            Some(s) if s.is_empty() => Vec::new(),
                            Some(s) => vec!["CMD-SHELL".into(), s],
                            None => Vec::new(),
                        },
                    }
                }
                "interval" => hc.interval = self.duration(n, &p),
                "timeout" => hc.timeout = self.duration(n, &p),
                "start_period" => hc.start_period = self.duration(n, &p),
                "start_interval" => hc.start_interval = self.duration(n, &p),
                "retries" => {
                    hc.retries = self.int(n, &p).and_then(|r| {
                        let r = u64::try_from(r).ok();
                        if r.is_none() {
                            self.err(n.mark, &p, "retries cannot be negative")
                                .hint("write 0 or a positive number of retries");
                        }
                        r
                    })
                }
                "disable" => hc.disable = self.boolean(n, &p).unwrap_or(false),
                _ => unreachable!(),
            }
        }
        Some(hc)
    }
}
