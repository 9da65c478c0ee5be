//! Desired versus live for a network: what git declares against what the
//! engine reports, on `key: value` lines as for containers.
//!
//! The engine cannot change a network in place, so a difference means the
//! network is recreated. Only what git declares is compared, and what the
//! engine fills in is not a difference: an undeclared driver is `bridge`,
//! an undeclared IPAM driver `default`; without `ipam.config` the
//! engine-assigned pools are not compared, nor an undeclared gateway; driver
//! and IPAM options the engine adds are not compared either. Labels are
//! compared whole, except plimsoll's and Compose's own.
//!
//! Invariant: pure; knows nothing about bollard.

use std::collections::BTreeMap;

use super::Change;
use crate::spec::model::{Ipam, IpamPool, Network};
use crate::spec::secrets::Masker;

/// The driver the engine uses when none is given.
pub const DEFAULT_DRIVER: &str = "bridge";
/// The IPAM driver the engine uses when none is given.
pub const DEFAULT_IPAM_DRIVER: &str = "default";

/// A network's settings as the engine reports them (`docker network ls`
/// and `inspect` carry the same fields), in the spec's own types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam: Ipam,
    /// Every label, plimsoll's and Compose's included.
    pub labels: BTreeMap<String, String>,
}

/// Labels the engine object carries for plimsoll's and Compose's own
/// bookkeeping, never declared in git.
fn is_own_label(key: &str) -> bool {
    key.starts_with("io.plimsoll.") || key.starts_with("com.docker.compose.")
}

/// `ipam subnet` for the first pool, `ipam pool 2 subnet` for the next.
fn pool_key(index: usize, what: &str) -> String {
    if index == 0 {
        format!("ipam {what}")
    } else {
        format!("ipam pool {} {what}", index + 1)
    }
}

/// An address or `address/prefix` as the engine writes it (`FD00:0001::/64`
/// is `fd00:1::/64`); anything that does not parse stays as it is.
fn canonical(addr: &str) -> String {
    let (ip, prefix) = match addr.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (addr, None),
    };
    match (ip.parse::<std::net::IpAddr>(), prefix) {
        (Ok(ip), Some(prefix)) => format!("{ip}/{prefix}"),
        (Ok(ip), None) => ip.to_string(),
        (Err(_), _) => addr.to_string(),
    }
}

fn is_ipv6(subnet: &str) -> bool {
    subnet.contains(':')
}

/// Which live pool each declared pool is compared with: the one with the
/// same subnet, else the next unused one of the same address family.
fn pair_pools(declared: &[IpamPool], live: &[IpamPool]) -> Vec<Option<usize>> {
    let mut used = vec![false; live.len()];
    let mut pairs: Vec<Option<usize>> = declared
        .iter()
        .map(|d| {
            let subnet = d.subnet.as_deref().map(canonical)?;
            let i = (0..live.len()).find(|&i| {
                !used[i] && live[i].subnet.as_deref().map(canonical).as_ref() == Some(&subnet)
            })?;
            used[i] = true;
            Some(i)
        })
        .collect();
    for (d, pair) in declared.iter().zip(pairs.iter_mut()) {
        if pair.is_some() {
            continue;
        }
        let family = d.subnet.as_deref().map(is_ipv6);
        *pair = (0..live.len()).find(|&i| {
            !used[i] && family.is_none_or(|v6| live[i].subnet.as_deref().map(is_ipv6) == Some(v6))
        });
        if let Some(i) = *pair {
            used[i] = true;
        }
    }
    pairs
}

/// One pool's lines: the subnet and gateway where declared, the IP range
/// and auxiliary addresses always (the engine makes up neither).
fn pool_fields(
    out: &mut BTreeMap<String, String>,
    index: usize,
    pool: &IpamPool,
    declared: Option<&IpamPool>,
) {
    let shape = declared.unwrap_or(pool);
    if shape.subnet.is_some()
        && let Some(s) = &pool.subnet
    {
        out.insert(pool_key(index, "subnet"), canonical(s));
    }
    if shape.gateway.is_some()
        && let Some(g) = &pool.gateway
    {
        out.insert(pool_key(index, "gateway"), canonical(g));
    }
    if let Some(r) = &pool.ip_range {
        out.insert(pool_key(index, "ip range"), canonical(r));
    }
    for (host, ip) in &pool.aux_addresses {
        out.insert(
            pool_key(index, &format!("aux address {host}")),
            canonical(ip),
        );
    }
}

/// What git declares about a network, as `key: value` lines (defaults the
/// engine would fill in written out).
pub fn declared_fields(net: &Network) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        "driver".into(),
        net.driver.clone().unwrap_or_else(|| DEFAULT_DRIVER.into()),
    );
    for (k, v) in &net.driver_opts {
        out.insert(format!("driver option {k}"), v.clone());
    }
    out.insert("internal".into(), net.internal.to_string());
    out.insert("attachable".into(), net.attachable.to_string());
    if let Some(v6) = net.enable_ipv6 {
        out.insert("enable ipv6".into(), v6.to_string());
    }
    for (k, v) in &net.labels {
        out.insert(format!("label {k}"), v.clone());
    }
    if let Some(ipam) = &net.ipam {
        out.insert(
            "ipam driver".into(),
            ipam.driver
                .clone()
                .unwrap_or_else(|| DEFAULT_IPAM_DRIVER.into()),
        );
        for (k, v) in &ipam.options {
            out.insert(format!("ipam option {k}"), v.clone());
        }
        for (i, pool) in ipam.config.iter().enumerate() {
            pool_fields(&mut out, i, pool, None);
        }
    }
    out
}

/// The engine's side as `key: value` lines, projected onto what `declared`
/// declares.
pub fn live_fields(live: &NetworkConfig, declared: &Network) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("driver".into(), live.driver.clone());
    for k in declared.driver_opts.keys() {
        if let Some(v) = live.options.get(k) {
            out.insert(format!("driver option {k}"), v.clone());
        }
    }
    out.insert("internal".into(), live.internal.to_string());
    out.insert("attachable".into(), live.attachable.to_string());
    if declared.enable_ipv6.is_some() {
        out.insert("enable ipv6".into(), live.enable_ipv6.to_string());
    }
    for (k, v) in live.labels.iter().filter(|(k, _)| !is_own_label(k)) {
        out.insert(format!("label {k}"), v.clone());
    }
    if let Some(ipam) = &declared.ipam {
        let driver = live
            .ipam
            .driver
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_IPAM_DRIVER.into());
        out.insert("ipam driver".into(), driver);
        for k in ipam.options.keys() {
            if let Some(v) = live.ipam.options.get(k) {
                out.insert(format!("ipam option {k}"), v.clone());
            }
        }
        // Without declared pools the engine picks them: not compared.
        if !ipam.config.is_empty() {
            let pairs = pair_pools(&ipam.config, &live.ipam.config);
            for (i, (d, pair)) in ipam.config.iter().zip(&pairs).enumerate() {
                if let Some(l) = pair.map(|p| &live.ipam.config[p]) {
                    pool_fields(&mut out, i, l, Some(d));
                }
            }
            // A pool of a family git declares none of is the engine's (an
            // IPv6 pool it assigns for `enable_ipv6`); others were removed from git.
            let declared_family = |l: &IpamPool| {
                ipam.config
                    .iter()
                    .any(|d| d.subnet.as_deref().map(is_ipv6) == l.subnet.as_deref().map(is_ipv6))
            };
            let extra = (0..live.ipam.config.len())
                .filter(|p| !pairs.contains(&Some(*p)) && declared_family(&live.ipam.config[*p]));
            for (i, p) in (ipam.config.len()..).zip(extra) {
                pool_fields(&mut out, i, &live.ipam.config[p], None);
            }
        }
    }
    out
}

/// The lines where the engine's network differs from git.
pub fn changes(declared: &Network, live: &NetworkConfig) -> Vec<Change> {
    super::compare(&live_fields(live, declared), &declared_fields(declared))
}

/// A change in words: `ipam subnet 10.1.0.0/24 → 10.2.0.0/24`,
/// `internal false → true`, `label team added: shop`.
pub fn reason(change: &Change, masker: &Masker) -> String {
    match change {
        Change::Changed { key, live, desired } => {
            format!("{key} {} → {}", masker.mask(live), masker.mask(desired))
        }
        other => super::change_words(other, masker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(subnet: &str) -> IpamPool {
        IpamPool {
            subnet: Some(subnet.into()),
            ..IpamPool::default()
        }
    }

    /// What the engine reports for a bridge network made from `net`, the
    /// gaps filled as the engine fills them.
    fn engine(net: &Network) -> NetworkConfig {
        let mut ipam = net.ipam.clone().unwrap_or_default();
        ipam.driver.get_or_insert_with(|| "default".into());
        if ipam.config.is_empty() {
            ipam.config.push(pool("172.18.0.0/16"));
        }
        for p in &mut ipam.config {
            if p.gateway.is_none() && p.subnet.as_deref() == Some("172.18.0.0/16") {
                p.gateway = Some("172.18.0.1".into());
            }
        }
        let mut labels = net.labels.clone();
        labels.insert("io.plimsoll.stack".into(), "shop".into());
        labels.insert("com.docker.compose.network".into(), "backend".into());
        NetworkConfig {
            driver: net.driver.clone().unwrap_or_else(|| "bridge".into()),
            options: net.driver_opts.clone(),
            internal: net.internal,
            attachable: net.attachable,
            enable_ipv6: net.enable_ipv6.unwrap_or(false),
            ipam,
            labels,
        }
    }

    fn reasons(declared: &Network, live: &NetworkConfig) -> Vec<String> {
        let m = Masker::new(Default::default());
        changes(declared, live)
            .iter()
            .map(|c| reason(c, &m))
            .collect()
    }

    fn net(subnet: Option<&str>) -> Network {
        Network {
            name: "shop_backend".into(),
            ipam: subnet.map(|s| Ipam {
                config: vec![pool(s)],
                ..Ipam::default()
            }),
            ..Network::default()
        }
    }

    #[test]
    fn what_the_engine_fills_in_is_no_difference() {
        // No ipam: the engine's subnet, gateway and IPAM driver are its own.
        let plain = net(None);
        assert_eq!(reasons(&plain, &engine(&plain)), Vec::<String>::new());
        // A declared subnet without a gateway: the assigned gateway is not compared.
        let mut sub = net(Some("10.1.0.0/24"));
        let mut live = engine(&sub);
        live.ipam.config[0].gateway = Some("10.1.0.1".into());
        assert_eq!(reasons(&sub, &live), Vec::<String>::new());
        // Options the engine adds, and `ipam: {}` with no pools.
        live.options
            .insert("com.docker.network.driver.mtu".into(), "1500".into());
        live.ipam
            .options
            .insert("com.docker.network.ipam.added".into(), "x".into());
        sub.ipam.as_mut().unwrap().config.clear();
        assert_eq!(reasons(&sub, &live), Vec::<String>::new());
        // The IPAM driver reported empty reads as `default`.
        live.ipam.driver = Some(String::new());
        sub.ipam.as_mut().unwrap().driver = Some("default".into());
        assert_eq!(reasons(&sub, &live), Vec::<String>::new());
    }

    #[test]
    fn changed_settings_are_said_in_words() {
        let old = net(Some("10.1.0.0/24"));
        let live = engine(&old);
        let mut new = net(Some("10.2.0.0/24"));
        new.internal = true;
        new.attachable = true;
        new.driver_opts
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        new.labels.insert("team".into(), "shop".into());
        new.enable_ipv6 = Some(false);
        assert_eq!(
            reasons(&new, &live),
            [
                "attachable false → true",
                "driver option com.docker.network.driver.mtu added: 1400",
                "internal false → true",
                "ipam subnet 10.1.0.0/24 → 10.2.0.0/24",
                "label team added: shop",
            ]
        );
        // Removed from git: a label and an IP range go.
        let mut was = new.clone();
        was.labels.insert("tier".into(), "back".into());
        was.ipam.as_mut().unwrap().config[0].ip_range = Some("10.2.0.128/25".into());
        assert_eq!(
            reasons(&new, &engine(&was)),
            ["ipam ip range removed", "label tier removed"]
        );
        // Driver, IPAM driver and options, gateway and aux addresses.
        let mut other = new.clone();
        other.driver = Some("macvlan".into());
        let ipam = other.ipam.as_mut().unwrap();
        ipam.driver = Some("custom".into());
        ipam.options.insert("k".into(), "2".into());
        ipam.config[0].gateway = Some("10.2.0.254".into());
        ipam.config[0]
            .aux_addresses
            .insert("router".into(), "10.2.0.2".into());
        let mut live = engine(&new);
        live.ipam.options.insert("k".into(), "1".into());
        live.ipam.config[0].gateway = Some("10.2.0.1".into());
        assert_eq!(
            reasons(&other, &live),
            [
                "driver bridge → macvlan",
                "ipam aux address router added: 10.2.0.2",
                "ipam driver default → custom",
                "ipam gateway 10.2.0.1 → 10.2.0.254",
                "ipam option k 1 → 2",
            ]
        );
    }

    #[test]
    fn pools_pair_by_subnet_then_by_family() {
        let mut two = net(Some("10.1.0.0/24"));
        two.ipam.as_mut().unwrap().config.push(pool("fd00:1::/64"));
        // The engine lists IPv4 pools first; the order is no difference.
        let mut live = engine(&two);
        live.ipam.config.reverse();
        assert_eq!(reasons(&two, &live), Vec::<String>::new());
        // A changed IPv6 subnet is compared with the IPv6 pool.
        let mut v6 = two.clone();
        v6.ipam.as_mut().unwrap().config[1].subnet = Some("fd00:2::/64".into());
        assert_eq!(
            reasons(&v6, &live),
            ["ipam pool 2 subnet fd00:1::/64 → fd00:2::/64"]
        );
        // A pool dropped from git, and one added.
        let mut one = net(Some("10.1.0.0/24"));
        let mut v4 = live.clone();
        v4.ipam.config.push(pool("10.9.0.0/24"));
        assert_eq!(reasons(&one, &v4), ["ipam pool 2 subnet removed"]);
        assert_eq!(
            reasons(&two, &engine(&one)),
            ["ipam pool 2 subnet added: fd00:1::/64"]
        );
        // IPv6 spelled otherwise is the same subnet.
        let mut spelled = two.clone();
        spelled.ipam.as_mut().unwrap().config[1].subnet = Some("FD00:0001:0::/64".into());
        assert_eq!(reasons(&spelled, &live), Vec::<String>::new());
        // The IPv6 pool the engine assigns for `enable_ipv6` is its own.
        one.enable_ipv6 = Some(true);
        let mut assigned = engine(&one);
        assigned.ipam.config.push(pool("fd8e:17::/64"));
        assert_eq!(reasons(&one, &assigned), Vec::<String>::new());
    }
}
