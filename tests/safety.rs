//! Inputs that must never destroy, double or silently lose data (issue #12): each test feeds
//! ferry a class of bad input on real servers, through the `ferry` binary as a user runs it,
//! and checks that it is refused with exit 2 before anything is written — comparing content,
//! not only exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;

use ferry_testkit::cli::{self, describe};
use ferry_testkit::{MariaServer, PgServer, RedisServer, MARIADB_USER, SUPERUSER};

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

/// A job file `file` in `dir` reading the server's `source` database into its `sink`.
fn pg_job(
    server: &PgServer,
    dir: &Path,
    file: &str,
    sink_extra: &str,
    types: &str,
    rules: &[&str],
) -> PathBuf {
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        sink_extra,
        types,
        rules,
    );
    write(dir, file, &text)
}

/// Creates a table at the source (`setup`), writes the schema + full job `file` of one `rule`
/// and runs it to success.
fn copied(server: &PgServer, dir: &Path, file: &str, setup: &str, rule: &str) -> PathBuf {
    server.psql("source", setup).unwrap();
    let job = pg_job(server, dir, file, "", "[\"schema\", \"full\"]", &[rule]);
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    job
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
    // Said once: not as a log line and then again.
    assert_eq!(
        stderr.matches(expected).count(),
        1,
        "{what}: the refusal is printed more than once:\n{stderr}"
    );
}

const PG_SHOP: &str = "CREATE SCHEMA shop;
    CREATE TABLE shop.orders (id int PRIMARY KEY, name text);
    INSERT INTO shop.orders SELECT g, 'o' || g FROM generate_series(1, 500) g;
    CREATE TABLE shop.notes (body text);
    INSERT INTO shop.notes SELECT 'n' || g FROM generate_series(1, 40) g;";

/// Count and checksum of rows shaped as `shop.orders` (id, name), for `… FROM table`.
const ORDERS_DIGEST: &str =
    "SELECT count(*) || ':' || md5(string_agg(id || name, ',' ORDER BY id))";

/// Count and checksum of rows shaped as `shop.notes` (body), for `… FROM table`.
const NOTES_DIGEST: &str = "SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY body))";

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
                        &cli::ferry(command, &job),
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
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let other = job_text(
        &source,
        &server.url("other"),
        "",
        "[\"schema\", \"full\"]",
        &["SELECT * FROM shop.*"],
    );
    let job = write(dir.path(), "other.toml", &other);
    let output = cli::ferry("run", &job);
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
                    &cli::ferry(command, &job),
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
            let output = cli::ferry(command, &job);
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
    assert_refused(
        &cli::ferry("stop", &job),
        "is not running",
        "stop before run",
    );
    assert_refused(
        &cli::ferry_with("limit", &job, &["--rows-per-second", "5"]),
        "is not running",
        "limit before run",
    );
    let first = cli::spawn("run", &job);
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
    let again = cli::ferry("run", &job);
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
        &cli::ferry("run", &copy),
        "job shop_sync is already running",
        "run elsewhere",
    );
    assert_refused(
        &cli::ferry("drop", &job),
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
    let output = cli::stop(&job, first);
    assert!(output.status.success(), "{}", describe(&output));
    let digest = format!("{ORDERS_DIGEST} FROM shop.orders");
    assert_eq!(
        server.psql("sink", &digest).unwrap(),
        server.psql("source", &digest).unwrap()
    );
    assert_refused(
        &cli::ferry("stop", &job),
        "is not running",
        "stop after the run",
    );
    // The job file edited since (another rule): the records are still this file's, as the
    // checkpoint beside it says, and `ferry drop` removes them.
    std::fs::write(
        &job,
        text.replace(
            "SELECT * FROM shop.orders",
            "SELECT * FROM shop.orders WHERE id > 0",
        ),
    )
    .unwrap();
    assert_refused(
        &cli::ferry("run", &job),
        "belongs to another job of that name",
        "run after an edit",
    );
    let output = cli::ferry("drop", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let slots = server
        .psql("source", "SELECT count(*) FROM pg_replication_slots")
        .unwrap();
    assert_eq!(slots.trim(), "0", "drop left the slot");
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
    let run = cli::spawn("run", &job);
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
        &cli::ferry("drop", &job),
        "is already running",
        "drop during the copy",
    );
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let digest = format!("{NOTES_DIGEST} FROM shop.notes");
    assert_eq!(
        server.psql("sink", &digest).unwrap(),
        server.psql("source", &digest).unwrap()
    );
}

/// A server with `source` (the shop) and `sink` databases.
fn pg_servers() -> PgServer {
    let server = PgServer::start().expect("start PostgreSQL");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server.psql("source", PG_SHOP).unwrap();
    server
}

/// Asserts the sink has no tables at all: a refused job wrote nothing.
fn assert_sink_untouched(server: &PgServer, what: &str) {
    let tables = server
        .psql(
            "sink",
            "SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public', 'pg_toast')",
        )
        .unwrap();
    assert_eq!(tables.trim(), "0", "{what} wrote to the sink");
}

#[test]
fn rules_too_deep_names_too_long_and_volatile_functions_are_refused_before_any_write() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let or_chain = |terms: usize| {
        let terms: Vec<String> = (1..=terms).map(|i| format!("id = {i}")).collect();
        terms.join(" OR ")
    };
    let long = "t".repeat(64);
    let cases = [
        (
            format!("SELECT * FROM shop.orders WHERE {}", or_chain(2_000)),
            "operators; a rule holds at most 512".to_string(),
        ),
        (
            format!(
                "SELECT id, {} AS total FROM shop.orders",
                vec!["id"; 20_000].join(" + ")
            ),
            "operators; a rule holds at most 512".to_string(),
        ),
        (
            "SELECT id, now() AS at FROM shop.orders".to_string(),
            "now() is not deterministic".to_string(),
        ),
        (
            "SELECT * FROM shop.orders WHERE random() < 0.5".to_string(),
            "random() is not deterministic".to_string(),
        ),
        (
            "SELECT id, no_such_function(name) AS x FROM shop.orders".to_string(),
            "Invalid function 'no_such_function'".to_string(),
        ),
        (
            format!("INSERT INTO copy.{long} SELECT * FROM shop.orders"),
            format!("the target table name '{long}' is longer than the 63 bytes"),
        ),
        (
            format!("INSERT INTO {long}.orders SELECT * FROM shop.orders"),
            "the target schema name".to_string(),
        ),
        (
            format!("SELECT id, name AS {long} FROM shop.orders"),
            "the target column name".to_string(),
        ),
        (
            // 21 characters of 3 bytes: 63 bytes fit, 22 do not.
            format!(
                "INSERT INTO copy.{} SELECT * FROM shop.orders",
                "漢".repeat(22)
            ),
            "is longer than the 63 bytes".to_string(),
        ),
    ];
    for (rule, expected) in &cases {
        let job = pg_job(
            &server,
            dir.path(),
            "bad.toml",
            "",
            "[\"schema\", \"full\"]",
            &[rule],
        );
        for command in ["check", "run"] {
            assert_refused(
                &cli::ferry(command, &job),
                expected,
                &format!("{command} {expected}"),
            );
        }
        assert_sink_untouched(&server, expected);
    }

    // At the limit a chain runs, evaluated both by the source and by ferry (two rules over
    // one table), and copies exactly what it selects.
    let chain = or_chain(256);
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\"]",
        &[
            &format!("INSERT INTO copy.few SELECT * FROM shop.orders WHERE {chain}"),
            "INSERT INTO copy.none SELECT * FROM shop.orders WHERE id < 0",
        ],
    );
    let job = write(dir.path(), "deep.toml", &text);
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let digest = ORDERS_DIGEST;
    assert_eq!(
        server
            .psql("sink", &format!("{digest} FROM copy.few"))
            .unwrap(),
        server
            .psql(
                "source",
                &format!("{digest} FROM shop.orders WHERE id <= 256")
            )
            .unwrap()
    );
}

#[test]
fn sql_written_into_a_checkpoint_is_never_run() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\"]",
        &["INSERT INTO copy.orders SELECT * FROM shop.orders"],
    )
    .replace("[migration]\n", "[migration]\nchunk_rows = 100\n");
    let job = write(dir.path(), "parts.toml", &text);
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let state_path = dir.path().join("parts.state.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    assert!(state.contains("\"key\""), "{state}");
    // Bounds kept as numbers: an edit that puts SQL where a bound is, or a range as text
    // (as older checkpoints held), is not a checkpoint; nothing of it reaches the source.
    let value: serde_json::Value = serde_json::from_str(&state).unwrap();
    for forged in [
        serde_json::json!("id >= 0) OR (1=1"),
        serde_json::json!({"key": {"from": "1; DROP TABLE shop.orders", "to": null}}),
        serde_json::json!({"key": {"from": 0, "to": 10, "sql": "1=1"}}),
    ] {
        let mut edited = value.clone();
        edited["snapshot"]["parts"][0]["range"] = forged;
        edited["snapshot"]["complete"] = serde_json::json!(false);
        std::fs::write(&state_path, edited.to_string()).unwrap();
        let output = cli::ferry("run", &job);
        assert_refused(&output, "is not a ferry checkpoint", "a forged range");
    }
    assert_eq!(
        server
            .psql("source", "SELECT count(*) FROM shop.orders")
            .unwrap()
            .trim(),
        "500"
    );
}

#[test]
fn jobs_that_share_a_name_never_share_a_slot_parts_or_a_position() {
    let server = pg_servers();
    server.create_database("elsewhere").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let types = "[\"schema\", \"full\", \"incremental\"]";
    let first = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        types,
        &["INSERT INTO a.orders SELECT * FROM shop.orders"],
    );
    let second = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        types,
        &["INSERT INTO b.orders SELECT * FROM shop.orders"],
    );
    // Both default to the name shop_sync.
    let first_job = write(dir.path(), "shop-sync.toml", &first);
    let second_job = write(dir.path(), "shop_sync.toml", &second);
    let run = cli::spawn("run", &first_job);
    cli::wait_for(
        "the first job to stream",
        std::time::Duration::from_secs(60),
        || {
            server
                .psql(
                    "sink",
                    "SELECT count(*) FROM _ferry.applied WHERE job = 'shop_sync'",
                )
                .is_ok_and(|n| n.trim() == "1")
        },
    );
    let output = cli::stop(&first_job, run);
    assert!(output.status.success(), "{}", describe(&output));
    // A change the first job must still get, whatever the second tries.
    server
        .psql(
            "source",
            "INSERT INTO shop.orders VALUES (1001, 'while stopped')",
        )
        .unwrap();
    for command in ["check", "run", "drop"] {
        assert_refused(
            &cli::ferry(command, &second_job),
            "belongs to another job of that name",
            &format!("{command} of the second job"),
        );
    }
    // The same name in another directory, into another database: only the source's slot
    // and publication are shared, and they say whose they are.
    let other_dir = tempfile::tempdir().unwrap();
    let third = second.replace(&server.url("sink"), &server.url("elsewhere"));
    let third_job = write(other_dir.path(), "shop_sync.toml", &third);
    for command in ["run", "drop"] {
        assert_refused(
            &cli::ferry(command, &third_job),
            "the replication slot and publication ferry_shop_sync at the source belongs to another job",
            &format!("{command} elsewhere"),
        );
    }
    let schemas = server
        .psql(
            "sink",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'b'",
        )
        .unwrap();
    assert_eq!(schemas.trim(), "0", "the second job wrote to the sink");
    let tables = server
        .psql(
            "elsewhere",
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('b', '_ferry')",
        )
        .unwrap();
    assert_eq!(tables.trim(), "0", "the third job wrote to its sink");
    // The first job goes on from where it stopped: nothing lost, nothing doubled.
    let run = cli::spawn("run", &first_job);
    cli::wait_for(
        "the change made while stopped",
        std::time::Duration::from_secs(60),
        || {
            server
                .psql("sink", "SELECT count(*) FROM a.orders WHERE id = 1001")
                .is_ok_and(|n| n.trim() == "1")
        },
    );
    let output = cli::stop(&first_job, run);
    assert!(output.status.success(), "{}", describe(&output));
    let digest = ORDERS_DIGEST;
    assert_eq!(
        server
            .psql("sink", &format!("{digest} FROM a.orders"))
            .unwrap(),
        server
            .psql("source", &format!("{digest} FROM shop.orders"))
            .unwrap()
    );
}

#[test]
fn bookkeeping_and_system_schemas_are_never_targets() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    for (rule, table) in [
        (
            "INSERT INTO _ferry.parts SELECT * FROM shop.orders",
            "_ferry.parts",
        ),
        ("INSERT INTO _ferry.* SELECT * FROM shop.*", "_ferry."),
        (
            "INSERT INTO pg_catalog.orders SELECT * FROM shop.orders",
            "pg_catalog.orders",
        ),
        (
            "INSERT INTO pg_toast.orders SELECT * FROM shop.orders",
            "pg_toast.orders",
        ),
        (
            "INSERT INTO information_schema.orders SELECT * FROM shop.orders",
            "information_schema.orders",
        ),
    ] {
        let job = pg_job(
            &server,
            dir.path(),
            "forge.toml",
            "existing_rows = \"append\"",
            "[\"schema\", \"full\"]",
            &[rule],
        );
        for command in ["check", "run"] {
            let output = cli::ferry(command, &job);
            assert_refused(&output, "in a schema the sink keeps for itself", rule);
            assert!(
                String::from_utf8_lossy(&output.stderr).contains(table),
                "{rule}"
            );
        }
        assert_sink_untouched(&server, rule);
    }

    let maria = MariaServer::start().expect("start MariaDB");
    maria.create_database("shop").unwrap();
    maria
        .sql(
            "shop",
            "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1);",
        )
        .unwrap();
    let sink = MariaServer::start().expect("start MariaDB");
    for rule in [
        "INSERT INTO mysql.orders SELECT * FROM shop.orders",
        "INSERT INTO Performance_Schema.orders SELECT * FROM shop.orders",
        "INSERT INTO sys.orders SELECT * FROM shop.orders",
        "INSERT INTO _ferry.jobs SELECT * FROM shop.orders",
    ] {
        let text = job_text(
            &maria.url("shop"),
            &sink.url(""),
            "existing_rows = \"append\"",
            "[\"schema\", \"full\"]",
            &[rule],
        );
        let job = write(dir.path(), "forge.toml", &text);
        assert_refused(
            &cli::ferry("run", &job),
            "in a schema the sink keeps for itself",
            rule,
        );
    }
    let databases = sink
        .sql(
            "",
            "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_ferry'",
        )
        .unwrap();
    assert_eq!(databases.trim(), "0");
}

#[test]
fn parts_count_only_for_the_target_the_sink_holds_them_for() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &server.url("source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\"]",
        &[
            "INSERT INTO copy.orders SELECT * FROM shop.orders",
            "INSERT INTO copy.notes SELECT * FROM shop.notes",
        ],
    )
    .replace("[migration]\n", "[migration]\nchunk_rows = 100\n");
    let job = write(dir.path(), "parts.toml", &text);
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let digest = ORDERS_DIGEST;
    let expected = server
        .psql("source", &format!("{digest} FROM shop.orders"))
        .unwrap();
    let landed = || {
        server
            .psql("sink", &format!("{digest} FROM copy.orders"))
            .unwrap()
    };
    assert_eq!(landed(), expected);

    // The target dropped and made anew: the old table's part records are not its own.
    server
        .psql(
            "sink",
            "DROP TABLE copy.orders; CREATE TABLE copy.orders (id int PRIMARY KEY, name text);",
        )
        .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(landed(), expected, "a table made anew was left empty");

    // A checkpoint that says more than the sink holds (here: an old copy put back after
    // `ferry drop` and emptied targets): the sink's records decide, every part is copied.
    let state_path = dir.path().join("parts.state.json");
    let saved = std::fs::read_to_string(&state_path).unwrap();
    assert!(saved.contains("\"complete\": true"), "{saved}");
    let output = cli::ferry("drop", &job);
    assert!(output.status.success(), "{}", describe(&output));
    server
        .psql("sink", "TRUNCATE copy.orders, copy.notes")
        .unwrap();
    std::fs::write(&state_path, &saved).unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(landed(), expected, "a checkpoint's word skipped rows");
    let notes = NOTES_DIGEST;
    assert_eq!(
        server
            .psql("sink", &format!("{notes} FROM copy.notes"))
            .unwrap(),
        server
            .psql("source", &format!("{notes} FROM shop.notes"))
            .unwrap()
    );
    // Records gone from the sink of a table without a key that still holds rows: copying
    // its parts again could double them, so the run is refused and the rows stay as they are.
    server
        .psql(
            "sink",
            "DELETE FROM _ferry.parts WHERE target_name = 'notes'",
        )
        .unwrap();
    let before = server
        .psql("sink", &format!("{notes} FROM copy.notes"))
        .unwrap();
    assert_refused(
        &cli::ferry("run", &job),
        "could add rows twice",
        "a keyless target without records",
    );
    assert_eq!(
        server
            .psql("sink", &format!("{notes} FROM copy.notes"))
            .unwrap(),
        before
    );
    // An edited part list that no longer covers a table is refused.
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["snapshot"]["complete"] = serde_json::json!(false);
    state["snapshot"]["parts"].as_array_mut().unwrap().pop();
    std::fs::write(&state_path, state.to_string()).unwrap();
    assert_refused(
        &cli::ferry("run", &job),
        "do not cover it exactly once",
        "a part list cut short",
    );
}

#[test]
fn permanent_errors_exit_at_once_and_a_full_disk_is_retried_without_leftovers() {
    let server = pg_servers();
    server
        .psql(
            "source",
            "CREATE TABLE shop.spans (id int PRIMARY KEY, d interval);
             INSERT INTO shop.spans VALUES (1, '2 days'), (2, '1 month 3 days');
             CREATE TABLE shop.wide (id int PRIMARY KEY, body text);
             INSERT INTO shop.wide SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 20000) g;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        // A value the server refuses on a filter pushed down to it (division by zero).
        (
            server.url("sink"),
            "INSERT INTO copy.orders SELECT * FROM shop.orders WHERE 100 / (id - 7) > 0",
            "division by zero",
        ),
        // A value ferry cannot carry: the fix is in the rule, not in waiting.
        (
            server.url("sink"),
            "SELECT * FROM shop.spans",
            "leave this column out of the rule's SELECT list",
        ),
        // A file sink under a path that is a file.
        (
            format!("parquet://{}", file.join("lake").display()),
            "SELECT * FROM shop.orders",
            "not-a-directory",
        ),
    ];
    for (sink, rule, expected) in cases {
        let text = job_text(
            &server.url("source"),
            &sink,
            "",
            "[\"schema\", \"full\"]",
            &[rule],
        );
        let job = write(dir.path(), "permanent.toml", &text);
        let output = cli::ferry("run", &job);
        assert_refused(&output, expected, rule);
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("trying again"),
            "{rule} was retried: {}",
            describe(&output)
        );
        let _ = cli::ferry("drop", &job);
    }

    // A full disk passes: ferry tries again, and no temporary file stays behind.
    let lake = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(lake.path())
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(lake.path().to_path_buf());
    let filler = lake.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1_900_000]).unwrap();
    let text = job_text(
        &server.url("source"),
        &format!("parquet://{}", lake.path().join("out").display()),
        "",
        "[\"schema\", \"full\"]",
        &["SELECT * FROM shop.wide"],
    );
    let job = write(dir.path(), "full_disk.toml", &text);
    let log = dir.path().join("full_disk.log");
    let mut child = std::process::Command::new(cli::binary())
        .arg("run")
        .arg(&job)
        .stdout(std::fs::File::create(dir.path().join("full_disk.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    cli::wait_for(
        "a retry after the disk filled",
        std::time::Duration::from_secs(60),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("trying again after a pause")),
    );
    let leftovers = |root: &Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.to_string_lossy().ends_with(".tmp") {
                    found.push(path.display().to_string());
                }
            }
        }
        found
    };
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("No space left on device"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    std::fs::remove_file(&filler).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(leftovers(lake.path()), Vec::<String>::new());
    // The summary counts each row once, though the parts that failed were read again.
    let summary = std::fs::read_to_string(dir.path().join("full_disk.out")).unwrap();
    let line = summary
        .lines()
        .find(|l| l.starts_with("shop.wide"))
        .unwrap_or_default();
    let figures: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        figures.get(1..3),
        Some(&["20000", "20000"][..]),
        "{summary}"
    );
    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn a_dot_in_a_source_name_never_moves_its_target_to_another_schema() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    copied(
        &server,
        dir.path(),
        "dotted.toml",
        r#"CREATE TABLE shop."eu.orders" (id int PRIMARY KEY, name text);
               INSERT INTO shop."eu.orders" VALUES (1, 'a'), (2, 'b');"#,
        r"INSERT INTO '${1}_old' SELECT * FROM 'shop\.(eu\..*)'",
    );
    let landed = server
        .psql(
            "sink",
            "SELECT table_schema || '|' || table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema', '_ferry')",
        )
        .unwrap();
    assert_eq!(landed.trim(), "shop|eu.orders_old");
    assert_eq!(
        server
            .psql(
                "sink",
                r#"SELECT string_agg(id || name, ',' ORDER BY id) FROM shop."eu.orders_old""#
            )
            .unwrap()
            .trim(),
        "1a,2b"
    );
}

#[test]
fn connection_refusals_carry_the_servers_reason_and_are_the_users() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let port = server.port();
    for (source, expected) in [
        (
            format!("postgres://{SUPERUSER}@127.0.0.1:{port}/nosuch"),
            "database \"nosuch\" does not exist (3D000)",
        ),
        (
            format!("postgres://nobody@127.0.0.1:{port}/source"),
            "role \"nobody\" does not exist (28000)",
        ),
    ] {
        let text = job_text(
            &source,
            &server.url("sink"),
            "",
            "[\"schema\", \"full\"]",
            &["SELECT * FROM shop.orders"],
        );
        let job = write(dir.path(), "connect.toml", &text);
        assert_refused(&cli::ferry("check", &job), expected, &source);
    }
    // A password the server asks for and the URL lacks.
    server
        .psql(
            "source",
            "CREATE ROLE guarded LOGIN PASSWORD 'sekret'; GRANT SELECT ON ALL TABLES IN SCHEMA shop TO guarded;",
        )
        .unwrap();
    let hba = server.dir().join("data").join("pg_hba.conf");
    assert!(
        hba.exists(),
        "{} is where the harness keeps pg_hba.conf",
        hba.display()
    );
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all guarded 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    server.psql("source", "SELECT pg_reload_conf()").unwrap();
    let text = job_text(
        &format!("postgres://guarded@127.0.0.1:{port}/source"),
        &server.url("sink"),
        "",
        "[\"schema\", \"full\"]",
        &["SELECT * FROM shop.orders"],
    );
    let job = write(dir.path(), "password.toml", &text);
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("password missing; the server asks for a password"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_mysql_target_made_anew_gets_its_rows_again() {
    let source = MariaServer::start().expect("start MariaDB");
    source.create_database("shop").unwrap();
    source
        .sql(
            "shop",
            "CREATE TABLE orders (id int PRIMARY KEY, name varchar(20));
             INSERT INTO orders SELECT seq, CONCAT('o', seq) FROM seq_1_to_600;
             ANALYZE TABLE orders;",
        )
        .unwrap();
    let sink = MariaServer::start().expect("start MariaDB");
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &source.url("shop"),
        &sink.url(""),
        "",
        "[\"schema\", \"full\"]",
        &["INSERT INTO copy.orders SELECT * FROM shop.orders"],
    )
    .replace("[migration]\n", "[migration]\nchunk_rows = 100\n");
    let job = write(dir.path(), "maria.toml", &text);
    let digest = "SELECT COUNT(*), MD5(GROUP_CONCAT(id, name ORDER BY id)) FROM";
    let expected = source
        .sql("shop", &format!("{digest} shop.orders"))
        .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        sink.sql("", &format!("{digest} copy.orders")).unwrap(),
        expected
    );
    let parts = sink
        .sql(
            "",
            "SELECT COUNT(*) FROM _ferry.parts WHERE target_created IS NOT NULL",
        )
        .unwrap();
    assert_ne!(parts.trim(), "0", "part records name their table");
    // A MySQL table's identity is its creation time, kept to the second: made anew within
    // the second of the old one's creation it could not be told apart (ferry's own CREATE
    // forgets the old records at once).
    cli::wait_for("the next second", std::time::Duration::from_secs(5), || {
        sink.sql(
            "",
            "SELECT NOW() > CREATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'copy' AND TABLE_NAME = 'orders'",
        )
        .is_ok_and(|answer| answer.trim() == "1")
    });
    sink.sql(
        "",
        "DROP TABLE copy.orders; CREATE TABLE copy.orders (id int PRIMARY KEY, name varchar(20));",
    )
    .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        sink.sql("", &format!("{digest} copy.orders")).unwrap(),
        expected,
        "a table made anew was left empty"
    );
}

#[test]
fn verify_reports_a_failed_read_as_a_failure_not_as_missing_rows() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = copied(
        &server,
        dir.path(),
        "spans.toml",
        "CREATE TABLE shop.spans (id int PRIMARY KEY, d interval);
             INSERT INTO shop.spans SELECT g, make_interval(days => g) FROM generate_series(1, 3000) g;",
        "SELECT * FROM shop.spans",
    );
    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
    // A value in the target that reading it fails on, late in the table: the read of the
    // target side fails after some batches, and verify says so (exit 2, the reason), where
    // it used to report the rest of the rows missing (exit 1).
    server
        .psql(
            "sink",
            "UPDATE shop.spans SET d = interval '1 month' WHERE id = 2900",
        )
        .unwrap();
    let output = cli::ferry("verify", &job);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("DIFFERENT"), "{}", describe(&output));
    assert_refused(
        &output,
        "months has no fixed length",
        "verify over a failed read",
    );
}

#[test]
fn verify_whose_source_goes_away_fails_as_a_server_failure_naming_it() {
    let server = pg_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = copied(
        &server,
        dir.path(),
        "wide.toml",
        "CREATE TABLE shop.wide (id int PRIMARY KEY, note text);
             INSERT INTO shop.wide SELECT g, repeat('n', 100) FROM generate_series(1, 200000) g;",
        "SELECT * FROM shop.wide",
    );
    // The source drops ferry's connections while verify reads: verify must fail as a server
    // failure (exit 3) that names the source, never report the rows it did not read as
    // missing in the target (exit 1).
    let mut verify = cli::spawn("verify", &job);
    let mut terminated = 0;
    let status = loop {
        if let Some(status) = verify.try_wait().unwrap() {
            break status;
        }
        terminated += server
            .psql(
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'source' AND application_name = 'ferry'",
            )
            .map(|out| out.trim().parse::<u32>().unwrap_or(0))
            .unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = verify.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        terminated > 0,
        "no connection of verify was cut: {}",
        describe(&output)
    );
    assert_eq!(status.code(), Some(3), "{}", describe(&output));
    assert!(!stdout.contains("DIFFERENT"), "{}", describe(&output));
    let source = format!("127.0.0.1:{}/source", server.port());
    assert!(
        stderr.contains(&source),
        "the error names the source ({source}): {}",
        describe(&output)
    );
}

#[test]
fn check_leaves_no_aborted_connection_on_mariadb() {
    let source = MariaServer::start().expect("start MariaDB");
    source.create_database("shop").unwrap();
    source
        .sql("shop", "CREATE TABLE orders (id int PRIMARY KEY, name varchar(20)); INSERT INTO orders VALUES (1, 'a');")
        .unwrap();
    let sink = MariaServer::start().expect("start MariaDB");
    let dir = tempfile::tempdir().unwrap();
    let text = job_text(
        &source.url("shop"),
        &sink.url(""),
        "",
        "[\"schema\", \"full\", \"incremental\"]",
        &["INSERT INTO copy.orders SELECT * FROM shop.orders"],
    );
    let job = write(dir.path(), "tidy.toml", &text);
    let aborted = |server: &MariaServer| {
        server
            .sql("", "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'ABORTED_CLIENTS'")
            .unwrap()
            .trim()
            .to_string()
    };
    let before = (aborted(&source), aborted(&sink));
    let output = cli::ferry("check", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        (aborted(&source), aborted(&sink)),
        before,
        "ferry check left connections without closing them"
    );
}
