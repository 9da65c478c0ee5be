//! Networking: networks and their aliases, endpoint settings (fixed and
//! link-local addresses, driver options, priority), published and exposed
//! ports, DNS, extra hosts, host and domain names, the MAC address, legacy
//! links.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{EndpointIpamConfig, EndpointSettings, PortBinding};

use super::{
    ComposeEdit, ComposeOp, ContainerConfig, Create, Desire, Fields, Group, Inspect, Inverse,
    Request,
};
use crate::names::network_name;

pub struct Networking;

impl Group for Networking {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let (stack, svc) = (cx.stack, cx.svc);
        for p in &svc.ports {
            let key = format!("{}/{}", p.target, p.protocol);
            let bind = format!(
                "{}:{}",
                p.host_ip.as_deref().unwrap_or(""),
                p.published.as_deref().unwrap_or("")
            );
            c.ports.entry(key).or_default().push(bind);
        }
        for binds in c.ports.values_mut() {
            binds.sort();
        }
        for (net, settings) in &svc.networks {
            let engine_name = network_name(stack, net);
            let mut aliases: BTreeSet<String> = BTreeSet::from([cx.service.to_string()]);
            if let Some(s) = settings {
                aliases.extend(s.aliases.iter().cloned());
                let words = endpoint_words(
                    s.ipv4_address.as_deref(),
                    s.ipv6_address.as_deref(),
                    &s.link_local_ips,
                    &s.driver_opts,
                );
                if let Some(words) = words {
                    c.endpoints.insert(engine_name.clone(), words);
                }
            }
            c.networks.insert(engine_name, aliases);
        }
        c.hostname = svc.hostname.clone();
        c.domainname = svc.domainname.clone();
        c.mac_address = svc.mac_address.clone();
        c.extra_hosts = svc
            .extra_hosts
            .iter()
            .map(|h| h.replacen('=', ":", 1))
            .collect();
        c.dns = svc.dns.clone();
        c.dns_search = svc.dns_search.clone();
        c.dns_options = svc.dns_opt.clone();
        for link in &svc.links {
            let (name, alias) = link.split_once(':').unwrap_or((link, link));
            c.links.insert(format!("{}:{alias}", cx.container_of(name)));
        }
        for link in &svc.external_links {
            let (name, alias) = link.split_once(':').unwrap_or((link, link));
            c.links.insert(format!("{name}:{alias}"));
        }
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let c = cx.config;
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = c
            .ports
            .iter()
            .map(|(port, binds)| {
                let b = binds
                    .iter()
                    .map(|hb| {
                        let (ip, port) = hb.rsplit_once(':').unwrap_or(("", hb));
                        PortBinding {
                            host_ip: Some(ip.to_string()),
                            host_port: Some(port.to_string()),
                        }
                    })
                    .collect();
                (port.clone(), Some(b))
            })
            .collect();
        r.host.port_bindings = (!port_bindings.is_empty()).then_some(port_bindings);
        let mut exposed: BTreeSet<String> = c.ports.keys().cloned().collect();
        for e in &cx.svc.expose {
            exposed.insert(if e.contains('/') {
                e.clone()
            } else {
                format!("{e}/tcp")
            });
        }
        r.body.exposed_ports = (!exposed.is_empty()).then(|| exposed.into_iter().collect());
        r.networks = endpoints(cx);
        // The primary network is the network mode (unless `namespaces` sets one).
        r.host.network_mode = r.networks.first().map(|(n, _)| n.clone());
        // A declared MAC address belongs to the primary network (API 1.44 and later).
        if let Some((_, endpoint)) = r.networks.first_mut() {
            endpoint.mac_address = c.mac_address.clone();
        }
        r.body.hostname = c.hostname.clone();
        r.body.domainname = c.domainname.clone();
        r.host.extra_hosts = super::set(&c.extra_hosts);
        r.host.dns = super::list(&c.dns);
        r.host.dns_search = super::list(&c.dns_search);
        r.host.dns_options = super::list(&c.dns_options);
        // On the default bridge, links are the engine's legacy links; on
        // user-defined networks the endpoints carry them (see `endpoints`).
        r.host.links = super::set(&c.links);
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let host = i.host;
        for (port, binds) in host.port_bindings.clone().unwrap_or_default() {
            let mut v: Vec<String> = binds
                .unwrap_or_default()
                .into_iter()
                .map(|b| {
                    format!(
                        "{}:{}",
                        b.host_ip.unwrap_or_default(),
                        b.host_port.unwrap_or_default()
                    )
                })
                .collect();
            v.sort();
            c.ports.insert(port, v);
        }
        let endpoints = i
            .raw
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        let mut endpoint_links: BTreeSet<String> = BTreeSet::new();
        for (net, ep) in &endpoints {
            if let Some(m) = ep.mac_address.clone().filter(|m| !m.is_empty()) {
                c.endpoint_macs.insert(net.clone(), m);
            }
            let ipam = ep.ipam_config.clone().unwrap_or_default();
            let opts: BTreeMap<String, String> = ep
                .driver_opts
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            if let Some(words) = endpoint_words(
                ipam.ipv4_address.as_deref(),
                ipam.ipv6_address.as_deref(),
                &ipam.link_local_ips.unwrap_or_default(),
                &opts,
            ) {
                c.endpoints.insert(net.clone(), words);
            }
            endpoint_links.extend(ep.links.iter().flatten().cloned());
            let aliases: BTreeSet<String> = ep
                .aliases
                .iter()
                .flatten()
                .filter(|a| **a != i.short_id && *a != i.id)
                .cloned()
                .collect();
            c.networks.insert(net.clone(), aliases);
        }
        if let Some(m) = host
            .network_mode
            .as_deref()
            .filter(|m| super::namespaces::is_special_network_mode(m))
        {
            // The mode's own network (`host`, `none`, `bridge`) is the mode, not a network.
            c.networks.remove(if m == "default" { "bridge" } else { m });
        }
        c.hostname = i.cfg.hostname.clone().filter(|h| *h != i.short_id);
        c.domainname = super::nonempty(&i.cfg.domainname);
        c.extra_hosts = host.extra_hosts.iter().flatten().cloned().collect();
        c.dns = host.dns.clone().unwrap_or_default();
        c.dns_search = host.dns_search.clone().unwrap_or_default();
        c.dns_options = host.dns_options.clone().unwrap_or_default();
        c.links = host
            .links
            .iter()
            .flatten()
            .chain(endpoint_links.iter())
            .map(|l| link_from_engine(l))
            .collect();
    }

    fn compose(&self, cx: &Inverse<'_>, out: &mut Vec<ComposeEdit>) {
        for key in cx.changed {
            let Some(container) = key.strip_prefix("port ") else {
                continue;
            };
            let bindings = cx.live.ports.get(container).cloned().unwrap_or_default();
            out.push(ComposeEdit {
                field: key.clone(),
                at: vec![vec!["ports"]],
                op: ComposeOp::Port {
                    container: container.to_string(),
                    items: short_ports(container, &bindings),
                },
            });
        }
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        for (k, v) in &c.ports {
            f.put(format!("port {k}"), v.join(", "));
        }
        for (net, aliases) in &c.networks {
            let a: Vec<&str> = aliases.iter().map(String::as_str).collect();
            f.put(
                format!("network {net}"),
                format!("aliases {}", a.join(", ")),
            );
        }
        for (net, words) in &c.endpoints {
            f.put(format!("network {net} endpoint"), words.clone());
        }
        f.opt("hostname", &c.hostname);
        f.opt("domainname", &c.domainname);
        f.opt("mac address", &c.mac_address);
        f.each("extra host", &c.extra_hosts);
        for (key, list) in [
            ("dns", &c.dns),
            ("dns search", &c.dns_search),
            ("dns options", &c.dns_options),
        ] {
            if !list.is_empty() {
                f.put(key, list.join(", "));
            }
        }
        f.each("link", &c.links);
    }

    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        // With another container's (or the host's) network stack, the engine
        // copies its host and domain names.
        let shared_net = live
            .network_mode
            .as_deref()
            .is_some_and(|m| m == "host" || m.starts_with("container:"));
        if shared_net && desired.hostname.is_none() {
            live.hostname = None;
        }
        if shared_net && desired.domainname.is_none() {
            live.domainname = None;
        }
        // Docker 20.10 adds a declared hostname to the aliases of every
        // user-defined network: not drift unless git declares it an alias.
        if let Some(h) = &live.hostname {
            for (net, aliases) in &mut live.networks {
                if !desired.networks.get(net).is_some_and(|a| a.contains(h)) {
                    aliases.remove(h);
                }
            }
        }
        live.mac_address = desired.mac_address.as_ref().map(|want| {
            if live
                .endpoint_macs
                .values()
                .any(|m| m.eq_ignore_ascii_case(want))
            {
                want.clone()
            } else {
                let macs: Vec<&str> = live.endpoint_macs.values().map(String::as_str).collect();
                if macs.is_empty() {
                    "(none)".into()
                } else {
                    macs.join(", ")
                }
            }
        });
        // The addresses the engine gave are read for `mac_address` only (no
        // field line of their own): once read, they are not a difference, so
        // an in-sync container compares equal as a whole (the plan's fast path).
        live.endpoint_macs.clone_from(&desired.endpoint_macs);
    }
}

/// The endpoint of each network a service joins, the one with the highest
/// priority (then by name) first.
fn endpoints(cx: &Create<'_>) -> Vec<(String, EndpointSettings)> {
    let c = cx.config;
    let mut by_priority: Vec<(i64, String, EndpointSettings)> = cx
        .svc
        .networks
        .iter()
        .map(|(key, settings)| {
            let engine_name = network_name(cx.stack, key);
            let aliases = c
                .networks
                .get(&engine_name)
                .map(|a| a.iter().cloned().collect());
            let ipam = settings
                .as_ref()
                .filter(|s| {
                    s.ipv4_address.is_some()
                        || s.ipv6_address.is_some()
                        || !s.link_local_ips.is_empty()
                })
                .map(|s| EndpointIpamConfig {
                    ipv4_address: s.ipv4_address.clone(),
                    ipv6_address: s.ipv6_address.clone(),
                    link_local_ips: (!s.link_local_ips.is_empty())
                        .then(|| s.link_local_ips.clone()),
                });
            let driver_opts = settings
                .as_ref()
                .filter(|s| !s.driver_opts.is_empty())
                .map(|s| s.driver_opts.clone().into_iter().collect());
            let priority = settings.as_ref().and_then(|s| s.priority).unwrap_or(0);
            (
                priority,
                engine_name,
                EndpointSettings {
                    aliases,
                    ipam_config: ipam,
                    driver_opts,
                    // Legacy links act as aliases on user-defined networks.
                    links: super::set(&c.links),
                    ..Default::default()
                },
            )
        })
        .collect();
    by_priority.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    by_priority.into_iter().map(|(_, n, e)| (n, e)).collect()
}

/// Declared endpoint settings in words; `None` when there are none.
pub fn endpoint_words(
    ipv4: Option<&str>,
    ipv6: Option<&str>,
    link_local: &[String],
    driver_opts: &BTreeMap<String, String>,
) -> Option<String> {
    let mut words = Vec::new();
    if let Some(a) = ipv4.filter(|a| !a.is_empty()) {
        words.push(format!("ipv4 {a}"));
    }
    if let Some(a) = ipv6.filter(|a| !a.is_empty()) {
        words.push(format!("ipv6 {a}"));
    }
    if !link_local.is_empty() {
        let mut l = link_local.to_vec();
        l.sort();
        words.push(format!("link-local {}", l.join(" ")));
    }
    for (k, v) in driver_opts {
        words.push(format!("driver opt {k}={v}"));
    }
    (!words.is_empty()).then(|| words.join(", "))
}

/// A legacy link as the engine stores it (`/<container>:/<self>/<alias>`)
/// in the compared form `<container>:<alias>`.
fn link_from_engine(link: &str) -> String {
    match link.split_once(':') {
        Some((target, alias)) => format!(
            "{}:{}",
            target.trim_start_matches('/'),
            alias.rsplit('/').next().unwrap_or(alias)
        ),
        None => link.trim_start_matches('/').to_string(),
    }
}

/// The short syntax of a container port's host bindings (`80/tcp` bound to
/// `127.0.0.1:8080` is `127.0.0.1:8080:80`; `/udp` kept).
pub fn short_ports(container: &str, bindings: &[String]) -> Vec<String> {
    let (port, proto) = container.split_once('/').unwrap_or((container, "tcp"));
    let suffix = if proto == "tcp" {
        String::new()
    } else {
        format!("/{proto}")
    };
    bindings
        .iter()
        .map(|b| {
            let (ip, host) = b.rsplit_once(':').unwrap_or(("", b));
            match (ip, host) {
                (_, "") => format!("{port}{suffix}"),
                ("" | "0.0.0.0", h) => format!("{h}:{port}{suffix}"),
                (ip, h) => format!("{ip}:{h}:{port}{suffix}"),
            }
        })
        .collect()
}
