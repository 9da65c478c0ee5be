//! See `untrusted` (mod.rs): this module's part of the threat model.
//!
//! Secrets of any length, used in any field (command in exec and shell
//! form, entrypoint, health check, a label, the image tag, the environment),
//! never reach an output of a CI command in any format; the pull-request
//! comment (markdown) keeps what the repository wrote inert, masks a value
//! the same way on both sides, says when only hidden values changed, and
//! names the part of a setting that changed.

use super::{Attack, CANARY};
use crate::support::Run;

/// Secret variables of the repository's `.env`, 1 to 5 characters and
/// longer, with characters that quoting changes; and the CI's canary, which
/// a pull request could get through `--pass-env` (until then, in `.env`).
const DOTENV: &str = concat!(
    "DB_PASSWORD=Zq\n",
    "PIN_TOKEN=Wv9\n",
    "API_KEY=kJ7x\n",
    "TAG_SECRET=qp3xy\n",
    "ONE_TOKEN=¤\n",
    "QUOTE_PASSWORD=\"Rt'9mZp2Lk\"\n",
    "CANARY_TOKEN=canaryTok-7f3a91c2e5\n",
    "PORT=8080\n",
);

/// What must never appear: each secret value (and the part of the quoted
/// one that quoting keeps).
const SECRETS: &[&str] = &["Zq", "Wv9", "kJ7x", "qp3xy", "¤", "Rt'9mZp2Lk", "9mZp2Lk"];

/// Every field a secret variable may be put in.
const COMPOSE: &str = r#"services:
  web:
    image: plimsoll-example/busybox:${TAG_SECRET}
    command: [echo, "${DB_PASSWORD}", "${QUOTE_PASSWORD}"]
    entrypoint: "sh -c 'echo ${PIN_TOKEN}'"
    healthcheck:
      test: ["CMD-SHELL", "wget -q http://localhost:${PORT}/?k=${API_KEY}"]
      interval: 5s
    labels:
      pin: "${ONE_TOKEN}"
      team: web
    environment:
      GREETING: "${DB_PASSWORD}"
      SHORT: "${PIN_TOKEN}"
      CI: "https://ci:${CANARY_TOKEN}@ci.example"
  shell:
    image: plimsoll-example/busybox:1
    command: "echo ${DB_PASSWORD} ${CANARY_TOKEN}"
"#;

/// Runs every CI command (each format) and `status`.
fn every_output(attack: &Attack) -> Vec<Run> {
    let mut runs = attack.ci_commands(&[]);
    runs.push(attack.run(&["status"], &[]));
    runs.push(attack.run(&["status", "--format", "json"], &[]));
    runs
}

#[test]
fn secrets_of_any_length_in_any_field_never_appear() {
    assert!(DOTENV.contains(CANARY));
    let attack = Attack::new("mask-fields");
    attack.write(".env", DOTENV).compose(COMPOSE);
    attack.commit("secrets in every field");
    let runs = every_output(&attack);
    // The commands ran: each output was produced, not refused.
    for run in &runs[..3] {
        run.expect(0);
    }
    attack.assert_contained(&runs, SECRETS);
    // Masked, not dropped: the fields are there, hidden whole.
    let render = runs[2].json();
    let web = &render["services"]["web"];
    assert_eq!(web["labels"]["pin"], "********", "{web}");
    assert_eq!(web["labels"]["team"], "web", "{web}");
    assert_eq!(web["environment"]["SHORT"], "********", "{web}");
    assert_eq!(
        web["command"],
        serde_json::json!(["********", "********", "********"]),
        "{web}"
    );
    assert_eq!(web["image"], "********", "{web}");
    // Ordinary values are shown.
    assert!(
        runs[1].stdout.contains("plimsoll-example/busybox:1"),
        "{}",
        runs[1]
    );
}

/// What the repository wrote stays inert in the pull-request comment.
#[test]
fn markdown_in_values_is_escaped_in_the_comment() {
    let attack = Attack::new("mask-markdown");
    let evil = "[x](http://evil) ![i](http://evil/p.png) <img src=x> @org/team ``` a|b";
    attack.compose(&format!(
        "services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [echo, '{evil}']\n    labels:\n      note: '{evil}'\n    environment:\n      NOTE: '{evil}'\n"
    ));
    attack.commit("markdown in values");
    let runs = [
        attack.run(&["reconcile", "--dry-run", "--format", "markdown"], &[]),
        attack.run(
            &[
                "diff",
                "--from",
                &attack.base,
                "--to",
                "HEAD",
                "--format",
                "markdown",
            ],
            &[],
        ),
    ];
    for run in &runs {
        run.expect(2);
        assert_inert(&run.stdout);
    }
    // The diff shows the new label (escaped in the table, verbatim in the code block).
    assert!(runs[1].stdout.contains("label note"), "{}", runs[1]);
}

/// Asserts that Markdown output holds no live link, image, HTML or mention
/// from the repository, and that no value closes a code block.
#[track_caller]
fn assert_inert(md: &str) {
    let mut fence: Option<String> = None;
    for line in md.lines() {
        let ticks: String = line.chars().take_while(|c| *c == '`').collect();
        match &fence {
            Some(f) if ticks.len() >= f.len() => {
                assert_eq!(line, f, "a value closed the code block:\n{md}");
                fence = None;
            }
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                // What is left once the escaped characters are taken out.
                let bare = ["\\[", "\\]", "\\`", "\\|"]
                    .iter()
                    .fold(line.to_string(), |l, e| l.replace(e, " "));
                for raw in ["](", "![", "<img", "@org/team", "a|b"] {
                    assert!(!bare.contains(raw), "{raw:?} unescaped in {line:?}:\n{md}");
                }
                // No code span opened by a value.
                if line.contains("evil") {
                    assert!(
                        !bare.contains('`'),
                        "a backtick unescaped in {line:?}:\n{md}"
                    );
                }
            }
        }
    }
    assert!(fence.is_none(), "a code block was left open:\n{md}");
}

/// `attack.run` of `diff FROM..HEAD` as JSON: the service `web`'s diff.
fn web_diff(attack: &Attack, from: &str) -> serde_json::Value {
    let run = attack.run(
        &["diff", "--from", from, "--to", "HEAD", "--format", "json"],
        &[],
    );
    let json = run.json();
    let services = &json["hosts"][0]["stacks"][0]["services"];
    services
        .as_array()
        .and_then(|s| s.iter().find(|v| v["service"] == "web"))
        .unwrap_or_else(|| panic!("no service web in:\n{run}"))
        .clone()
}

/// A rotated password: both sides masked the same way; the change is said
/// to be of hidden values only, with no empty diff block.
#[test]
fn a_rotated_password_reads_as_hidden_values_only() {
    let attack = Attack::new("mask-rotate");
    let compose = "services:\n  web:\n    image: plimsoll-example/busybox:1\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n      DATABASE_URL: postgres://shop:${DB_PASSWORD}@db:5432/shop\n      HOST: db\n";
    attack
        .write(".env", "DB_PASSWORD=old-pass-123\n")
        .compose(compose);
    let first = attack.commit("password");
    attack.write(".env", "DB_PASSWORD=new-pass-456\n");
    attack.commit("rotate the password");
    let web = web_diff(&attack, &first);
    assert_eq!(
        web["reasons"],
        serde_json::json!(["only hidden values changed: env DATABASE_URL, env DB_PASSWORD"]),
        "{web}"
    );
    assert!(web.get("diff").is_none_or(|d| d.is_null()), "{web}");
    let markdown = attack.run(
        &[
            "diff", "--from", &first, "--to", "HEAD", "--format", "markdown",
        ],
        &[],
    );
    markdown.expect(2);
    assert!(
        markdown.stdout.contains("only hidden values changed"),
        "{markdown}"
    );
    assert!(!markdown.stdout.contains("```diff\n```"), "{markdown}");
    let text = attack.run(&["diff", "--from", &first, "--to", "HEAD"], &[]);
    attack.assert_contained(
        &[markdown, text],
        &["old-pass-123", "new-pass-456", "pass-"],
    );

    // With a visible change beside it: the visible one is shown, the hidden one named.
    attack.compose(&compose.replace("HOST: db", "HOST: db2"));
    attack.write(".env", "DB_PASSWORD=third-pass-789\n");
    attack.commit("rotate and move");
    let web = web_diff(&attack, &first);
    assert_eq!(
        web["reasons"],
        serde_json::json!([
            "env DATABASE_URL changed (value hidden)",
            "env DB_PASSWORD changed (value hidden)",
            "env HOST changed: db → db2"
        ]),
        "{web}"
    );
    let diff = web["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("-env HOST: db\n+env HOST: db2"), "{web}");
    assert!(!diff.contains("pass-"), "{web}");
}

/// A changed health check, restart policy or limit names the part that changed.
#[test]
fn a_changed_health_check_names_its_part() {
    let attack = Attack::new("mask-parts");
    let compose = "services:\n  web:\n    image: plimsoll-example/busybox:1\n    restart: on-failure:3\n    mem_limit: 256m\n    healthcheck:\n      test: [CMD-SHELL, \"wget -q -O /dev/null http://localhost/health\"]\n      interval: 5s\n      retries: 3\n";
    attack.compose(compose);
    let first = attack.commit("health check");
    attack.compose(
        &compose
            .replace("interval: 5s", "interval: 10s")
            .replace("on-failure:3", "always")
            .replace("256m", "512m"),
    );
    attack.commit("slower health check");
    let web = web_diff(&attack, &first);
    assert_eq!(
        web["reasons"],
        serde_json::json!([
            "healthcheck interval 5s → 10s",
            "memory limit 256 MiB → 512 MiB",
            "restart on-failure:3 → always"
        ]),
        "{web}"
    );
    let diff = web["diff"].as_str().unwrap_or_default();
    assert!(
        !diff.contains("-healthcheck: "),
        "the test did not change:\n{diff}"
    );
    assert!(diff.contains("+healthcheck interval: 10s"), "{diff}");
}

/// Applied, then rotated: the plan, the audit log (`history`), `status` and
/// the JSON logs keep fields built from short secrets masked.
#[test]
fn applied_short_secrets_stay_masked_in_history_status_and_logs() {
    crate::support::ensure_busybox();
    let attack = Attack::new("mask-applied");
    attack
        .write(".env", "PIN_TOKEN=Wv9\n")
        .compose("services:\n  web:\n    image: plimsoll-example/busybox:1\n    command: [sh, -c, \"sleep 3600 # ${PIN_TOKEN}\"]\n    labels:\n      pin: \"${PIN_TOKEN}\"\n    environment:\n      SHORT: \"${PIN_TOKEN}\"\n");
    attack.commit("a short secret");
    let mut runs = vec![attack.run(&["--log-format", "json", "reconcile"], &[])];
    runs[0].expect(0);
    attack.write(".env", "PIN_TOKEN=Qx8\n");
    attack.commit("rotate it");
    let plan = attack.run(&["reconcile", "--dry-run", "--format", "json"], &[]);
    plan.expect(2);
    let json = plan.json();
    let web: Vec<&serde_json::Value> = json["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["service"] == "web")
        .collect();
    assert_eq!(web.len(), 1, "{plan}");
    assert_eq!(
        web[0]["reasons"],
        serde_json::json!(["only hidden values changed: command, env SHORT, label pin"]),
        "{plan}"
    );
    runs.push(plan);
    runs.push(attack.run(&["--log-format", "json", "reconcile"], &[]));
    runs.last().unwrap().expect(0);
    for args in [
        &["history"][..],
        &["history", "--format", "json"],
        &["status"],
        &["status", "--format", "json"],
    ] {
        runs.push(attack.run(args, &[]));
        runs.last().unwrap().expect(0);
    }
    for run in &runs {
        for secret in ["Wv9", "Qx8", CANARY] {
            assert!(!run.all().contains(secret), "{secret:?} leaked:\n{run}");
        }
    }
    for (path, bytes) in crate::support::files_under(&attack.state()) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["Wv9", "Qx8"] {
            assert!(
                !text.contains(secret),
                "{secret:?} leaked into {}",
                path.display()
            );
        }
    }
}
