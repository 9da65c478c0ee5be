//! Secret values: which variables are secret, and masking them by value.
//!
//! A secret is the content of a `secrets:` file, the value of a variable whose
//! name looks secret (configurable patterns), or a variable named in
//! `x-plimsoll.secret_env`. Values are collected while loading; every output
//! (render, plans, logs, errors, audit) passes through [`Masker`].
//! Masking by value elsewhere applies to values of [`MIN_MASKED_LEN`] or more
//! characters, so short values never blank out ordinary text; a shorter secret
//! is masked only in its own variable.
//!
//! A *field built from a secret variable* (any string of a Compose file or
//! env file that interpolates one: `command: [echo, "$DB_PASSWORD"]`, a
//! label, the image tag, a health check) that masking by value would not
//! hide (the secret is shorter than [`MIN_MASKED_LEN`], or used without being
//! held, `${TOKEN:+on}`) is recorded by where it stands
//! ([`Masker::add_field`]: stack and key path), and every output shows that
//! field whole as [`MASK`], however short the value, on both sides of a
//! diff. Where a field is shown, its words are masked before they are
//! joined or quoted, so quoting cannot change a secret out of reach.

use std::borrow::Cow;
use std::collections::BTreeSet;

/// What a masked value is replaced with.
pub const MASK: &str = "********";

/// Values shorter than this are masked only where they are a secret variable's own value.
pub const MIN_MASKED_LEN: usize = 6;

/// Name patterns of secret variables: `*` matches any run of characters;
/// matching ignores case.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*PASSWORD*",
    "*PASSWD*",
    "*SECRET*",
    "*TOKEN*",
    "*_KEY",
    "*CREDENTIAL*",
    "*PRIVATE*",
    "*APIKEY*",
    "*API_KEY*",
];

/// Decides whether a variable name looks secret.
#[derive(Debug, Clone)]
pub struct SecretNames {
    patterns: Vec<String>,
}

impl Default for SecretNames {
    fn default() -> Self {
        SecretNames::new(DEFAULT_PATTERNS.iter().copied())
    }
}

impl SecretNames {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        SecretNames {
            patterns: patterns.into_iter().map(str::to_ascii_uppercase).collect(),
        }
    }

    pub fn is_secret(&self, name: &str) -> bool {
        let name = name.to_ascii_uppercase();
        self.patterns.iter().any(|p| glob(p, &name))
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Masks secret values in any text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    values: Vec<String>,
    names: SecretNames,
    /// Variables named secret in `x-plimsoll.secret_env`, whatever their names look like.
    extra_names: BTreeSet<String>,
    /// Fields built from secret variables: stack name and key path
    /// (`["services", "web", "labels", "token"]`), masked whole.
    fields: BTreeSet<(String, Vec<String>)>,
}

impl Masker {
    pub fn new(names: SecretNames) -> Self {
        Masker {
            values: Vec::new(),
            names,
            extra_names: BTreeSet::new(),
            fields: BTreeSet::new(),
        }
    }

    /// Records that the value at `path` of stack `stack` was built from a
    /// secret variable: it is shown as [`MASK`] whole, whatever its length.
    pub fn add_field(&mut self, stack: &str, path: Vec<String>) {
        self.fields.insert((stack.to_string(), path));
    }

    /// The fields of `stack` built from secret variables (key paths).
    pub fn fields_of<'a>(&'a self, stack: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.fields
            .iter()
            .filter(move |(s, _)| s == stack)
            .map(|(_, p)| p.as_slice())
    }

    /// Whether the value at `path` of `stack` holds a field built from a
    /// secret variable: a recorded field is `path` itself, contains it, or
    /// lies inside it.
    pub fn hides_field(&self, stack: &str, path: &[&str]) -> bool {
        self.fields_of(stack).any(|f| {
            let n = f.len().min(path.len());
            f[..n].iter().zip(&path[..n]).all(|(a, b)| a == b)
        })
    }

    /// Records a secret value (the content of a secret file, a secret variable's value).
    pub fn add_value(&mut self, value: &str) {
        let trimmed = value.trim_end_matches(['\n', '\r']);
        for v in [value, trimmed] {
            if v.chars().count() >= MIN_MASKED_LEN && !self.values.iter().any(|x| x == v) {
                self.values.push(v.to_string());
            }
        }
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// The secret values known, longest first.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Records a variable that is secret whatever its name.
    pub fn add_name(&mut self, name: &str) {
        self.extra_names.insert(name.to_string());
    }

    /// Records a variable and, if it is secret, its value.
    pub fn observe(&mut self, name: &str, value: &str) {
        if self.is_secret_name(name) {
            self.add_value(value);
        }
    }

    pub fn is_secret_name(&self, name: &str) -> bool {
        self.extra_names.contains(name) || self.names.is_secret(name)
    }

    /// Merges the secrets another masker knows.
    pub fn extend(&mut self, other: &Masker) {
        for v in &other.values {
            self.add_value(v);
        }
        self.extra_names.extend(other.extra_names.iter().cloned());
        self.fields.extend(other.fields.iter().cloned());
    }

    /// [`Masker::mask`] for a value shown in place of `shown` elsewhere: a
    /// value that differs from `known` (whose masked form is `shown`) but
    /// has the same text around the masked parts is shown the same way
    /// (`postgres://u:<old>@db` as `postgres://u:********@db` beside the
    /// new one); any other value is hidden whole. For the live side of a
    /// diff, whose old secret the masker never saw.
    pub fn mask_like(&self, value: &str, known: &str, shown: &str) -> String {
        if value == known || shown == known {
            return self.mask(value).into_owned();
        }
        let parts: Vec<&str> = shown.split(MASK).collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if value.len() < first.len() + last.len()
            || !value.starts_with(first)
            || !value.ends_with(last)
        {
            return MASK.into();
        }
        let mut rest = &value[first.len()..value.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part) {
                Some(i) if !part.is_empty() => rest = &rest[i + part.len()..],
                _ => return MASK.into(),
            }
        }
        shown.to_string()
    }

    /// The text with every known secret value replaced by [`MASK`].
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// The value of variable `name` as it may be shown: fully masked when the
    /// variable is secret, else masked by value.
    pub fn mask_var<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_secret_name(name) && !value.is_empty() {
            Cow::Borrowed(MASK)
        } else {
            self.mask(value)
        }
    }

    /// Masks every string in a JSON value; values of maps named `environment`
    /// are masked by variable name too.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        self.mask_json_in(value, false);
    }

    fn mask_json_in(&self, value: &mut serde_json::Value, in_env: bool) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(m) = self.mask(s) {
                    *s = m;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json_in(v, false)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if in_env => *s = self.mask_var(k, s).into_owned(),
                        _ => self.mask_json_in(v, k == "environment"),
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        let n = SecretNames::default();
        for yes in [
            "DB_PASSWORD",
            "postgres_password",
            "API_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_KEY",
            "GITHUB_TOKEN",
        ] {
            assert!(n.is_secret(yes), "{yes}");
        }
        for no in ["PORT", "DB_HOST", "KEYBOARD", "LOG_LEVEL", "MONKEY"] {
            assert!(!n.is_secret(no), "{no}");
        }
    }

    #[test]
    fn masks_by_value_and_by_name() {
        let mut m = Masker::new(SecretNames::default());
        m.observe("DB_PASSWORD", "hunter2-canary");
        m.observe("PIN_TOKEN", "123");
        m.observe("PORT", "8080");
        assert_eq!(
            m.mask("postgres://u:hunter2-canary@db/x"),
            "postgres://u:********@db/x"
        );
        // Short secrets are masked only in their own variable.
        assert_eq!(m.mask("port 123"), "port 123");
        assert_eq!(m.mask_var("PIN_TOKEN", "123"), MASK);
        assert_eq!(m.mask_var("PORT", "8080"), "8080");
        let mut j = serde_json::json!({"environment": {"PIN_TOKEN": "123", "URL": "x:hunter2-canary"}, "command": ["hunter2-canary"]});
        m.mask_json(&mut j);
        assert_eq!(
            j,
            serde_json::json!({"environment": {"PIN_TOKEN": MASK, "URL": "x:********"}, "command": [MASK]})
        );
    }

    #[test]
    fn fields_and_values_seen_elsewhere() {
        let mut m = Masker::new(SecretNames::default());
        m.add_field(
            "s",
            vec!["services".into(), "a".into(), "healthcheck".into()],
        );
        assert!(m.hides_field("s", &["services", "a", "healthcheck", "test"]));
        assert!(m.hides_field("s", &["services", "a"]));
        assert!(!m.hides_field("s", &["services", "b", "healthcheck"]));
        assert!(!m.hides_field("t", &["services", "a", "healthcheck"]));
        m.observe("DB_PASSWORD", "new-secret");
        let known = "postgres://u:new-secret@db/x";
        let shown = m.mask(known).into_owned();
        assert_eq!(m.mask_like("postgres://u:old@db/x", known, &shown), shown);
        assert_eq!(m.mask_like("mysql://u:old@db/x", known, &shown), MASK);
        assert_eq!(m.mask_like("anything", "plain", "plain"), "anything");
    }

    #[test]
    fn globs() {
        assert!(glob("*_KEY", "SSH_KEY"));
        assert!(!glob("*_KEY", "SSH_KEYS"));
        assert!(glob("*TOKEN*", "TOKEN"));
        assert!(glob("A*B*C", "AXXBYYC"));
        assert!(!glob("A*B*C", "AC"));
    }
}
