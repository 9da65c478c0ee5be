//! `.dockerignore` with Docker's own rules: a port of moby's
//! `patternmatcher` (and `ignorefile.ReadAll`), which the docker CLI uses to
//! filter a build context.
//!
//! - Lines starting with `#` are comments; blank lines are skipped; each line
//!   is trimmed. `!` makes an exception that re-includes what an earlier line
//!   excluded; the last line that matches decides.
//! - Each pattern is cleaned like Go's `filepath.Clean` (`./a//b/` is
//!   `a/b`), and a leading `/` is dropped: patterns are relative to the
//!   context root.
//! - The glob is Go's `filepath.Match` plus `**`: `*` and `?` never match a
//!   `/`, `[...]` is a class (`^` negates it), `\` escapes the next character,
//!   `**` matches any number of directories (none too), and a trailing `**`
//!   matches everything below.
//! - A pattern that matches a parent directory excludes everything under it.
//!
//! Invariant: pure.

use regex::Regex;

/// How one pattern matches, as moby compiles it (its fast paths included,
/// which differ from the regular expression in corner cases).
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// A trailing `**` after a plain prefix: `foo/**`.
    Prefix,
    /// A leading `**` followed by plain text: `**/foo`, `**foo`.
    Suffix,
    Regex(Regex),
}

/// One line of a `.dockerignore`.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern, without its `!`.
    pub text: String,
    /// An exception (`!pattern`): re-includes what it matches.
    pub exception: bool,
    kind: Kind,
}

/// A malformed line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern `{pattern}`: {why}")]
pub struct PatternError {
    pub line: usize,
    pub pattern: String,
    pub why: Invalid,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("an exception needs a pattern after `!`")]
    EmptyException,
    #[error("a trailing `\\` escapes nothing")]
    TrailingBackslash,
    /// What the regular expression's compiler says (Go's `filepath.Match` refuses the same).
    #[error("{0}")]
    Syntax(String),
}

/// The patterns of a `.dockerignore`, in order.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Ignore, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let mut cleaned = String::new();
            if !p.is_empty() {
                cleaned = clean(p);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            lines.push((i + 1, exception, cleaned));
        }
        let mut patterns = Vec::new();
        for (line, exception, text) in lines {
            if text.is_empty() {
                return Err(PatternError {
                    line,
                    pattern: "!".into(),
                    why: Invalid::EmptyException,
                });
            }
            patterns.push(Pattern::new(&text, exception).map_err(|why| PatternError {
                line,
                pattern: text.clone(),
                why,
            })?);
        }
        Ok(Ignore { patterns })
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Adds a pattern at the end (the Dockerfile and `.dockerignore` are
    /// always sent: the docker CLI appends `!<file>` when they are excluded).
    pub fn push_exception(&mut self, path: &str) {
        let text = clean(path);
        if let Ok(p) = Pattern::new(&text, true) {
            self.patterns.push(p);
        }
    }

    /// Whether any pattern is an exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded:
    /// moby's `MatchesOrParentMatches`.
    pub fn excludes(&self, path: &str) -> bool {
        let file = clean(path);
        if file == "." {
            return false;
        }
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change a match, an exception cannot change a non-match.
            if p.exception != matched {
                continue;
            }
            let mut hit = p.matches(&file);
            if !hit && parent != "." {
                for i in 1..=parents.len() {
                    if p.matches(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether the walk must go into an excluded directory because an
    /// exception may re-include something below it (moby's prefix test:
    /// an exception pattern that starts with `dir/`).
    pub fn may_include_below(&self, dir: &str) -> bool {
        let dir = format!("{}/", clean(dir));
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir))
    }
}

impl Pattern {
    fn new(text: &str, exception: bool) -> Result<Pattern, Invalid> {
        Ok(Pattern {
            text: text.to_string(),
            exception,
            kind: compile(text)?,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// moby's `Pattern.compile`: the pattern as a regular expression, and which
/// fast path applies.
fn compile(pattern: &str) -> Result<Kind, Invalid> {
    #[derive(PartialEq)]
    enum K {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = K::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut n = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == K::Exact {
                        kind = K::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = K::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = K::Regex;
                }
                if n == 0 {
                    kind = K::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = K::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = K::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(next) => {
                    re.push('\\');
                    re.push(*next);
                    i += 1;
                    kind = K::Regex;
                }
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(ch);
                kind = K::Regex;
            }
            _ => re.push(ch),
        }
        n += 1;
    }
    // Go's filepath.Match refuses what the regular expression cannot compile
    // (an unclosed class, a trailing `\`, a backwards range).
    re.push('$');
    let compiled = Regex::new(&re).map_err(|e| {
        Invalid::Syntax(match e {
            regex::Error::Syntax(s) => s.lines().last().unwrap_or_default().trim().to_string(),
            other => other.to_string(),
        })
    });
    match kind {
        K::Regex => Ok(Kind::Regex(compiled?)),
        _ if pattern.ends_with('\\') => Err(Invalid::TrailingBackslash),
        K::Exact => Ok(Kind::Exact),
        K::Prefix => Ok(Kind::Prefix),
        K::Suffix => Ok(Kind::Suffix),
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: the shortest equivalent
/// path by lexical processing.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(ignore file, [(path, excluded)])`.
    fn check(text: &str, cases: &[(&str, bool)]) {
        let ig = Ignore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        for (path, want) in cases {
            assert_eq!(ig.excludes(path), *want, "{text:?} on {path}");
        }
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./foo", "foo"),
            ("foo/", "foo"),
            ("a//b/./c/..", "a/b"),
            ("/foo", "/foo"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    /// The examples of Docker's documentation ("Dockerignore files").
    #[test]
    fn docker_documentation_examples() {
        let text = "# comment\n*/temp*\n*/*/temp*\ntemp?\n";
        check(
            text,
            &[
                ("somedir/temporary.txt", true),
                ("somedir/temp", true),
                ("somedir/subdir/temporary.txt", true),
                ("tempa", true),
                ("tempb", true),
                ("temp", false),
                ("temporary.txt", false),
                ("a/b/c/temp.txt", false),
                ("# comment", false),
            ],
        );
        // `**` matches any number of directories, including none.
        check(
            "**/*.go",
            &[("main.go", true), ("a/b/c.go", true), ("a/b/c.gox", false)],
        );
        // Exceptions: the last matching line wins.
        check(
            "*.md\n!README.md\n",
            &[("CHANGES.md", true), ("README.md", false)],
        );
        check(
            "*.md\n!README*.md\nREADME-secret.md\n",
            &[
                ("README-secret.md", true),
                ("README.md", false),
                ("x.md", true),
            ],
        );
        check(
            "*.md\nREADME-secret.md\n!README*.md\n",
            &[("README-secret.md", false), ("README.md", false)],
        );
    }

    #[test]
    fn leading_slash_dot_and_trailing_slash_are_cleaned() {
        for pattern in [
            "/node_modules",
            "./node_modules",
            "node_modules/",
            "node_modules",
        ] {
            check(
                pattern,
                &[
                    ("node_modules", true),
                    ("node_modules/a/b.js", true),
                    ("src/node_modules", false),
                ],
            );
        }
    }

    #[test]
    fn a_parent_match_excludes_everything_below() {
        check(
            "build",
            &[("build/x/y", true), ("builder", false), ("x/build", false)],
        );
        check("*/cache", &[("a/cache/x", true), ("cache/x", false)]);
    }

    #[test]
    fn double_star_forms() {
        check("**", &[("a", true), ("a/b", true), (".dockerignore", true)]);
        check(
            "docs/**",
            &[("docs/a", true), ("docs/a/b.md", true), ("docsx", false)],
        );
        check(
            "**/secret",
            &[("secret", true), ("a/secret", true), ("a/b/secret/c", true)],
        );
        // moby's suffix fast path: a leading `**` followed by plain text is a suffix test.
        check(
            "**.log",
            &[("a.log", true), ("x/y.log", true), ("log", false)],
        );
        check(
            "a/**/b",
            &[
                ("a/b", true),
                ("a/x/y/b", true),
                ("ab", false),
                ("x/a/b", false),
            ],
        );
    }

    #[test]
    fn classes_escapes_and_question_marks() {
        check(
            "file[0-9].txt\n[^a]*.tmp\n\\*star",
            &[
                ("file1.txt", true),
                ("filea.txt", false),
                ("b.tmp", true),
                ("a.tmp", false),
                ("*star", true),
                ("xstar", false),
            ],
        );
        check("?", &[("a", true), ("ab", false), ("a/b", true)]);
        // Regex characters without meaning in a glob are literal.
        check("a+b(1).txt", &[("a+b(1).txt", true), ("aab1.txt", false)]);
    }

    #[test]
    fn exceptions_below_an_excluded_directory() {
        let ig = Ignore::parse("vendor\n!vendor/keep\n").unwrap();
        assert!(ig.excludes("vendor/drop"));
        assert!(!ig.excludes("vendor/keep"));
        assert!(!ig.excludes("vendor/keep/file"));
        assert!(ig.may_include_below("vendor"));
        assert!(!ig.may_include_below("other"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_their_line() {
        for (text, line) in [("ok\n!\n", 2), ("a[\n", 1), ("x\n\n[z-a]\n", 3), ("a\\", 1)] {
            let e = Ignore::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
