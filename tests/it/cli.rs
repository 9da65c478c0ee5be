//! The command-line contract: exit codes, stdout holds only the result,
//! warnings and errors on stderr, secrets masked, formats as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::{CommandFactory, Parser as _};
use plimsoll::cli::{Cli, docs};

use crate::support::plimsoll_output;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs plimsoll with a clean environment.
fn plimsoll(args: &[&str]) -> Output {
    plimsoll_in(&repo(), args)
}

fn plimsoll_in(dir: &Path, args: &[&str]) -> Output {
    plimsoll_output(dir, args, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_examples_succeeds() {
    let out = plimsoll(&["validate", "examples/stacks"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("valid: 2 stacks, 4 services"),
        "{stdout}"
    );
    assert!(stdout.contains("shop: api, db, worker"), "{stdout}");
}

#[test]
fn usage_errors_exit_1_not_2() {
    for args in [
        &["bogus"][..],
        &["validate", "--bogus"],
        &["render", "--format", "xml"],
        &["schema"],
        &["schema", "nope"],
    ] {
        let out = plimsoll(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["validate", "--help"], &["--version"]] {
        let out = plimsoll(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn schema_prints_the_checked_in_files() {
    for (kind, file) in [
        ("plimsoll", "plimsoll.json"),
        ("stack", "stack.json"),
        ("plan", "plan.json"),
        ("diff", "diff.json"),
    ] {
        let out = plimsoll(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let expected = std::fs::read_to_string(repo().join("schemas").join(file)).unwrap();
        assert_eq!(
            text(&out.stdout),
            expected,
            "schemas/{file} is stale: run `cargo run -- schema {kind} > schemas/{file}`"
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a schema is JSON");
    }
}

#[test]
fn render_masks_secrets_unless_asked() {
    let out = plimsoll(&[
        "render",
        "examples/stacks",
        "--stack",
        "shop",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("example-not-a-real-password"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["services"]["db"]["environment"]["POSTGRES_PASSWORD"],
        "********"
    );
    assert_eq!(
        v["services"]["api"]["environment"]["DATABASE_URL"],
        "postgres://shop:********@db:5432/shop"
    );
    // Ordinary values from .env are shown.
    assert_eq!(v["services"]["api"]["ports"][0]["published"], "8080");

    let out = plimsoll(&[
        "render",
        "examples/stacks",
        "--stack",
        "shop",
        "--format",
        "json",
        "--show-secrets",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["services"]["db"]["environment"]["POSTGRES_PASSWORD"],
        "example-not-a-real-password"
    );
}

#[test]
fn render_yaml_is_the_same_document() {
    let json = plimsoll(&["render", "examples/stacks/stacks/shop", "--format", "json"]);
    let yaml = plimsoll(&["render", "examples/stacks/stacks/shop"]);
    assert_eq!(yaml.status.code(), Some(0));
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let node = plimsoll::spec::yaml::parse(&text(&yaml.stdout), Path::new("render.yaml")).unwrap();
    let from_yaml = plimsoll::spec::compose::to_json(&node);
    assert_eq!(from_json, from_yaml);
}

#[test]
fn render_of_a_repository_keys_stacks_by_name() {
    let out = plimsoll(&["render", "examples/stacks", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["shop"]["name"], "shop");
    assert_eq!(v["monitoring"]["name"], "monitoring");
}

#[test]
fn render_unknown_stack_is_an_error() {
    let out = plimsoll(&["render", "examples/stacks", "--stack", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no stack named `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn graph_formats() {
    let out = plimsoll(&["graph", "examples/stacks"]);
    assert_eq!(
        text(&out.stdout),
        "stack monitoring\n  wave 1: status\nstack shop\n  wave 1: db\n  wave 2: api (after db healthy)\n  wave 3: worker (after api started)\n"
    );
    let dot = text(&plimsoll(&["graph", "examples/stacks", "--format", "dot"]).stdout);
    assert!(
        dot.starts_with("digraph plimsoll {")
            && dot.contains("\"shop/db\" -> \"shop/api\" [label=\"healthy\"];"),
        "{dot}"
    );
    let mermaid = text(&plimsoll(&["graph", "examples/stacks", "--format", "mermaid"]).stdout);
    assert!(
        mermaid.starts_with("flowchart LR")
            && mermaid.contains("shop__api -->|started| shop__worker"),
        "{mermaid}"
    );
}

#[test]
fn graph_hosts_groups_stacks_by_host() {
    let out = plimsoll(&["graph", "--hosts", "examples/fleet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout));
    let dot = text(&plimsoll(&["graph", "--hosts", "examples/fleet", "--format", "dot"]).stdout);
    assert!(
        dot.contains("label=\"host web-1 (role=web, zone=a)\";")
            && dot.contains("\"host web-2 (role=web, zone=b)/front/web\" [label=\"web\"];"),
        "{dot}"
    );
    let mermaid =
        text(&plimsoll(&["graph", "--hosts", "examples/fleet", "--format", "mermaid"]).stdout);
    assert!(
        mermaid.contains("subgraph host0[\"host batch-1 (role=batch)\"]")
            && mermaid.contains("host0__jobs__worker[\"worker\"]"),
        "{mermaid}"
    );
    // Without any assignment, every stack is on "every host".
    let out = text(&plimsoll(&["graph", "--hosts", "examples/stacks"]).stdout);
    assert!(out.starts_with("every host\n  stack monitoring\n"), "{out}");
}

#[test]
fn a_single_compose_file_and_the_current_directory_work() {
    let out = plimsoll(&["validate", "examples/stacks/stacks/monitoring/compose.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = plimsoll_in(
        &repo().join("examples/stacks/stacks/monitoring"),
        &["validate"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("monitoring: status"));
}

#[test]
fn obsolete_version_is_a_warning_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "version: '3.8'\nservices:\n  a:\n    image: busybox\n",
    )
    .unwrap();
    let out = plimsoll(&["render", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("the attribute `version` is obsolete"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout holds only the JSON");
    assert!(v.get("version").is_none());
}

#[test]
fn process_environment_overrides_dotenv() {
    let out = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["render", "examples/stacks/stacks/shop", "--format", "json"])
        .args(["--pass-env", "API_PORT"])
        .current_dir(repo())
        .env_clear()
        .env("API_PORT", "8085")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["api"]["ports"][0]["published"], "8085");
}

#[test]
fn log_format_json_is_accepted() {
    let out = plimsoll(&["--log-format", "json", "-v", "validate", "examples/stacks"]);
    assert_eq!(out.status.code(), Some(0));
    for line in text(&out.stderr).lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
}

// --- Help texts, shell completions and man pages, all from the clap definition. ---

/// Every command of the clap definition, the program itself first, each with
/// its words after `plimsoll` (`["reconcile"]`; nested commands have more).
fn all_commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: &[String], out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.to_vec(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            let mut path = path.to_vec();
            path.push(sub.get_name().to_string());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    // Not built, so clap's own `help` subcommand is not among them.
    walk(&<Cli as CommandFactory>::command(), &[], &mut out);
    out
}

/// The names of the subcommands, as they appear in completions and man pages.
fn subcommand_names() -> Vec<String> {
    let names: Vec<String> = all_commands()
        .into_iter()
        .filter_map(|(path, _)| path.last().cloned())
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    names
}

fn display(path: &[String]) -> String {
    std::iter::once("plimsoll")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn help_long_of_every_command_has_examples_and_short_help_one() {
    for (path, cmd) in all_commands() {
        let name = display(&path);
        let args = |flag: &str| {
            let mut args = vec!["plimsoll".to_string()];
            args.extend(path.iter().cloned());
            args.push(flag.to_string());
            args
        };
        // The help the binary prints, rendered by clap as for `plimsoll ... --help`.
        let long = plimsoll::cli::command()
            .try_get_matches_from(args("--help"))
            .expect_err("--help stops parsing");
        assert_eq!(long.kind(), clap::error::ErrorKind::DisplayHelp);
        let long = long.to_string();
        assert!(
            long.contains("\nExamples:\n  # "),
            "`{name} --help` has no \"Examples:\" section; add \
             `#[command(after_long_help = examples!(...))]` to it in src/cli.rs:\n{long}"
        );
        let examples = docs::examples(&cmd);
        assert!(!examples.is_empty(), "{name}: no example could be read");
        for e in &examples {
            assert!(
                !e.what.is_empty(),
                "{name}: say what `{}` does",
                e.command()
            );
        }
        let short = plimsoll::cli::command()
            .try_get_matches_from(args("-h"))
            .expect_err("-h stops parsing")
            .to_string();
        assert!(
            short.contains(&format!("Example: {}", examples[0].lines[0])),
            "{name} -h:\n{short}"
        );
        assert!(
            !short.contains("Examples:"),
            "-h stays short: {name}\n{short}"
        );
    }
}

/// Cuts a shell line at its first operator: what follows is another program.
fn plimsoll_words(line: &str) -> Vec<String> {
    let words = shlex::split(line).unwrap_or_else(|| panic!("unbalanced quotes in `{line}`"));
    words
        .into_iter()
        .take_while(|w| {
            !(["|", "||", "&&", ";", "&"].contains(&w.as_str())
                || w.starts_with('>')
                || w.starts_with('<')
                || w.starts_with("2>"))
        })
        .collect()
}

#[test]
fn help_examples_parse_with_the_real_flags() {
    let mut checked = 0;
    for (path, cmd) in all_commands() {
        let name = display(&path);
        for example in docs::examples(&cmd) {
            let line = example.command();
            let words = plimsoll_words(&line);
            assert_eq!(
                words.first().map(String::as_str),
                Some("plimsoll"),
                "{name}: an example line must run plimsoll: `{line}`"
            );
            let matches = Cli::command()
                .try_get_matches_from(&words)
                .unwrap_or_else(|e| panic!("{name}: the example `{line}` does not parse:\n{e}"));
            Cli::try_parse_from(&words)
                .unwrap_or_else(|e| panic!("{name}: the example `{line}` does not parse:\n{e}"));
            // An example of a command runs that command.
            let mut ran = Vec::new();
            let mut m = &matches;
            while let Some((sub, sub_matches)) = m.subcommand() {
                ran.push(sub.to_string());
                m = sub_matches;
            }
            assert!(
                ran.starts_with(&path),
                "{name}: the example `{line}` runs `{}`",
                display(&ran)
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} examples");
}

#[test]
fn help_top_level_lists_every_command_and_points_to_command_help() {
    for flag in ["-h", "--help"] {
        let out = plimsoll(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        for (path, cmd) in all_commands().into_iter().skip(1) {
            if path.len() > 1 {
                continue;
            }
            let about = cmd
                .get_about()
                .expect("every command has a summary")
                .to_string();
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(&path[0])
                    && l.trim_end().ends_with(&about)),
                "{flag}: no line `{} {about}`:\n{help}",
                path[0]
            );
            assert!(
                !about.contains('\n') && about.len() <= 64,
                "one short line: {about}"
            );
        }
        assert!(
            help.contains("Run `plimsoll <command> --help`"),
            "{flag}:\n{help}"
        );
    }
}

#[test]
fn completions_bash_passes_bash_n() {
    let out = plimsoll(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plimsoll.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "bash -n: {}",
        text(&check.stderr)
    );
    let script = text(&out.stdout);
    for name in subcommand_names() {
        assert!(script.contains(&name), "bash completion lacks {name}");
    }
}

#[test]
fn completions_of_every_shell_mention_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = plimsoll(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 1000, "{shell}: {script}");
        for name in subcommand_names() {
            assert!(
                script.contains(&format!("'{name}'"))
                    || script.contains(&format!("\"{name}\""))
                    || script.contains(&format!(" {name} "))
                    || script.contains(&format!(" -a \"{name}\"")),
                "{shell} completion lacks the command {name}"
            );
        }
    }
    assert_eq!(plimsoll(&["completions", "tcsh"]).status.code(), Some(1));
}

/// Renders a man page with groff, asserting no warning; returns the plain text
/// (`-P-cbu`: no bold or underline codes).
fn groff(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbu"])
        .arg(page)
        .output()
        .expect("groff is installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff on {}: {}",
        page.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn man_page_renders_with_groff_and_man_without_warnings() {
    let out = plimsoll(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.starts_with(b".ie"), "roff on stdout");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("plimsoll.1");
    std::fs::write(&page, &out.stdout).unwrap();
    groff(&page);
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man is installed");
    assert!(
        man.status.success() && man.stderr.is_empty(),
        "man -l: {}",
        text(&man.stderr)
    );
    // man-db drops the terminal's bold when stdout is not a terminal.
    let rendered = text(&man.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "COMMANDS",
        "EXAMPLES",
        "EXIT STATUS",
    ] {
        assert!(
            rendered.contains(&format!("\n{section}\n")),
            "{section}:\n{rendered}"
        );
    }
    for (path, cmd) in all_commands().into_iter().skip(1) {
        let name = display(&path);
        assert!(
            rendered.contains(&format!("\n   {name}\n")),
            "no section for {name}:\n{rendered}"
        );
        // Its examples, as typed.
        for e in docs::examples(&cmd) {
            assert!(rendered.contains(&e.lines[0]), "{name}: {}", e.lines[0]);
        }
    }
    // The global options are listed once, not under every command.
    assert_eq!(
        rendered.matches("--state-dir <DIR>").count(),
        1,
        "{rendered}"
    );
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("share/man/man1");
    let out = plimsoll(&["man", "--dir", man1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let mut expected: Vec<String> = all_commands()
        .iter()
        .map(|(path, _)| format!("{}.1", display(path).replace(' ', "-")))
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    for (path, _) in all_commands() {
        let file = man1.join(format!("{}.1", display(&path).replace(' ', "-")));
        let rendered = groff(&file);
        assert!(rendered.contains("EXAMPLES"), "{}", file.display());
        if path.is_empty() {
            // The program's page lists the others.
            assert!(rendered.contains("plimsoll-reconcile(1)"), "{rendered}");
        } else {
            assert!(rendered.contains("plimsoll(1)"), "{rendered}");
        }
    }
}

#[test]
fn completions_and_man_need_no_config_engine_or_state() {
    // A fresh machine: nothing configured, no engine, a state directory that
    // cannot exist, and a read-only, empty working directory.
    let cwd = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let env = [
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ("PLIMSOLL_STATE_DIR", "/dev/null/state"),
        ("XDG_STATE_HOME", "/dev/null/xdg"),
    ];
    let pages = out_dir.path().join("man1");
    for args in [
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["man"],
        vec!["man", "--dir", pages.to_str().unwrap()],
    ] {
        let out = plimsoll_output(cwd.path(), &args, &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
    assert!(pages.join("plimsoll.1").is_file());
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}
