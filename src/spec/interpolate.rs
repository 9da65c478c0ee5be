//! Variable interpolation in Compose values (`$VAR`, `${VAR:-default}`, ...),
//! a port of compose-go's `template` package (`template/template.go`, which
//! Docker Compose v2 runs on every string of a Compose file and on unquoted and
//! double-quoted `.env` values).
//!
//! This module owns the syntax and the semantics of one interpolation pass over
//! one string, the exact text of the errors Compose prints for it, and the list
//! of variables a string references ([`referenced_variables`], a port of
//! `template/variables.go`). Where the variables come from (process
//! environment, `.env`, defaults of the caller) is the caller's business: it
//! passes a `lookup` that answers `None` for an unset variable and `Some("")`
//! for a variable set to the empty string.
//!
//! The rules, each mirroring compose-go (`template/template.go` unless noted):
//!
//! * The grammar is compose-go's `DefaultPattern`, used here verbatim:
//!   `\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)}|(?P<invalid>)))`.
//!   Names are `[_a-zA-Z][_a-zA-Z0-9]*` (the `(?i)` flag); `.` does not match a
//!   newline, so an operand cannot span lines.
//! * `$$` is a literal `$` (group `escaped`).
//! * `$NAME` takes the longest name: `$FOO-bar` is `${FOO}-bar`, `$FOO_` looks up `FOO_`.
//! * A `$` followed by anything that is neither `$`, a name start nor `{` is
//!   not a match and is kept as is: `a $ string`, `$1`, `$}`, `^REGEX$` and a
//!   trailing `$` are left unchanged (compose-go `TestUnescaped`; the Compose
//!   reference: "In other circumstances, it will be preserved without
//!   attempting to interpolate a value").
//! * `${` that does not start a well-formed braced expression (`${`, `${}`,
//!   `${ FOO}`, `${FOO }`, `${FOO!}`, `${FOO:x}`, an operand with a newline)
//!   is an error: `Invalid template: "<the whole string being interpolated>"`
//!   (`InvalidTemplateError`, printed with Go's `%#v`, i.e. a Go-quoted string).
//!   When the malformed part sits in a default, alternative or message operand,
//!   or after a `${...}` in the same match, the quoted string is that operand
//!   (compose-go interpolates those recursively and stamps each recursion's own
//!   input on the error).
//! * The operator of `${NAME<op>operand}` is the one whose text occurs first in
//!   the match (`getSubstitutionFunctionForTemplate`): `:?`, `?`, `:-`, `-`,
//!   `:+`, `+`. The name ends at the first occurrence of that operator
//!   (`partition`), so `${A-x:?y}` is "A, default `x:?y`" and `${A?bar-baz}`
//!   is "A, required, message `bar-baz`" (`TestPrecedence`).
//! * `${VAR:-d}`: `d` when VAR is unset or empty; `${VAR-d}`: `d` when unset.
//! * `${VAR:+a}`: `a` when VAR is set and non-empty, else VAR's value (empty);
//!   `${VAR+a}`: `a` when set, else empty.
//! * `${VAR:?m}` / `${VAR?m}`: an error when VAR is unset or empty / unset:
//!   `required variable VAR is missing a value: m`, or without `: m` when `m` is
//!   empty (`MissingRequiredError`).
//! * Operands are interpolated recursively (`${A:-${B:-x}}`, `${A?$B}`), and
//!   always, before the variable is looked up (`withDefaultWhenAbsence`,
//!   `withDefaultWhenPresence`, `withRequired`): an error in an operand that
//!   is not used still fails, e.g. `${SET:-${UNSET:?x}}` and `${SET:-${ x}}`
//!   are errors. (Checked against the Docker Compose v2.40.3 binary.)
//! * The end of a braced expression is found by counting braces
//!   (`getFirstBraceClosingIndex`, which counts every `{`, not only `${`), so
//!   `${A:-{"json":1}}` has the default `{"json":1}`; the regex match is greedy
//!   up to the last `}` of the line and the text after the balanced `}` is
//!   interpolated on its own and appended.
//! * An unset variable without operator becomes the empty string (Compose
//!   also logs a warning; this module does not log).
//!
//! The first error in left-to-right order is returned; compose-go keeps
//! substituting after an error but returns the first one too. (Compose's CLI
//! wraps these errors with the YAML path: `invalid interpolation format for
//! <path>.\nYou may need to escape any $ with another $.\n<template>` and
//! `error while interpolating <path>: <error>`; that is the caller's job.)
//!
//! Budgets (plimsoll's, compose-go has none): operands nest, and `${...}`
//! expressions chain after a default, at most [`MAX_DEPTH`] levels deep, and
//! one string interpolates to at most [`MAX_OUTPUT_BYTES`] bytes; beyond either
//! the result is [`InterpolateError::Budget`], so `${A:-${A:-...}}` nested
//! 50,000 deep is an error instead of a stack overflow.
//!
//! Verified by differential testing against the Docker Compose v2.40.3 binary
//! (`docker compose config`): about 3,100 strings, hand-written and fuzzed
//! from `$ { } : - ? +` and names, gave the same values, the same
//! `required variable ...` texts and the same invalid templates.

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

/// Interpolation errors, with the exact texts compose-go prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${VAR:?msg}` / `${VAR?msg}` with VAR unset (or empty for `:?`).
    /// compose-go `MissingRequiredError`: `required variable VAR is missing a value: msg`,
    /// and `required variable VAR is missing a value` when `msg` is empty.
    /// `message` is the interpolated `msg`.
    #[error("{}", required_text(.variable, .message))]
    Required { variable: String, message: String },
    /// A malformed template, e.g. `${`, `${FOO`, `${ FOO}`, `${FOO:x}`.
    /// compose-go `InvalidTemplateError`: `Invalid template: "<template>"`, with
    /// `template` quoted like Go's `%#v` (see the module documentation for
    /// which string `template` is).
    #[error("Invalid template: {}", go_quote(.template))]
    Invalid { template: String },
    /// A string that nests `${...}` deeper than [`MAX_DEPTH`] or interpolates
    /// to more than [`MAX_OUTPUT_BYTES`] bytes (plimsoll's limits).
    #[error("{what}")]
    Budget { what: String },
}

/// How deep operands may nest (`${A:-${B:-...}}`), counting the expressions
/// that follow a `${VAR<op>...}` in the same string as one level each.
pub const MAX_DEPTH: usize = 100;

/// The longest string one interpolation may produce (1 MiB; the kernel refuses
/// an environment variable above 128 KiB anyway).
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// What the strings of one file may interpolate to together (64 MiB): a caller
/// that interpolates many strings charges each result against it.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

fn too_deep() -> InterpolateError {
    InterpolateError::Budget {
        what: format!("`${{...}}` expressions are nested more than {MAX_DEPTH} levels deep"),
    }
}

fn too_long() -> InterpolateError {
    InterpolateError::Budget {
        what: format!("the value interpolates to more than {MAX_OUTPUT_BYTES} bytes (1 MiB)"),
    }
}

/// Interpolates `input` the way Docker Compose v2 does (compose-go `template.Substitute`).
///
/// `lookup` answers the value of a variable, `None` when it is unset.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    // Deep nesting fails before any matching (which would cost a pass per level).
    if nesting(input) > MAX_DEPTH {
        return Err(too_deep());
    }
    substitute(input, lookup, 0)
}

/// The names after every `$` and `${` of `s` (`$$` is an escape).
fn every_name(s: &str, names: &mut Vec<String>) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let start = i + 1 + usize::from(bytes.get(i + 1) == Some(&b'{'));
        let len = bytes[start.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        if len > 0 && !bytes[start].is_ascii_digit() {
            names.push(s[start..start + len].to_string());
        }
        i = start + len;
    }
}

/// How deep `${` ... `}` pairs nest in `s` (`$$` is an escape, not a `$`).
fn nesting(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                max = max.max(depth);
                i += 1;
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Names of all variables a string references (for "required variables" policy and for secret masking).
///
/// Mirrors compose-go `template/variables.go` (`extractVariable`): the names of
/// `$VAR` and `${VAR...}` expressions, including variables referenced only in
/// default, alternative and error-message operands, whether or not
/// interpolation would use those operands (the current `variables.go` also
/// descends into `:?` messages; Compose v2.40.3's `config --variables` did
/// not). `$$` escapes and malformed `${` are skipped. Each name appears once,
/// in order of first appearance.
pub fn referenced_variables(input: &str) -> Vec<String> {
    let mut names = Vec::new();
    if nesting(input) > MAX_DEPTH {
        // Interpolating it is an error; name what `$NAME` and `${NAME` say
        // instead of walking a level per nesting.
        every_name(input, &mut names);
    } else {
        collect_variables(input, &mut names, 0);
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// compose-go `DefaultPattern` (template/template.go), unchanged.
static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|",
        r"\{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)\}|(?P<invalid>)))",
    ))
    .expect("the interpolation pattern is valid")
});

/// The operators, in the order compose-go lists them (`getSubstitutionFunctionForTemplate`).
const OPERATORS: [&str; 6] = [":?", "?", ":-", "-", ":+", "+"];

fn required_text(variable: &str, message: &str) -> String {
    if message.is_empty() {
        format!("required variable {variable} is missing a value")
    } else {
        format!("required variable {variable} is missing a value: {message}")
    }
}

/// compose-go `SubstituteWithOptions`: replace every match of the pattern, and
/// stamp this call's input on an `Invalid` error that carries no template yet.
fn substitute(
    template: &str,
    lookup: Lookup<'_>,
    depth: usize,
) -> Result<String, InterpolateError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let mut out = String::with_capacity(template.len().min(MAX_OUTPUT_BYTES));
    let mut last = 0;
    for found in PATTERN.find_iter(template) {
        out.push_str(&template[last..found.start()]);
        match replace(found.as_str(), lookup, depth) {
            Ok(value) if out.len() + value.len() > MAX_OUTPUT_BYTES => return Err(too_long()),
            Ok(value) => out.push_str(&value),
            Err(InterpolateError::Invalid { template: t }) if t.is_empty() => {
                return Err(InterpolateError::Invalid {
                    template: template.to_string(),
                });
            }
            Err(err) => return Err(err),
        }
        last = found.end();
    }
    out.push_str(&template[last..]);
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(too_long());
    }
    Ok(out)
}

/// compose-go `DefaultReplacementAppliedFunc`: the replacement of one match.
fn replace(substring: &str, lookup: Lookup<'_>, depth: usize) -> Result<String, InterpolateError> {
    // The operator is chosen on the whole match, before it is cut at the balanced brace.
    let operator = first_operator(substring);
    let (head, rest) = match first_brace_closing_index(substring) {
        Some(i) => (&substring[..=i], &substring[i + 1..]),
        None => (substring, ""),
    };
    let Some(groups) = PATTERN.captures(head) else {
        return Err(invalid());
    };
    let group = |name: &str| {
        groups
            .name(name)
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    };
    if let Some(escaped) = group("escaped") {
        return Ok(escaped.to_string());
    }
    if let Some(named) = group("named") {
        return Ok(lookup(named).unwrap_or_default());
    }
    let Some(braced) = group("braced") else {
        return Err(invalid());
    };
    if let Some(operator) = operator
        && let Some((name, operand)) = braced.split_once(operator)
    {
        let value = apply(operator, name, operand, lookup, depth)?;
        return Ok(value + &substitute(rest, lookup, depth + 1)?);
    }
    Ok(lookup(braced).unwrap_or_default())
}

fn invalid() -> InterpolateError {
    InterpolateError::Invalid {
        template: String::new(),
    }
}

/// compose-go `getSubstitutionFunctionForTemplate`: the operator whose text
/// occurs first in `template`.
fn first_operator(template: &str) -> Option<&'static str> {
    OPERATORS
        .iter()
        .filter_map(|op| template.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, op)| op)
}

/// compose-go `getFirstBraceClosingIndex`: the byte index of the `}` that
/// balances the first `{`. Like compose-go it skips the byte after every `{`.
fn first_brace_closing_index(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if bytes[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// The substitution functions of compose-go (`defaultWhenEmptyOrUnset`,
/// `defaultWhenUnset`, `defaultWhenNotEmpty`, `defaultWhenSet`,
/// `requiredErrorWhenEmptyOrUnset`, `requiredErrorWhenUnset`). Like
/// `withDefaultWhenAbsence`, `withDefaultWhenPresence` and `withRequired`, the
/// operand is interpolated first, whether or not it is then used.
fn apply(
    operator: &str,
    name: &str,
    operand: &str,
    lookup: Lookup<'_>,
    depth: usize,
) -> Result<String, InterpolateError> {
    let operand = substitute(operand, lookup, depth + 1)?;
    let value = lookup(name);
    let non_empty = matches!(&value, Some(v) if !v.is_empty());
    match operator {
        ":-" | "-" => match value {
            Some(v) if operator == "-" || non_empty => Ok(v),
            _ => Ok(operand),
        },
        ":+" | "+" => {
            if value.is_some() && (operator == "+" || non_empty) {
                Ok(operand)
            } else {
                Ok(value.unwrap_or_default())
            }
        }
        _ => match value {
            Some(v) if operator == "?" || non_empty => Ok(v),
            _ => Err(InterpolateError::Required {
                variable: name.to_string(),
                message: operand,
            }),
        },
    }
}

/// compose-go `extractVariable` (template/variables.go).
/// Like interpolation, it descends at most [`MAX_DEPTH`] levels.
fn collect_variables(s: &str, names: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for groups in PATTERN.captures_iter(s) {
        if groups.name("escaped").is_some_and(|m| !m.is_empty()) {
            continue;
        }
        let mut rest = "";
        let value = match groups.name("named").filter(|m| !m.is_empty()) {
            Some(named) => named.as_str(),
            None => {
                let whole = &groups[0];
                match first_brace_closing_index(whole) {
                    Some(i) if i > 0 => {
                        rest = &whole[i + 1..];
                        &whole[2..i]
                    }
                    _ => groups.name("braced").map_or("", |m| m.as_str()),
                }
            }
        };
        let end = value
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(value.len());
        if end > 0 {
            names.push(value[..end].to_string());
            let tail = &value[end..];
            let operand = OPERATORS.iter().find_map(|op| tail.strip_prefix(op));
            if let Some(operand) = operand {
                collect_variables(operand, names, depth + 1);
            }
        }
        collect_variables(rest, names, depth + 1);
    }
}

/// Quotes `s` like Go's `strconv.Quote` (what `%q` and `%#v` print for a string).
///
/// Printability follows `strconv.IsPrint` for the characters that matter in
/// practice (controls, spaces other than U+0020, format characters, private
/// use); unassigned code points are printed as they are.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c,
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{fffe}'..='\u{ffff}'
        | '\u{f0000}'..='\u{10ffff}'
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "${A:-".repeat(50_000) + "x" + &"}".repeat(50_000);
        let e = interpolate(&deep, &|_| None).unwrap_err();
        assert!(matches!(e, InterpolateError::Budget { .. }), "{e}");
        assert!(e.to_string().contains("nested more than 100"), "{e}");
        assert!(referenced_variables(&deep) == ["A"]);
        // Chained expressions count as levels too, and within the limit they work.
        let chain = "${A:-x}".repeat(MAX_DEPTH);
        assert_eq!(
            interpolate(&chain, &|_| None).unwrap(),
            "x".repeat(MAX_DEPTH)
        );
        let chain = "${A:-x}".repeat(20_000);
        assert!(interpolate(&chain, &|_| None).is_err());
        let nested = "${A:-".repeat(MAX_DEPTH) + "x" + &"}".repeat(MAX_DEPTH);
        assert_eq!(interpolate(&nested, &|_| None).unwrap(), "x");
    }

    #[test]
    fn output_is_bounded() {
        let big = "v".repeat(64 << 10);
        let lookup = |_: &str| Some(big.clone());
        let e = interpolate(&"$A".repeat(17), &lookup).unwrap_err();
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        assert_eq!(
            interpolate(&"$A".repeat(16), &lookup).unwrap().len(),
            16 * big.len()
        );
    }

    use super::*;

    type Env<'a> = &'a [(&'a str, &'a str)];
    type Case<'a> = (&'a str, Env<'a>, Result<&'a str, &'a str>);

    /// Runs one case: `env` is the set of defined variables; `expected` is the
    /// result, or the Display text of the error.
    fn check(input: &str, env: Env<'_>, expected: Result<&str, &str>) {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let got = interpolate(input, &lookup).map_err(|e| e.to_string());
        let expected = expected.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, expected, "interpolating {input:?} with {env:?}");
    }

    const FOO: (&str, &str) = ("FOO", "first");
    const BAR: (&str, &str) = ("BAR", "");
    const JSON: (&str, &str) = ("JSON", r#"{"json":2}"#);

    #[test]
    fn interpolation_rules() {
        let base: Env<'_> = &[FOO, BAR, JSON];
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            // no expression
            ("foo", base, Ok("foo")),
            ("", base, Ok("")),
            // direct substitution, braced and not
            ("$FOO", base, Ok("first")),
            ("${FOO}", base, Ok("first")),
            ("This $FOO var", base, Ok("This first var")),
            ("This ${FOO} var", base, Ok("This first var")),
            ("$FOO$FOO", base, Ok("firstfirst")),
            ("${FOO}bar", base, Ok("firstbar")),
            // the longest name is taken; `-` ends it (docker/compose#8601)
            ("$FOO-bar", base, Ok("first-bar")),
            ("$FOO.bar", base, Ok("first.bar")),
            ("$FOO_", base, Ok("")),
            ("$FOO_1", &[("FOO_1", "one")], Ok("one")),
            ("$foo", &[("foo", "lower")], Ok("lower")),
            ("${_x9}", &[("_x9", "u")], Ok("u")),
            ("é$FOO", base, Ok("éfirst")),
            // unset or empty without operator: empty string
            ("This ${missing} var", base, Ok("This  var")),
            ("This ${BAR} var", base, Ok("This  var")),
            ("$missing", base, Ok("")),
            // `$$` escapes
            ("$$", base, Ok("$")),
            ("$${foo}", base, Ok("${foo}")),
            ("$$FOO", base, Ok("$FOO")),
            ("$$$FOO", base, Ok("$first")),
            // a `$` that starts nothing is kept (compose-go TestUnescaped)
            ("a $ string", base, Ok("a $ string")),
            ("^REGEX$", base, Ok("^REGEX$")),
            ("$}", base, Ok("$}")),
            ("$", base, Ok("$")),
            ("$1", base, Ok("$1")),
            ("$1abc", base, Ok("$1abc")),
            ("100$-", base, Ok("100$-")),
            ("$.", base, Ok("$.")),
            // defaults
            ("ok ${missing:-def}", base, Ok("ok def")),
            ("ok ${missing-def}", base, Ok("ok def")),
            ("ok ${BAR:-def}", base, Ok("ok def")),
            ("ok ${BAR-def}", base, Ok("ok ")),
            ("ok ${FOO:-def}", base, Ok("ok first")),
            ("ok ${FOO-def}", base, Ok("ok first")),
            ("ok ${missing:-}", base, Ok("ok ")),
            ("ok ${BAR:-/non:-alphanumeric}", base, Ok("ok /non:-alphanumeric")),
            ("${UNSET_VAR-myerror?msg}", base, Ok("myerror?msg")),
            ("${missing:-a b  c}", base, Ok("a b  c")),
            // alternative values
            ("ok ${UNSET_VAR:+presence_value}", base, Ok("ok ")),
            ("ok ${UNSET_VAR+presence_value}", base, Ok("ok ")),
            ("ok ${FOO:+presence_value}", base, Ok("ok presence_value")),
            ("ok ${FOO+presence_value}", base, Ok("ok presence_value")),
            ("ok ${BAR+presence_value}", base, Ok("ok presence_value")),
            ("ok ${BAR:+presence_value}", base, Ok("ok ")),
            // required values that are present
            ("ok ${FOO:?err}", base, Ok("ok first")),
            ("ok ${FOO?err}", base, Ok("ok first")),
            ("ok ${BAR?err}", base, Ok("ok ")),
            ("${FOO?bar-baz}", base, Ok("first")),
            ("ok ${SUBDOMAIN:-redis}.${FOO:?}", base, Ok("ok redis.first")),
            // nested expansions
            ("ok ${UNSET_VAR-$FOO}", base, Ok("ok first")),
            ("ok ${UNSET_VAR-${FOO}}", base, Ok("ok first")),
            ("ok ${UNSET_VAR-${FOO} ${FOO}}", base, Ok("ok first first")),
            ("ok ${BAR:-$FOO}", base, Ok("ok first")),
            ("ok ${BAR:-${FOO} ${FOO}}", base, Ok("ok first first")),
            ("ok ${BAR+$FOO}", base, Ok("ok first")),
            ("ok ${BAR+$FOO ${FOO:+second}}", base, Ok("ok first second")),
            ("${A:-${B:-x}}", base, Ok("x")),
            ("${A:-${B:-x}}", &[("B", "b")], Ok("b")),
            ("${A:-${B:-x}}", &[("A", "a")], Ok("a")),
            ("${A:-${B:-${C:-deep}}}/tail", base, Ok("deep/tail")),
            ("${DB:-${PROJECT}_pgdata}", &[("PROJECT", "p")], Ok("p_pgdata")),
            // outer text containing operator characters (TestInterpolationExternalInterference)
            ("-ok ${BAR:-defaultValue}", base, Ok("-ok defaultValue")),
            ("+ok ${UNSET:-${BAR-defaultValue}}", base, Ok("+ok ")),
            (":-ok ${UNSET-defaultValue}", base, Ok(":-ok defaultValue")),
            (":?ok ${BAR-defaultValue}", base, Ok(":?ok ")),
            (":+ok ${BAR:-defaultValue}", base, Ok(":+ok defaultValue")),
            ("?ok ${BAR:-defaultValue}", base, Ok("?ok defaultValue")),
            // braces in operands and around expressions (docker/compose#9024)
            (r#"ok ${missing:-{"json":1}}"#, base, Ok(r#"ok {"json":1}"#)),
            (r#"ok ${missing-{"json":1}}"#, base, Ok(r#"ok {"json":1}"#)),
            (r#"ok ${JSON:-{"json":1}}"#, base, Ok(r#"ok {"json":2}"#)),
            ("{{{ ${missing:-foo} }}}", base, Ok("{{{ foo }}}")),
            ("{{{ ${missing:-foo} ${other:-bar} }}}", base, Ok("{{{ foo bar }}}")),
            ("${FOO:-baz} }}}", base, Ok("first }}}")),
            ("${A-}}", base, Ok("}")),
            // operands are evaluated even when not used
            ("${FOO:-${UNSET:?boom}}", base, Err("required variable UNSET is missing a value: boom")),
            ("${FOO:-${ bad}}", base, Err(r#"Invalid template: "${ bad}""#)),
            ("${UNSET:+${ bad}}", base, Err(r#"Invalid template: "${ bad}""#)),
            ("${FOO?${UNSET:?in message}}", base, Err("required variable UNSET is missing a value: in message")),
            // required values that are missing
            ("not ok ${UNSET_VAR:?Mandatory Variable Unset}", base,
                Err("required variable UNSET_VAR is missing a value: Mandatory Variable Unset")),
            ("not ok ${BAR:?Mandatory Variable Empty}", base,
                Err("required variable BAR is missing a value: Mandatory Variable Empty")),
            ("not ok ${UNSET_VAR:?}", base, Err("required variable UNSET_VAR is missing a value")),
            ("not ok ${UNSET_VAR?Mandatory Variable Unset}", base,
                Err("required variable UNSET_VAR is missing a value: Mandatory Variable Unset")),
            ("not ok ${UNSET_VAR?}", base, Err("required variable UNSET_VAR is missing a value")),
            ("${UNSET_VAR:?Mandatory Variable ${FOO}}", base,
                Err("required variable UNSET_VAR is missing a value: Mandatory Variable first")),
            ("${UNSET_VAR?Mandatory Variable ${FOO}}", base,
                Err("required variable UNSET_VAR is missing a value: Mandatory Variable first")),
            ("${UNSET_VAR?bar-baz}", base, Err("required variable UNSET_VAR is missing a value: bar-baz")),
            ("${DEPLOYMENT_ENV:?Must set DEPLOYMENT_ENV=prd in .env}", base,
                Err("required variable DEPLOYMENT_ENV is missing a value: Must set DEPLOYMENT_ENV=prd in .env")),
            ("${UNSET:-${INNER:?inner missing}}", base,
                Err("required variable INNER is missing a value: inner missing")),
            ("${FOO} ${A:?a} ${B:?b}", base, Err("required variable A is missing a value: a")),
            // malformed templates (compose-go TestInvalid); the whole input is quoted
            ("${", base, Err(r#"Invalid template: "${""#)),
            ("${}", base, Err(r#"Invalid template: "${}""#)),
            ("${ }", base, Err(r#"Invalid template: "${ }""#)),
            ("${ foo}", base, Err(r#"Invalid template: "${ foo}""#)),
            ("${foo }", base, Err(r#"Invalid template: "${foo }""#)),
            ("${foo!}", base, Err(r#"Invalid template: "${foo!}""#)),
            ("${FOO:x}", base, Err(r#"Invalid template: "${FOO:x}""#)),
            ("${FOO", base, Err(r#"Invalid template: "${FOO""#)),
            ("${1}", base, Err(r#"Invalid template: "${1}""#)),
            ("${VAR/foo/bar}", base, Err(r#"Invalid template: "${VAR/foo/bar}""#)),
            ("prefix $FOO ${ FOO} suffix", base, Err(r#"Invalid template: "prefix $FOO ${ FOO} suffix""#)),
            (r#"say "${ x}""#, base, Err(r#"Invalid template: "say \"${ x}\"""#)),
            ("${A:-x\ny}", base, Err(r#"Invalid template: "${A:-x\ny}""#)),
            // a malformed operand quotes the operand, not the whole input
            ("${UNSET:-${ B}}", base, Err(r#"Invalid template: "${ B}""#)),
            ("${UNSET:-x} and ${", base, Err(r#"Invalid template: "${UNSET:-x} and ${""#)),
            ("${UNSET:-x} ${ y}", base, Err(r#"Invalid template: " ${ y}""#)),
        ];
        for (input, env, expected) in cases {
            check(input, env, *expected);
        }
    }

    #[test]
    fn error_variants_carry_their_parts() {
        let lookup = |_: &str| None;
        assert_eq!(
            interpolate(
                "${DEPLOYMENT_ENV:?Must set DEPLOYMENT_ENV=prd in .env}",
                &lookup
            ),
            Err(InterpolateError::Required {
                variable: "DEPLOYMENT_ENV".into(),
                message: "Must set DEPLOYMENT_ENV=prd in .env".into(),
            })
        );
        assert_eq!(
            interpolate("x ${ FOO}", &lookup),
            Err(InterpolateError::Invalid {
                template: "x ${ FOO}".into()
            })
        );
    }

    #[test]
    fn go_quoting() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("plain", r#""plain""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("\u{0}\u{1f}\u{7f}", r#""\x00\x1f\x7f""#),
            ("é ü 日本", r#""é ü 日本""#),
            ("\u{a0}\u{85}\u{200b}\u{feff}", r#""\u00a0\u0085\u200b\ufeff""#),
            ("\u{f0000}", r#""\U000f0000""#),
        ];
        for (input, expected) in cases {
            assert_eq!(go_quote(input), *expected, "quoting {input:?}");
        }
    }

    #[test]
    fn referenced_variables_rules() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str])] = &[
            ("no variables", &[]),
            ("$bar", &["bar"]),
            ("${bar}", &["bar"]),
            ("${bar?:foo}", &["bar"]),
            ("${bar?foo}", &["bar"]),
            ("${bar:-foo}", &["bar"]),
            ("${bar-foo}", &["bar"]),
            ("${bar:+foo}", &["bar"]),
            ("${bar+foo}", &["bar"]),
            ("$docker:${project:-cli}", &["docker", "project"]),
            ("$$ESCAPED $${ALSO} $REAL", &["REAL"]),
            ("${A:-${B:-${C}}} $D", &["A", "B", "C", "D"]),
            ("${A:?need $MSG}", &["A", "MSG"]),
            ("${A:+$B} ${A}", &["A", "B"]),
            ("${A:-x} tail ${B}", &["A", "B"]),
            ("a $ b $1 ${ bad} ${C}", &["C"]),
            ("$FOO-bar", &["FOO"]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                referenced_variables(input),
                *expected,
                "variables of {input:?}"
            );
        }
    }
}
