//! Rendering a plan: text for a terminal (ANSI colors when asked), Markdown
//! for a pull-request comment (everything from the repository made inert:
//! [`md_escape`], [`md_code`], [`md_fence`], [`html_escape`]) and the
//! one-line summary. The JSON form is the plan's own `Serialize`. Pure.

use super::{Action, ActionKind, OrphanKind, Plan, PlannedJob};
use crate::spec::model::JobKind;

/// Output formats of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

const RESET: &str = "\x1b[0m";

pub(crate) fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn symbol(kind: ActionKind) -> (&'static str, &'static str) {
    match kind {
        ActionKind::CreateNetwork | ActionKind::CreateVolume | ActionKind::Create => ("+", "32"),
        ActionKind::PullImage => ("↓", "36"),
        ActionKind::Build => ("⚒", "36"),
        ActionKind::Start | ActionKind::Restart => ("▶", "36"),
        ActionKind::Recreate | ActionKind::RecreateNetwork => ("~", "33"),
        ActionKind::Stop
        | ActionKind::Remove
        | ActionKind::RemoveNetwork
        | ActionKind::RemoveVolume => ("-", "31"),
    }
}

/// What a planned job line says: `run pre job`, `run post job`, `on failure`.
fn job_verb(j: &PlannedJob) -> &'static str {
    match j.when {
        JobKind::Pre => "run pre job",
        JobKind::Post => "run post job",
        JobKind::OnFailure => "on failure",
    }
}

/// `stack/service`, `stack/service.N` for a replica, `stack/target` for the rest.
fn subject(a: &Action) -> String {
    match (&a.service, a.replica) {
        (Some(s), Some(n)) => format!("{}/{s}.{n}", a.stack),
        (Some(s), None) => format!("{}/{s}", a.stack),
        (None, _) => format!("{}/{}", a.stack, a.target),
    }
}

/// The one-line summary: `2 to create, 1 to recreate; 3 in sync.`
pub fn summary_line(plan: &Plan) -> String {
    let mut parts: Vec<String> = plan
        .summary()
        .into_iter()
        .map(|(k, n)| format!("{n} to {}", k.as_str()))
        .collect();
    let jobs = plan
        .jobs
        .iter()
        .filter(|j| j.when != JobKind::OnFailure)
        .count();
    if jobs > 0 {
        parts.push(format!(
            "{jobs} job{} to run",
            if jobs == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        parts.push("no changes".into());
    }
    let mut line = format!("Plan: {}; {} in sync", parts.join(", "), plan.in_sync.len());
    if !plan.conflicts.is_empty() {
        line.push_str(&format!(
            "; {} conflict{}",
            plan.conflicts.len(),
            if plan.conflicts.len() == 1 { "" } else { "s" }
        ));
    }
    if !plan.would_prune.is_empty() {
        line.push_str(&format!(
            "; {} to prune with --prune",
            plan.would_prune.len()
        ));
    }
    line.push('.');
    line
}

/// Appends a unified diff, each line indented, colored on a terminal.
pub(crate) fn push_diff(out: &mut String, diff: &str, indent: &str, color: bool) {
    for line in diff.lines() {
        let styled = match line.chars().next() {
            Some('+') if !line.starts_with("+++") => paint(color, "32", line),
            Some('-') if !line.starts_with("---") => paint(color, "31", line),
            Some('@') => paint(color, "36", line),
            _ => line.to_string(),
        };
        out.push_str(&format!("{indent}{styled}\n"));
    }
}

/// The plan for people: one line per action, a unified diff per recreated service.
pub fn to_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    for a in &plan.actions {
        let (sym, code) = symbol(a.action);
        out.push_str(&format!(
            "{} {:<16} {:<24} {}\n",
            paint(color, code, sym),
            paint(color, code, a.action.as_str()),
            subject(a),
            a.reasons.first().map(String::as_str).unwrap_or_default()
        ));
        for r in a.reasons.iter().skip(1) {
            out.push_str(&format!("  {:<16} {:<24} {r}\n", "", ""));
        }
        if let Some(d) = &a.diff {
            push_diff(&mut out, d, "      ", color);
        }
    }
    for j in &plan.jobs {
        let code = if j.when == JobKind::OnFailure {
            "2"
        } else {
            "34"
        };
        out.push_str(&format!(
            "{} {:<16} {:<24} {} ({})\n",
            paint(color, code, "»"),
            paint(color, code, job_verb(j)),
            format!("{}/{}", j.stack, j.job),
            j.reasons.join("; "),
            j.image
        ));
    }
    for c in &plan.conflicts {
        let who = c.service.as_ref().map_or_else(
            || format!("{}/{}", c.stack, c.target),
            |s| format!("{}/{s}", c.stack),
        );
        out.push_str(&format!(
            "{} {:<16} {who:<24} {}\n",
            paint(color, "31;1", "!"),
            paint(color, "31;1", "conflict"),
            c.reason
        ));
    }
    for o in &plan.would_prune {
        out.push_str(&format!(
            "{} {:<16} {:<24} {} {} is no longer declared in git ({})\n",
            paint(color, "35", "?"),
            paint(color, "35", "would prune"),
            format!("{}/{}", o.stack, o.service.as_deref().unwrap_or(&o.target)),
            o.kind,
            o.target,
            if o.kind == OrphanKind::Volume {
                "kept: volumes go only with --prune-volumes and the stack's prune_volumes: true"
            } else {
                "removed only with --prune"
            }
        ));
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// Text from the repository (names, values, reasons) as inert Markdown for
/// a pull-request comment, in prose and in table cells: the characters that
/// open links, images, emphasis, code, entities and table cells are
/// backslash-escaped, `<` and `>` written as entities (no HTML), a mention
/// (`@org/team`) broken by a zero-width space, a line break made a space.
pub(crate) fn md_escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let inside_word = |i: usize| {
            i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        };
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Inside a word (`DB_PASSWORD`), `_` emphasizes nothing.
            '_' if inside_word(i) => out.push(c),
            // `(` and `!` mean something only after `]` or before `[`, both escaped.
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@&#8203;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an inline code span in a table cell (inert: no link, HTML or
/// mention inside code): delimited by more backticks than any run inside,
/// pipes escaped as GitHub's tables need even in code.
pub(crate) fn md_code(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let ticks = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    let body = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    format!("{ticks}{pad}{body}{pad}{ticks}")
}

/// Text inside an HTML element of a pull-request comment (`<summary>`),
/// where Markdown's backslash escapes do not apply: HTML-escaped, mentions broken.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '@' => out.push_str("@&#8203;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a fenced code block of `lang`: the fence is longer than any
/// run of backticks inside, so a value holding ```` ``` ```` cannot close it.
pub(crate) fn md_fence(lang: &str, text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    let body = if text.ends_with('\n') || text.is_empty() {
        text.to_string()
    } else {
        format!("{text}\n")
    };
    format!("{fence}{lang}\n{body}{fence}")
}

/// The plan as a pull-request comment: a table, and each diff in a collapsible section.
pub fn to_markdown(plan: &Plan) -> String {
    let mut out = String::from("### plimsoll plan\n\n");
    if plan.is_noop() && plan.conflicts.is_empty() {
        out.push_str("No changes: the host matches git.\n\n");
    } else {
        out.push_str(
            "| | action | stack | service | target | reasons |\n|---|---|---|---|---|---|\n",
        );
        for a in &plan.actions {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                symbol(a.action).0,
                a.action.as_str(),
                md_escape(&a.stack),
                md_escape(a.service.as_deref().unwrap_or("")),
                md_code(&a.target),
                md_escape(&a.reasons.join("; "))
            ));
        }
        for j in &plan.jobs {
            out.push_str(&format!(
                "| » | {} | {} | {} | {} | {} |\n",
                job_verb(j),
                md_escape(&j.stack),
                md_escape(&j.job),
                md_code(&j.image),
                md_escape(&j.reasons.join("; "))
            ));
        }
        for c in &plan.conflicts {
            out.push_str(&format!(
                "| ! | **conflict** | {} | {} | {} | {} |\n",
                md_escape(&c.stack),
                md_escape(c.service.as_deref().unwrap_or("")),
                md_code(&c.target),
                md_escape(&c.reason)
            ));
        }
        out.push('\n');
    }
    for a in plan.actions.iter().filter(|a| a.diff.is_some()) {
        out.push_str(&format!(
            "<details><summary>{} {}</summary>\n\n{}\n\n</details>\n\n",
            a.action.as_str(),
            html_escape(&subject(a)),
            md_fence("diff", a.diff.as_deref().unwrap_or_default())
        ));
    }
    if !plan.would_prune.is_empty() {
        out.push_str("Would prune (no longer in git; removed only with `--prune`): ");
        let items: Vec<String> = plan
            .would_prune
            .iter()
            .map(|o| format!("{} {}", o.kind, md_code(&o.target)))
            .collect();
        out.push_str(&items.join(", "));
        out.push_str("\n\n");
    }
    out.push_str(&format!("**{}**\n", summary_line(plan)));
    out
}
