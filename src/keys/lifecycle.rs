//! Starting and stopping: restart policy, stop signal and grace period,
//! `init`, and the labels that record lifecycle hooks.

use std::collections::BTreeMap;

use bollard::models::{RestartPolicy as EnginePolicy, RestartPolicyNameEnum};
use sha2::{Digest, Sha256};

use super::{
    ComposeEdit, ComposeOp, ContainerConfig, Create, Desire, Fields, Group, ImageDefaults, Inspect,
    Inverse, Request,
};
use crate::names::labels;
use crate::spec::model::{RestartPolicy, Service};

pub struct Lifecycle;

impl Group for Lifecycle {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let svc = cx.svc;
        c.restart = svc.restart.unwrap_or(RestartPolicy::No).to_string();
        c.stop_signal = svc.stop_signal.clone();
        c.stop_timeout = svc.stop_grace_period.map(|d| d.0.as_secs() as i64);
        c.init = svc.init.unwrap_or(false);
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let restart = cx.svc.restart.unwrap_or(RestartPolicy::No);
        r.host.restart_policy = Some(EnginePolicy {
            name: Some(match restart {
                RestartPolicy::No => RestartPolicyNameEnum::NO,
                RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
                RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                RestartPolicy::OnFailure(_) => RestartPolicyNameEnum::ON_FAILURE,
            }),
            maximum_retry_count: match restart {
                RestartPolicy::OnFailure(Some(n)) => Some(i64::from(n)),
                _ => None,
            },
        });
        r.host.init = cx.svc.init;
        r.body.stop_signal = cx.config.stop_signal.clone();
        r.body.stop_timeout = cx.config.stop_timeout;
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        c.restart = i.host.restart_policy.clone().map_or_else(
            || "no".to_string(),
            |r| {
                let n = r.name.map(|n| n.to_string()).unwrap_or_default();
                match (n.as_str(), r.maximum_retry_count.unwrap_or(0)) {
                    ("" | "no", _) => "no".into(),
                    ("on-failure", c) if c > 0 => format!("on-failure:{c}"),
                    (other, _) => other.to_string(),
                }
            },
        );
        c.stop_signal = super::nonempty(&i.cfg.stop_signal);
        c.stop_timeout = i.cfg.stop_timeout;
        c.init = i.host.init.unwrap_or(false);
    }

    fn compose(&self, cx: &Inverse<'_>, out: &mut Vec<ComposeEdit>) {
        if cx.changed.contains("restart") {
            out.push(ComposeEdit {
                field: "restart".into(),
                at: vec![vec!["restart"]],
                op: ComposeOp::Set(cx.live.restart.clone()),
            });
        }
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        f.put("restart", c.restart.clone());
        f.opt("stop signal", &c.stop_signal);
        if let Some(t) = c.stop_timeout {
            f.put("stop grace period", format!("{t}s"));
        }
        f.flag("init", c.init);
    }

    fn strip(&self, c: &mut ContainerConfig, image: &ImageDefaults) {
        if c.stop_signal.is_some()
            && (c.stop_signal == image.stop_signal || c.stop_signal.as_deref() == Some("SIGTERM"))
        {
            c.stop_signal = None;
        }
    }
}

/// The labels that record a service's lifecycle hooks on its containers: a
/// digest of its `post_start` and of its `pre_stop` hooks, each only when
/// there are some (so containers without hooks keep their spec hash). The
/// hooks themselves are not visible on a container; the labels put them in
/// the spec hash and let [`crate::diff::hook_changes`] say which of them changed.
pub fn hook_labels(svc: &Service) -> BTreeMap<String, String> {
    [
        (labels::POST_START, &svc.post_start),
        (labels::PRE_STOP, &svc.pre_stop),
    ]
    .into_iter()
    .filter(|(_, hooks)| !hooks.is_empty())
    .map(|(label, hooks)| {
        let json = serde_json::to_vec(hooks).expect("hooks serialize");
        let digest = Sha256::digest(json);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        (label.to_string(), hex)
    })
    .collect()
}
