//! Inputs that must never destroy, double or silently lose data (issue #12): each test feeds
//! ferry a class of bad input on real servers, through the `ferry` binary as a user runs it,
//! and checks that it is refused with exit 2 before anything is written — comparing content,
//! not only exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;

use ferry_testkit::cli::{self, describe};
use ferry_testkit::{MariaServer, PgServer, RedisServer, MARIADB_USER, SUPERUSER};

/// The binary under test.
const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn ferry(command: &str, job: &Path) -> Output {
    cli::run(FERRY, command, job)
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// A job file reading `source` into `sink` with `rules`; `extra` goes into `[sink]`.
fn job_text(source: &str, sink: &str, sink_extra: &str, types: &str, rules: &[&str]) -> String {
    let mut text = format!(
        "[source]\nurl = \"{source}\"\n[sink]\nurl = \"{sink}\"\n{sink_extra}\n[migration]\ntypes = {types}\n"
    );
    for rule in rules {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    text
}

/// Asserts `output` is a refusal (exit 2) whose message contains `expected`.
fn assert_refused(output: &Output, expected: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: {}",
        describe(output)
    );
    assert!(
        stderr.contains(expected),
        "{what}: expected «{expected}» in:\n{stderr}"
    );
}

const PG_SHOP: &str = "CREATE SCHEMA shop;
    CREATE TABLE shop.orders (id int PRIMARY KEY, name text);
    INSERT INTO shop.orders SELECT g, 'o' || g FROM generate_series(1, 500) g;
    CREATE TABLE shop.notes (body text);
    INSERT INTO shop.notes SELECT 'n' || g FROM generate_series(1, 40) g;";

const PG_DIGEST: &str = "SELECT (SELECT count(*) || ':' || md5(string_agg(id || name, ',' ORDER BY id)) FROM shop.orders), (SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY body)) FROM shop.notes)";

#[test]
fn a_sink_that_is_the_source_is_refused_whatever_its_url_says() {
    let server = PgServer::start().expect("start PostgreSQL");
    server.create_database("source").unwrap();
    server.create_database("other").unwrap();
    server.psql("source", PG_SHOP).unwrap();
    let before = server.psql("source", PG_DIGEST).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = server.url("source");
    let port = server.port();
    // The same database by other spellings: the same text, a host alias, another scheme
    // name, parameters.
    let aliases = [
        source.clone(),
        format!("postgres://{SUPERUSER}@localhost:{port}/source"),
        format!("postgresql://{SUPERUSER}@127.0.0.1:{port}/source?application_name=x"),
    ];
    for (index, sink) in aliases.iter().enumerate() {
        for existing in ["truncate", "append"] {
            for rules in [
                &["SELECT * FROM shop.orders"][..],
                &["SELECT * FROM shop.notes"][..],
                &["INSERT INTO shop.* SELECT * FROM shop.*"][..],
                &[
                    "INSERT INTO copy.orders SELECT * FROM shop.orders",
                    "INSERT INTO shop.orders SELECT * FROM shop.notes WHERE false",
                ][..],
            ] {
                let text = job_text(
                    &source,
                    sink,
                    &format!("existing_rows = \"{existing}\""),
                    "[\"schema\", \"full\"]",
                    rules,
                );
                let job = write(dir.path(), &format!("alias{index}.toml"), &text);
                for command in ["check", "run"] {
                    assert_refused(
                        &ferry(command, &job),
                        "is the source table itself",
                        &format!("{command} into {sink} ({existing}, {rules:?})"),
                    );
                }
            }
        }
    }
    assert_eq!(server.psql("source", PG_DIGEST).unwrap(), before);
    let schemas = server
        .psql(
            "source",
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('copy', '_ferry')",
        )
        .unwrap();
    assert_eq!(schemas.trim(), "0", "a refused job wrote to the source");

    // Other tables of the same database, and another database of the same server, are fine.
    let into_copy = job_text(
        &source,
        &format!("postgres://{SUPERUSER}@localhost:{port}/source"),
        "",
        "[\"schema\", \"full\"]",
        &["INSERT INTO copy.* SELECT * FROM shop.*"],
    );
    let job = write(dir.path(), "copy.toml", &into_copy);
    let output = ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let other = job_text(
        &source,
        &server.url("other"),
        "",
        "[\"schema\", \"full\"]",
        &["SELECT * FROM shop.*"],
    );
    let job = write(dir.path(), "other.toml", &other);
    let output = ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(server.psql("other", PG_DIGEST).unwrap(), before);
    assert_eq!(server.psql("source", PG_DIGEST).unwrap(), before);
}

#[test]
fn a_mysql_sink_that_is_the_source_is_refused() {
    let server = MariaServer::start().expect("start MariaDB");
    server.create_database("shop").unwrap();
    server
        .sql(
            "shop",
            "CREATE TABLE orders (id int PRIMARY KEY, name varchar(20));
             INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c');
             CREATE TABLE notes (body varchar(20));
             INSERT INTO notes VALUES ('x'), ('y');",
        )
        .unwrap();
    let digest = "SELECT (SELECT GROUP_CONCAT(id, name ORDER BY id) FROM orders), (SELECT GROUP_CONCAT(body ORDER BY body) FROM notes)";
    let before = server.sql("shop", digest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = server.port();
    for sink in [
        server.url("shop"),
        format!("mysql://{MARIADB_USER}@localhost:{port}/shop"),
        format!("mariadb://{MARIADB_USER}@127.0.0.1:{port}"),
    ] {
        for existing in ["truncate", "append"] {
            let text = job_text(
                &server.url("shop"),
                &sink,
                &format!("existing_rows = \"{existing}\""),
                "[\"schema\", \"full\"]",
                &["SELECT * FROM shop.*"],
            );
            let job = write(dir.path(), "same.toml", &text);
            for command in ["check", "run"] {
                assert_refused(
                    &ferry(command, &job),
                    "is the source table itself",
                    &format!("{command} into {sink} ({existing})"),
                );
            }
        }
    }
    assert_eq!(server.sql("shop", digest).unwrap(), before);
}

#[test]
fn a_redis_target_that_is_the_source_under_another_address_is_refused() {
    let server = RedisServer::start().expect("start Redis");
    server.cli(&["SET", "k", "v"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = server.port();
    for sink in [
        format!("redis://localhost:{port}"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        let text = format!(
            "[source]\nurl = \"redis://127.0.0.1:{port}\"\n[sink]\nurl = \"{sink}\"\n[migration]\ntypes = [\"full\", \"incremental\"]\n"
        );
        let job = write(dir.path(), "cache.toml", &text);
        for command in ["check", "run", "verify"] {
            let output = ferry(command, &job);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command} {sink}: {}",
                describe(&output)
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("source server itself") || stderr.contains("is the source itself"),
                "{command} {sink}: {stderr}"
            );
        }
    }
    assert_eq!(server.cli(&["DBSIZE"]).unwrap().trim(), "1");
}

#[test]
fn a_second_runner_and_a_drop_are_refused_while_a_job_runs() {
    let server = PgServer::start().expect("start PostgreSQL");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server.psql("source", PG_SHOP).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\", \"incremental\"]",
        &["SELECT * FROM shop.orders"],
    );
    let text = format!("name = \"shop_sync\"\n{text}");
    let job = write(dir.path(), "shop.toml", &text);
    // Not running yet: nothing to stop or limit.
    assert_refused(&ferry("stop", &job), "is not running", "stop before run");
    assert_refused(
        &cli::run_with(FERRY, "limit", &job, &["--rows-per-second", "5"]),
        "is not running",
        "limit before run",
    );
    let first = cli::spawn(FERRY, "run", &job);
    cli::wait_for(
        "the first run to stream",
        std::time::Duration::from_secs(60),
        || {
            server
                .psql("sink", "SELECT count(*) FROM _ferry.applied")
                .is_ok_and(|n| n.trim() == "1")
        },
    );
    // The same file again; the same job name from another directory (the sink's lock).
    let again = ferry("run", &job);
    assert_refused(
        &again,
        "job shop_sync is already running (pid",
        "second run",
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!("pid {}", first.id())),
        "{}",
        describe(&again)
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = write(elsewhere.path(), "shop.toml", &text);
    assert_refused(
        &ferry("run", &copy),
        "job shop_sync is already running",
        "run elsewhere",
    );
    assert_refused(
        &ferry("drop", &job),
        "is already running",
        "drop while running",
    );
    server
        .psql("source", "INSERT INTO shop.orders VALUES (1000, 'late')")
        .unwrap();
    cli::wait_for("the late row", std::time::Duration::from_secs(60), || {
        server
            .psql("sink", "SELECT count(*) FROM shop.orders WHERE id = 1000")
            .is_ok_and(|n| n.trim() == "1")
    });
    let output = cli::stop(FERRY, &job, first);
    assert!(output.status.success(), "{}", describe(&output));
    let digest =
        "SELECT count(*) || ':' || md5(string_agg(id || name, ',' ORDER BY id)) FROM shop.orders";
    assert_eq!(
        server.psql("sink", digest).unwrap(),
        server.psql("source", digest).unwrap()
    );
    assert_refused(&ferry("stop", &job), "is not running", "stop after the run");
    let output = ferry("drop", &job);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn drop_is_refused_while_a_full_migration_runs() {
    let server = PgServer::start().expect("start PostgreSQL");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server
        .psql(
            "source",
            "CREATE SCHEMA shop; CREATE TABLE shop.notes (body text);
             INSERT INTO shop.notes SELECT 'n' || g FROM generate_series(1, 6000) g; ANALYZE;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\"]",
        &["SELECT * FROM shop.notes"],
    )
    .replace(
        "[migration]\n",
        "[migration]\nmax_rows_per_second = 1500\nchunk_rows = 1000\nparallelism = 1\nbatch_size = 100\n",
    );
    let job = write(dir.path(), "notes.toml", &text);
    let run = cli::spawn(FERRY, "run", &job);
    cli::wait_for(
        "a first committed part",
        std::time::Duration::from_secs(60),
        || {
            server
                .psql("sink", "SELECT count(*) > 0 FROM _ferry.parts")
                .is_ok_and(|n| n.trim() == "t")
        },
    );
    assert_refused(
        &ferry("drop", &job),
        "is already running",
        "drop during the copy",
    );
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let digest =
        "SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY body)) FROM shop.notes";
    assert_eq!(
        server.psql("sink", digest).unwrap(),
        server.psql("source", digest).unwrap()
    );
}
