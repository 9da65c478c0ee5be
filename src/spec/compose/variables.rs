//! Interpolation of the Compose file, and the fields built from secret
//! variables: every string that references a variable is remembered while
//! interpolating, and the fields whose secret masking by value would not
//! hide are recorded in the masker once every secret name is known.

use super::{Cx, idx, join};
use crate::spec::interpolate::{InterpolateError, interpolate};
use crate::spec::yaml::{Node, Value};

/// A string of the Compose file that referenced variables.
pub(super) struct Reference {
    /// Where it stands: map keys, and `[i]` for sequence items.
    pub(super) at: Vec<String>,
    pub(super) names: Vec<String>,
    /// As written.
    pub(super) raw: String,
    /// Interpolated.
    pub(super) value: String,
}

/// Keys whose list form is `KEY=value` items and map form `KEY: value`: a
/// secret in one entry hides that entry only.
const ENTRY_KEYS: &[&str] = &["environment", "labels", "annotations", "sysctls"];

/// The key path of the field a string built from a secret variable hides,
/// in Compose's canonical form (as `render` prints it): an entry of
/// `environment`, `labels`, `annotations` or `sysctls` (by its name, in
/// list form too), else the whole key of the service (`command`,
/// `healthcheck`, `image`, `extra_hosts`, `deploy`, ...), or the top-level
/// object (`networks.x`).
fn field_path(at: &[String], raw: &str, value: &str) -> Vec<String> {
    let is_index = |s: &str| s.starts_with('[');
    let mut path: Vec<String> = Vec::new();
    if at.first().map(String::as_str) == Some("services") && at.len() >= 3 {
        path.extend(at[..3].iter().cloned());
        let key = at[2].as_str();
        if ENTRY_KEYS.contains(&key) {
            match at.get(3) {
                Some(entry) if !is_index(entry) => path.push(entry.clone()),
                // `- NAME=value`: the name as written, unless the name itself holds a variable.
                Some(_) if at.len() == 4 => {
                    let name = raw.split('=').next().unwrap_or_default();
                    if !name.contains('$') {
                        path.push(value.split('=').next().unwrap_or_default().to_string());
                    }
                }
                _ => {}
            }
        }
    } else {
        path.extend(at.iter().take(2).filter(|c| !is_index(c)).cloned());
    }
    path
}

impl Cx<'_, '_> {
    /// Interpolates every string value of the tree (keys are left as written).
    /// `at` is `path` as key components; a string that references a variable
    /// is remembered with them, to record the fields built from secret
    /// variables once every secret name is known ([`Cx::secret_fields`]).
    /// `budget`: the bytes the strings may still grow to together
    /// ([`crate::spec::interpolate::MAX_TOTAL_BYTES`]); past it, one error and no more.
    pub(super) fn interpolate(
        &mut self,
        node: &mut Node,
        path: &str,
        at: &mut Vec<String>,
        budget: &mut usize,
    ) {
        match &mut node.value {
            Value::Str(s) => {
                let vars = self.vars;
                let raw = s.contains('$').then(|| s.clone());
                let done = match interpolate(s, &|k| vars.get(k).cloned()) {
                    Ok(v) if v.len() > *budget => {
                        *budget = 0;
                        self.err(
                            node.mark,
                            path,
                            format!(
                                "the file's values interpolate to more than {} bytes (64 MiB) together",
                                crate::spec::interpolate::MAX_TOTAL_BYTES
                            ),
                        )
                        .hint("use long variables in fewer places: this looks like an attempt to exhaust memory");
                        false
                    }
                    Ok(v) => {
                        *budget -= v.len();
                        *s = v;
                        true
                    }
                    Err(e) => {
                        let hint = match e {
                            InterpolateError::Invalid { .. } => {
                                "write ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message} or ${VAR:+alternative}, and $$ for a literal $"
                            }
                            InterpolateError::Budget { .. } => {
                                "nest fewer ${...} expressions in one value, and keep values under 1 MiB"
                            }
                            InterpolateError::Required { .. } => {
                                "set the variable in the stack's .env file, pass it from the environment (--pass-env NAME), or give it a default: ${VAR:-default}"
                            }
                        };
                        self.err(node.mark, path, e.to_string()).hint(hint);
                        false
                    }
                };
                // Only once interpolation accepted the string (and its depth).
                let names = raw
                    .as_deref()
                    .filter(|_| done)
                    .map(crate::spec::interpolate::referenced_variables)
                    .unwrap_or_default();
                if let Some(raw) = raw.filter(|_| !names.is_empty()) {
                    self.references.push(Reference {
                        at: at.clone(),
                        names,
                        raw,
                        value: s.clone(),
                    });
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if *budget == 0 {
                        return;
                    }
                    at.push(format!("[{i}]"));
                    self.interpolate(item, &idx(path, i), at, budget);
                    at.pop();
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    if *budget == 0 {
                        return;
                    }
                    let name = k.scalar_string().unwrap_or_default();
                    let key = join(path, &name);
                    at.push(name);
                    self.interpolate(v, &key, at, budget);
                    at.pop();
                }
            }
            _ => {}
        }
    }

    /// Records in the masker every field built from a secret variable whose
    /// value masking by value would not hide (see [`field_path`]): one that
    /// interpolates a secret shorter than [`crate::spec::secrets::MIN_MASKED_LEN`],
    /// or uses a secret without holding it (`${TOKEN:+on}`). Such a field is
    /// masked whole wherever it is shown, and its whole value, when long
    /// enough, by value too. A field that holds long secrets only keeps
    /// the rest of its text visible (`postgres://shop:********@db/shop`).
    pub(super) fn secret_fields(&mut self, stack: &str) {
        for r in std::mem::take(&mut self.references) {
            let values: Vec<&String> = r
                .names
                .iter()
                .filter(|n| self.masker.is_secret_name(n))
                .filter_map(|n| self.vars.get(n))
                .filter(|v| !v.is_empty())
                .collect();
            let masked_by_value = values.iter().all(|v| {
                v.chars().count() >= crate::spec::secrets::MIN_MASKED_LEN
                    && r.value.contains(v.as_str())
            });
            if masked_by_value {
                continue;
            }
            self.masker
                .add_field(stack, field_path(&r.at, &r.raw, &r.value));
            if values.iter().any(|v| r.value.contains(v.as_str())) {
                self.masker.add_value(&r.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A string that interpolates a secret variable records its field, by
    /// the key `render` prints it under; other strings record nothing.
    #[test]
    fn fields_built_from_secret_variables_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "PIN_TOKEN=Zq\nPORT=80\nLONG_TOKEN=long-secret-1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: s\nservices:\n  a:\n    image: busybox:${PIN_TOKEN}\n    command: \"echo ${PIN_TOKEN}\"\n    ports: [\"${PORT}:80\"]\n    labels: [\"pin=${PIN_TOKEN}\", \"port=${PORT}\"]\n    environment: {X: \"a${PIN_TOKEN}\", Y: \"u:${LONG_TOKEN}@h\"}\n    healthcheck: {test: [CMD, \"${PIN_TOKEN}\"]}\n",
        )
        .unwrap();
        let desired = crate::spec::load_path(dir.path());
        let fields: Vec<String> = desired.masker.fields_of("s").map(|p| p.join(".")).collect();
        assert_eq!(
            fields,
            vec![
                "services.a.command",
                "services.a.environment.X",
                "services.a.healthcheck",
                "services.a.image",
                "services.a.labels.pin",
            ]
        );
        // A long secret is masked by value, the rest of its field shown.
        let render = crate::spec::render::to_value(&desired.stacks[0], &desired.masker, false);
        assert_eq!(render["services"]["a"]["environment"]["Y"], "u:********@h");
        // Long enough, the whole value is masked by value too.
        assert_eq!(desired.masker.mask("pull busybox:Zq"), "pull ********");
        assert_eq!(desired.masker.mask("Zq"), "Zq");
    }
}
