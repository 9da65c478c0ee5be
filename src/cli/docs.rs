//! Documentation generated from the clap definitions: the example in each
//! command's short help, shell completions and man pages.
//!
//! Everything here walks the `clap::Command` that `cli::Cli` derives, so a
//! command added to `cli::Command` is completed and documented without
//! touching this module; a test fails if it has no "Examples:" section. None of
//! it reads a configuration, talks to the engine or opens the state directory:
//! packagers run it on a build machine.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Command;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

/// The line that opens the examples in a command's long help (`after_long_help`).
pub const EXAMPLES_HEADING: &str = "Examples:";

/// What the exit status means, for every command.
const EXIT_STATUS: [(&str, &str); 3] = [
    (
        "0",
        "Success; for reconcile --dry-run: the host is in sync.",
    ),
    ("1", "Any error, usage errors included."),
    ("2", "reconcile --dry-run only: changes are pending."),
];

/// One example of a command's "Examples:" section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// What it does: the `# ` lines above the command, joined.
    pub what: String,
    /// The command as written: every line but the last ends in `\`; the
    /// lines after the first are indented four spaces.
    pub lines: Vec<String>,
}

impl Example {
    /// The command on one line, as a shell runs it (continuations joined).
    pub fn command(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.strip_suffix('\\').unwrap_or(l).trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The examples in `cmd`'s long help, in order; none without an "Examples:" section.
pub fn examples(cmd: &Command) -> Vec<Example> {
    cmd.get_after_long_help()
        .map(|text| parse_examples(&text.to_string()))
        .unwrap_or_default()
}

/// Reads an "Examples:" section: after the heading, the indented and blank
/// lines up to the first line that is neither; `#` lines say what the command
/// below them does.
pub fn parse_examples(text: &str) -> Vec<Example> {
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim_end() != EXAMPLES_HEADING);
    if lines.next().is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut what: Vec<&str> = Vec::new();
    let mut command: Vec<String> = Vec::new();
    for line in lines.take_while(|l| l.trim().is_empty() || l.starts_with(' ')) {
        let line = line.trim();
        if command.is_empty() {
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                what.push(comment.trim());
                continue;
            }
        }
        let indent = if command.is_empty() { "" } else { "    " };
        command.push(format!("{indent}{line}"));
        if !line.ends_with('\\') {
            out.push(Example {
                what: what.join(" "),
                lines: std::mem::take(&mut command),
            });
            what.clear();
        }
    }
    if !command.is_empty() {
        out.push(Example {
            what: what.join(" "),
            lines: command,
        });
    }
    out
}

/// Gives every command's short help (`-h`) its first example and a pointer to
/// the rest, and the long help of a command with subcommands a pointer to
/// theirs. `--help` keeps the whole "Examples:" section.
pub fn short_help(cmd: Command) -> Command {
    fn walk(cmd: Command, path: &str) -> Command {
        let mut cmd = cmd.mut_subcommands(|sub| {
            let path = format!("{path} {}", sub.get_name());
            walk(sub, &path)
        });
        let pointer = cmd.has_subcommands().then(|| {
            format!("Run `{path} <command> --help` for a command's options and examples.")
        });
        if let Some(long) = cmd.get_after_long_help() {
            let long = long.to_string();
            let long = long.trim_end();
            cmd = match &pointer {
                Some(p) => cmd.after_long_help(format!("{long}\n\n{p}")),
                None => cmd.after_long_help(long.to_string()),
            };
        }
        if cmd.get_after_help().is_none()
            && let Some(first) = examples(&cmd).into_iter().next()
        {
            let more = pointer.unwrap_or_else(|| format!("More examples: {path} --help"));
            let example = first.lines.join("\n");
            cmd = cmd.after_help(format!("Example: {example}\n{more}"));
        }
        cmd
    }
    let name = cmd.get_name().to_string();
    walk(cmd, &name)
}

/// The completion script of `shell` for the program `cmd` describes.
pub fn completions(mut cmd: Command, shell: clap_complete::Shell) -> String {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The whole program on one man page: its options, then every command
/// (recursively) with its synopsis, description, options and examples.
pub fn man_page(cmd: Command) -> String {
    let cmd = built(cmd);
    let mut page = preamble();
    let man = page_of(&cmd, &cmd);
    page += &section(|w| man.render_title(w));
    page += &section(|w| man.render_name_section(w));
    page += &section(|w| man.render_synopsis_section(w));
    page += &section(|w| man.render_description_section(w));
    page += &section(|w| man.render_options_section(w));
    let global: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    let mut commands = Roff::new();
    commands.control("SH", ["COMMANDS"]);
    page += &render(&commands);
    for sub in all_subcommands(&cmd) {
        page += &command_section(sub, &global);
    }
    page += &examples_section(&cmd);
    page += &exit_status_section();
    if cmd.get_version().is_some() {
        page += &section(|w| man.render_version_section(w));
    }
    page
}

/// Writes one man page per command into `dir` (created if missing): `plimsoll.1`
/// listing the commands, and `plimsoll-<command>.1` for each (recursively, so a
/// command with subcommands gets `plimsoll-<command>-<subcommand>.1` too).
/// Returns the files written.
pub fn man_pages(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    let cmd = built(cmd);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = Man::new(cmd.clone()).get_filename();
    let mut written = Vec::new();
    for c in std::iter::once(&cmd).chain(all_subcommands(&cmd)) {
        let man = page_of(c, &cmd);
        let path = dir.join(man.get_filename());
        let mut page = preamble();
        page += &section(|w| man.render_title(w));
        page += &section(|w| man.render_name_section(w));
        page += &section(|w| man.render_synopsis_section(w));
        page += &section(|w| man.render_description_section(w));
        page += &section(|w| man.render_options_section(w));
        if c.get_subcommands().any(|s| !s.is_hide_set()) {
            page += &section(|w| man.render_subcommands_section(w));
        }
        page += &examples_section(c);
        page += &exit_status_section();
        if !std::ptr::eq(c, &cmd) {
            let mut see_also = Roff::new();
            see_also.control("SH", ["SEE ALSO"]);
            let root = root.rsplit_once('.').map_or(root.as_str(), |(n, _)| n);
            see_also.text([bold(root), roman("(1)")]);
            page += &render(&see_also);
        }
        if c.get_version().is_some() {
            page += &section(|w| man.render_version_section(w));
        }
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The command built (bin names, propagated flags), without clap's `help`
/// subcommands, which have no page of their own.
fn built(cmd: Command) -> Command {
    fn no_help(cmd: Command) -> Command {
        cmd.disable_help_subcommand(true).mut_subcommands(no_help)
    }
    let mut cmd = no_help(cmd);
    cmd.build();
    cmd
}

/// The page of `cmd`, a command of the program `root`: its footer names the
/// program and its version, as man pages of one package do.
fn page_of(cmd: &Command, root: &Command) -> Man {
    Man::new(cmd.clone()).source(format!(
        "{} {}",
        root.get_name(),
        root.get_version().unwrap_or_default()
    ))
}

/// Every visible subcommand of `cmd`, depth first, in the order `--help` lists them.
fn all_subcommands(cmd: &Command) -> Vec<&Command> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(sub);
        out.extend(all_subcommands(sub));
    }
    out
}

/// One command's part of the single page: a subsection holding its synopsis,
/// description, options (the program's global options are listed once, above)
/// and examples.
fn command_section(cmd: &Command, global: &[clap::Id]) -> String {
    let mut local = cmd.clone();
    for arg in cmd.get_arguments() {
        let id = arg.get_id();
        if global.contains(id) || id == "help" || id == "version" {
            local = local.mut_arg(id.clone(), |a| a.hide(true));
        }
    }
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut head = Roff::new();
    head.control("SS", [name]);
    let man = Man::new(local.clone());
    let mut out = render(&head);
    out += &demote(&section(|w| man.render_synopsis_section(w)));
    out += &demote(&section(|w| man.render_description_section(w)));
    if local.get_arguments().any(|a| !a.is_hide_set()) {
        out += &demote(&section(|w| man.render_options_section(w)));
    }
    out += &demote(&examples_section(cmd));
    out
}

/// A section rendered for a page of its own, turned into a part of a
/// subsection: its `.SH` heading becomes a paragraph label ("Options:"), none
/// for the synopsis and the description.
fn demote(section: &str) -> String {
    let mut out = String::new();
    for line in section.lines() {
        match line.strip_prefix(".SH ") {
            Some("SYNOPSIS") => {}
            Some("DESCRIPTION") => out.push_str(".PP\n"),
            Some(heading) => {
                let heading = heading.trim_matches('"').to_lowercase();
                let mut label = Roff::new();
                label.control("PP", []);
                let mut chars = heading.chars();
                let first = chars.next().map(|c| c.to_uppercase().to_string());
                label.text([bold(format!(
                    "{}{}:",
                    first.unwrap_or_default(),
                    chars.as_str()
                ))]);
                out += &render(&label);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The EXAMPLES section from the command's "Examples:" help: what each does,
/// then the command in bold, as typed.
fn examples_section(cmd: &Command) -> String {
    let examples = examples(cmd);
    if examples.is_empty() {
        return String::new();
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    for example in examples {
        roff.control("PP", []);
        if !example.what.is_empty() {
            roff.text([roman(format!("{}:", example.what))]);
        }
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        for line in &example.lines {
            roff.text([bold(line.as_str())]);
        }
        roff.control("fi", []);
        roff.control("RE", []);
    }
    render(&roff)
}

fn exit_status_section() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    render(&roff)
}

/// What every rendered `Roff` starts with (the apostrophe string); a page has it once.
fn preamble() -> String {
    Roff::new().render()
}

/// Roff text without the preamble.
fn render(roff: &Roff) -> String {
    strip_preamble(roff.render())
}

/// One of `Man`'s sections as roff text without the preamble.
fn section(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).expect("writing to a Vec cannot fail");
    strip_preamble(String::from_utf8_lossy(&out).into_owned())
}

fn strip_preamble(text: String) -> String {
    match text.strip_prefix(&preamble()) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_continuations_and_stops_at_the_section_end() {
        let text = "Examples:\n  # First\n  plimsoll a\n\n  # Second,\n  # two lines\n  plimsoll b --x \\\n      --y\n  plimsoll c\n\nRun something else.\n  plimsoll not-an-example\n";
        let got = parse_examples(text);
        assert_eq!(
            got.iter()
                .map(|e| (e.what.as_str(), e.command()))
                .collect::<Vec<_>>(),
            [
                ("First", "plimsoll a".to_string()),
                ("Second, two lines", "plimsoll b --x --y".to_string()),
                ("", "plimsoll c".to_string()),
            ]
        );
        assert_eq!(got[1].lines, ["plimsoll b --x \\", "    --y"]);
        assert!(parse_examples("no examples here\n  plimsoll a\n").is_empty());
    }

    #[test]
    fn nested_commands_get_pages_and_sections_of_their_own() {
        let cmd = Command::new("tool")
            .version("1.0")
            .subcommand(
                Command::new("secret")
                    .about("Secrets")
                    .subcommand(Command::new("encrypt").about("Encrypt one")),
            )
            .subcommand(Command::new("plain").about("Plain"));
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(cmd.clone(), dir.path()).unwrap();
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "tool-plain.1",
                "tool-secret-encrypt.1",
                "tool-secret.1",
                "tool.1"
            ]
        );
        let page = man_page(cmd);
        for section in ["tool secret", "tool secret encrypt", "tool plain"] {
            assert!(page.contains(&format!(".SS \"{section}\"\n")), "{page}");
        }
        assert!(!page.contains("tool help"), "{page}");
    }
}
