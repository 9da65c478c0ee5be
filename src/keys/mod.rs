//! The engine mapping of container settings, one file per concern.

#[cfg(test)]
mod pins;
#[cfg(test)]
mod roundtrip;

use bollard::models::ImageInspect;

use crate::diff::ImageDefaults;

/// What an image supplies, from `docker image inspect`.
pub fn image_defaults(img: ImageInspect) -> ImageDefaults {
    let cfg = img.config.unwrap_or_default();
    ImageDefaults {
        id: img.id.unwrap_or_default(),
        cmd: cfg.cmd,
        entrypoint: cfg.entrypoint,
        env: crate::live::env_map(cfg.env.unwrap_or_default()),
        labels: cfg.labels.unwrap_or_default().into_iter().collect(),
        user: cfg.user.filter(|u| !u.is_empty()),
        working_dir: cfg.working_dir.filter(|w| !w.is_empty()),
        healthcheck: cfg.healthcheck.map(crate::live::health),
        volumes: cfg.volumes.unwrap_or_default().into_iter().collect(),
        stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
    }
}
