//! The offline test images built by `scripts/test-images.sh` really work on the
//! engine: busybox runs its applets and serves HTTP, PostgreSQL becomes healthy.

use std::time::Duration;

use crate::support::{
    BUSYBOX_IMAGE, Cleanup, POSTGRES_IMAGE, docker, docker_output, ensure_busybox, ensure_postgres,
    wait_for, wait_healthy,
};

#[test]
fn busybox_runs_its_applets() {
    ensure_busybox();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("busybox-applets");
    let out = docker(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "set -e; sleep 0.1; wget --help >/dev/null 2>&1; nc --help >/dev/null 2>&1; \
         httpd --help >/dev/null 2>&1; echo ok",
    ]);
    assert_eq!(out, "ok");
}

#[test]
fn busybox_httpd_serves_a_file() {
    ensure_busybox();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("busybox-httpd");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        "wget -q -O /dev/null http://127.0.0.1:8080/index.html",
        "--health-interval",
        "1s",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo plimsoll-httpd-ok >/tmp/www/index.html && \
         exec httpd -f -p 8080 -h /tmp/www",
    ]);
    wait_healthy(&name, Duration::from_secs(30));
    let body = docker(&[
        "exec",
        &name,
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/index.html",
    ]);
    assert_eq!(body, "plimsoll-httpd-ok");

    // From a second container over the default bridge, by address.
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ]);
    assert!(!ip.is_empty(), "{name} has no address");
    let client = cleanup.container("busybox-httpd-client");
    let url = format!("http://{ip}:8080/index.html");
    let body = docker(&[
        "run",
        "--name",
        &client,
        BUSYBOX_IMAGE,
        "wget",
        "-q",
        "-O",
        "-",
        &url,
    ]);
    assert_eq!(body, "plimsoll-httpd-ok");
}

#[test]
fn postgres_becomes_healthy() {
    ensure_postgres();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("postgres-healthy");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-e",
        "POSTGRES_PASSWORD=plimsoll-secret",
        "-e",
        "POSTGRES_DB=app",
        "--health-cmd",
        "pg_isready -U postgres",
        "--health-interval",
        "1s",
        POSTGRES_IMAGE,
    ]);
    wait_healthy(&name, Duration::from_secs(90));

    // The first start restarts the server once after initdb (as the official
    // image does), so readiness is awaited, not sampled once.
    wait_for(
        "pg_isready",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            docker_output(&["exec", &name, "pg_isready", "-U", "postgres"])
                .status
                .success()
                .then_some(())
        },
    );

    // The password works over TCP, and POSTGRES_DB was created. As with the
    // official image, the healthcheck can pass while the first start still
    // initialises the cluster on a socket-only server, so TCP clients retry.
    let answer = wait_for(
        "psql over TCP",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let out = docker_output(&[
                "exec",
                "-e",
                "PGPASSWORD=plimsoll-secret",
                &name,
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "app",
                "-tAc",
                "select 6 * 7",
            ]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        },
    );
    assert_eq!(answer, "42");
}

#[test]
fn postgres_rejects_a_wrong_password_from_another_container() {
    ensure_postgres();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("postgres-auth");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-e",
        "POSTGRES_PASSWORD=right",
        "--health-cmd",
        "pg_isready -U postgres",
        "--health-interval",
        "1s",
        POSTGRES_IMAGE,
    ]);
    wait_healthy(&name, Duration::from_secs(90));
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ]);
    // Clients run with --rm, and are registered in case the test dies mid-run.
    let right_client = cleanup.container("pg-client-right");
    let wrong_client = cleanup.container("pg-client-wrong");
    let psql = |password: &str, client: &str| {
        let out = docker_output(&[
            "run",
            "--rm",
            "--name",
            client,
            "-e",
            &format!("PGPASSWORD={password}"),
            "--entrypoint",
            "psql",
            POSTGRES_IMAGE,
            "-h",
            &ip,
            "-U",
            "postgres",
            "-tAc",
            "select 1",
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = wait_for(
        "a TCP login",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let r = psql("right", &right_client);
            r.0.then_some(r)
        },
    );
    assert!(ok, "{err}");
    let (ok, err) = psql("wrong", &wrong_client);
    assert!(!ok, "a wrong password was accepted");
    assert!(err.contains("password authentication failed"), "{err}");
}
