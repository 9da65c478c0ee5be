//! The networking keys of a service: `networks`, `ports`, `expose`, DNS,
//! `extra_hosts`, `hostname`, `domainname`, `mac_address`, `links` and
//! `external_links`, and what cannot go with a `network_mode`; Compose's
//! short port syntax.

use std::collections::BTreeMap;

use super::{Cx, idx, join};
use crate::spec::diag::Mark;
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

impl Cx<'_, '_> {
    /// Loads a networking key. `false` for a key of another group.
    pub(super) fn networking_key(
        &mut self,
        key: &str,
        n: &Node,
        p: &str,
        svc: &mut Service,
    ) -> bool {
        match key {
            "dns" => svc.dns = self.string_or_list(n, p),
            "dns_opt" => svc.dns_opt = self.string_list(n, p),
            "dns_search" => svc.dns_search = self.string_or_list(n, p),
            "domainname" => svc.domainname = self.opt_string(n, p),
            "expose" => svc.expose = self.expose(n, p),
            "external_links" => svc.external_links = self.string_list(n, p),
            "extra_hosts" => svc.extra_hosts = self.extra_hosts(n, p),
            "hostname" => svc.hostname = self.opt_string(n, p),
            "links" => svc.links = self.string_list(n, p),
            "mac_address" => svc.mac_address = self.opt_string(n, p),
            "networks" => svc.networks = self.service_networks(n, p),
            "ports" => svc.ports = self.ports(n, p),
            _ => return false,
        }
        true
    }

    fn service_networks(
        &mut self,
        node: &Node,
        path: &str,
    ) -> BTreeMap<String, Option<ServiceNetwork>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.string(item, &idx(path, i)) {
                        self.marks.insert(format!("{path}.{name}"), item.mark);
                        out.insert(name, None);
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar_string().unwrap_or_default();
                    let p = join(path, &name);
                    self.marks.insert(p.clone(), k.mark);
                    if v.is_null() {
                        out.insert(name, None);
                        continue;
                    }
                    let unsupported = [
                        (
                            "mac_address",
                            "a MAC address per network needs engine API 1.44 (Docker 25); set the service's `mac_address` for its first network",
                        ),
                        (
                            "gw_priority",
                            "needs engine API 1.48 (Docker 28.1); plimsoll supports engines from API 1.41",
                        ),
                        (
                            "interface_name",
                            "needs engine API 1.49 (Docker 28.2); plimsoll supports engines from API 1.41",
                        ),
                    ];
                    let known = [
                        "aliases",
                        "ipv4_address",
                        "ipv6_address",
                        "link_local_ips",
                        "driver_opts",
                        "priority",
                    ];
                    let (fields, _) = self.fields(v, &p, &known, &unsupported);
                    let mut sn = ServiceNetwork::default();
                    for (f, n, _) in fields {
                        let fp = join(&p, f);
                        match f {
                            "aliases" => sn.aliases = self.string_list(n, &fp),
                            "ipv4_address" => sn.ipv4_address = self.opt_string(n, &fp),
                            "ipv6_address" => sn.ipv6_address = self.opt_string(n, &fp),
                            "link_local_ips" => sn.link_local_ips = self.string_list(n, &fp),
                            "driver_opts" => sn.driver_opts = self.string_map(n, &fp),
                            "priority" => sn.priority = self.int(n, &fp),
                            _ => unreachable!(),
                        }
                    }
                    out.insert(name, Some(sn));
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list or a mapping of networks"),
        }
        out
    }

    fn ports(&mut self, node: &Node, path: &str) -> Vec<Port> {
        let ports = self.long_or_short(
            node,
            path,
            "a list of ports",
            |this, item, p| this.long_port(item, p).map(|port| vec![port]),
            |this, item, p, s| match parse_short_port(s) {
                Ok(ports) => Some(ports),
                Err(why) => {
                    this.err(item.mark, p, format!("invalid port `{s}`: {why}")).hint(
                        "write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. 8080:80 or 127.0.0.1:5432:5432/tcp",
                    );
                    None
                }
            },
        );
        ports.into_iter().flatten().collect()
    }

    fn long_port(&mut self, node: &Node, path: &str) -> Option<Port> {
        let known = [
            "target",
            "published",
            "host_ip",
            "protocol",
            "mode",
            "name",
            "app_protocol",
        ];
        let (fields, _) = self.fields(node, path, &known, &[]);
        let mut port = Port {
            name: None,
            mode: "ingress".into(),
            host_ip: None,
            target: 0,
            published: None,
            protocol: "tcp".into(),
            app_protocol: None,
        };
        let mut target = None;
        for (f, n, _) in fields {
            let p = join(path, f);
            match f {
                "target" => {
                    target = self.string(n, &p).and_then(|t| {
                        let v = t.parse::<u16>().ok().filter(|v| *v > 0);
                        if v.is_none() {
                            self.err(n.mark, &p, format!("invalid container port `{t}`"))
                                .hint("use a port from 1 to 65535");
                        }
                        v
                    })
                }
                "published" => {
                    port.published = self.opt_string(n, &p).filter(|s| !s.is_empty());
                    if let Some(pubd) = &port.published
                        && parse_port_range(pubd).is_none()
                    {
                        self.err(n.mark, &p, format!("invalid published port `{pubd}`"))
                            .hint("use a port from 1 to 65535 or a range like 8000-8010");
                    }
                }
                "host_ip" => port.host_ip = self.opt_string(n, &p),
                "protocol" => {
                    let proto = self.string(n, &p).unwrap_or_default().to_ascii_lowercase();
                    if !valid_protocol(&proto) {
                        self.err(n.mark, &p, format!("invalid protocol `{proto}`"))
                            .hint("use tcp, udp or sctp");
                    }
                    port.protocol = proto;
                }
                "mode" => {
                    let mode = self.string(n, &p).unwrap_or_default();
                    if mode != "ingress" && mode != "host" {
                        self.err(n.mark, &p, format!("invalid port mode `{mode}`"))
                            .hint("use host or ingress");
                    }
                    port.mode = mode;
                }
                "name" => port.name = self.opt_string(n, &p),
                "app_protocol" => port.app_protocol = self.opt_string(n, &p),
                _ => unreachable!(),
            }
        }
        match target {
            Some(t) => {
                port.target = t;
                Some(port)
            }
            None => {
                if node.get("target").is_none() {
                    self.err(node.mark, path, "a port in long form needs `target:`")
                        .hint("add `target:` with the container port, e.g. `target: 80`");
                }
                None
            }
        }
    }

    fn expose(&mut self, node: &Node, path: &str) -> Vec<String> {
        let list = self.string_list(node, path);
        self.check_entries(
            node,
            path,
            &list,
            |e| {
                let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                parse_port_range(port).is_some() && valid_protocol(proto)
            },
            "port",
            "write a container port or range, optionally with /tcp, /udp or /sctp",
        );
        list
    }

    pub(super) fn extra_hosts(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let host = k.scalar_string().unwrap_or_default();
                    let p = join(path, &host);
                    let ips = match &v.value {
                        Value::Seq(_) => self.string_list(v, &p),
                        _ => self.string(v, &p).into_iter().collect(),
                    };
                    pairs.extend(ips.into_iter().map(|ip| (host.clone(), ip)));
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(s) = self.string(item, &idx(path, i)) else {
                        continue;
                    };
                    match s.split_once('=').or_else(|| s.split_once(':')) {
                        Some((h, ip)) => pairs.push((h.to_string(), ip.to_string())),
                        None => self
                            .err(
                                item.mark,
                                &idx(path, i),
                                format!("invalid extra host `{s}`"),
                            )
                            .hint("write HOST=IP or HOST:IP"),
                    }
                }
            }
            Value::Null => {}
            _ => self.type_err(node, path, "a list or a mapping"),
        }
        // Compose prints them sorted, with `=` and IPv6 addresses without brackets.
        let mut hosts: Vec<String> = pairs
            .into_iter()
            .map(|(h, ip)| format!("{h}={}", ip.trim_start_matches('[').trim_end_matches(']')))
            .collect();
        hosts.sort();
        hosts
    }

    /// Settings that cannot go with the service's `network_mode`: Compose
    /// rejects `networks`; the engine rejects the rest when the container starts.
    pub(super) fn network_mode_conflicts(
        &mut self,
        path: &str,
        svc: &Service,
        fields: &[(&str, &Node, Mark)],
    ) {
        let Some(mode) = svc.network_mode.as_deref() else {
            return;
        };
        if matches!(mode, "bridge" | "default") {
            return;
        }
        let shared = mode.starts_with("service:") || mode.starts_with("container:");
        let mut conflicting = vec!["networks", "ports"];
        if shared {
            conflicting.extend([
                "expose",
                "hostname",
                "dns",
                "dns_search",
                "dns_opt",
                "extra_hosts",
                "mac_address",
                "links",
            ]);
        } else if mode == "host" {
            conflicting.push("mac_address");
        }
        for (key, node, mark) in fields {
            if !conflicting.contains(key) || node.is_null() {
                continue;
            }
            let why = if *key == "networks" {
                "Compose rejects the two together".to_string()
            } else if shared {
                format!(
                    "the container uses the network stack of `{}`",
                    mode.split_once(':').map_or(mode, |(_, n)| n)
                )
            } else {
                format!("the container has the {mode} network stack")
            };
            self.err(
                *mark,
                &join(path, key),
                format!("`{key}` cannot be used with `network_mode: {mode}`: {why}"),
            )
            .hint(format!("remove `{key}`, or remove `network_mode`"));
        }
    }
}

fn valid_protocol(p: &str) -> bool {
    matches!(p, "tcp" | "udp" | "sctp")
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// `80` or `8000-8010` as an inclusive range.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            (a <= b).then_some((a, b))
        }
        None => parse_port(s).map(|p| (p, p)),
    }
}

/// Why a port in Compose's short syntax is invalid (the text after "invalid
/// port `SPEC`: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShortPortError {
    #[error("unknown protocol `{0}`")]
    Protocol(String),
    #[error("unclosed `[` in host address")]
    UnclosedBracket,
    #[error("expected `:` after the host address")]
    AfterHostAddress,
    #[error("too many `:`")]
    TooManyColons,
    #[error("invalid container port `{0}`")]
    ContainerPort(String),
    #[error("invalid host port `{0}`")]
    HostPort(String),
    #[error("a container port range needs a host range of the same size")]
    SingleHostPort,
    #[error("host and container ranges differ in size")]
    RangeSizes,
}

/// Parses Compose's short port syntax `[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTO]`
/// into long-form ports; container port ranges expand to one port each.
pub fn parse_short_port(spec: &str) -> Result<Vec<Port>, ShortPortError> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !valid_protocol(&proto) {
        return Err(ShortPortError::Protocol(proto));
    }
    // An IPv6 host address is written in brackets.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or(ShortPortError::UnclosedBracket)?;
        let tail = tail
            .strip_prefix(':')
            .ok_or(ShortPortError::AfterHostAddress)?;
        (Some(ip.to_string()), tail.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest.to_string()),
            3 => (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            ),
            _ => return Err(ShortPortError::TooManyColons),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest.as_str()),
    };
    let (t0, t1) = parse_port_range(target)
        .ok_or_else(|| ShortPortError::ContainerPort(target.to_string()))?;
    let published = match published {
        Some("") | None => None,
        Some(p) => {
            Some(parse_port_range(p).ok_or_else(|| ShortPortError::HostPort(p.to_string()))?)
        }
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let port = |target: u16, published: Option<String>| Port {
        name: None,
        mode: "ingress".into(),
        host_ip: host_ip.clone(),
        target,
        published,
        protocol: proto.clone(),
        app_protocol: None,
    };
    let fmt_range = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    if t0 == t1 {
        return Ok(vec![port(t0, published.map(fmt_range))]);
    }
    // A container range maps onto a host range of the same length, port by port.
    match published {
        Some((p0, p1)) if p0 == p1 => Err(ShortPortError::SingleHostPort),
        Some((p0, p1)) if p1 - p0 != t1 - t0 => Err(ShortPortError::RangeSizes),
        Some((p0, _)) => Ok((t0..=t1)
            .map(|t| port(t, Some((p0 + (t - t0)).to_string())))
            .collect()),
        None => Ok((t0..=t1).map(|t| port(t, None)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = parse_short_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (
                p[0].target,
                p[0].published.as_deref(),
                p[0].protocol.as_str()
            ),
            (80, Some("8080"), "udp")
        );
        let p = parse_short_port("8000-8002:9000-9002").unwrap();
        assert_eq!(
            p.iter()
                .map(|p| (p.target, p.published.clone().unwrap()))
                .collect::<Vec<_>>(),
            [
                (9000, "8000".to_string()),
                (9001, "8001".to_string()),
                (9002, "8002".to_string())
            ]
        );
        let p = parse_short_port("8000-8010:80").unwrap();
        assert_eq!(p[0].published.as_deref(), Some("8000-8010"));
        let p = parse_short_port("[::1]:5432:5432").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        let p = parse_short_port("127.0.0.1::80").unwrap();
        assert_eq!((p[0].published.as_deref(), p[0].target), (None, 80));
        assert_eq!(parse_short_port("3000-3002").unwrap().len(), 3);
        for bad in [
            "80/http",
            "0",
            "70000",
            "a:b",
            "1:2:3:4",
            "8000-8001:90-95",
            "9-8",
        ] {
            assert!(parse_short_port(bad).is_err(), "{bad}");
        }
    }
}
