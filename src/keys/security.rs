//! Security: privileges, capabilities, security options (seccomp profiles
//! by digest, Compose's `systempaths=unconfined`), a read-only root, the
//! user and extra groups, sysctls.

use sha2::{Digest, Sha256};

use super::{ContainerConfig, Create, Desire, Fields, Group, ImageDefaults, Inspect, Request};

pub struct Security;

impl Group for Security {
    fn desired(&self, cx: &Desire<'_>, c: &mut ContainerConfig) {
        let svc = cx.svc;
        c.user = svc.user.clone();
        c.privileged = svc.privileged;
        c.read_only = svc.read_only;
        c.cap_add = svc.cap_add.iter().cloned().collect();
        c.cap_drop = svc.cap_drop.iter().cloned().collect();
        c.sysctls = svc.sysctls.clone();
        c.security_opt = svc
            .security_opt
            .iter()
            .map(|o| svc.seccomp_profiles.get(o).unwrap_or(o).clone())
            .collect();
        c.group_add = svc.group_add.iter().cloned().collect();
    }

    fn create(&self, cx: &Create<'_>, r: &mut Request) {
        let (c, h) = (cx.config, &mut r.host);
        r.body.user = c.user.clone();
        h.privileged = Some(c.privileged);
        h.readonly_rootfs = Some(c.read_only);
        h.cap_add = super::set(&c.cap_add);
        h.cap_drop = super::set(&c.cap_drop);
        h.sysctls = super::map(&c.sysctls);
        // `systempaths=unconfined` is Compose's: it unmasks /proc and /sys paths
        // rather than being an engine security option.
        let mut security: Vec<String> = Vec::new();
        for opt in &c.security_opt {
            if opt == "systempaths=unconfined" {
                h.masked_paths = Some(Vec::new());
                h.readonly_paths = Some(Vec::new());
            } else {
                security.push(opt.clone());
            }
        }
        h.security_opt = (!security.is_empty()).then_some(security);
        h.group_add = super::set(&c.group_add);
    }

    fn read(&self, i: &Inspect<'_>, c: &mut ContainerConfig) {
        let h = i.host;
        c.user = super::nonempty(&i.cfg.user);
        c.privileged = h.privileged.unwrap_or(false);
        c.read_only = h.readonly_rootfs.unwrap_or(false);
        c.cap_add = h.cap_add.iter().flatten().cloned().collect();
        c.cap_drop = h.cap_drop.iter().flatten().cloned().collect();
        c.sysctls = h.sysctls.clone().unwrap_or_default().into_iter().collect();
        c.security_opt = h.security_opt.iter().flatten().cloned().collect();
        // Compose's `systempaths=unconfined`: no masked /proc and /sys paths.
        if h.masked_paths.as_ref().is_some_and(|p| p.is_empty()) {
            c.security_opt.insert("systempaths=unconfined".into());
        }
        c.group_add = h.group_add.iter().flatten().cloned().collect();
    }

    fn fields(&self, c: &ContainerConfig, f: &mut Fields<'_>) {
        f.opt("user", &c.user);
        f.flag("privileged", c.privileged);
        f.flag("read only", c.read_only);
        f.each("cap add", &c.cap_add);
        f.each("cap drop", &c.cap_drop);
        f.map("sysctl", &c.sysctls);
        for o in &c.security_opt {
            match o.strip_prefix("seccomp={") {
                // A profile from a file: its digest stands for it.
                Some(_) => {
                    let digest = Sha256::digest(o.as_bytes());
                    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                    f.put("security opt seccomp", format!("profile sha256:{hex}"));
                }
                None => f.put(format!("security opt {o}"), "yes"),
            }
        }
        f.each("group add", &c.group_add);
    }

    fn strip(&self, c: &mut ContainerConfig, image: &ImageDefaults) {
        if c.user.is_some()
            && (c.user == image.user || c.user.as_deref() == Some("") && image.user.is_none())
        {
            c.user = None;
        }
    }

    fn align(&self, live: &mut ContainerConfig, desired: &ContainerConfig) {
        // Added by the engine for host namespaces and privileged containers.
        if !desired.security_opt.contains("label=disable") {
            live.security_opt.remove("label=disable");
        }
    }
}
