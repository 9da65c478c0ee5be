//! Mounts: volumes (named, anonymous, bind, tmpfs), `tmpfs`,
//! `volumes_from`, secrets and configs from files (read-only binds), and
//! the anonymous volumes a replacement container takes over.

use std::collections::BTreeMap;

use bollard::models::{
    ContainerInspectResponse, Mount, MountBindOptions, MountTmpfsOptions,
    MountType as EngineMountType, MountVolumeOptions,
};

use super::{
    ContainerConfig, Create, Desire, Fields, Group, ImageDefaults, Inspect, MountDesc, Request,
};
use crate::spec::model::MountType;

pub struct Mounts;

impl Group for Mounts {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let (stack, svc) = (cx.stack, cx.svc);
        for m in &svc.volumes {
            let (kind, source) = match m.kind {
                MountType::Volume => (
                    "volume",
                    m.source.as_ref().map(|s| {
                        stack
                            .volumes
                            .get(s)
                            .map_or_else(|| s.clone(), |v| v.name.clone())
                    }),
                ),
                MountType::Bind => ("bind", m.source.clone()),
                MountType::Tmpfs => ("tmpfs", None),
            };
            c.mounts.insert(
                m.target.clone(),
                MountDesc {
                    kind,
                    source,
                    read_only: m.read_only,
                },
            );
        }
        for (kind, refs, objects, default_dir) in [
            ("secret", &svc.secrets, &stack.secrets, "/run/secrets/"),
            ("config", &svc.configs, &stack.configs, "/"),
        ] {
            for r in refs {
                let target = r
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("{default_dir}{}", r.source));
                let target = if target.starts_with('/') {
                    target
                } else {
                    format!("{default_dir}{target}")
                };
                if let Some(file) = objects.get(&r.source).and_then(|o| o.file.clone()) {
                    c.mounts.insert(
                        target,
                        MountDesc {
                            kind: "bind",
                            source: Some(file),
                            read_only: true,
                        },
                    );
                } else {
                    // Content from a variable or inline is copied into the container; the spec hash tracks it.
                    c.labels
                        .insert(format!("io.plimsoll.{kind}.{}", r.source), target);
                }
            }
        }
        for t in &svc.tmpfs {
            let (path, opts) = t.split_once(':').unwrap_or((t, ""));
            c.tmpfs.insert(path.to_string(), opts.to_string());
        }
        for v in &svc.volumes_from {
            let (container, mode) = match v.strip_prefix("container:") {
                Some(rest) => {
                    let (name, mode) = rest
                        .split_once(':')
                        .map_or((rest, None), |(n, m)| (n, Some(m)));
                    (name.to_string(), mode)
                }
                None => {
                    let (name, mode) = v
                        .split_once(':')
                        .map_or((v.as_str(), None), |(n, m)| (n, Some(m)));
                    (cx.container_of(name), mode)
                }
            };
            c.volumes_from.insert(match mode {
                Some(mode) => format!("{container}:{mode}"),
                None => container,
            });
        }
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let (binds, mounts) = binds_and_mounts(cx);
        let h = &mut r.host;
        h.binds = (!binds.is_empty()).then_some(binds);
        h.mounts = (!mounts.is_empty()).then_some(mounts);
        h.tmpfs =
            (!cx.config.tmpfs.is_empty()).then(|| cx.config.tmpfs.clone().into_iter().collect());
        h.volumes_from = super::set(&cx.config.volumes_from);
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        for m in i.raw.mounts.iter().flatten() {
            let kind = kind(m);
            let source = match kind {
                "bind" => m.source.clone(),
                "volume" => m.name.clone().filter(|n| !is_anonymous_volume(n)),
                _ => None,
            };
            c.mounts.insert(
                m.destination.clone().unwrap_or_default(),
                MountDesc {
                    kind,
                    source,
                    read_only: !m.rw.unwrap_or(true),
                },
            );
        }
        c.tmpfs = i
            .host
            .tmpfs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        c.volumes_from = i.host.volumes_from.iter().flatten().cloned().collect();
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        for (target, m) in &c.mounts {
            let src = m.source.as_deref().unwrap_or("(anonymous)");
            let mode = if m.read_only { "ro" } else { "rw" };
            f.put(
                format!("mount {target}"),
                format!("{} {src} {mode}", m.kind),
            );
        }
        f.map("tmpfs", &c.tmpfs);
        f.each("volumes from", &c.volumes_from);
    }

    fn strip(&self, c: &mut ContainerConfig, image: &ImageDefaults) {
        c.mounts.retain(|target, m| {
            !(m.kind == "volume" && m.source.is_none() && image.volumes.contains(target))
        });
    }

    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        // `volumes_from` brings the other container's mounts along.
        if !desired.volumes_from.is_empty() {
            live.mounts
                .retain(|target, _| desired.mounts.contains_key(target));
        }
    }
}

/// The engine's binds (short-syntax binds that create their host path,
/// secrets and configs from files) and mounts (everything else, anonymous
/// volumes carried over included).
fn binds_and_mounts(cx: &Create<'_>) -> (Vec<String>, Vec<Mount>) {
    let (svc, config) = (cx.svc, cx.config);
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    // A bind mount's source as the desired config has it: a repository path
    // mapped onto the engine's host (`hostpath`).
    let bind_source = |m: &crate::spec::model::Mount| {
        config
            .mounts
            .get(&m.target)
            .filter(|d| d.kind == "bind")
            .and_then(|d| d.source.clone())
            .or_else(|| m.source.clone())
    };
    for m in &svc.volumes {
        match m.kind {
            MountType::Bind if m.bind.as_ref().is_none_or(|b| b.create_host_path) => {
                let mut opts: Vec<&str> = Vec::new();
                if m.read_only {
                    opts.push("ro");
                }
                if let Some(b) = &m.bind {
                    opts.extend(b.selinux.as_deref());
                    opts.extend(b.propagation.as_deref());
                }
                let src = bind_source(m).unwrap_or_default();
                binds.push(if opts.is_empty() {
                    format!("{src}:{}", m.target)
                } else {
                    format!("{src}:{}:{}", m.target, opts.join(","))
                });
            }
            MountType::Bind => mounts.push(Mount {
                target: Some(m.target.clone()),
                source: bind_source(m),
                typ: Some(EngineMountType::BIND),
                read_only: Some(m.read_only),
                bind_options: m.bind.as_ref().map(|b| MountBindOptions {
                    propagation: b.propagation.as_deref().and_then(|p| p.parse().ok()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountType::Volume => {
                let source = match &m.source {
                    Some(s) => Some(
                        cx.stack
                            .volumes
                            .get(s)
                            .map_or_else(|| s.clone(), |v| v.name.clone()),
                    ),
                    None => cx.carry.get(&m.target).cloned(),
                };
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source,
                    typ: Some(EngineMountType::VOLUME),
                    read_only: Some(m.read_only),
                    volume_options: m.volume.as_ref().map(|v| MountVolumeOptions {
                        no_copy: Some(v.nocopy),
                        subpath: v.subpath.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            MountType::Tmpfs => mounts.push(Mount {
                target: Some(m.target.clone()),
                typ: Some(EngineMountType::TMPFS),
                read_only: Some(m.read_only),
                tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                    size_bytes: t.size.map(|s| s.0 as i64),
                    mode: t.mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    // Anonymous volumes the image declares keep their data across a recreate too.
    for (target, name) in cx.carry {
        if !svc.volumes.iter().any(|m| &m.target == target) {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(name.clone()),
                typ: Some(EngineMountType::VOLUME),
                ..Default::default()
            });
        }
    }
    for (target, m) in &config.mounts {
        if m.kind == "bind" && m.read_only && !svc.volumes.iter().any(|v| &v.target == target) {
            // Secrets and configs from files.
            binds.push(format!(
                "{}:{target}:ro",
                m.source.clone().unwrap_or_default()
            ));
        }
    }
    (binds, mounts)
}

/// The anonymous volumes of a container by target, for its replacement to take over.
pub fn anonymous_volumes(c: &ContainerInspectResponse) -> BTreeMap<String, String> {
    c.mounts
        .iter()
        .flatten()
        .filter(|m| kind(m) == "volume")
        .filter_map(|m| {
            let name = m.name.as_deref().filter(|n| is_anonymous_volume(n))?;
            Some((m.destination.clone().unwrap_or_default(), name.to_string()))
        })
        .collect()
}

fn kind(m: &bollard::models::MountPoint) -> &'static str {
    match m.typ.as_ref().map(|t| t.to_string()).as_deref() {
        Some("bind") => "bind",
        Some("tmpfs") => "tmpfs",
        _ => "volume",
    }
}

fn is_anonymous_volume(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
