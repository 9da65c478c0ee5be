//! The test command and its provisioning agree: the README gives the test
//! command `.ci/run` runs (`TEST_CMD`), and `scripts/test.sh`, that command,
//! installs every Debian package a test names as its precondition (in an
//! `apt-get install ...` hint, or in `require` / `require_on_path` of
//! `gitserve.rs`), so that a test never fails or skips on a machine the
//! script provisioned.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The words of the shell array `NAME=(...)` in `script` (comments and
/// line breaks inside it allowed).
fn shell_array(script: &str, name: &str) -> Vec<String> {
    let start = script
        .find(&format!("\n{name}=("))
        .unwrap_or_else(|| panic!("no {name}=( in the script"))
        + name.len()
        + 3;
    let end = start + script[start..].find(')').expect("the array's `)`");
    script[start..end]
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_gives_the_test_command_ci_runs() {
    let cmd = shell_array(&read(".ci/run"), "TEST_CMD").join(" ");
    assert_eq!(cmd, "scripts/test.sh", "the test step of .ci/run");
    let readme = read("README.md");
    assert!(
        readme
            .lines()
            .any(|l| l.split(" #").next().unwrap_or("").trim() == cmd),
        "README.md has no line giving the test command `{cmd}` (alone, or before a `# comment`)"
    );
    assert!(
        Path::new(&repo_root().join(&cmd)).is_file(),
        "{cmd} is not in the repository"
    );
}

/// Whether `name` can be a Debian package name.
fn is_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Debian package names after each `apt-get install ` in `text`.
fn apt_hints(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("apt-get install ") {
        for word in text[at + "apt-get install ".len()..].split_whitespace() {
            let name = word.trim_end_matches([',', ';', ':', '.', ')', '`']);
            if !is_package_name(name) {
                break;
            }
            found.push(name.to_string());
            if name.len() != word.len() {
                break;
            }
        }
    }
    found
}

/// The package argument (the last string literal) of each
/// `require(...)` / `require_on_path(...)` call in `text`.
fn required_packages(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for call in ["require(", "require_on_path("] {
        for (at, _) in text.match_indices(call) {
            let args = &text[at + call.len()..];
            let args = &args[..args.find(')').unwrap_or(args.len())];
            let literals: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
            if let Some(package) = literals.last()
                && is_package_name(package)
            {
                found.push(package.to_string());
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn scripts_test_sh_installs_every_package_a_test_needs() {
    let installed: BTreeSet<String> = shell_array(&read("scripts/test.sh"), "APT_PACKAGES")
        .into_iter()
        .collect();
    let mut files = Vec::new();
    rust_files(&repo_root().join("tests/it"), &mut files);
    files.retain(|f| !f.ends_with("tests/it/ci.rs"));
    let mut needed = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for package in apt_hints(&text).into_iter().chain(required_packages(&text)) {
            needed.insert((package, file.strip_prefix(repo_root()).unwrap().to_owned()));
        }
    }
    // The parsers find what they should (else this test would check nothing).
    let names: BTreeSet<&str> = needed.iter().map(|(p, _)| p.as_str()).collect();
    for known in [
        "docker-registry",
        "apache2-utils",
        "lighttpd",
        "openssh-client",
        "gnupg",
    ] {
        assert!(names.contains(known), "{known} not found among {names:?}");
    }
    let missing: Vec<String> = needed
        .iter()
        .filter(|(p, _)| !installed.contains(p))
        .map(|(p, f)| format!("{p} ({})", f.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "tests name packages scripts/test.sh does not install: {missing:?}\ninstalled: {installed:?}"
    );
}

#[test]
fn apt_hints_parse_package_lists() {
    assert_eq!(
        apt_hints("x (apt-get install iproute2 util-linux, and a Docker engine)"),
        ["iproute2", "util-linux"]
    );
    assert_eq!(
        apt_hints("`apt-get install {package}` and apt-get install docker-registry); y"),
        ["docker-registry"]
    );
    assert_eq!(
        required_packages(r#"require_on_path("gpg", "gnupg"); require(lighttpd, "lighttpd");"#),
        ["lighttpd", "gnupg"]
    );
}
