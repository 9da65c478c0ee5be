//! `.env` and `env_file` parsing, a port of compose-go's `dotenv` package
//! (`dotenv/parser.go`, `dotenv/godotenv.go`) as Docker Compose v2 runs it.
//!
//! This module owns the file syntax and the value semantics; reading the file
//! and choosing the lookup are the caller's business (see [`parse`] for what
//! Compose passes). Each rule mirrors compose-go:
//!
//! * A UTF-8 BOM at the very start is skipped (`parseWithLookup`, godotenv.go).
//! * Whitespace (including blank lines and `\r`) before a statement is skipped;
//!   a statement starting with `#` is a comment up to the end of the line
//!   (`getStatementStart`).
//! * `export` followed by whitespace is dropped before the key (`exportRegex`
//!   `^export\s+`, then `TrimPrefix("export")`), so `exportFOO=1` and
//!   `export_FOO=1` keep their names.
//! * The key ends at the first `=`, `:` (the yaml-ish `KEY: value` form) or
//!   newline; `\t \v \f \r`, space, U+0085 and U+00A0 are skipped while
//!   scanning, and every other character must be a letter, a digit, `_`, `.`,
//!   `-`, `[` or `]`, else `unexpected character "c" in variable name "<line>"`
//!   (`locateKeyName`). The key is trimmed; a key that then still contains a
//!   space is `key cannot contain a space`. The key may be empty (`="value"`).
//! * A key ended by a newline (a line that is only `KEY`) is looked up with
//!   `lookup` only and included only when found (`inherited`). A last line
//!   that is only `KEY` *without* a final newline is not recognised as such by
//!   compose-go: the key scan finds no terminator and the line becomes the
//!   value of the empty key (`"" = "KEY"`); this module does the same.
//! * The value starts after the separator and the spaces that follow it.
//!   - Unquoted: up to the end of the line; ` #` (a space then `#`) starts a
//!     comment; trailing whitespace (including `\r` of CRLF) is trimmed; then
//!     it is interpolated. A `#` not preceded by a space is kept, and so is a
//!     value that *starts* with `#` (`KEY= # x` is `# x`), because the leading
//!     spaces are already gone when compose-go looks for ` #`.
//!   - Quoted with `'` or `"`: up to the matching unescaped quote, across
//!     lines. A backslash before the quote character drops the backslash; any
//!     other backslash pair is kept as is (`extractVarValue`). Single-quoted
//!     values are then literal. Double-quoted values have the escapes
//!     `\a \b \f \n \r \t \v \\ \" \$` and `\0nnn` (octal) expanded
//!     (`expandEscapes`: `\c`, `\x..`, `\u....` and any other pair stay as
//!     written; `\$` becomes a literal `$`), then are interpolated. Text after
//!     the closing quote is parsed as the next statement (so `"a" # c` is fine).
//!   - An unclosed quote is `unterminated quoted value <rest of the line>`.
//! * Interpolation uses [`super::interpolate::interpolate`] (compose-go uses
//!   `template.Substitute`), resolving a name with `lookup` first and only
//!   then with the variables this file defined earlier (compose-go
//!   `expandVariables`: "lookupFn" before "envMap", the fix for
//!   docker/compose#9045). So a value from the lookup wins over an earlier
//!   line of the same file: with `A=5` in the environment, `A=1` then `B=$A`
//!   gives `A=1, B=5`. Interpolation errors abort the parse.
//! * A key defined twice keeps its first position and its last value.
//!
//! Errors carry the 1-based line of the statement; the message is compose-go's
//! text without its `line N: ` prefix. compose-go itself prints no line for
//! interpolation errors and `zero length string`, names the line where the
//! scan stopped (the end of the file) for an unterminated quote, and counts
//! one line too few after a key-only line with trailing blanks (`KEY  `);
//! this module names the line where the statement starts in all cases.
//!
//! Budgets (plimsoll's, compose-go has none): a value is at most
//! [`MAX_VALUE_BYTES`] long, the values of one body add up to at most
//! [`MAX_TOTAL_BYTES`], and the text of a line quoted in an error is cut at
//! [`QUOTE_CHARS`] characters; each is an error naming the line.
//!
//! Verified by differential testing against the Docker Compose v2.40.3 binary
//! (an `env_file` read by `docker compose config`): about 2,800 bodies,
//! hand-written and fuzzed from keys, separators, quotes, backslash escapes,
//! comments, `export`, CRLF and `${...}`, gave the same variables and the
//! same error texts; the only differences were the line numbers above.

use indexmap::IndexMap;

use super::interpolate::{InterpolateError, go_quote, interpolate};

/// A syntax or interpolation error in a `.env` / `env_file` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    /// 1-based line where the offending statement starts.
    pub line: usize,
    pub message: String,
    /// The interpolation error `message` tells, when it is one.
    #[source]
    pub source: Option<InterpolateError>,
}

/// The longest value (128 KiB): Linux refuses an environment variable longer
/// than that (`MAX_ARG_STRLEN`) when the container starts.
pub const MAX_VALUE_BYTES: usize = 128 << 10;

/// What the values of one body may add up to (16 MiB), so that a short
/// `B=$A$A$A` repeated on many lines cannot exhaust memory.
pub const MAX_TOTAL_BYTES: usize = 16 << 20;

/// How many characters of a line an error message quotes.
pub const QUOTE_CHARS: usize = 80;

fn value_too_long(line: usize, len: usize) -> DotenvError {
    DotenvError {
        line,
        message: format!(
            "the value is {len} bytes, longer than {MAX_VALUE_BYTES} bytes (128 KiB, the longest environment variable Linux passes to a process)"
        ),
        source: None,
    }
}

/// The first line of `src`, cut at [`QUOTE_CHARS`] characters (with `...`).
fn first_line(src: &str) -> String {
    let line = src.split('\n').next().unwrap_or_default();
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// Parse a .env / env_file body. `lookup` resolves variables not (yet) defined in this file
/// (the caller passes the process environment, and for env_file also the stack's .env as Compose does — find out exactly what Compose passes).
///
/// What Compose passes:
///
/// * Project `.env` (and each `--env-file`), compose-go `dotenv/env.go`
///   `GetEnvFromFile`: `lookup` answers from the process environment first,
///   then from the variables of the env files read before this one; every
///   file is parsed into a fresh map, which is then merged over the earlier
///   ones. (The caller then lets the process environment override the merged
///   values.)
/// * Service `env_file`, compose-go `types/project.go`
///   `WithServicesEnvironmentResolved` → `loadEnvFile` →
///   `dotenv.ParseWithFormat`: `lookup` answers from the project environment
///   (process environment over `.env`) first, then from the service's own
///   `environment` (already resolved). The map the file is parsed into is
///   not fresh: it already holds the service's `environment` and the
///   env_files read before this one, which matters because interpolation
///   falls back to that map; use [`parse_into`] for that.
///
/// `lookup` takes precedence over the file's own earlier definitions during
/// interpolation (see the module documentation).
pub fn parse(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let mut vars = IndexMap::new();
    parse_into(src, &mut vars, lookup)?;
    Ok(vars)
}

/// Like [`parse`], but into `vars`, which may already hold variables (compose-go
/// `ParseWithFormat` into a non-empty map). Those variables are visible to
/// interpolation after `lookup`, like the ones the file defines, and are
/// overwritten by the file's definitions. On error `vars` holds what was
/// parsed before the failing statement.
pub fn parse_into(
    src: &str,
    vars: &mut IndexMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), DotenvError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut parser = Parser { line: 1 };
    let mut total = 0usize;
    let mut cutset = parser.statement_start(src);
    while !cutset.is_empty() {
        let (key, left, inherited) = parser.locate_key_name(cutset)?;
        if key.contains(' ') {
            return Err(parser.error("key cannot contain a space"));
        }
        if inherited {
            if let Some(value) = lookup(key) {
                vars.insert(key.to_string(), value);
            }
            cutset = parser.statement_start(left);
            continue;
        }
        let line = parser.line;
        let (value, left) = parser.extract_var_value(left, vars, lookup)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(value_too_long(line, value.len()));
        }
        total += value.len();
        if total > MAX_TOTAL_BYTES {
            return Err(DotenvError {
                line,
                message: format!("the values add up to more than {MAX_TOTAL_BYTES} bytes (16 MiB)"),
                source: None,
            });
        }
        vars.insert(key.to_string(), value);
        cutset = parser.statement_start(left);
    }
    Ok(())
}

/// Go's `unicode.IsSpace` and Rust's `char::is_whitespace` are the same set
/// (White_Space); compose-go's own `isSpace` leaves out the line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// compose-go accepts `[A-Za-z0-9_.-]`, `[`, `]` and any Unicode letter or number
/// (`unicode.IsLetter`, `unicode.IsNumber`).
fn is_valid_key_char(c: char) -> bool {
    matches!(c, '_' | '.' | '-' | '[' | ']') || c.is_alphabetic() || c.is_numeric()
}

struct Parser {
    line: usize,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> DotenvError {
        DotenvError {
            line: self.line,
            message: message.into(),
            source: None,
        }
    }

    /// compose-go `getStatementStart`: skip whitespace and comment lines,
    /// counting line breaks; empty at the end of the input.
    fn statement_start<'a>(&mut self, mut src: &'a str) -> &'a str {
        loop {
            let mut start = None;
            for (i, c) in src.char_indices() {
                if c == '\n' {
                    self.line += 1;
                }
                if !c.is_whitespace() {
                    start = Some(i);
                    break;
                }
            }
            let Some(start) = start else {
                return "";
            };
            src = &src[start..];
            if !src.starts_with('#') {
                return src;
            }
            match src.find('\n') {
                Some(end) => src = &src[end..],
                None => return "",
            }
        }
    }

    /// compose-go `locateKeyName`: the key, the rest after the separator (with
    /// leading spaces removed) and whether the key stands alone on its line.
    fn locate_key_name<'a>(
        &mut self,
        src: &'a str,
    ) -> Result<(&'a str, &'a str, bool), DotenvError> {
        let mut src = src;
        if let Some(after) = src.strip_prefix("export")
            && after.starts_with(['\t', '\n', '\u{c}', '\r', ' '])
        {
            src = after.trim_start_matches(is_space);
        }

        let mut end = None;
        for (i, c) in src.char_indices() {
            if is_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    end = Some((i, c == '\n'));
                    break;
                }
                c if is_valid_key_char(c) => {}
                c => {
                    return Err(self.error(format!(
                        "unexpected character {} in variable name {}",
                        go_quote(c.encode_utf8(&mut [0; 4])),
                        go_quote(&first_line(src))
                    )));
                }
            }
        }
        if src.is_empty() {
            return Err(self.error("zero length string"));
        }
        // Without a terminator compose-go returns an empty key and offset 0.
        let (key, offset, inherited) = match end {
            Some((i, inherited)) => (&src[..i], i + 1, inherited),
            None => ("", 0, false),
        };
        let key = key.trim_end_matches(char::is_whitespace);
        // compose-go tests the untrimmed key here, which loses a line after
        // `KEY  \n`; a key with an inner space is an error on this line.
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        Ok((key, src[offset..].trim_start_matches(is_space), inherited))
    }

    /// compose-go `extractVarValue`: the value and the rest of the input.
    fn extract_var_value<'a>(
        &mut self,
        src: &'a str,
        vars: &IndexMap<String, String>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, &'a str), DotenvError> {
        let statement_line = self.line;
        let expand = |value: &str| {
            if value.len() > MAX_VALUE_BYTES {
                return Err(value_too_long(statement_line, value.len()));
            }
            let resolve = |name: &str| lookup(name).or_else(|| vars.get(name).cloned());
            interpolate(value, &resolve).map_err(|err| DotenvError {
                line: statement_line,
                message: err.to_string(),
                source: Some(err),
            })
        };

        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (value, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = value.split_once(" #").map_or(value, |(v, _)| v);
                let value = value.trim_end_matches(char::is_whitespace);
                return Ok((expand(value)?, rest));
            }
        };

        let Some((value, rest)) = self.extract_quoted_value(src, quote) else {
            return Err(DotenvError {
                line: statement_line,
                message: format!("unterminated quoted value {}", first_line(src)),
                source: None,
            });
        };
        if quote == '"' {
            return Ok((expand(&expand_escapes(&value))?, rest));
        }
        Ok((value, rest))
    }

    /// The text between `src`'s opening quote and its closing quote, with the
    /// backslash of an escaped quote removed; `None` when the quote is not closed.
    fn extract_quoted_value<'a>(&mut self, src: &'a str, quote: char) -> Option<(String, &'a str)> {
        let mut value = String::new();
        let mut escaped = false;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if escaped {
                escaped = false;
                if c != quote {
                    value.push('\\');
                }
                value.push(c);
                continue;
            }
            match c {
                '\\' => escaped = true,
                c if c == quote => return Some((value, &src[i + 1..])),
                c => value.push(c),
            }
        }
        None
    }
}

/// compose-go `expandEscapes`: the escapes matched by
/// `\\(?:[abcfnrtv$"\\]|0\d{0,3})`, each decoded with Go's
/// `strconv.UnquoteChar` and kept as written when that fails. `\$` becomes
/// `$$`, which interpolation then turns into a literal `$`. `\0nnn` is
/// rewritten to `\nnn` first, so `\0123` is `S`, and a failing rewrite keeps
/// the rewritten text (`\0` alone becomes `\`).
fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&(_, next)) = chars.peek() else {
            out.push('\\');
            continue;
        };
        let simple = match next {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '\\' => Some("\\"),
            '"' => Some("\""),
            '$' => Some("$$"),
            'c' => Some("\\c"),
            _ => None,
        };
        if let Some(replacement) = simple {
            chars.next();
            out.push_str(replacement);
            continue;
        }
        if next != '0' {
            out.push('\\');
            continue;
        }
        chars.next();
        let digits_start = i + 2;
        let mut digits_end = digits_start;
        while digits_end - digits_start < 3
            && chars.peek().is_some_and(|&(_, d)| d.is_ascii_digit())
        {
            chars.next();
            digits_end += 1;
        }
        let digits = &s[digits_start..digits_end];
        match octal_char(digits) {
            Some(decoded) => out.push(decoded),
            None => {
                out.push('\\');
                out.push_str(digits);
            }
        }
    }
    out
}

/// Go's `strconv.UnquoteChar` on `\` + `digits`: exactly three octal digits, at most 0o377.
fn octal_char(digits: &str) -> Option<char> {
    if digits.len() != 3 {
        return None;
    }
    let value = u32::from_str_radix(digits, 8).ok()?;
    if value > 0o377 {
        return None;
    }
    char::from_u32(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn budgets_name_the_line() {
        let none = |_: &str| None;
        let long = format!("A=1\nB={}\n", "x".repeat(MAX_VALUE_BYTES + 1));
        let e = parse(&long, &none).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("128 KiB"), "{e}");
        assert!(e.to_string().len() < 300, "the value is not quoted whole");
        // Many short lines that each expand an earlier long value.
        let mut src = format!("A={}\n", "x".repeat(100 << 10));
        for i in 0..200 {
            src.push_str(&format!("B{i}=$A\n"));
        }
        let e = parse(&src, &none).unwrap_err();
        assert!(e.message.contains("16 MiB"), "{e}");
        assert!(e.line > 100 && e.line < 200, "{e}");
        // An error quotes at most a short prefix of a huge line.
        let e = parse(&format!("A=\"{}", "y".repeat(4 << 20)), &none).unwrap_err();
        assert!(e.to_string().len() < 200, "{}", &e.to_string()[..200]);
        let e = parse(&format!("{}!=1", "k".repeat(4 << 20)), &none).unwrap_err();
        assert!(e.to_string().len() < 300);
    }

    use super::*;

    type Env<'a> = &'a [(&'a str, &'a str)];
    type Expected<'a> = Result<Env<'a>, (usize, &'a str)>;
    type Case<'a> = (&'a str, Env<'a>, Expected<'a>);

    /// Runs one case: `env` is what `lookup` knows; `expected` is the parsed
    /// variables in order, or the error's line and message.
    fn check(src: &str, env: Env<'_>, expected: Expected<'_>) {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let got = parse(src, &lookup)
            .map(|vars| vars.into_iter().collect::<Vec<_>>())
            .map_err(|e| (e.line, e.message));
        let expected = expected
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(|(line, message)| (line, message.to_string()));
        assert_eq!(got, expected, "parsing {src:?} with {env:?}");
    }

    const NONE: Env<'static> = &[];

    #[test]
    fn dotenv_rules() {
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            // plain values and whitespace around the separator
            ("FOO=bar", NONE, Ok(&[("FOO", "bar")])),
            ("FOO =bar", NONE, Ok(&[("FOO", "bar")])),
            ("FOO= bar", NONE, Ok(&[("FOO", "bar")])),
            (" KEY =value", NONE, Ok(&[("KEY", "value")])),
            ("\tKEY=value", NONE, Ok(&[("KEY", "value")])),
            ("FOO=bar ", NONE, Ok(&[("FOO", "bar")])),
            ("FOO=foobar=", NONE, Ok(&[("FOO", "foobar=")])),
            ("FOO.BAR=foobar", NONE, Ok(&[("FOO.BAR", "foobar")])),
            ("VAR-WITH-DASHES=dashes\na[1]=c", NONE, Ok(&[("VAR-WITH-DASHES", "dashes"), ("a[1]", "c")])),
            ("árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép", NONE,
                Ok(&[("árvíztűrő-TÜKÖRFÚRÓGÉP", "ÁRVÍZTŰRŐ-tükörfúrógép")])),
            ("OPTION_F = \nOPTION_G=", NONE, Ok(&[("OPTION_F", ""), ("OPTION_G", "")])),
            ("=\"value\"", NONE, Ok(&[("", "value")])),
            ("ONE=1\nTWO='2'\nTHREE = \"3\"", NONE, Ok(&[("ONE", "1"), ("TWO", "2"), ("THREE", "3")])),
            ("A=1\nA=2\nB=3", NONE, Ok(&[("A", "2"), ("B", "3")])),
            // yaml-ish form
            ("OPTION_A: 1", NONE, Ok(&[("OPTION_A", "1")])),
            ("OPTION_A: Foo=bar", NONE, Ok(&[("OPTION_A", "Foo=bar")])),
            ("OPTION_A=1:B", NONE, Ok(&[("OPTION_A", "1:B")])),
            // export
            ("export OPTION_A=2", NONE, Ok(&[("OPTION_A", "2")])),
            ("export exportFoo=2", NONE, Ok(&[("exportFoo", "2")])),
            ("exportFOO=2", NONE, Ok(&[("exportFOO", "2")])),
            ("export_FOO =2", NONE, Ok(&[("export_FOO", "2")])),
            ("export.FOO= 2", NONE, Ok(&[("export.FOO", "2")])),
            ("export\tOPTION_A=2", NONE, Ok(&[("OPTION_A", "2")])),
            ("  export OPTION_A=2", NONE, Ok(&[("OPTION_A", "2")])),
            ("export OPTION_A=\"export A\"", NONE, Ok(&[("OPTION_A", "export A")])),
            ("export=1", NONE, Ok(&[("export", "1")])),
            ("export ", NONE, Err((1, "zero length string"))),
            // blank lines, comments, CRLF
            ("\n", NONE, Ok(&[])),
            ("\r\n", NONE, Ok(&[])),
            ("\t\t ", NONE, Ok(&[])),
            ("# Comment", NONE, Ok(&[])),
            ("\t # comment\n\n# another\nA=1 # trailing", NONE, Ok(&[("A", "1")])),
            ("A=1\r\nB='x'\r\nC=\"y\"\r\nD\r\nE=5 # c\r\n", &[("D", "d")],
                Ok(&[("A", "1"), ("B", "x"), ("C", "y"), ("D", "d"), ("E", "5")])),
            // UTF-8 BOM at the start
            ("\u{feff}OPTION_A=1\nOPTION_B=2", NONE, Ok(&[("OPTION_A", "1"), ("OPTION_B", "2")])),
            // inline comments in unquoted values need a space before `#`
            ("FOO=bar # this is foo", NONE, Ok(&[("FOO", "bar")])),
            ("FOO=bar #this is foo", NONE, Ok(&[("FOO", "bar")])),
            ("FOO=bar #", NONE, Ok(&[("FOO", "bar")])),
            ("FOO=123#not-an-inline-comment", NONE, Ok(&[("FOO", "123#not-an-inline-comment")])),
            ("FOO=bar\t# tab is not enough", NONE, Ok(&[("FOO", "bar\t# tab is not enough")])),
            ("KEY= # not a comment either", NONE, Ok(&[("KEY", "# not a comment either")])),
            ("OPTION_H = my string # Inline comment", NONE, Ok(&[("OPTION_H", "my string")])),
            // `#` in quoted values
            ("FOO=\"bar#baz\"", NONE, Ok(&[("FOO", "bar#baz")])),
            ("FOO=\"bar#baz\"#", NONE, Ok(&[("FOO", "bar#baz")])),
            ("FOO=\"bar#baz\" # comment", NONE, Ok(&[("FOO", "bar#baz")])),
            ("FOO='bar#baz' # comment", NONE, Ok(&[("FOO", "bar#baz")])),
            ("FOO=\"bar#baz#bang\" # comment", NONE, Ok(&[("FOO", "bar#baz#bang")])),
            // single quotes: literal, only the quote can be escaped
            ("FOO='bar'", NONE, Ok(&[("FOO", "bar")])),
            ("OPTION_B='\\n'", NONE, Ok(&[("OPTION_B", "\\n")])),
            ("VAR='Let\\'s go!'", NONE, Ok(&[("VAR", "Let's go!")])),
            ("VAR='C:\\path\\to'", NONE, Ok(&[("VAR", "C:\\path\\to")])),
            ("VAR='a\\\\b'", NONE, Ok(&[("VAR", "a\\\\b")])),
            ("BAR='quote $FOO ${FOO:-x}'", &[("FOO", "f")], Ok(&[("BAR", "quote $FOO ${FOO:-x}")])),
            ("FOO=\"'d'\"", NONE, Ok(&[("FOO", "'d'")])),
            // multi-line quoted values
            ("OPTION_J = 'first line\nsecond line\nthird line\nand so on'\nOPTION_Z = \"last value\"", NONE,
                Ok(&[("OPTION_J", "first line\nsecond line\nthird line\nand so on"), ("OPTION_Z", "last value")])),
            ("TEST_URLS=\"stratum+tcp://a:3333\nstratum+tcp://b:443\"", NONE,
                Ok(&[("TEST_URLS", "stratum+tcp://a:3333\nstratum+tcp://b:443")])),
            ("OPTION_I = \"echo 'asd'\"", NONE, Ok(&[("OPTION_I", "echo 'asd'")])),
            // double quotes: escapes
            ("FOO=\"escaped\\\"bar\"", NONE, Ok(&[("FOO", "escaped\"bar")])),
            ("FOO=\"\\\"quoted\\\"\"", NONE, Ok(&[("FOO", "\"quoted\"")])),
            ("VAR=\"{\\\"hello\\\": \\\"json\\\"}\"", NONE, Ok(&[("VAR", "{\"hello\": \"json\"}")])),
            ("FOO=\"bar\\nbaz\"", NONE, Ok(&[("FOO", "bar\nbaz")])),
            ("FOO=\"a\\tb\"", NONE, Ok(&[("FOO", "a\tb")])),
            ("FOO=a\\tb", NONE, Ok(&[("FOO", "a\\tb")])),
            ("KEY=\"Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z\"", NONE,
                Ok(&[("KEY", "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ")])),
            ("FOO=\"bar\\n\\ b\\az\"", NONE, Ok(&[("FOO", "bar\n\\ b\u{7}z")])),
            ("FOO=\"bar\\\\\\n\\ b\\az\"", NONE, Ok(&[("FOO", "bar\\\n\\ b\u{7}z")])),
            ("FOO=\"bar\\nbaz\\\\\"", NONE, Ok(&[("FOO", "bar\nbaz\\")])),
            ("KEY=\"\\x07 \\u12e4 \\U00101234 \\c\"", NONE, Ok(&[("KEY", "\\x07 \\u12e4 \\U00101234 \\c")])),
            ("KEY=\"\\0377|\\0|\\01|\\0400|\\0129\"", NONE, Ok(&[("KEY", "ÿ|\\|\\1|\\400|\\129")])),
            // interpolation: unquoted and double-quoted values only
            ("FOO=test\nBAR=$FOO", NONE, Ok(&[("FOO", "test"), ("BAR", "test")])),
            ("FOO=test\nBAR=${FOO}bar", NONE, Ok(&[("FOO", "test"), ("BAR", "testbar")])),
            ("BAR=$FOO", NONE, Ok(&[("BAR", "")])),
            ("FOO=test\nBAR=\"quote $FOO\"", NONE, Ok(&[("FOO", "test"), ("BAR", "quote test")])),
            ("FOO=\"foo\\$BAR\"", NONE, Ok(&[("FOO", "foo$BAR")])),
            ("FOO=\"foo\\${BAR}\"", NONE, Ok(&[("FOO", "foo${BAR}")])),
            ("FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"", NONE, Ok(&[("FOO", "test"), ("BAR", "foo${FOO} test")])),
            ("A=$$x", NONE, Ok(&[("A", "$x")])),
            ("A=${UNSET:-def}\nB=${A:+alt}", NONE, Ok(&[("A", "def"), ("B", "alt")])),
            ("TEST=$ME", &[("ME", "YES")], Ok(&[("TEST", "YES")])),
            ("A=\"${B}\\n${C:-c}\"", &[("B", "b")], Ok(&[("A", "b\nc")])),
            // lookup wins over the file's own earlier definitions (docker/compose#9045)
            ("OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n",
                &[("OPTION_A", "5")],
                Ok(&[("OPTION_A", "1"), ("OPTION_B", "5"), ("OPTION_C", "5"), ("OPTION_D", "5_5"), ("OPTION_E", "")])),
            ("OPTION_A=${OPTION_A:-1}\nOPTION_B=${OPTION_A}\nOPTION_D=${OPTION_A}_${OPTION_B}\n",
                &[("OPTION_A", "5")],
                Ok(&[("OPTION_A", "5"), ("OPTION_B", "5"), ("OPTION_D", "5_5")])),
            ("OPTION_A=${OPTION_A:-1}\nOPTION_B=${OPTION_A}\nOPTION_D=${OPTION_A}_${OPTION_B}\n", NONE,
                Ok(&[("OPTION_A", "1"), ("OPTION_B", "1"), ("OPTION_D", "1_1")])),
            // a line that is only a key: taken from the lookup, or left out
            ("FOO=bar\nVARIABLE_NOT_FOUND\nBAR=baz\n", NONE, Ok(&[("FOO", "bar"), ("BAR", "baz")])),
            ("FOO=bar\nINHERITED\nBAR=baz\n", &[("INHERITED", "from env")],
                Ok(&[("FOO", "bar"), ("INHERITED", "from env"), ("BAR", "baz")])),
            ("FOO=x\nINHERITED  \n", &[("INHERITED", "")], Ok(&[("FOO", "x"), ("INHERITED", "")])),
            // ... but only with a line break after it (compose-go quirk)
            ("A=1\nKEY", &[("KEY", "k")], Ok(&[("A", "1"), ("", "KEY")])),
            // text after a closing quote is the next statement
            ("A=\"x\" B=2", NONE, Ok(&[("A", "x"), ("B", "2")])),
            // invalid names
            ("lol$wut", NONE, Err((1, r#"unexpected character "$" in variable name "lol$wut""#))),
            ("%!(EXTRA string)=foo", NONE,
                Err((1, r#"unexpected character "%" in variable name "%!(EXTRA string)=foo""#))),
            ("A=1\n\n  B@C=2\nD=3", NONE, Err((3, r#"unexpected character "@" in variable name "B@C=2""#))),
            ("A=1\nMY KEY=2", NONE, Err((2, "key cannot contain a space"))),
            ("INHERITED  \nMY KEY=2", NONE, Err((2, "key cannot contain a space"))),
            ("A=1\nMY KEY\nB=2", NONE, Err((2, "key cannot contain a space"))),
            ("# c\n\nA='x\ny'\nB=\"1\n2\" # c\nexport ok=1\nINHERIT\nINVALID LINE = foo", NONE,
                Err((9, "key cannot contain a space"))),
            // unterminated quotes
            ("KEY=\"", NONE, Err((1, "unterminated quoted value \""))),
            ("KEY=\"value", NONE, Err((1, "unterminated quoted value \"value"))),
            ("KEY=\"value\\\"", NONE, Err((1, "unterminated quoted value \"value\\\""))),
            ("KEY=\"value'", NONE, Err((1, "unterminated quoted value \"value'"))),
            ("KEY='", NONE, Err((1, "unterminated quoted value '"))),
            ("KEY='value\\'", NONE, Err((1, "unterminated quoted value 'value\\'"))),
            ("A=1\nKEY='value\"\nB=2\n", NONE, Err((2, "unterminated quoted value 'value\""))),
            // interpolation errors name the line of the statement
            ("A=1\nB=${UNSET:?need B}", NONE, Err((2, "required variable UNSET is missing a value: need B"))),
            ("A=\"ok\"\nB=\"${\"", NONE, Err((2, r#"Invalid template: "${""#))),
            ("A=price: 5$ ${ x}", NONE, Err((1, r#"Invalid template: "price: 5$ ${ x}""#))),
        ];
        for (src, env, expected) in cases {
            check(src, env, *expected);
        }
    }

    #[test]
    fn parse_into_sees_prefilled_variables_after_lookup() {
        let mut vars = IndexMap::from([
            ("FROM_SERVICE".to_string(), "svc".to_string()),
            ("SHADOWED".to_string(), "from map".to_string()),
        ]);
        let lookup = |name: &str| (name == "SHADOWED").then(|| "from lookup".to_string());
        parse_into(
            "A=$FROM_SERVICE\nB=$SHADOWED\nFROM_SERVICE=file\nC=$FROM_SERVICE",
            &mut vars,
            &lookup,
        )
        .unwrap();
        let got: Vec<_> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("FROM_SERVICE", "file"),
                ("SHADOWED", "from map"),
                ("A", "svc"),
                ("B", "from lookup"),
                ("C", "file"),
            ]
        );
    }

    #[test]
    fn error_display() {
        let err = parse("A=1\nB C=2", &|_| None).unwrap_err();
        assert_eq!(err.to_string(), "line 2: key cannot contain a space");
    }
}
