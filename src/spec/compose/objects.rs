//! The top-level objects of a stack: `networks` (with `ipam`), `volumes`,
//! `secrets` and `configs`; age-encrypted secret and config files decrypted,
//! secret files read so their values are masked.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Cx, SWARM, idx, join};
use crate::spec::model::*;
use crate::spec::yaml::Node;

const NETWORK_KEYS: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "external",
    "internal",
    "labels",
    "ipam",
    "attachable",
    "enable_ipv6",
];

const NETWORK_UNSUPPORTED: &[(&str, &str)] = &[(
    "enable_ipv4",
    "needs Docker API 1.47 (Docker 28); plimsoll supports engines from API 1.41 on, where every network has IPv4",
)];

const VOLUME_KEYS: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];

impl Cx<'_, '_> {
    pub(super) fn networks(&mut self, node: &Node, project: &str) -> BTreeMap<String, Network> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, "networks") else {
            return out;
        };
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join("networks", &key);
            let mut net = Network::default();
            let (fields, _) = self.fields(v, &path, NETWORK_KEYS, NETWORK_UNSUPPORTED);
            let mut name = None;
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => name = self.string(n, &p),
                    "driver" => net.driver = self.opt_string(n, &p),
                    "driver_opts" => net.driver_opts = self.string_map(n, &p),
                    "external" => net.external = self.external(n, &p, &mut name),
                    "internal" => net.internal = self.boolean(n, &p).unwrap_or(false),
                    "labels" => net.labels = self.string_map(n, &p),
                    "ipam" => net.ipam = Some(self.ipam(n, &p)).filter(|i| *i != Ipam::default()),
                    "attachable" => net.attachable = self.boolean(n, &p).unwrap_or(false),
                    "enable_ipv6" => net.enable_ipv6 = self.boolean(n, &p),
                    _ => unreachable!("listed in NETWORK_KEYS"),
                }
            }
            net.name = resolve_name(name, net.external, project, &key);
            out.insert(key, net);
        }
        out
    }

    /// A network's `ipam:`: driver, address pools, driver options.
    fn ipam(&mut self, node: &Node, path: &str) -> Ipam {
        let (fields, _) = self.fields(node, path, &["driver", "config", "options"], &[]);
        let mut ipam = Ipam::default();
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "driver" => ipam.driver = self.opt_string(n, &p),
                "options" => ipam.options = self.string_map(n, &p),
                "config" => {
                    let items = self.seq(n, &p, "a list of address pools");
                    for (i, item) in items.iter().enumerate() {
                        let ip = idx(&p, i);
                        let known = ["subnet", "gateway", "ip_range", "aux_addresses"];
                        let (pf, _) = self.fields(item, &ip, &known, &[]);
                        let mut pool = IpamPool::default();
                        for (k, v, _) in pf {
                            let kp = join(&ip, k);
                            match k {
                                "subnet" => pool.subnet = self.cidr(v, &kp, true),
                                "ip_range" => pool.ip_range = self.cidr(v, &kp, true),
                                "gateway" => pool.gateway = self.cidr(v, &kp, false),
                                "aux_addresses" => pool.aux_addresses = self.string_map(v, &kp),
                                _ => unreachable!(),
                            }
                        }
                        ipam.config.push(pool);
                    }
                }
                _ => unreachable!(),
            }
        }
        ipam
    }

    /// An IP address (`prefix: false`) or a subnet in CIDR notation.
    fn cidr(&mut self, node: &Node, key: &str, prefix: bool) -> Option<String> {
        let s = self.opt_string(node, key)?;
        let ok = if prefix {
            s.split_once('/').is_some_and(|(ip, len)| {
                let max = if ip.contains(':') { 128 } else { 32 };
                ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max)
            })
        } else {
            s.parse::<std::net::IpAddr>().is_ok()
        };
        if !ok {
            let what = if prefix { "subnet" } else { "IP address" };
            let example = if prefix {
                "172.28.0.0/16"
            } else {
                "172.28.0.1"
            };
            self.err(node.mark, key, format!("invalid {what} `{s}`"))
                .hint(format!("write it like {example}"));
        }
        Some(s)
    }

    pub(super) fn volumes(&mut self, node: &Node, project: &str) -> BTreeMap<String, Volume> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, "volumes") else {
            return out;
        };
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join("volumes", &key);
            let mut vol = Volume::default();
            let (fields, _) = self.fields(v, &path, VOLUME_KEYS, &[]);
            let mut name = None;
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => name = self.string(n, &p),
                    "driver" => vol.driver = self.opt_string(n, &p),
                    "driver_opts" => vol.driver_opts = self.string_map(n, &p),
                    "external" => vol.external = self.external(n, &p, &mut name),
                    "labels" => vol.labels = self.string_map(n, &p),
                    _ => unreachable!("listed in VOLUME_KEYS"),
                }
            }
            vol.name = resolve_name(name, vol.external, project, &key);
            out.insert(key, vol);
        }
        out
    }

    /// `external: true`, or the legacy `external: {name: x}`.
    fn external(&mut self, node: &Node, path: &str, name: &mut Option<String>) -> bool {
        if let Some(n) = node.get("name") {
            *name = self.string(n, &join(path, "name"));
            return true;
        }
        self.boolean(node, path).unwrap_or(false)
    }

    pub(super) fn file_objects(
        &mut self,
        node: &Node,
        kind: &str,
        project: &str,
    ) -> BTreeMap<String, FileObject> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(node, kind) else {
            return out;
        };
        let known: &[&str] = if kind == "configs" || self.input.stored {
            &["name", "file", "environment", "content"]
        } else {
            &["name", "file", "environment"]
        };
        let unsupported = [
            (
                "external",
                "external secrets and configs live in Swarm; use `file:` or `environment:`",
            ),
            ("driver", SWARM),
            ("driver_opts", SWARM),
            ("template_driver", SWARM),
            ("labels", SWARM),
        ];
        for (k, v) in entries {
            let key = k.scalar_string().unwrap_or_default();
            let path = join(kind, &key);
            let (fields, _) = self.fields(v, &path, known, &unsupported);
            let mut obj = FileObject {
                name: format!("{project}_{key}"),
                file: None,
                environment: None,
                content: None,
                encrypted: false,
            };
            for (f, n, _) in fields {
                let p = join(&path, f);
                match f {
                    "name" => obj.name = self.string(n, &p).unwrap_or_default(),
                    "file" => {
                        self.marks.insert(p.clone(), n.mark);
                        obj.file = self.string(n, &p).map(|f| self.host_path(&f));
                    }
                    "environment" => obj.environment = self.string(n, &p),
                    "content" => obj.content = self.string(n, &p),
                    _ => unreachable!("listed in known"),
                }
            }
            let sources = [
                obj.file.is_some(),
                obj.environment.is_some(),
                obj.content.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                let what = if kind == "configs" {
                    "`file`, `environment` or `content`"
                } else {
                    "`file` or `environment`"
                };
                self.err(v.mark, &path, format!("needs exactly one of {what}"))
                    .hint(format!("give `{key}` one source, e.g. `file: ./{key}.txt`"));
            }
            out.insert(key, obj);
        }
        out
    }

    /// Secrets and configs whose `file:` is age-encrypted (`*.age`): read and
    /// decrypted here, their content kept in the model (copied into the
    /// container, never bind-mounted: that would need the clear file on disk).
    pub(super) fn decrypt_file_objects(&mut self, stack: &mut Stack) {
        for (kind, objects) in [
            ("secrets", &mut stack.secrets),
            ("configs", &mut stack.configs),
        ] {
            for (key, obj) in objects.iter_mut() {
                let Some(file) = obj.file.clone() else {
                    continue;
                };
                let path = format!("{kind}.{key}.file");
                let mark = self.marks.get(&path).copied().unwrap_or_default();
                let bytes = match self.input.files.read(Path::new(&file)) {
                    Ok(Some(bytes)) => bytes,
                    // Reported by `secret_files` (secrets) or at apply (configs, as before).
                    _ => continue,
                };
                let shown = self.shown(Path::new(&file));
                if let Some(why) = crate::spec::age::sops_marker(Path::new(&file), &bytes) {
                    self.err(mark, &path, format!("{shown}: {why}"))
                        .hint(crate::spec::age::SOPS_HINT);
                    continue;
                }
                if !crate::spec::age::is_encrypted(Path::new(&file)) {
                    continue;
                }
                match crate::spec::age::decrypt_text(self.input.age, &bytes) {
                    Ok(text) => {
                        self.masker.add_value(&text);
                        obj.content = Some(text);
                        obj.file = None;
                        obj.encrypted = true;
                    }
                    Err(e) => {
                        let hint = e.hint();
                        self.err(mark, &path, format!("cannot decrypt {shown}: {e}"))
                            .hint(hint);
                        // So `secret_files` does not read the ciphertext as the secret.
                        obj.file = None;
                    }
                }
            }
        }
    }

    /// Reads secret files and secret variables so their values are masked
    /// everywhere; refuses config files outside the repository (read at apply).
    pub(super) fn secret_files(&mut self, stack: &Stack) {
        for (key, obj) in &stack.configs {
            if let Some(file) = &obj.file
                && let Err(e) = self.input.files.kind(Path::new(file))
                && crate::source::refused(&e).is_some()
            {
                let path = format!("configs.{key}.file");
                let mark = self.marks.get(&path).copied().unwrap_or_default();
                let hint = crate::source::read_hint(&e, "");
                self.err(mark, &path, format!("cannot read config file {file}: {e}"))
                    .hint(hint);
            }
        }
        for (key, obj) in &stack.secrets {
            if let Some(file) = &obj.file {
                match self.input.files.read(Path::new(file)) {
                    Ok(Some(bytes)) => self.masker.add_value(&String::from_utf8_lossy(&bytes)),
                    Ok(None) => {
                        let path = format!("secrets.{key}.file");
                        let mark = self.marks.get(&path).copied().unwrap_or_default();
                        self.err(mark, &path, format!("secret file {file} does not exist"))
                            .hint(
                                "create the file on the host, or point `file:` at the right path",
                            );
                    }
                    Err(e) => {
                        let path = format!("secrets.{key}.file");
                        let mark = self.marks.get(&path).copied().unwrap_or_default();
                        let hint = crate::source::read_hint(
                            &e,
                            "point `file:` at a readable file (not a directory)",
                        );
                        self.err(mark, &path, format!("cannot read secret file {file}: {e}"))
                            .hint(hint);
                    }
                }
            }
            if let Some(var) = &obj.environment {
                if let Some(value) = self.vars.get(var) {
                    self.masker.add_value(value);
                }
                self.masker.add_name(var);
            }
        }
    }
}

fn resolve_name(name: Option<String>, external: bool, project: &str, key: &str) -> String {
    match name {
        Some(n) => n,
        None if external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}
