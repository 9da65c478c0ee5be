//! age-encrypted files (`*.age`) end to end, with a key pair each test
//! generates (`plimsoll secret keygen`): `plimsoll secret encrypt` writes
//! them; `validate`, `render` and `reconcile` decrypt them with the host's
//! identity; the values are masked in every output; the real engine receives
//! the decrypted secret file and env file; no clear copy is written to the
//! stack or state directory; a missing or wrong identity is exit 1 naming
//! the file; `secret edit` re-encrypts through `$EDITOR` and leaves no clear file.

use std::path::{Path, PathBuf};

use crate::support::{
    Run, docker, ensure_busybox, files_under, stack_containers, temp_dir, unique_name,
};

const SECRET: &str = "canary-age-secret-5e1d";
const ENV_VALUE: &str = "canary-age-env-93b7";
const SHORT: &str = "ab1";

/// A stack whose secrets are age-encrypted, with its own state directory (and
/// the host identity in it); dropping it removes the stack's containers and networks.
struct AgeStack {
    name: String,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    /// The host's public key, as `secret keygen` printed it.
    recipient: String,
}

impl AgeStack {
    fn new(what: &str) -> Self {
        let mut s = AgeStack {
            name: unique_name(what),
            dir: temp_dir("plimsoll-it-age-"),
            state: temp_dir("plimsoll-it-age-state-"),
            recipient: String::new(),
        };
        let out = s.plimsoll(&["secret", "keygen"], &[]);
        out.expect(0);
        let recipient = out.stdout.trim().to_string();
        assert!(recipient.starts_with("age1"), "{out}");
        let key = std::fs::read_to_string(s.state.path().join("age.key")).unwrap();
        assert!(key.contains("AGE-SECRET-KEY-1"));
        assert!(
            !out.all().contains("AGE-SECRET-KEY"),
            "keygen printed the key:\n{out}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(s.state.path().join("age.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        s.recipient = recipient;
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    fn plimsoll(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::of(
            args,
            crate::support::plimsoll_command(self.state.path(), self.path(), args)
                .envs(env.iter().copied()),
        )
    }

    /// Writes `name` in clear, encrypts it to the host with `plimsoll secret
    /// encrypt`, and removes the clear file, as a user would.
    fn encrypt(&self, name: &str, content: &str) {
        std::fs::write(self.path().join(name), content).unwrap();
        let out = self.plimsoll(&["secret", "encrypt", "-r", &self.recipient, name], &[]);
        out.expect(0);
        assert!(!out.all().contains(content), "{out}");
        std::fs::remove_file(self.path().join(name)).unwrap();
        let bytes = std::fs::read(self.path().join(format!("{name}.age"))).unwrap();
        assert!(bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    }

    /// The stack: a secret file and an env file, both encrypted.
    fn write(&self) {
        ensure_busybox();
        self.encrypt("db_password", SECRET);
        self.encrypt(
            "secrets.env",
            &format!("API_URL=https://u:{ENV_VALUE}@api\nPIN={SHORT}\n"),
        );
        std::fs::write(
            self.path().join("compose.yaml"),
            format!(
                "name: {}
services:
  app:
    image: plimsoll-example/busybox:1
    command: [\"sleep\", \"3600\"]
    stop_signal: SIGKILL
    env_file: secrets.env.age
    environment:
      PLAIN: visible
    secrets: [db]
secrets:
  db:
    file: ./db_password.age
",
                self.name
            ),
        )
        .unwrap();
    }

    fn container(&self) -> String {
        format!("{}-app-1", self.name)
    }

    /// No file under the stack or state directory holds a clear value.
    #[track_caller]
    fn assert_nothing_clear_on_disk(&self, values: &[&str]) {
        for dir in [self.path(), self.state.path()] {
            for (path, bytes) in files_under(dir) {
                let text = String::from_utf8_lossy(&bytes);
                for v in values {
                    assert!(!text.contains(v), "{} holds {v} in clear", path.display());
                }
            }
        }
    }
}

impl Drop for AgeStack {
    fn drop(&mut self) {
        crate::support::remove_stack(&self.name);
    }
}

#[track_caller]
fn assert_masked(run: &Run) {
    for v in [SECRET, ENV_VALUE] {
        assert!(!run.all().contains(v), "{v} shown:\n{run}");
    }
}

#[test]
fn age_validate_render_and_dry_run_decrypt_and_mask() {
    let s = AgeStack::new("age-mask");
    s.write();
    let path = s.path_str();
    let out = s.plimsoll(&["validate", &path], &[]);
    out.expect(0);
    assert_masked(&out);

    let out = s.plimsoll(&["render", &path, "--format", "json"], &[]);
    out.expect(0);
    assert_masked(&out);
    let value = out.json();
    assert_eq!(value["secrets"]["db"]["content"], "********");
    assert!(value["secrets"]["db"].get("file").is_none(), "{value}");
    let env = &value["services"]["app"]["environment"];
    assert_eq!(env["API_URL"], "********");
    // Short values of an encrypted env file are masked too: every variable in it is secret.
    assert_eq!(env["PIN"], "********");
    assert_eq!(env["PLAIN"], "visible");

    let out = s.plimsoll(
        &["render", &path, "--show-secrets", "--format", "json"],
        &[],
    );
    out.expect(0);
    let value = out.json();
    assert_eq!(value["secrets"]["db"]["content"], SECRET);
    assert_eq!(
        value["services"]["app"]["environment"]["API_URL"],
        format!("https://u:{ENV_VALUE}@api")
    );
    assert_eq!(value["services"]["app"]["environment"]["PIN"], SHORT);

    for format in ["text", "json", "markdown"] {
        let out = s.plimsoll(
            &["-v", "reconcile", &path, "--dry-run", "--format", format],
            &[],
        );
        assert!(matches!(out.code, Some(0) | Some(2)), "{out}");
        assert_masked(&out);
        assert!(!out.all().contains(&format!("PIN={SHORT}")), "{out}");
    }
    s.assert_nothing_clear_on_disk(&[SECRET, ENV_VALUE]);
}

#[test]
fn age_reconcile_delivers_decrypted_secret_and_env_then_edit_rotates_it() {
    let s = AgeStack::new("age-e2e");
    s.write();
    let path = s.path_str();
    let out = s.plimsoll(&["-v", "reconcile", &path], &[]);
    out.expect(0);
    assert_masked(&out);
    let c = s.container();
    assert_eq!(docker(&["exec", &c, "cat", "/run/secrets/db"]), SECRET);
    let env = docker(&["exec", &c, "env"]);
    assert!(
        env.lines()
            .any(|l| l == format!("API_URL=https://u:{ENV_VALUE}@api")),
        "{env}"
    );
    assert!(env.lines().any(|l| l == format!("PIN={SHORT}")), "{env}");
    // Copied in, not bind-mounted from a file on the host.
    let mounts = docker(&["inspect", "--format", "{{json .Mounts}}", &c]);
    assert!(!mounts.contains("db_password"), "{mounts}");
    let out = s.plimsoll(&["reconcile", &path, "--dry-run", "--format", "json"], &[]);
    out.expect(0);
    assert!(
        out.json()["actions"].as_array().unwrap().is_empty(),
        "a second plan is empty:\n{out}"
    );
    s.assert_nothing_clear_on_disk(&[SECRET, ENV_VALUE]);
    let before = stack_containers(&s.name);

    // A changed short value of an encrypted env file is masked in the plan's diff too.
    s.encrypt(
        "secrets.env",
        &format!("API_URL=https://u:{ENV_VALUE}@api\nPIN=q7z\n"),
    );
    let out = s.plimsoll(&["reconcile", &path, "--dry-run"], &[]);
    out.expect(2);
    assert!(out.stdout.contains("PIN"), "{out}");
    assert!(!out.all().contains("q7z"), "{out}");
    assert_masked(&out);

    // `secret edit` with an editor that rewrites the file and records where it was.
    // (Outside the stack directory: the script itself names the values.)
    let tools = temp_dir("plimsoll-it-age-editor-");
    let seen = tools.path().join("editor-saw");
    let editor = tools.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nset -e\necho \"$1\" > {seen}\nstat -c %a \"$1\" >> {seen}\nstat -c %a \"$(dirname \"$1\")\" >> {seen}\ngrep -q {SECRET} \"$1\"\nprintf 'rotated-secret-0d1f' > \"$1\"\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let editor = editor.display().to_string();
    let out = s.plimsoll(
        &["secret", "edit", "-r", &s.recipient, "db_password.age"],
        &[("EDITOR", &editor)],
    );
    out.expect(0);
    assert!(!out.all().contains("rotated-secret-0d1f"), "{out}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    let mut lines = seen.lines();
    let clear = PathBuf::from(lines.next().unwrap());
    assert_eq!(lines.next(), Some("600"), "clear file mode");
    assert_eq!(lines.next(), Some("700"), "private directory mode");
    if Path::new("/dev/shm").is_dir() {
        assert!(clear.starts_with("/dev/shm"), "{}", clear.display());
    }
    assert!(!clear.exists(), "clear file left at {}", clear.display());
    assert!(!clear.parent().unwrap().exists(), "private directory left");

    let out = s.plimsoll(&["-v", "reconcile", &path], &[]);
    out.expect(0);
    assert!(!out.all().contains("rotated-secret-0d1f"), "{out}");
    assert_eq!(
        docker(&["exec", &c, "cat", "/run/secrets/db"]),
        "rotated-secret-0d1f"
    );
    let env = docker(&["exec", &c, "env"]);
    assert!(env.lines().any(|l| l == "PIN=q7z"), "{env}");
    assert_ne!(
        before,
        stack_containers(&s.name),
        "a changed secret recreates the container"
    );
    s.assert_nothing_clear_on_disk(&[SECRET, ENV_VALUE, "rotated-secret-0d1f"]);

    // A rollback reads the stored revision (encrypted in the state directory),
    // neither the repository nor the identity.
    std::fs::remove_file(s.state.path().join("age.key")).unwrap();
    let out = s.plimsoll(&["rollback", &s.name], &[]);
    out.expect(0);
    assert_masked(&out);
    assert_eq!(docker(&["exec", &c, "cat", "/run/secrets/db"]), SECRET);
    s.assert_nothing_clear_on_disk(&[SECRET, ENV_VALUE, "rotated-secret-0d1f"]);
}

#[test]
fn age_missing_or_wrong_identity_is_exit_1_naming_the_file() {
    let s = AgeStack::new("age-ident");
    s.write();
    let path = s.path_str();
    let mut shown = s.path().join("db_password.age").display().to_string();
    shown = shown.replace(&format!("{}/", s.path().display()), "");

    // Another host's identity, given by flag and by variable.
    let other = s.state.path().join("other.key");
    let other_str = other.display().to_string();
    s.plimsoll(&["secret", "keygen", "-o", &other_str], &[])
        .expect(0);
    for (args, env) in [
        (
            vec!["--age-identity", other_str.as_str(), "validate", &path],
            vec![],
        ),
        (
            vec!["validate", &path],
            vec![("PLIMSOLL_AGE_IDENTITY", other_str.as_str())],
        ),
    ] {
        let out = s.plimsoll(&args, &env);
        out.expect(1);
        assert!(out.stderr.contains(&shown), "{out}");
        assert!(out.stderr.contains("secrets.env.age"), "{out}");
        assert!(out.stderr.contains("cannot decrypt"), "{out}");
        assert!(
            out.stderr.contains("plimsoll secret encrypt -r age1"),
            "{out}"
        );
        assert!(!out.all().contains("AGE-SECRET-KEY"), "{out}");
        assert_masked(&out);
    }

    // No identity at all.
    std::fs::remove_file(s.state.path().join("age.key")).unwrap();
    let out = s.plimsoll(&["validate", &path], &[]);
    out.expect(1);
    assert!(out.stderr.contains(&shown), "{out}");
    assert!(out.stderr.contains("--age-identity"), "{out}");
    assert!(out.stderr.contains("plimsoll secret keygen"), "{out}");

    // A default identity file that is not one: a warning, then the same error.
    std::fs::write(s.state.path().join("age.key"), "garbage\n").unwrap();
    let out = s.plimsoll(&["validate", &path], &[]);
    out.expect(1);
    assert!(out.stderr.contains("age.key:1:"), "{out}");
    assert!(out.stderr.contains("no age identity"), "{out}");
    assert!(!out.all().contains("garbage"), "{out}");

    // A named identity file that does not exist.
    let out = s.plimsoll(
        &["--age-identity", "/nonexistent/age.key", "validate", &path],
        &[],
    );
    out.expect(1);
    assert!(out.stderr.contains("/nonexistent/age.key"), "{out}");

    // An identity file that is not one: the error names the line, never the content.
    std::fs::write(&other, "# comment\nAGE-SECRET-KEY-1NOTAKEY-canary-key\n").unwrap();
    let out = s.plimsoll(&["--age-identity", &other_str, "validate", &path], &[]);
    out.expect(1);
    assert!(out.stderr.contains(":2:"), "{out}");
    assert!(!out.all().contains("canary-key"), "{out}");
}

#[test]
fn age_sops_files_are_rejected_with_a_hint() {
    let s = AgeStack::new("age-sops");
    std::fs::write(
        s.path().join("app.env"),
        "API_KEY=ENC[AES256_GCM,data:IA46,iv:Ap9P,tag:rEnl,type:str]\nsops_version=3.9.0\n",
    )
    .unwrap();
    std::fs::write(s.path().join("db.sops.yaml"), "password: x\n").unwrap();
    std::fs::write(
        s.path().join("compose.yaml"),
        "services:\n  app:\n    image: plimsoll-example/busybox:1\n    env_file: app.env\n    secrets: [db]\nsecrets:\n  db:\n    file: ./db.sops.yaml\n",
    )
    .unwrap();
    let out = s.plimsoll(&["validate", &s.path_str()], &[]);
    out.expect(1);
    assert!(out.stderr.contains("app.env"), "{out}");
    assert!(out.stderr.contains("db.sops.yaml"), "{out}");
    assert!(out.stderr.contains("does not decrypt SOPS"), "{out}");
}

#[test]
fn age_secret_encrypt_uses_plimsoll_yaml_recipients_and_edit_keeps_unchanged_files() {
    let s = AgeStack::new("age-config");
    let stack = s.path().join("stacks/app");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        s.path().join("plimsoll.yaml"),
        format!("secrets:\n  age_recipients:\n    - {}\n", s.recipient),
    )
    .unwrap();
    std::fs::write(stack.join("token"), SECRET).unwrap();
    let out = s.plimsoll(
        &[
            "secret",
            "encrypt",
            "stacks/app/token",
            "-o",
            "stacks/app/t.age",
        ],
        &[],
    );
    out.expect(0);
    let before = std::fs::read(stack.join("t.age")).unwrap();
    // `true` leaves the clear file as it was: the age file is not rewritten.
    let out = s.plimsoll(
        &["secret", "edit", "stacks/app/t.age"],
        &[("EDITOR", "true"), ("VISUAL", "")],
    );
    out.expect(0);
    assert!(out.stderr.contains("unchanged"), "{out}");
    assert_eq!(std::fs::read(stack.join("t.age")).unwrap(), before);
    // A failing editor changes nothing.
    let out = s.plimsoll(
        &["secret", "edit", "stacks/app/t.age"],
        &[("EDITOR", "false")],
    );
    out.expect(1);
    assert_eq!(std::fs::read(stack.join("t.age")).unwrap(), before);

    // Without recipients anywhere: exit 1 saying where to give them.
    std::fs::write(s.path().join("plimsoll.yaml"), "secrets: {}\n").unwrap();
    let out = s.plimsoll(&["secret", "encrypt", "stacks/app/token"], &[]);
    out.expect(1);
    assert!(out.stderr.contains("age_recipients"), "{out}");
    // A wrong recipient in plimsoll.yaml is a load error too.
    std::fs::write(
        s.path().join("plimsoll.yaml"),
        "secrets:\n  age_recipients: [age1nope]\n",
    )
    .unwrap();
    let out = s.plimsoll(&["validate", &s.path_str()], &[]);
    out.expect(1);
    assert!(out.stderr.contains("secrets.age_recipients[0]"), "{out}");
}

#[test]
fn age_stack_env_age_is_read_after_env_and_masked() {
    let s = AgeStack::new("age-dotenv");
    std::fs::write(
        s.path().join(".env"),
        "PLAIN_VAR=visible\nDB_URL=overridden\n",
    )
    .unwrap();
    s.encrypt(
        ".env",
        &format!("DB_URL=postgres://u:{SECRET}@db\nTAG=1.36\n"),
    );
    // `secret encrypt .env` wrote `.env.age` and the clear file is gone: write a clear `.env` again.
    std::fs::write(
        s.path().join(".env"),
        "PLAIN_VAR=visible\nDB_URL=overridden\n",
    )
    .unwrap();
    std::fs::write(
        s.path().join("compose.yaml"),
        "services:\n  app:\n    image: plimsoll-example/busybox:${TAG}\n    environment:\n      DATABASE_URL: ${DB_URL}\n      P: ${PLAIN_VAR}\n",
    )
    .unwrap();
    let path = s.path_str();
    let out = s.plimsoll(&["render", &path, "--format", "json"], &[]);
    out.expect(0);
    assert_masked(&out);
    let env = &out.json()["services"]["app"]["environment"];
    assert_eq!(env["DATABASE_URL"], "********");
    assert_eq!(env["P"], "visible");
    let out = s.plimsoll(
        &["render", &path, "--format", "json", "--show-secrets"],
        &[],
    );
    out.expect(0);
    let value = out.json();
    assert_eq!(
        value["services"]["app"]["environment"]["DATABASE_URL"],
        format!("postgres://u:{SECRET}@db"),
        ".env.age wins over .env"
    );
    assert_eq!(
        value["services"]["app"]["image"],
        "plimsoll-example/busybox:1.36"
    );
    // Without the identity: exit 1 naming .env.age.
    std::fs::remove_file(s.state.path().join("age.key")).unwrap();
    let out = s.plimsoll(&["validate", &path], &[]);
    out.expect(1);
    assert!(out.stderr.contains(".env.age"), "{out}");
    assert!(out.stderr.contains("--age-identity"), "{out}");
}
