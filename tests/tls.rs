//! Migrations entirely over TLS, against real servers that accept nothing else: PostgreSQL
//! (`hostnossl … reject`), MariaDB (`require_secure_transport`) and Redis (`port 0`, a TLS
//! port only), with certificates made at test time and checked by ferry with `verify-full`.
//! The servers' own views (`pg_stat_ssl` of the walsender, `Ssl_cipher`) and `ferry check`
//! say the connections are encrypted. Passwords given through the environment and a file
//! are then looked for in everything ferry printed and wrote. Certificates that are not the
//! ones asked for, and servers without TLS under `require`, fail with the endpoint and the
//! fix named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_testkit::cli::{self, describe, wait_for};
use ferry_testkit::tls::TestCerts;
use ferry_testkit::{MariaServer, PgServer, RedisServer, SUPERUSER};

/// The sink user's password, handed to ferry through the environment.
const SINK_PASSWORD: &str = "Sink-pass-7f3a9c";
/// The variable it is in.
const SINK_PASSWORD_VAR: &str = "FERRY_TLS_TEST_SINK_PASSWORD";
/// The source's password, handed to ferry in a file.
const SOURCE_PASSWORD: &str = "Source-pass-41d2e8";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Fails if any of `secrets` is in `texts` or in a file under `dir` other than `allowed`
/// (the job file and the password file, which the user wrote).
fn assert_no_secret(secrets: &[&str], texts: &[(&str, String)], dir: &Path, allowed: &[&Path]) {
    for (what, text) in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows a password: {text}");
        }
    }
    for file in files_under(dir) {
        if allowed.contains(&file.as_path()) {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{} holds a password: {text}",
                file.display()
            );
        }
    }
}

/// Each state file ferry wrote is its owner's alone.
fn assert_owner_only(dir: &Path, allowed: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    for file in files_under(dir) {
        if allowed.contains(&file.as_path()) || file.extension().is_some_and(|e| e == "log") {
            continue;
        }
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn postgres_into_mariadb_full_and_incremental_over_verified_tls() {
    let certs = TestCerts::generate();
    let source = PgServer::start_with_tls(&certs.server()).expect("start PostgreSQL with TLS");
    source.create_database("shop").unwrap();
    source
        .psql(
            "shop",
            &format!(
                "ALTER ROLE {SUPERUSER} PASSWORD '{SOURCE_PASSWORD}';
                 CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, note text);
                 INSERT INTO orders SELECT g, g % 50, 'order ' || g FROM generate_series(1, 5000) g;"
            ),
        )
        .unwrap();
    let sink = MariaServer::start_with_tls(&certs.server()).expect("start MariaDB with TLS");
    sink.sql(
        "",
        &format!(
            "CREATE DATABASE sales; CREATE USER 'mover'@'%' IDENTIFIED BY '{SINK_PASSWORD}';
             GRANT ALL ON *.* TO 'mover'@'%';"
        ),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("source.password");
    std::fs::write(&password_file, format!("{SOURCE_PASSWORD}\n")).unwrap();
    let ca = certs.ca();
    let job = dir.path().join("tls.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"postgres://{SUPERUSER}@localhost:{}/shop?sslmode=verify-full&sslrootcert={}\"\n\
             [source.options]\npassword_file = \"{}\"\n\
             [sink]\nurl = \"mysql://mover:${{{SINK_PASSWORD_VAR}}}@localhost:{}/sales\"\n\
             [sink.options]\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\n\
             [migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 500\n\
             [[rules]]\nsql = \"INSERT INTO sales.orders SELECT * FROM public.orders\"\n",
            source.port(),
            ca.display(),
            password_file.display(),
            sink.port(),
            ca.display()
        ),
    )
    .unwrap();
    // ferry takes the variable from its environment (the child inherits the test's).
    std::env::set_var(SINK_PASSWORD_VAR, SINK_PASSWORD);

    let check = cli::ferry("check", &job);
    let check_text = output_text(&check);
    assert!(check.status.success(), "{}", describe(&check));
    assert_eq!(
        check_text.matches("encrypted (TLSv1.3").count(),
        2,
        "both ends encrypted: {check_text}"
    );
    assert!(
        check_text.contains("checked against sslrootcert") && check_text.contains("host name"),
        "{check_text}"
    );

    let log = dir.path().join("run.log");
    let run = cli::spawn_logged("run", &job, &log);
    run.wait_for_log(Duration::from_secs(120), &["streaming changes"]);
    // The walsender ferry streams from runs over TLS, as the server sees it.
    let walsender = source
        .psql(
            "shop",
            "SELECT s.ssl, s.version FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'ferry'",
        )
        .unwrap();
    assert!(walsender.trim().starts_with("t|TLSv1.3"), "{walsender}");

    source
        .psql(
            "shop",
            "INSERT INTO orders SELECT g, g % 50, 'later ' || g FROM generate_series(5001, 6000) g;
             UPDATE orders SET note = 'changed' WHERE id <= 100;
             DELETE FROM orders WHERE id BETWEEN 200 AND 299;",
        )
        .unwrap();
    wait_for("the changes in MariaDB", Duration::from_secs(60), || {
        sink.sql(
            "sales",
            "SELECT COUNT(*), SUM(note = 'changed') FROM orders",
        )
        .is_ok_and(|rows| rows.trim() == "5900\t100")
    });
    let stopped = run.stop(&job);
    assert!(stopped.status.success(), "{}", describe(&stopped));
    let verify = cli::ferry("verify", &job);
    assert!(verify.status.success(), "{}", describe(&verify));
    let status = cli::ferry("status", &job);

    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_no_secret(
        &[SINK_PASSWORD, SOURCE_PASSWORD],
        &[
            ("ferry check", check_text),
            ("ferry run's log", log_text),
            ("ferry verify", output_text(&verify)),
            ("ferry status", output_text(&status)),
            ("ferry stop", output_text(&stopped)),
        ],
        dir.path(),
        &[&password_file, &job],
    );
    assert_owner_only(dir.path(), &[&password_file, &job]);
}

/// `ferry check` of a table job from `source_url` into a plain MariaDB, the failure text.
fn check_fails(dir: &Path, name: &str, source_url: &str, sink_url: &str) -> String {
    let job = dir.join(format!("{name}.toml"));
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{source_url}\"\n[sink]\nurl = \"{sink_url}\"\n\
             [migration]\ntypes = [\"full\"]\n[[rules]]\nsql = \"SELECT * FROM public.t\"\n"
        ),
    )
    .unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{name}: {}",
        describe(&output)
    );
    output_text(&output)
}

#[test]
fn certificates_that_are_not_the_ones_asked_for_are_refused_with_the_fix() {
    let certs = TestCerts::generate();
    let good = PgServer::start_with_tls(&certs.server()).unwrap();
    let wrong_host = PgServer::start_with_tls(&certs.wrong_host()).unwrap();
    let expired = PgServer::start_with_tls(&certs.expired()).unwrap();
    let plain = PgServer::start().unwrap();
    let plain_maria = MariaServer::start().unwrap();
    let plain_redis = RedisServer::start().unwrap();
    for server in [&good, &wrong_host, &expired, &plain] {
        server
            .psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)")
            .unwrap();
    }
    plain_maria.create_database("shop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = plain_maria.url("shop");
    let ca = certs.ca().display().to_string();
    let url = |server: &PgServer, host: &str, query: &str| {
        format!(
            "postgres://{SUPERUSER}@{host}:{}/postgres?{query}",
            server.port()
        )
    };

    let text = check_fails(
        dir.path(),
        "wrong-ca",
        &url(
            &good,
            "localhost",
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                certs.wrong_ca().display()
            ),
        ),
        &sink,
    );
    assert!(
        text.contains(&format!("localhost:{}/postgres", good.port()))
            && text.contains("is not signed by a CA ferry trusts")
            && text.contains("set source's sslrootcert to the CA"),
        "{text}"
    );

    let text = check_fails(
        dir.path(),
        "wrong-host",
        &url(
            &wrong_host,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &sink,
    );
    assert!(
        text.contains("is for db.example.invalid, not localhost")
            && text.contains("sslmode=verify-ca"),
        "{text}"
    );
    // verify-ca checks the CA only: the same server passes.
    let job = dir.path().join("verify-ca.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{sink}\"\n[migration]\ntypes = [\"schema\", \"full\"]\n\
             [[rules]]\nsql = \"INSERT INTO shop.t SELECT * FROM public.t\"\n",
            url(&wrong_host, "localhost", &format!("sslmode=verify-ca&sslrootcert={ca}"))
        ),
    )
    .unwrap();
    let output = cli::ferry("check", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        output_text(&output).contains("(not the host name)"),
        "{}",
        describe(&output)
    );

    let text = check_fails(
        dir.path(),
        "expired",
        &url(
            &expired,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &sink,
    );
    assert!(
        text.contains("expired on 2020-") && text.contains("renew it on the server"),
        "{text}"
    );

    let text = check_fails(
        dir.path(),
        "no-tls",
        &url(&plain, "127.0.0.1", "sslmode=require"),
        &sink,
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}/postgres", plain.port()))
            && text.contains("does not offer TLS, and sslmode=require requires it"),
        "{text}"
    );
    let text = check_fails(
        dir.path(),
        "no-tls-mariadb",
        &url(
            &good,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &format!("{sink}?sslmode=require"),
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", plain_maria.port()))
            && text.contains("does not offer TLS, and sslmode=require requires it"),
        "{text}"
    );

    // A rediss:// URL to a port without TLS.
    let job = dir.path().join("redis.toml");
    let redis = RedisServer::start().unwrap();
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"rediss://127.0.0.1:{}?sslmode=require\"\n[sink]\nurl = \"redis://127.0.0.1:{}\"\n\
             [migration]\ntypes = [\"full\"]\n",
            plain_redis.port(),
            redis.port()
        ),
    )
    .unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = output_text(&output);
    assert!(
        text.contains(&format!(
            "127.0.0.1:{} did not answer in TLS",
            plain_redis.port()
        )),
        "{text}"
    );
}
