//! `build:` of a service: the context (a path in the repository; a remote
//! context is refused), the Dockerfile and the build options; and
//! [`check_builds`], which checks that each context and Dockerfile exists.

use std::path::Path;

use super::values::normalize_path;
use super::{Cx, join};
use crate::source::Files;
use crate::spec::diag::Diag;
use crate::spec::model::*;
use crate::spec::yaml::{Node, Value};

/// Keys of `build:` that plimsoll implements.
const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "labels",
    "cache_from",
    "no_cache",
    "pull",
    "extra_hosts",
    "network",
    "target",
    "shm_size",
    "tags",
];

const BUILDKIT: &str = "a BuildKit feature; plimsoll builds with the engine's own builder (the build API every engine from API 1.41 on has)";

const BUILD_UNSUPPORTED: &[(&str, &str)] = &[
    ("additional_contexts", BUILDKIT),
    ("cache_to", BUILDKIT),
    ("entitlements", BUILDKIT),
    ("isolation", "a Windows-only setting"),
    ("no_cache_filter", BUILDKIT),
    ("platforms", BUILDKIT),
    ("privileged", BUILDKIT),
    ("provenance", BUILDKIT),
    ("sbom", BUILDKIT),
    ("secrets", BUILDKIT),
    ("ssh", BUILDKIT),
    (
        "ulimits",
        "the engine API client plimsoll uses (bollard 0.21) cannot send build ulimits; set them with `RUN ulimit` in the Dockerfile",
    ),
];

impl Cx<'_, '_> {
    /// Loads `build`. `false` for a key of another group.
    pub(super) fn build_key(&mut self, key: &str, n: &Node, p: &str, svc: &mut Service) -> bool {
        match key {
            "build" => svc.build = self.build(n, p),
            _ => return false,
        }
        true
    }

    /// `build:`: a context path, or the long form. The context resolves
    /// against the stack directory; a remote (git or URL) context is refused.
    fn build(&mut self, node: &Node, path: &str) -> Option<Build> {
        let mut b = Build::default();
        let mut context = None;
        let mut context_mark = node.mark;
        match &node.value {
            Value::Map(_) => {
                let (fields, _) = self.fields(node, path, BUILD_KEYS, BUILD_UNSUPPORTED);
                for (f, n, _) in fields {
                    let p = join(path, f);
                    match f {
                        "context" => {
                            context = self.string(n, &p);
                            context_mark = n.mark;
                        }
                        "dockerfile" => b.dockerfile = self.opt_string(n, &p),
                        "dockerfile_inline" => b.dockerfile_inline = self.opt_string(n, &p),
                        "args" => {
                            for (k, v) in self.list_or_dict(n, &p, true) {
                                // A name without a value comes from the environment, or is left out.
                                if let Some(v) = v.or_else(|| self.vars.get(&k).cloned()) {
                                    self.masker.observe(&k, &v);
                                    b.args.insert(k, v);
                                }
                            }
                        }
                        "labels" => b.labels = self.string_map(n, &p),
                        "cache_from" => b.cache_from = self.string_list(n, &p),
                        "no_cache" => b.no_cache = self.boolean(n, &p).unwrap_or(false),
                        "pull" => b.pull = self.boolean(n, &p).unwrap_or(false),
                        "extra_hosts" => {
                            b.extra_hosts = self.extra_hosts(n, &p);
                            if b.extra_hosts.len() > 1 {
                                self.err(n.mark, &p, "more than one build extra host is not supported: the engine API client plimsoll uses (bollard 0.21) sends one")
                                    .hint("keep one entry, or add the hosts in the Dockerfile");
                            }
                        }
                        "network" => b.network = self.opt_string(n, &p),
                        "target" => b.target = self.opt_string(n, &p),
                        "shm_size" => b.shm_size = self.bytes(n, &p),
                        "tags" => b.tags = self.string_list(n, &p),
                        _ => unreachable!("listed in BUILD_KEYS"),
                    }
                }
            }
            Value::Null => {}
            Value::Seq(_) => {
                self.type_err(node, path, "a context path or a mapping");
                return None;
            }
            _ => context = self.string(node, path),
        }
        let context = context
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| ".".into());
        let key = if node.as_map().is_some() {
            join(path, "context")
        } else {
            path.to_string()
        };
        if is_remote_context(&context) {
            self.err(
                context_mark,
                &key,
                format!("a remote build context (`{context}`) is not supported: plimsoll builds from the repository it deploys"),
            )
            .hint("put the sources in the config repository and give `context:` as a path, or build the image in CI and name it with `image:`");
            return None;
        }
        b.context = self.host_path(&context);
        if b.dockerfile_inline.is_some() && b.dockerfile.is_some() {
            let mark = node.get("dockerfile").map_or(node.mark, |n| n.mark);
            self.err(
                mark,
                &join(path, "dockerfile"),
                "`dockerfile` and `dockerfile_inline` are both set",
            )
            .hint("keep one of them");
            return None;
        }
        if b.dockerfile_inline.is_none() && b.dockerfile.is_none() {
            b.dockerfile = Some("Dockerfile".into());
        }
        // Where the context and the Dockerfile were written, for `check_builds`.
        self.marks.insert(format!("{path}.context"), context_mark);
        if let Some(n) = node.get("dockerfile") {
            self.marks.insert(format!("{path}.dockerfile"), n.mark);
        }
        Some(b)
    }
}

/// Checks that each build context is a directory and its Dockerfile exists
/// (through `files`, at load; a stored revision is not checked: rollback
/// reuses the image built for it).
pub fn check_builds(stack: &Stack, files: &dyn Files, diags: &mut Vec<Diag>) {
    for (name, svc) in &stack.services {
        let Some(b) = &svc.build else { continue };
        let file = &stack.source.file;
        let key = |k: &str| format!("services.{name}.build.{k}");
        let context_mark = stack.source.mark(name, "build.context");
        let dir = Path::new(&b.context);
        match files.read(dir) {
            Ok(None) => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {} does not exist", b.context),
                    )
                    .hint("create the directory, or point `context:` at it (relative to the stack directory)"),
                );
                continue;
            }
            Ok(Some(_)) => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {} is a file, not a directory", b.context),
                    )
                    .hint("point `context:` at the directory that holds the sources and the Dockerfile"),
                );
                continue;
            }
            Err(e) if crate::source::refused(&e).is_some() => {
                diags.push(
                    Diag::error(
                        file,
                        context_mark,
                        key("context"),
                        format!("the build context {}: {e}", b.context),
                    )
                    .hint(crate::source::read_hint(&e, "")),
                );
                continue;
            }
            // Reading a directory fails: it exists.
            Err(_) => {}
        }
        // The build reads the context's `.dockerignore` and its Dockerfile
        // from the file system (`build::scan`): neither may lead out of the
        // repository through a symlink.
        let ignore = dir.join(".dockerignore");
        if let Err(e) = files.kind(&ignore) {
            diags.push(
                Diag::error(
                    file,
                    context_mark,
                    key("context"),
                    format!("{}: {e}", ignore.display()),
                )
                .hint(crate::source::read_hint(
                    &e,
                    "check that the file is readable",
                )),
            );
        }
        // The Dockerfile: reported at `dockerfile:` where it is written, else at `context:`.
        let written = stack
            .source
            .marks
            .contains_key(&format!("services.{name}.build.dockerfile"));
        let (mark, k) = if written {
            (
                stack.source.mark(name, "build.dockerfile"),
                key("dockerfile"),
            )
        } else {
            (context_mark, key("context"))
        };
        if b.dockerfile_inline.is_none() {
            let path = normalize_path(&dir.join(b.dockerfile.as_deref().unwrap_or("Dockerfile")));
            if let Err(e) = files.kind(&path)
                && crate::source::refused(&e).is_some()
            {
                diags.push(
                    Diag::error(
                        file,
                        mark,
                        k.clone(),
                        format!("the Dockerfile {}: {e}", path.display()),
                    )
                    .hint(crate::source::read_hint(&e, "")),
                );
            }
        }
        if let Some(df) = &b.dockerfile {
            let path = normalize_path(&dir.join(df));
            if let Ok(None) = files.read(&path) {
                diags.push(
                    Diag::error(
                        file,
                        mark,
                        k,
                        format!("the Dockerfile {} does not exist", path.display()),
                    )
                    .hint(
                        "create it, or name it with `dockerfile:` (relative to the build context)",
                    ),
                );
            }
        }
    }
}

/// A build context Compose would fetch: a git repository or a URL.
fn is_remote_context(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}
