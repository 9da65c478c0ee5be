//! Malformed input: every broken file, rule violation and bad command line
//! exits 1 with a message naming the file, line and key, and a hint that says
//! what to do; nothing panics, nothing hangs.
//!
//! Every case goes through [`case`]: it writes the files into a temporary
//! directory, runs the real `plimsoll` binary there with a clean environment,
//! checks the invariants every error shares (exit 1, empty stdout, no panic,
//! one `hint:` per error, the error count), checks that stderr names the
//! expected places, and snapshots stderr.
//!
//! No case measures wall-clock time (a loaded machine would fail it, a late
//! answer would pass it). Pathological inputs are bounded by the work they may
//! cost instead: each error names the budget that stopped it (alias nodes,
//! nesting depth), and every run gets [`CPU_BUDGET_SECS`] of CPU time
//! (`prlimit --cpu`, which counts work done, whatever else the machine runs),
//! enough for the largest linear case many times over and far too little for
//! a quadratic one. A wall-clock limit of [`HANG_GUARD`] only stops a hang.

use std::fs;
use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// CPU seconds one run may use: `yaml_duplicate_key_in_a_huge_mapping` uses
/// about 2.5 (a debug build), a quadratic duplicate check there over 50.
const CPU_BUDGET_SECS: u32 = 20;

/// Wall-clock time after which a run is taken for a hang (blocked, not
/// computing: the CPU budget stops computing).
const HANG_GUARD: Duration = Duration::from_secs(300);

/// What one run of the binary gave.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    /// stderr with the temporary directory replaced by `[DIR]`.
    stderr: String,
}

/// Writes `files` (paths relative to a fresh temporary directory) and runs
/// `plimsoll ARGS` in that directory with only PATH and HOME set, within
/// [`CPU_BUDGET_SECS`] of CPU time.
fn run(files: &[(&str, &[u8])], args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (path, bytes) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().expect("a file has a parent"))
            .expect("create parent directory");
        fs::write(&p, bytes).expect("write test file");
    }
    let mut child = Command::new("prlimit")
        .arg(format!("--cpu={CPU_BUDGET_SECS}:{}", CPU_BUDGET_SECS + 5))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_plimsoll"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plimsoll under prlimit (util-linux)");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("read the output");
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for plimsoll") {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "plimsoll {args:?} hangs: still running after {HANG_GUARD:?} without using its CPU budget"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    // SIGXCPU at the soft limit, SIGKILL at the hard one.
    if let Some(signal) = status
        .signal()
        .filter(|s| [libc::SIGXCPU, libc::SIGKILL].contains(s))
    {
        panic!(
            "plimsoll {args:?} used its {CPU_BUDGET_SECS} s CPU budget (signal {signal}): \
             an input cost that grows faster than its size?\nstderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    }
    let scrub = |bytes: &[u8]| {
        let mut s = String::from_utf8_lossy(bytes).into_owned();
        let canonical = fs::canonicalize(dir.path()).expect("canonical temporary directory");
        for p in [canonical.as_path(), dir.path()] {
            s = s.replace(&*p.to_string_lossy(), "[DIR]");
        }
        s
    };
    Outcome {
        code: status.code(),
        stdout: scrub(&stdout),
        stderr: scrub(&stderr),
    }
}

/// Runs a case that must fail to load, checks what every such failure
/// shares, checks that stderr contains each of `expect` (file:line:col, key,
/// words of the message), and snapshots stderr as `name`.
#[track_caller]
fn case(name: &str, files: &[(&str, &[u8])], args: &[&str], expect: &[&str]) -> Outcome {
    let o = run(files, args);
    let err = &o.stderr;
    assert_eq!(o.code, Some(1), "{name}: exit code\nstderr:\n{err}");
    assert!(
        o.stdout.is_empty(),
        "{name}: stdout must be empty, got:\n{}",
        o.stdout
    );
    assert!(
        !err.contains("panicked") && !err.contains("overflowed its stack"),
        "{name}: crashed:\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    let errors: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("error: "))
        .collect();
    assert!(!errors.is_empty(), "{name}: no `error:` line:\n{err}");
    for i in &errors {
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("  hint: ")),
            "{name}: an error without a hint:\n{}\n--- all of stderr:\n{err}",
            lines[*i]
        );
    }
    let count = errors.len();
    let summary = format!("{count} error{} found", if count == 1 { "" } else { "s" });
    assert_eq!(
        lines.last().copied(),
        Some(summary.as_str()),
        "{name}: summary line\n{err}"
    );
    for e in expect {
        assert!(
            err.contains(e),
            "{name}: stderr does not contain {e:?}:\n{err}"
        );
    }
    insta::assert_snapshot!(name, err);
    o
}

/// A stack directory `shop/` holding `compose.yaml`, validated.
#[track_caller]
fn compose(name: &str, yaml: &str, expect: &[&str]) -> Outcome {
    case(
        name,
        &[("shop/compose.yaml", yaml.as_bytes())],
        &["validate", "shop"],
        expect,
    )
}

/// A repository: `plimsoll.yaml` and `stacks/shop/compose.yaml`, validated.
#[track_caller]
fn repo(name: &str, config: &str, yaml: &str, expect: &[&str]) -> Outcome {
    case(
        name,
        &[
            ("plimsoll.yaml", config.as_bytes()),
            ("stacks/shop/compose.yaml", yaml.as_bytes()),
        ],
        &["validate", "."],
        expect,
    )
}

/// How many `error:` lines stderr holds.
fn error_count(o: &Outcome) -> usize {
    o.stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .count()
}

const F: &str = "shop/compose.yaml";

// ---------------------------------------------------------------------------
// YAML

#[test]
fn yaml_bad_indentation() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n   ports:\n      - \"8080:80\"\n";
    compose(
        "yaml_bad_indentation",
        yaml,
        &["shop/compose.yaml:4:", "invalid YAML"],
    );
}

#[test]
fn yaml_unterminated_double_quote_names_the_opening_line() {
    let yaml = "services:\n  web:\n    image: \"nginx:1.27\n    restart: always\n    ports:\n      - 8080:80\n";
    compose(
        "yaml_unterminated_double_quote",
        yaml,
        &["shop/compose.yaml:3:12:", "quoted scalar"],
    );
}

#[test]
fn yaml_unterminated_single_quote_names_the_opening_line() {
    let yaml =
        "services:\n  web:\n    image: nginx:1.27\n    command: 'echo hello\n    restart: always\n";
    compose(
        "yaml_unterminated_single_quote",
        yaml,
        &["shop/compose.yaml:4:14:", "quoted scalar"],
    );
}

#[test]
fn yaml_unterminated_quote_after_quotes_in_a_block_scalar() {
    // The quotes inside the block scalar and the plain scalar are text, not
    // quoting: the open quote is the one on line 8.
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    command: |\n      sh -c \"echo it's\n    environment:\n      GREETING: it 's fine\n      OTHER: \"unterminated\n    restart: always\n";
    compose(
        "yaml_unterminated_quote_after_block_scalar",
        yaml,
        &["shop/compose.yaml:8:14:", "quoted scalar"],
    );
}

#[test]
fn yaml_unterminated_quote_in_flow_sequence() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\", \"9090:90]\n    restart: always\n";
    compose(
        "yaml_unterminated_quote_in_flow_sequence",
        yaml,
        &["shop/compose.yaml:4:24:", "quoted scalar"],
    );
}

#[test]
fn yaml_tab_indentation() {
    let yaml = "services:\n  web:\n\timage: nginx:1.27\n";
    compose(
        "yaml_tab_indentation",
        yaml,
        &["shop/compose.yaml:3:", "invalid YAML"],
    );
}

#[test]
fn yaml_unclosed_flow_sequence() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\", \"9090:90\"\n    restart: always\n";
    compose(
        "yaml_unclosed_flow_sequence",
        yaml,
        &["shop/compose.yaml:", "invalid YAML"],
    );
}

#[test]
fn yaml_unclosed_flow_mapping() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    labels: {team: shop, tier: web\n    restart: always\n";
    compose(
        "yaml_unclosed_flow_mapping",
        yaml,
        &["shop/compose.yaml:", "invalid YAML"],
    );
}

#[test]
fn yaml_duplicate_top_level_key() {
    let yaml =
        "services:\n  web:\n    image: nginx:1.27\nservices:\n  db:\n    image: postgres:16\n";
    compose(
        "yaml_duplicate_top_level_key",
        yaml,
        &[
            "shop/compose.yaml:4:1: services:",
            "first defined at line 1",
        ],
    );
}

#[test]
fn yaml_duplicate_nested_key() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    environment:\n      A: \"1\"\n      B: \"2\"\n      A: \"3\"\n";
    compose(
        "yaml_duplicate_nested_key",
        yaml,
        &["shop/compose.yaml:7:7:", "duplicate key `A`", "line 5"],
    );
}

#[test]
fn yaml_alias_bomb_fails_fast() {
    let mut yaml = String::from(
        "x-a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for level in b'b'..=b'j' {
        let (cur, prev) = (level as char, (level - 1) as char);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("x-{cur}: &{cur} [{refs}]\n"));
    }
    yaml.push_str("services:\n  web:\n    image: nginx:1.27\n");
    // 9^10 nodes if expanded: the node budget stops it (and the CPU budget of `run` holds).
    compose(
        "yaml_alias_bomb",
        &yaml,
        &[
            "shop/compose.yaml:",
            "aliases expand to more than 1000000 nodes",
        ],
    );
}

#[test]
fn yaml_deep_nesting_does_not_overflow_the_stack() {
    let depth = 100_000;
    let yaml = format!(
        "services:\n  web:\n    image: nginx:1.27\nx-deep: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    // The depth budget stops it, not the stack.
    compose(
        "yaml_deep_nesting",
        &yaml,
        &[
            "shop/compose.yaml:4:",
            "nested too deeply (recursion limit exceeded)",
        ],
    );
}

#[test]
fn yaml_duplicate_key_in_a_huge_mapping_fails_fast() {
    // 100,000 keys merged into a mapping and 100,000 written in it (2.9 MB,
    // under the 4 MiB file limit): finding the duplicate at the end must not
    // compare every key with every other. Linear, this costs about 2.5 s of
    // CPU (a debug build); quadratic, 2 * 10^10 comparisons, far over the CPU
    // budget of `run`.
    let n = 100_000;
    let mut yaml = String::from("x-big: &big\n");
    for i in 0..n {
        yaml.push_str(&format!("  m{i}: v\n"));
    }
    yaml.push_str("services:\n  web:\n    image: nginx:1.27\n    labels:\n      <<: *big\n");
    for i in 0..n {
        yaml.push_str(&format!("      k{i}: v\n"));
    }
    yaml.push_str("      k7: again\n");
    let line = format!("shop/compose.yaml:{}:7: services.web.labels.k7:", 2 * n + 7);
    compose(
        "yaml_duplicate_key_in_huge_mapping",
        &yaml,
        &[&line, &format!("first defined at line {}", n + 14)],
    );
}

#[test]
fn yaml_alias_to_undefined_anchor() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    environment: *common_env\n";
    compose(
        "yaml_alias_to_undefined_anchor",
        yaml,
        &["shop/compose.yaml:4:18:", "anchor"],
    );
}

#[test]
fn yaml_merge_key_with_a_scalar() {
    let yaml =
        "x-image: &image nginx:1.27\nservices:\n  web:\n    <<: *image\n    restart: always\n";
    compose(
        "yaml_merge_key_with_scalar",
        yaml,
        &["shop/compose.yaml:4:9:", "<<"],
    );
}

#[test]
fn yaml_merge_key_with_a_list_of_scalars() {
    let yaml = "services:\n  web:\n    <<: [a, b]\n    image: nginx:1.27\n";
    compose(
        "yaml_merge_key_with_list_of_scalars",
        yaml,
        &["shop/compose.yaml:3:10:", "<<"],
    );
}

#[test]
fn yaml_complex_mapping_key() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    labels:\n      ? [a, b]\n      : c\n";
    compose(
        "yaml_complex_mapping_key",
        yaml,
        &["shop/compose.yaml:5:9:", "scalar"],
    );
}

#[test]
fn yaml_unsupported_tag() {
    // `!reset` and `!override` are Compose's merge tags (see compose_files); others are refused.
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports: !custom []\n";
    compose(
        "yaml_unsupported_tag",
        yaml,
        &["shop/compose.yaml:4:12:", "!custom"],
    );
}

#[test]
fn yaml_multiple_documents() {
    let yaml =
        "services:\n  web:\n    image: nginx:1.27\n---\nservices:\n  db:\n    image: postgres:16\n";
    compose(
        "yaml_multiple_documents",
        yaml,
        &["shop/compose.yaml:4:1:", "more than one YAML document"],
    );
}

#[test]
fn yaml_not_utf8_names_line_and_column() {
    let bytes: &[u8] = b"services:\n  web:\n    image: ngi\xffnx\n";
    case(
        "yaml_not_utf8",
        &[(F, bytes)],
        &["validate", "shop"],
        &["shop/compose.yaml:3:15:", "UTF-8"],
    );
}

#[test]
fn yaml_control_character() {
    let yaml = "services:\n  web:\n    image: nginx\u{1}:1.27\n";
    compose("yaml_control_character", yaml, &["shop/compose.yaml:3:"]);
}

#[test]
fn yaml_empty_file() {
    compose("yaml_empty_file", "", &["shop/compose.yaml:1:1:", "empty"]);
}

#[test]
fn yaml_only_comments() {
    compose(
        "yaml_only_comments",
        "# services:\n#   web:\n#     image: nginx\n",
        &["shop/compose.yaml:1:1:", "empty"],
    );
}

#[test]
fn yaml_top_level_not_a_mapping() {
    compose(
        "yaml_top_level_list",
        "- web\n- db\n",
        &["shop/compose.yaml:1:1:", "mapping"],
    );
}

#[test]
fn yaml_services_not_a_mapping() {
    compose(
        "yaml_services_list",
        "services:\n  - web\n  - db\n",
        &["shop/compose.yaml:2:3: services:", "mapping"],
    );
}

#[test]
fn yaml_service_not_a_mapping() {
    compose(
        "yaml_service_string",
        "services:\n  web: nginx:1.27\n",
        &["shop/compose.yaml:2:8: services.web:", "mapping"],
    );
}

// ---------------------------------------------------------------------------
// Compose keys

#[test]
fn compose_unknown_key_suggests_the_right_one() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    enviroment:\n      A: \"1\"\n";
    compose(
        "compose_unknown_key_typo",
        yaml,
        &[
            "shop/compose.yaml:4:5: services.web.enviroment:",
            "did you mean `environment`?",
        ],
    );
}

#[test]
fn compose_unknown_top_level_key() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\nnetwroks:\n  front: {}\n";
    compose(
        "compose_unknown_top_level_key",
        yaml,
        &[
            "shop/compose.yaml:4:1: netwroks:",
            "did you mean `networks`?",
        ],
    );
}

#[test]
fn compose_unknown_key_without_suggestion() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    colour: blue\n";
    compose(
        "compose_unknown_key_no_suggestion",
        yaml,
        &["shop/compose.yaml:4:5: services.web.colour:", "x-"],
    );
}

#[test]
fn build_remote_context_is_not_supported() {
    let yaml =
        "services:\n  web:\n    build:\n      context: https://github.com/example/web.git#main\n";
    compose(
        "build_remote_context_is_not_supported",
        yaml,
        &[
            "shop/compose.yaml:4:16: services.web.build.context:",
            "not supported",
        ],
    );
}

#[test]
fn build_context_missing() {
    let yaml = "services:\n  web:\n    build: ./web\n";
    compose(
        "build_context_missing",
        yaml,
        &[
            "shop/compose.yaml:3:12: services.web.build.context:",
            "does not exist",
        ],
    );
}

#[test]
fn build_dockerfile_missing() {
    let yaml =
        "services:\n  web:\n    build:\n      context: .\n      dockerfile: web.Dockerfile\n";
    compose(
        "build_dockerfile_missing",
        yaml,
        &[
            "shop/compose.yaml:5:19: services.web.build.dockerfile:",
            "web.Dockerfile does not exist",
        ],
    );
}

#[test]
fn build_unsupported_and_unknown_keys() {
    let yaml = "services:\n  web:\n    build:\n      contxt: .\n      ssh: [default]\n      dockerfile_inline: FROM scratch\n";
    let o = compose(
        "build_unsupported_and_unknown_keys",
        yaml,
        &[
            "shop/compose.yaml:4:7: services.web.build.contxt:",
            "did you mean `context`?",
            "shop/compose.yaml:5:7: services.web.build.ssh:",
            "BuildKit",
        ],
    );
    assert_eq!(error_count(&o), 2);
}

#[test]
fn build_wrong_shapes() {
    let yaml = "services:\n  web:\n    build: [.]\n  api:\n    build:\n      dockerfile: a\n      dockerfile_inline: FROM scratch\n  worker:\n    build:\n      dockerfile_inline: FROM scratch\n      extra_hosts: [\"a:10.0.0.1\", \"b:10.0.0.2\"]\n";
    let o = compose(
        "build_wrong_shapes",
        yaml,
        &[
            "shop/compose.yaml:3:12: services.web.build:",
            "expected a context path or a mapping",
            "shop/compose.yaml:6:19: services.api.build.dockerfile:",
            "both set",
            "shop/compose.yaml:11:20: services.worker.build.extra_hosts:",
        ],
    );
    assert_eq!(error_count(&o), 3);
}

#[test]
fn build_pull_policy_always_needs_an_image() {
    let yaml = "services:\n  web:\n    build:\n      dockerfile_inline: FROM scratch\n    pull_policy: always\n";
    compose(
        "build_pull_policy_always_needs_an_image",
        yaml,
        &[
            "shop/compose.yaml:5:5: services.web.pull_policy:",
            "names none",
        ],
    );
}

#[test]
fn gpus_and_device_requests_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    gpus: some\n  api:\n    image: nginx:1.27\n    gpus:\n      - count: 2\n        device_ids: [\"0\"]\n      - count: -2\n  job:\n    image: nginx:1.27\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - count: 1\n";
    compose(
        "gpus_and_device_requests_invalid",
        yaml,
        &[
            "shop/compose.yaml:4:11: services.web.gpus: invalid gpus `some`",
            "shop/compose.yaml:8:16: services.api.gpus[0].count: `count` and `device_ids` are both set",
            "shop/compose.yaml:10:16: services.api.gpus[1].count: invalid count `-2`",
            "services.job.deploy.resources.reservations.devices[0]: a device reservation needs `capabilities`",
        ],
    );
}

#[test]
fn blkio_config_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    blkio_config:\n      weight: 5\n      weight_device:\n        - path: /dev/sda\n      device_read_bps:\n        - path: /dev/sda\n          rate: fast\n      device_write_iopz: []\n";
    compose(
        "blkio_config_invalid",
        yaml,
        &[
            "shop/compose.yaml:5:15: services.web.blkio_config.weight: block I/O weight `5` is out of range",
            "services.web.blkio_config.weight_device[0]: needs `path:` and `weight:`",
            "services.web.blkio_config.device_read_bps[0].rate: invalid size `fast`",
            "services.web.blkio_config.device_write_iopz: unknown key `device_write_iopz`",
            "did you mean `device_write_iops`?",
        ],
    );
}

#[test]
fn pull_policy_refresh_without_a_period() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    pull_policy: refresh\n  api:\n    image: nginx:1.27\n    pull_policy: every_12x\n";
    compose(
        "pull_policy_refresh_without_a_period",
        yaml,
        &[
            "shop/compose.yaml:4:18: services.web.pull_policy: `pull_policy: refresh` names no period",
            "use daily, weekly or every_<duration>",
            "shop/compose.yaml:7:18: services.api.pull_policy: invalid pull_policy `every_12x`",
        ],
    );
}

#[test]
fn hook_without_command() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    post_start:\n      - user: root\n    pre_stop:\n      - command: []\n";
    compose(
        "hook_without_command",
        yaml,
        &[
            "shop/compose.yaml:5:9: services.web.post_start[0]:",
            "a hook needs `command:`",
            "shop/compose.yaml:7:18: services.web.pre_stop[0].command:",
            "the hook's command is empty",
        ],
    );
}

#[test]
fn hook_unknown_key_and_bad_values() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    post_start:\n      - command: echo hi\n        workdir: /tmp\n        privileged: maybe\n      - echo hi\n    pre_stop:\n      command: [echo, bye]\n";
    compose(
        "hook_unknown_key_and_bad_values",
        yaml,
        &[
            "shop/compose.yaml:6:9: services.web.post_start[0].workdir:",
            "did you mean `working_dir`?",
            "shop/compose.yaml:7:21: services.web.post_start[0].privileged:",
            "shop/compose.yaml:8:9: services.web.post_start[1]:",
            "shop/compose.yaml:10:7: services.web.pre_stop:",
        ],
    );
}

// -- namespaces, devices, limits, links (the remaining Compose service keys) --

#[test]
fn network_mode_with_networks() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    network_mode: host\n    networks: [front]\nnetworks:\n  front: {}\n";
    compose(
        "network_mode_with_networks",
        yaml,
        &[
            "shop/compose.yaml:5:5: services.web.networks:",
            "cannot be used with `network_mode: host`",
        ],
    );
}

#[test]
fn network_mode_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    network_mode: front\n";
    compose(
        "network_mode_invalid",
        yaml,
        &[
            "shop/compose.yaml:4:19: services.web.network_mode:",
            "invalid network_mode `front`",
            "networks:",
        ],
    );
}

#[test]
fn network_mode_service_with_ports_and_hostname() {
    let yaml = "services:\n  db:\n    image: postgres:16\n  web:\n    image: nginx:1.27\n    network_mode: service:db\n    ports: [\"8080:80\"]\n    hostname: web\n";
    let o = compose(
        "network_mode_service_with_ports_and_hostname",
        yaml,
        &[
            "shop/compose.yaml:7:5: services.web.ports:",
            "shop/compose.yaml:8:5: services.web.hostname:",
            "network stack of `db`",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn network_mode_undefined_service() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    network_mode: \"service:proxy\"\n";
    compose(
        "network_mode_undefined_service",
        yaml,
        &[
            "shop/compose.yaml:4:5: services.web.network_mode:",
            "`network_mode` names undefined service `proxy`",
        ],
    );
}

#[test]
fn links_and_volumes_from_undefined_services() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    links: [\"db:database\"]\n    volumes_from: [data]\n";
    let o = compose(
        "links_and_volumes_from_undefined_services",
        yaml,
        &[
            "shop/compose.yaml:4:5: services.web.links:",
            "`links` names undefined service `db`",
            "shop/compose.yaml:5:5: services.web.volumes_from:",
            "`volumes_from` names undefined service `data`",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn links_from_the_default_bridge() {
    let yaml = "services:\n  db:\n    image: postgres:16\n  web:\n    image: nginx:1.27\n    network_mode: bridge\n    links: [db]\n";
    compose(
        "links_from_the_default_bridge",
        yaml,
        &[
            "shop/compose.yaml:7:5: services.web.links:",
            "not on the default bridge",
        ],
    );
}

#[test]
fn namespace_modes_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ipc: sharable\n    pid: private\n    cgroup: shared\n    uts: \"service:db\"\n";
    let o = compose(
        "namespace_modes_invalid",
        yaml,
        &[
            "shop/compose.yaml:4:10: services.web.ipc:",
            "invalid ipc `sharable`",
            "shop/compose.yaml:5:10: services.web.pid:",
            "shop/compose.yaml:6:13: services.web.cgroup:",
            "shop/compose.yaml:7:10: services.web.uts:",
        ],
    );
    assert_eq!(error_count(&o), 4, "{}", o.stderr);
}

#[test]
fn devices_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    devices:\n      - /dev/a:/dev/b:rwx\n      - /dev/a:/dev/b:rw:extra\n      - /dev/a:relative\n      - source: /dev/c\n";
    let o = compose(
        "devices_invalid",
        yaml,
        &[
            "shop/compose.yaml:5:9: services.web.devices[0]:",
            "invalid device permissions `rwx`",
            "shop/compose.yaml:6:9: services.web.devices[1]:",
            "shop/compose.yaml:7:9: services.web.devices[2]:",
            "must be absolute",
            "shop/compose.yaml:8:9: services.web.devices[3]:",
            "`target:`",
        ],
    );
    assert_eq!(error_count(&o), 4, "{}", o.stderr);
}

#[test]
fn sysctls_and_storage_opt_wrong_type() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    sysctls: net.core.somaxconn=1024\n    storage_opt: 10G\n";
    let o = compose(
        "sysctls_and_storage_opt_wrong_type",
        yaml,
        &[
            "shop/compose.yaml:4:14: services.web.sysctls:",
            "shop/compose.yaml:5:18: services.web.storage_opt:",
            "a mapping or a list of KEY=value",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn legacy_limits_out_of_range() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    oom_score_adj: 2000\n    mem_swappiness: 101\n    cpu_shares: lots\n    memswap_limit: 1q\n    shm_size: big\n";
    let o = compose(
        "legacy_limits_out_of_range",
        yaml,
        &[
            "shop/compose.yaml:4:20: services.web.oom_score_adj:",
            "from -1000 to 1000",
            "shop/compose.yaml:5:21: services.web.mem_swappiness:",
            "from 0 to 100",
            "shop/compose.yaml:6:17: services.web.cpu_shares:",
            "shop/compose.yaml:7:20: services.web.memswap_limit:",
            "shop/compose.yaml:8:15: services.web.shm_size:",
        ],
    );
    assert_eq!(error_count(&o), 5, "{}", o.stderr);
}

#[test]
fn cpus_conflicts() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    cpus: 1.5\n    cpu_quota: 50000\n    pids_limit: 10\n    deploy:\n      resources:\n        limits:\n          cpus: \"2\"\n          pids: 20\n";
    let o = compose(
        "cpus_conflicts",
        yaml,
        &[
            "shop/compose.yaml:5:5: services.web.cpu_quota:",
            "cannot be combined with `cpus`",
            "shop/compose.yaml:4:5: services.web.cpus:",
            "shop/compose.yaml:6:5: services.web.pids_limit:",
            "different values",
        ],
    );
    assert_eq!(error_count(&o), 3, "{}", o.stderr);
}

#[test]
fn volumes_from_invalid_mode() {
    let yaml = "services:\n  data:\n    image: busybox\n  web:\n    image: nginx:1.27\n    volumes_from: [\"data:rx\", \"container:\"]\n";
    let o = compose(
        "volumes_from_invalid_mode",
        yaml,
        &[
            "shop/compose.yaml:6:20: services.web.volumes_from[0]:",
            "invalid volumes_from `data:rx`",
            "services.web.volumes_from[1]:",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn label_file_missing() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    label_file: ./web.labels\n";
    compose(
        "label_file_missing",
        yaml,
        &[
            "shop/compose.yaml:4:17: services.web.label_file:",
            "web.labels not found",
        ],
    );
}

#[test]
fn seccomp_profile_missing_and_not_json() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    security_opt: [\"seccomp=./none.json\"]\n  api:\n    image: nginx:1.27\n    security_opt: [\"seccomp:./bad.json\"]\n";
    let o = case(
        "seccomp_profile_missing_and_not_json",
        &[(F, yaml.as_bytes()), ("shop/bad.json", b"{not json")],
        &["validate", "shop"],
        &[
            "shop/compose.yaml:4:5: services.web.security_opt:",
            "none.json not found",
            "shop/compose.yaml:7:5: services.api.security_opt:",
            "bad.json is not JSON",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn network_ipam_invalid() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    networks: [back]\nnetworks:\n  back:\n    ipam:\n      config:\n        - subnet: 172.28.0.0\n          gateway: 172.28.0.300\n          ip_rnage: 172.28.5.0/24\n    enable_ipv4: false\n";
    let o = compose(
        "network_ipam_invalid",
        yaml,
        &[
            "shop/compose.yaml:9:19: networks.back.ipam.config[0].subnet:",
            "invalid subnet `172.28.0.0`",
            "shop/compose.yaml:10:20: networks.back.ipam.config[0].gateway:",
            "shop/compose.yaml:11:11: networks.back.ipam.config[0].ip_rnage:",
            "did you mean `ip_range`?",
            "shop/compose.yaml:12:5: networks.back.enable_ipv4:",
            "not supported",
        ],
    );
    assert_eq!(error_count(&o), 4, "{}", o.stderr);
}

#[test]
fn compose_replicas_conflicts() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    scale: 2\n    deploy:\n      replicas: 3\n  api:\n    image: nginx:1.27\n    container_name: the-api\n    deploy:\n      replicas: 2\n  front:\n    image: nginx:1.27\n    scale: 2\n    ports: [\"8080:80\"]\n  neg:\n    image: nginx:1.27\n    scale: -1\n";
    let o = compose(
        "compose_replicas_conflicts",
        yaml,
        &[
            "shop/compose.yaml:4:5: services.web.scale:",
            "`scale: 2` and `deploy.replicas: 3` have different values",
            "shop/compose.yaml:9:5: services.api.container_name:",
            "cannot be used with 2 replicas",
            "shop/compose.yaml:15:5: services.front.ports:",
            "published port 8080 cannot be bound by 2 replicas",
            "shop/compose.yaml:18:12: services.neg.scale:",
            "must be 0 or more",
        ],
    );
    assert_eq!(error_count(&o), 4, "{}", o.stderr);
}

#[test]
fn compose_unsupported_develop() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n";
    compose(
        "compose_unsupported_develop",
        yaml,
        &[
            "shop/compose.yaml:4:5: services.web.develop:",
            "not supported",
        ],
    );
}

#[test]
fn compose_x_plimsoll_unknown_field() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    x-plimsoll:\n      self_heel: true\n";
    compose(
        "compose_x_plimsoll_unknown_field",
        yaml,
        &[
            "shop/compose.yaml:5:7: services.web.x-plimsoll.self_heel:",
            "self_heel",
        ],
    );
}

#[test]
fn compose_x_plimsoll_wrong_type() {
    let yaml =
        "services:\n  web:\n    image: nginx:1.27\n    x-plimsoll:\n      health_timeout: soon\n";
    compose(
        "compose_x_plimsoll_wrong_type",
        yaml,
        &[
            "shop/compose.yaml:5:23: services.web.x-plimsoll.health_timeout:",
            "soon",
        ],
    );
}

#[test]
fn compose_missing_required_variable() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    environment:\n      DEPLOYMENT_ENV: ${DEPLOYMENT_ENV:?Must set DEPLOYMENT_ENV=prd in .env}\n";
    compose(
        "compose_missing_required_variable",
        yaml,
        &[
            "shop/compose.yaml:5:23: services.web.environment.DEPLOYMENT_ENV:",
            "DEPLOYMENT_ENV",
            "Must set DEPLOYMENT_ENV=prd in .env",
        ],
    );
}

#[test]
fn compose_invalid_template_unclosed() {
    let yaml = "services:\n  web:\n    image: \"nginx:${\"\n";
    compose(
        "compose_invalid_template_unclosed",
        yaml,
        &[
            "shop/compose.yaml:3:12: services.web.image:",
            "Invalid template",
        ],
    );
}

#[test]
fn compose_invalid_template_bad_operator() {
    let yaml = "services:\n  web:\n    image: nginx:${TAG:x}\n";
    compose(
        "compose_invalid_template_bad_operator",
        yaml,
        &[
            "shop/compose.yaml:3:12: services.web.image:",
            "Invalid template",
        ],
    );
}

#[test]
fn dotenv_key_with_space() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  web:\n    image: nginx:${TAG}\n"),
        ("shop/.env", b"TAG=1.27\nMY KEY=value\n"),
    ];
    case(
        "dotenv_key_with_space",
        files,
        &["validate", "shop"],
        &["shop/.env:2:1:"],
    );
}

#[test]
fn dotenv_unterminated_quote() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  web:\n    image: nginx:${TAG}\n"),
        ("shop/.env", b"# the tag\nTAG=\"1.27\nOTHER=x\n"),
    ];
    case(
        "dotenv_unterminated_quote",
        files,
        &["validate", "shop"],
        &["shop/.env:2:1:", "unterminated"],
    );
}

#[test]
fn dotenv_not_utf8() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  web:\n    image: nginx:${TAG}\n"),
        ("shop/.env", b"TAG=1.27\nNAME=caf\xe9\n"),
    ];
    case(
        "dotenv_not_utf8",
        files,
        &["validate", "shop"],
        &["shop/.env:2:9:", "UTF-8"],
    );
}

#[test]
fn dotenv_invalid_template() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  web:\n    image: nginx:${TAG}\n"),
        ("shop/.env", b"TAG=1.27\nURL=http://${HOST:x}/\n"),
    ];
    case(
        "dotenv_invalid_template",
        files,
        &["validate", "shop"],
        &["shop/.env:2:1:", "Invalid template"],
    );
}

#[test]
fn env_file_missing() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    env_file: ./web.env\n";
    compose(
        "env_file_missing",
        yaml,
        &["shop/compose.yaml:4:15: services.web.env_file:", "web.env"],
    );
}

#[test]
fn env_file_bad_line() {
    let files: &[(&str, &[u8])] = &[
        (
            F,
            b"services:\n  web:\n    image: nginx:1.27\n    env_file:\n      - ./web.env\n",
        ),
        ("shop/web.env", b"A=1\nB='unterminated\n"),
    ];
    case(
        "env_file_bad_line",
        files,
        &["validate", "shop"],
        &["shop/web.env:2:1:", "services.web.env_file[0]"],
    );
}

#[test]
fn port_out_of_range() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"70000:80\"\n";
    compose(
        "port_out_of_range",
        yaml,
        &["shop/compose.yaml:5:9: services.web.ports[0]:", "70000"],
    );
}

#[test]
fn port_unknown_protocol() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"8080:80/http\"\n";
    compose(
        "port_unknown_protocol",
        yaml,
        &["shop/compose.yaml:5:9: services.web.ports[0]:", "http"],
    );
}

#[test]
fn port_not_a_number() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - a:b\n";
    compose(
        "port_not_a_number",
        yaml,
        &["shop/compose.yaml:5:9: services.web.ports[0]:", "`a:b`"],
    );
}

#[test]
fn port_long_form_invalid_protocol() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - target: 80\n        published: 8080\n        protocol: http\n";
    compose(
        "port_long_form_invalid_protocol",
        yaml,
        &[
            "shop/compose.yaml:7:19: services.web.ports[0].protocol:",
            "http",
        ],
    );
}

#[test]
fn port_long_form_without_target() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - published: 8080\n";
    compose(
        "port_long_form_without_target",
        yaml,
        &["shop/compose.yaml:5:9: services.web.ports[0]:", "target"],
    );
}

#[test]
fn restart_invalid_policy() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    restart: sometimes\n";
    compose(
        "restart_invalid_policy",
        yaml,
        &["shop/compose.yaml:4:14: services.web.restart:", "sometimes"],
    );
}

#[test]
fn duration_without_unit() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    healthcheck:\n      test: wget -q -O- localhost\n      interval: 30\n";
    compose(
        "duration_without_unit",
        yaml,
        &[
            "shop/compose.yaml:6:17: services.web.healthcheck.interval:",
            "`30`",
        ],
    );
}

#[test]
fn duration_unknown_unit() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    stop_grace_period: 1x\n";
    compose(
        "duration_unknown_unit",
        yaml,
        &[
            "shop/compose.yaml:4:24: services.web.stop_grace_period:",
            "`1x`",
        ],
    );
}

#[test]
fn size_unknown_unit() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    mem_limit: 12x\n";
    compose(
        "size_unknown_unit",
        yaml,
        &["shop/compose.yaml:4:16: services.web.mem_limit:", "`12x`"],
    );
}

#[test]
fn depends_on_invalid_condition() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    depends_on:\n      db:\n        condition: service_ready\n  db:\n    image: postgres:16\n";
    compose(
        "depends_on_invalid_condition",
        yaml,
        &[
            "shop/compose.yaml:6:20: services.web.depends_on.db.condition:",
            "service_ready",
        ],
    );
}

#[test]
fn depends_on_unknown_service() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    depends_on:\n      - database\n";
    compose(
        "depends_on_unknown_service",
        yaml,
        &[
            "shop/compose.yaml:5:9: services.web.depends_on:",
            "`database`",
        ],
    );
}

#[test]
fn dependency_cycle_names_every_service() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    depends_on: [api]\n  api:\n    image: shop/api:1\n    depends_on: [worker]\n  worker:\n    image: shop/worker:1\n    depends_on: [web]\n  db:\n    image: postgres:16\n";
    let o = compose(
        "dependency_cycle",
        yaml,
        &["shop/compose.yaml:", "cycle", "`api`", "`web`", "`worker`"],
    );
    assert!(!o.stderr.contains("`db`"), "{}", o.stderr);
}

#[test]
fn dependency_on_itself() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    depends_on: [web]\n";
    compose(
        "dependency_on_itself",
        yaml,
        &["shop/compose.yaml:4:", "services.web.depends_on", "itself"],
    );
}

#[test]
fn undeclared_network() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    networks: [front]\n";
    compose(
        "undeclared_network",
        yaml,
        &["shop/compose.yaml:4:16: services.web.networks:", "`front`"],
    );
}

#[test]
fn undeclared_named_volume() {
    let yaml = "services:\n  db:\n    image: postgres:16\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n";
    compose(
        "undeclared_named_volume",
        yaml,
        &["shop/compose.yaml:5:9: services.db.volumes:", "`pgdata`"],
    );
}

#[test]
fn undeclared_secret() {
    let yaml = "services:\n  db:\n    image: postgres:16\n    secrets:\n      - db_password\n";
    compose(
        "undeclared_secret",
        yaml,
        &[
            "shop/compose.yaml:5:9: services.db.secrets:",
            "`db_password`",
        ],
    );
}

#[test]
fn secret_file_missing() {
    let yaml = "services:\n  db:\n    image: postgres:16\n    secrets: [db_password]\nsecrets:\n  db_password:\n    file: ./db_password.txt\n";
    compose(
        "secret_file_missing",
        yaml,
        &[
            "shop/compose.yaml:7:11: secrets.db_password.file:",
            "db_password.txt",
        ],
    );
}

#[test]
fn secret_file_is_a_directory() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  db:\n    image: postgres:16\n    secrets: [db_password]\nsecrets:\n  db_password:\n    file: ./secrets\n"),
        ("shop/secrets/db_password.txt", b"hunter2-hunter2\n"),
    ];
    case(
        "secret_file_is_a_directory",
        files,
        &["validate", "shop"],
        &["shop/compose.yaml:7:11: secrets.db_password.file:"],
    );
}

#[test]
fn secret_without_a_source() {
    let yaml = "services:\n  db:\n    image: postgres:16\n    secrets: [db_password]\nsecrets:\n  db_password:\n    name: db-password\n";
    compose(
        "secret_without_source",
        yaml,
        &["shop/compose.yaml:7:5: secrets.db_password:", "exactly one"],
    );
}

#[test]
fn secret_reference_without_source() {
    let yaml =
        "services:\n  db:\n    image: postgres:16\n    secrets:\n      - target: /run/secrets/pw\n";
    compose(
        "secret_reference_without_source",
        yaml,
        &["shop/compose.yaml:5:9: services.db.secrets[0]:", "source"],
    );
}

#[test]
fn env_file_is_a_directory() {
    let files: &[(&str, &[u8])] = &[
        (
            F,
            b"services:\n  web:\n    image: nginx:1.27\n    env_file: ./conf\n",
        ),
        ("shop/conf/web.env", b"A=1\n"),
    ];
    case(
        "env_file_is_a_directory",
        files,
        &["validate", "shop"],
        &["shop/compose.yaml:4:15: services.web.env_file:"],
    );
}

#[test]
fn env_file_not_utf8() {
    let files: &[(&str, &[u8])] = &[
        (
            F,
            b"services:\n  web:\n    image: nginx:1.27\n    env_file: [./web.env]\n",
        ),
        ("shop/web.env", b"NAME=caf\xe9\n"),
    ];
    case(
        "env_file_not_utf8",
        files,
        &["validate", "shop"],
        &["shop/compose.yaml:4:16: services.web.env_file[0]:", "UTF-8"],
    );
}

#[test]
fn env_file_entry_without_path() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    env_file:\n      - required: false\n";
    compose(
        "env_file_entry_without_path",
        yaml,
        &["shop/compose.yaml:5:9: services.web.env_file[0]:", "path"],
    );
}

#[test]
fn env_file_unknown_format() {
    let files: &[(&str, &[u8])] = &[
        (F, b"services:\n  web:\n    image: nginx:1.27\n    env_file:\n      - path: ./web.env\n        format: json\n"),
        ("shop/web.env", b"A=1\n"),
    ];
    case(
        "env_file_unknown_format",
        files,
        &["validate", "shop"],
        &[
            "shop/compose.yaml:6:17: services.web.env_file[0].format:",
            "raw",
        ],
    );
}

#[test]
fn volume_long_form_relative_target() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - type: bind\n        source: ./html\n        target: usr/share/nginx/html\n";
    compose(
        "volume_long_form_relative_target",
        yaml,
        &[
            "shop/compose.yaml:7:17: services.web.volumes[0].target:",
            "`usr/share/nginx/html`",
        ],
    );
}

#[test]
fn volume_long_form_without_target() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - type: volume\n        source: data\nvolumes:\n  data: {}\n";
    compose(
        "volume_long_form_without_target",
        yaml,
        &["shop/compose.yaml:5:9: services.web.volumes[0]:", "target"],
    );
}

#[test]
fn bind_mount_without_source() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - type: bind\n        target: /etc/nginx\n";
    compose(
        "bind_mount_without_source",
        yaml,
        &["shop/compose.yaml:5:9: services.web.volumes[0]:", "source"],
    );
}

#[test]
fn healthcheck_negative_retries() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    healthcheck:\n      test: wget -q -O- localhost\n      retries: -3\n";
    compose(
        "healthcheck_negative_retries",
        yaml,
        &[
            "shop/compose.yaml:6:16: services.web.healthcheck.retries:",
            "negative",
        ],
    );
}

#[test]
fn ulimit_without_hard() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ulimits:\n      nofile:\n        soft: 20000\n";
    compose(
        "ulimit_without_hard",
        yaml,
        &[
            "shop/compose.yaml:6:9: services.web.ulimits.nofile:",
            "hard",
        ],
    );
}

#[test]
fn service_key_that_is_not_a_string() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    1: x\n";
    compose(
        "service_key_not_a_string",
        yaml,
        &["shop/compose.yaml:4:5: services.web:", "`1`"],
    );
}

#[test]
fn duplicate_container_name_in_one_stack() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    container_name: front\n  web2:\n    image: nginx:1.27\n    container_name: front\n";
    compose(
        "duplicate_container_name_in_stack",
        yaml,
        &[
            "shop/compose.yaml:7:5: services.web2.container_name:",
            "`front`",
            "shop/web",
        ],
    );
}

#[test]
fn duplicate_container_name_across_stacks() {
    let files: &[(&str, &[u8])] = &[
        ("stacks/blog/compose.yaml", b"services:\n  web:\n    image: nginx:1.27\n    container_name: front\n"),
        ("stacks/shop/compose.yaml", b"services:\n  db:\n    image: postgres:16\n  web:\n    image: nginx:1.27\n    container_name: front\n"),
    ];
    case(
        "duplicate_container_name_across_stacks",
        files,
        &["validate", "."],
        &[
            "stacks/shop/compose.yaml:6:5: services.web.container_name:",
            "blog/web",
        ],
    );
}

#[test]
fn duplicate_stack_name() {
    let files: &[(&str, &[u8])] = &[
        (
            "stacks/blog/compose.yaml",
            b"name: shop\nservices:\n  web:\n    image: nginx:1.27\n",
        ),
        (
            "stacks/shop/compose.yaml",
            b"services:\n  db:\n    image: postgres:16\n",
        ),
    ];
    case(
        "duplicate_stack_name",
        files,
        &["validate", "."],
        &["stacks/", "compose.yaml:", "`shop`"],
    );
}

#[test]
fn service_without_image() {
    let yaml = "services:\n  web:\n    restart: always\n";
    compose(
        "service_without_image",
        yaml,
        &["shop/compose.yaml:2:3: services.web:", "no image"],
    );
}

#[test]
fn invalid_service_name() {
    let yaml = "services:\n  \"my web\":\n    image: nginx:1.27\n";
    compose(
        "invalid_service_name",
        yaml,
        &["shop/compose.yaml:2:3:", "`my web`"],
    );
}

#[test]
fn invalid_project_name() {
    let yaml = "name: Shop\nservices:\n  web:\n    image: nginx:1.27\n";
    compose(
        "invalid_project_name",
        yaml,
        &["shop/compose.yaml:1:7: name:", "`Shop`"],
    );
}

#[test]
fn volume_relative_container_path() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - ./html:usr/share/nginx/html\n      - data:relative/path\nvolumes:\n  data: {}\n";
    let o = compose(
        "volume_relative_container_path",
        yaml,
        &[
            "shop/compose.yaml:5:9: services.web.volumes[0]:",
            "`usr/share/nginx/html`",
            "shop/compose.yaml:6:9: services.web.volumes[1]:",
            "`relative/path`",
        ],
    );
    assert_eq!(error_count(&o), 2);
}

#[test]
fn healthcheck_test_list_without_cmd() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    healthcheck:\n      test: [\"curl\", \"-f\", \"http://localhost\"]\n";
    compose(
        "healthcheck_test_list",
        yaml,
        &[
            "shop/compose.yaml:5:13: services.web.healthcheck.test:",
            "CMD",
        ],
    );
}

#[test]
fn ulimit_soft_above_hard() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    ulimits:\n      nofile:\n        soft: 20000\n        hard: 10000\n";
    compose(
        "ulimit_soft_above_hard",
        yaml,
        &[
            "shop/compose.yaml:6:9: services.web.ulimits.nofile:",
            "soft",
        ],
    );
}

#[test]
fn profiles_enabled_service_depends_on_disabled_one() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    depends_on: [debug]\n  debug:\n    image: busybox:1\n    profiles: [debug]\n";
    compose(
        "profiles_dependency_on_disabled_service",
        yaml,
        &[
            "shop/compose.yaml:4:18: services.web.depends_on:",
            "`debug`",
            "COMPOSE_PROFILES=debug",
        ],
    );
}

#[test]
fn several_errors_in_one_file_are_all_reported() {
    let yaml = "\
name: shop
services:
  web:
    image: nginx:1.27
    enviroment:
      A: \"1\"
    ports:
      - \"70000:80\"
    restart: sometimes
    depends_on: [database]
    healthcheck:
      test: [\"curl\", \"localhost\"]
      interval: 30
  worker:
    develop: {}
    mem_limit: 12x
";
    let o = compose(
        "several_errors",
        yaml,
        &[
            "shop/compose.yaml:5:5:",
            "shop/compose.yaml:8:9:",
            "shop/compose.yaml:9:14:",
            "shop/compose.yaml:10:18:",
            "shop/compose.yaml:12:13:",
            "shop/compose.yaml:13:17:",
            "shop/compose.yaml:15:5:",
            "shop/compose.yaml:16:16:",
            "shop/compose.yaml:14:3:",
        ],
    );
    assert_eq!(error_count(&o), 9, "{}", o.stderr);
}

#[test]
fn errors_in_several_stacks_are_all_reported() {
    let files: &[(&str, &[u8])] = &[
        (
            "stacks/blog/compose.yaml",
            b"services:\n  web:\n    image: nginx:1.27\n    restart: sometimes\n",
        ),
        (
            "stacks/shop/compose.yaml",
            b"services:\n  web:\n    image: \"nginx\n",
        ),
        (
            "stacks/wiki/compose.yaml",
            b"services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80/http\"]\n",
        ),
    ];
    let o = case(
        "errors_in_several_stacks",
        files,
        &["validate", "."],
        &[
            "stacks/blog/compose.yaml:4:14:",
            "stacks/shop/compose.yaml:3:12:",
            "stacks/wiki/compose.yaml:4:13:",
        ],
    );
    assert_eq!(error_count(&o), 3, "{}", o.stderr);
}

// ---------------------------------------------------------------------------
// plimsoll.yaml

const WEB: &str = "services:\n  web:\n    image: nginx:1.27\n    restart: always\n    labels:\n      team: shop\n    ports:\n      - \"8080:80\"\n";

#[test]
fn config_unknown_key() {
    repo(
        "config_unknown_key",
        "polcy:\n  restart: [always]\n",
        WEB,
        &["./plimsoll.yaml:1:1: polcy:", "unknown field"],
    );
}

#[test]
fn config_wrong_type() {
    repo(
        "config_wrong_type",
        "policy:\n  required_labels: team\n",
        WEB,
        &["./plimsoll.yaml:2:20: policy.required_labels:", "list"],
    );
}

#[test]
fn config_invalid_duration() {
    repo(
        "config_invalid_duration",
        "agent:\n  interval: 30\n",
        WEB,
        &["./plimsoll.yaml:2:13: agent.interval:", "`30`"],
    );
}

#[test]
fn config_alerts_out_of_range() {
    let o = repo(
        "config_alerts_out_of_range",
        "alerts:\n  disk: {warn_percent: 95, alert_percent: 150}\n  down_after: 0s\n  crash_loop:\n    restarts: 0\n",
        WEB,
        &[
            "./plimsoll.yaml:2:43: alerts.disk.alert_percent: 150 is not a percentage from 1 to 100",
            "./plimsoll.yaml:3:15: alerts.down_after: 0s is shorter than the least, 1s",
            "./plimsoll.yaml:5:15: alerts.crash_loop.restarts:",
        ],
    );
    assert_eq!(error_count(&o), 3, "{}", o.stderr);
}

#[test]
fn config_alerts_warning_above_the_alert_and_a_bad_size() {
    repo(
        "config_alerts_warning_above_the_alert",
        "alerts:\n  disk:\n    warn_percent: 95\n",
        WEB,
        &[
            "./plimsoll.yaml:3:19: alerts.disk.warn_percent: the warning (95 %) is above the alert (90 %)",
        ],
    );
    repo(
        "config_alerts_bad_size",
        "alerts:\n  reclaimable: 10 gigs\n",
        WEB,
        &[
            "./plimsoll.yaml:2:16: alerts.reclaimable:",
            "invalid size `10 gigs`",
        ],
    );
}

#[test]
fn config_invalid_yaml() {
    repo(
        "config_invalid_yaml",
        "policy:\n  restart: [always\n",
        WEB,
        &["./plimsoll.yaml:", "invalid YAML"],
    );
}

#[test]
fn config_not_utf8() {
    let files: &[(&str, &[u8])] = &[
        ("plimsoll.yaml", b"# caf\xe9\n"),
        ("stacks/shop/compose.yaml", WEB.as_bytes()),
    ];
    case(
        "config_not_utf8",
        files,
        &["validate", "."],
        &["./plimsoll.yaml:1:6:", "UTF-8"],
    );
}

#[test]
fn policy_privileged() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n";
    repo(
        "policy_privileged",
        "policy:\n  privileged:\n    allow: [shop/other]\n",
        yaml,
        &[
            "stacks/shop/compose.yaml:4:5: services.web.privileged:",
            "./plimsoll.yaml:2",
        ],
    );
}

#[test]
fn policy_registries() {
    let yaml = "services:\n  web:\n    image: quay.io/nginx/nginx:1.27\n";
    repo(
        "policy_registries",
        "policy:\n  registries:\n    allow: [docker.io, ghcr.io]\n",
        yaml,
        &[
            "stacks/shop/compose.yaml:3:5: services.web.image:",
            "quay.io",
            "./plimsoll.yaml:2",
        ],
    );
}

#[test]
fn policy_pinned_images_by_digest() {
    repo(
        "policy_pinned_images_digest",
        "policy:\n  pinned_images: {}\n",
        WEB,
        &[
            "stacks/shop/compose.yaml:3:5: services.web.image:",
            "not pinned",
            "digest",
        ],
    );
}

#[test]
fn policy_pinned_images_with_immutable_tag() {
    repo(
        "policy_pinned_images_immutable_tag",
        "policy:\n  pinned_images:\n    stacks: [shop]\n    immutable_tag: '^v\\d+\\.\\d+\\.\\d+$'\n",
        WEB,
        &[
            "stacks/shop/compose.yaml:3:5: services.web.image:",
            "not pinned",
            "immutable tag",
        ],
    );
}

#[test]
fn policy_invalid_immutable_tag_regex() {
    repo(
        "policy_invalid_immutable_tag",
        "policy:\n  pinned_images:\n    immutable_tag: '^v(\\d+$'\n",
        WEB,
        &[
            "./plimsoll.yaml:3:20: policy.pinned_images.immutable_tag:",
            "regular expression",
        ],
    );
}

#[test]
fn policy_host_ports() {
    repo(
        "policy_host_ports",
        "policy:\n  host_ports:\n    allow: [\"9000-9099\", 443]\n",
        WEB,
        &["stacks/shop/compose.yaml:7:5: services.web.ports:", "8080"],
    );
}

#[test]
fn policy_required_labels() {
    repo(
        "policy_required_labels",
        "policy:\n  required_labels: [team, owner]\n",
        WEB,
        &[
            "stacks/shop/compose.yaml:5:5: services.web.labels:",
            "`owner`",
        ],
    );
}

#[test]
fn policy_required_variables() {
    repo(
        "policy_required_variables",
        "policy:\n  required_variables: [DEPLOYMENT_ENV]\n",
        WEB,
        &[
            "stacks/shop/compose.yaml",
            "DEPLOYMENT_ENV",
            "./plimsoll.yaml:2",
        ],
    );
}

#[test]
fn policy_restart() {
    let yaml = "services:\n  web:\n    image: nginx:1.27\n    restart: \"no\"\n  worker:\n    image: shop/worker:1\n";
    let o = repo(
        "policy_restart",
        "policy:\n  restart: [unless-stopped, on-failure]\n",
        yaml,
        &[
            "stacks/shop/compose.yaml:4:5: services.web.restart:",
            "stacks/shop/compose.yaml:5:3: services.worker:",
        ],
    );
    assert_eq!(error_count(&o), 2, "{}", o.stderr);
}

#[test]
fn config_stack_that_does_not_exist() {
    repo(
        "config_unknown_stack",
        "stacks:\n  shop:\n    prune: true\n  shoop:\n    prune: true\n",
        WEB,
        &["./plimsoll.yaml:4:3: stacks.shoop:", "`shoop`"],
    );
}

#[test]
fn config_top_level_not_a_mapping() {
    repo(
        "config_top_level_list",
        "- shop\n- blog\n",
        WEB,
        &["./plimsoll.yaml:1:1:", "mapping"],
    );
}

#[test]
fn config_duplicate_key() {
    repo(
        "config_duplicate_key",
        "policy:\n  restart: [always]\n  restart: [unless-stopped]\n",
        WEB,
        &[
            "./plimsoll.yaml:3:3: policy.restart:",
            "first defined at line 2",
        ],
    );
}

// ---------------------------------------------------------------------------
// Command line

/// Runs a command line that must fail with exit 1 and a message on stderr only.
#[track_caller]
fn cli_error(name: &str, args: &[&str], expect: &[&str]) {
    let o = run(&[(F, WEB.as_bytes())], args);
    assert_eq!(o.code, Some(1), "{name}: exit code\nstderr:\n{}", o.stderr);
    assert!(
        o.stdout.is_empty(),
        "{name}: stdout must be empty, got:\n{}",
        o.stdout
    );
    assert!(
        !o.stderr.contains("panicked"),
        "{name}: crashed:\n{}",
        o.stderr
    );
    for e in expect {
        assert!(
            o.stderr.contains(e),
            "{name}: stderr does not contain {e:?}:\n{}",
            o.stderr
        );
    }
    insta::assert_snapshot!(name, o.stderr);
}

#[test]
fn cli_unknown_subcommand() {
    cli_error("cli_unknown_subcommand", &["frobnicate"], &["frobnicate"]);
}

#[test]
fn cli_unknown_flag() {
    cli_error(
        "cli_unknown_flag",
        &["validate", "--frobnicate", "shop"],
        &["--frobnicate"],
    );
}

#[test]
fn cli_path_does_not_exist() {
    cli_error(
        "cli_path_does_not_exist",
        &["validate", "nowhere"],
        &["nowhere"],
    );
}

#[test]
fn cli_path_without_stacks() {
    let o = run(
        &[("empty/README", b"nothing here\n")],
        &["validate", "empty"],
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    insta::assert_snapshot!("cli_path_without_stacks", o.stderr);
}

#[test]
fn cli_render_unknown_format() {
    cli_error(
        "cli_render_unknown_format",
        &["render", "shop", "--format", "xml"],
        &["xml"],
    );
}

#[test]
fn cli_schema_unknown_kind() {
    cli_error(
        "cli_schema_unknown_kind",
        &["schema", "compose"],
        &["compose"],
    );
}

#[test]
fn cli_invalid_log_format() {
    cli_error(
        "cli_invalid_log_format",
        &["--log-format", "xml", "validate", "shop"],
        &["xml"],
    );
}

#[test]
fn cli_render_unknown_stack() {
    cli_error(
        "cli_render_unknown_stack",
        &["render", "shop", "--stack", "blog"],
        &["`blog`"],
    );
}

#[test]
fn cli_help_exits_zero() {
    let o = run(&[], &["--help"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("Usage: plimsoll"), "{}", o.stdout);
    let o = run(&[], &["validate", "--help"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("validate"), "{}", o.stdout);
}

#[test]
fn cli_graph_and_render_fail_like_validate() {
    let yaml: &[u8] = b"services:\n  web:\n    image: nginx:1.27\n    depends_on: [web]\n";
    for cmd in ["graph", "render"] {
        let o = run(&[(F, yaml)], &[cmd, "shop"]);
        assert_eq!(o.code, Some(1), "{cmd}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{cmd}: {}", o.stdout);
        assert!(!o.stderr.contains("panicked"), "{cmd}: {}", o.stderr);
        assert!(
            o.stderr.contains("shop/compose.yaml:4:"),
            "{cmd}: {}",
            o.stderr
        );
    }
}
