//! The health check: its test, intervals and retries (durations in
//! nanoseconds, as the engine stores them).

use bollard::models::HealthConfig;

use super::{
    ContainerConfig, Create, Desire, Fields, Group, Health, ImageDefaults, Inspect, Request,
};
use crate::spec::model::GoDuration;

pub struct Healthcheck;

impl Group for Healthcheck {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let Some(h) = &cx.svc.healthcheck else {
            return;
        };
        let ns = |d: Option<GoDuration>| d.map_or(0, |d| d.0.as_nanos() as i64);
        c.healthcheck = Some(if h.is_enabled() {
            Health {
                test: h.test.clone(),
                interval: ns(h.interval),
                timeout: ns(h.timeout),
                retries: h.retries.map_or(0, |r| r as i64),
                start_period: ns(h.start_period),
                start_interval: ns(h.start_interval),
            }
        } else {
            Health {
                test: vec!["NONE".into()],
                ..Health::default()
            }
        });
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        r.body.healthcheck = cx.config.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval),
            timeout: Some(h.timeout),
            retries: Some(h.retries),
            start_period: Some(h.start_period),
            start_interval: (h.start_interval > 0).then_some(h.start_interval),
        });
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        c.healthcheck = i.cfg.healthcheck.clone().map(from_engine);
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        if let Some(h) = &c.healthcheck {
            let test = f.words(&h.test);
            f.put("healthcheck", test);
            for (k, v) in parts(h) {
                f.put(format!("healthcheck {k}"), v);
            }
        }
    }

    fn strip(&self, c: &mut ContainerConfig, image: &ImageDefaults) {
        if c.healthcheck.is_some() && c.healthcheck == image.healthcheck {
            c.healthcheck = None;
        }
    }
}

/// The engine's health check config in the compared form.
pub fn from_engine(h: HealthConfig) -> Health {
    Health {
        test: h.test.unwrap_or_default(),
        interval: h.interval.unwrap_or(0),
        timeout: h.timeout.unwrap_or(0),
        retries: h.retries.unwrap_or(0),
        start_period: h.start_period.unwrap_or(0),
        start_interval: h.start_interval.unwrap_or(0),
    }
}

/// The settings of a health check beside its test, as lines
/// (`healthcheck interval: 5s`), so a change names the part that changed.
fn parts(h: &Health) -> Vec<(&'static str, String)> {
    let d = |ns: i64| GoDuration(std::time::Duration::from_nanos(ns.max(0) as u64)).to_string();
    let mut parts = Vec::new();
    for (k, v) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start period", h.start_period),
    ] {
        if v > 0 {
            parts.push((k, d(v)));
        }
    }
    if h.retries > 0 {
        parts.push(("retries", h.retries.to_string()));
    }
    parts
}
