//! Logging: the log driver and its options.

use std::collections::BTreeMap;

use bollard::models::HostConfigLogConfig;

use super::{ContainerConfig, Create, Desire, Fields, Group, ImageDefaults, Inspect, Request};

/// The engine's default log driver; a container with it has "no logging settings".
pub const DEFAULT_LOG_DRIVER: &str = "json-file";

pub struct Logging;

impl Group for Logging {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        c.log = cx.svc.logging.as_ref().map(|l| {
            (
                l.driver
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LOG_DRIVER.into()),
                l.options.clone(),
            )
        });
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        r.host.log_config = cx.svc.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(
                l.driver
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LOG_DRIVER.into()),
            ),
            config: Some(l.options.clone().into_iter().collect()),
        });
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        c.log = i.host.log_config.clone().map(|l| {
            (
                l.typ.unwrap_or_default(),
                l.config
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
            )
        });
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        if let Some((driver, opts)) = &c.log {
            let o: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            f.put(
                "logging",
                format!("{driver} {}", o.join(" ")).trim_end().to_string(),
            );
        }
    }

    fn strip(&self, c: &mut ContainerConfig, _image: &ImageDefaults) {
        if c.log
            .as_ref()
            .is_some_and(|(d, o)| d == DEFAULT_LOG_DRIVER && o.is_empty())
        {
            c.log = None;
        }
    }

    /// The daemon's `log-opts` join a container's log options, so only the
    /// driver and the declared options are compared.
    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        match (&mut live.log, &desired.log) {
            (Some((_, live_opts)), Some((_, want))) => {
                live_opts.retain(|k, _| want.contains_key(k))
            }
            (Some((driver, opts)), None) => {
                opts.clear();
                if driver == DEFAULT_LOG_DRIVER {
                    live.log = None;
                }
            }
            _ => {}
        }
    }
}
