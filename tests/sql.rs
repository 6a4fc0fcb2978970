//! The SQL control plane of `ferry serve --pg` as users drive it: `psql` (simple query
//! protocol) and tokio-postgres (extended protocol, with parameters) create a PostgreSQL →
//! MariaDB job and watch it in `ferry.jobs` until it completes, pause and resume an
//! incremental one without loss, cut it over and drop it; every error carries its SQLSTATE
//! and changes nothing; with a token and a certificate, SCRAM and TLS.

use std::time::Duration;

use ferry_testkit::cli::wait_for;
use ferry_testkit::serve::Serve;
use ferry_testkit::{MariaServer, PgServer};

const MINUTE: Duration = Duration::from_secs(60);

fn source(pg: &PgServer, rows: u64) {
    pg.create_database("src").unwrap();
    pg.psql(
        "src",
        &format!(
            "CREATE TABLE public.t (id bigint PRIMARY KEY, v text);
             INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;
             ANALYZE public.t;"
        ),
    )
    .unwrap();
}

fn maria_with(databases: &[&str]) -> MariaServer {
    let maria = MariaServer::start().expect("start MariaDB");
    for database in databases {
        maria.create_database(database).unwrap();
    }
    maria
}

/// psql's answer: whether it succeeded, what it printed, what it said on stderr.
fn sql(serve: &Serve, statement: &str) -> (bool, String, String) {
    let out = serve.psql(statement, &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Runs `statement`, which must succeed, and returns what it printed.
fn ok(serve: &Serve, statement: &str) -> String {
    let (success, out, err) = sql(serve, statement);
    assert!(success, "{statement}: {err}");
    out
}

/// Runs `statement`, which must fail with `code`; returns the error text.
fn fails(serve: &Serve, statement: &str, code: &str) -> String {
    let (success, out, err) = sql(serve, statement);
    assert!(!success, "{statement} succeeded: {out}");
    assert!(
        err.contains(&format!("ERROR:  {code}:")),
        "{statement}: expected SQLSTATE {code}, got: {err}"
    );
    err
}

fn wait_sql(serve: &Serve, query: &str, want: &str, timeout: Duration) {
    let mut last = String::new();
    wait_for(&format!("{query} to be {want}"), timeout, || {
        last = sql(serve, query).1;
        last == want
    });
}

#[test]
fn psql_and_a_driver_create_watch_and_refuse() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, 10_000);
    let maria = maria_with(&["dst", "dst2"]);
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &["--pg", "127.0.0.1:0"]);

    // Boot: an empty catalog, and the chatter drivers send.
    assert_eq!(ok(&serve, "SELECT count(*) FROM ferry.jobs"), "0");
    assert_eq!(ok(&serve, "SHOW JOBS"), "");
    assert!(ok(&serve, "SELECT version()").contains("ferry"));
    assert_eq!(ok(&serve, "SHOW server_version"), "15.0");
    assert_eq!(ok(&serve, "SET extra_float_digits = 3"), "SET");
    assert_eq!(ok(&serve, "BEGIN; SELECT 1; COMMIT"), "BEGIN\n1\nCOMMIT");

    let sink = maria.url("dst");
    let create = format!(
        "CREATE JOB j1 FROM '{}' TO '{sink}' RULES ($$INSERT INTO dst.t SELECT * FROM public.t WHERE id <= 8000$$) WITH (types = 'schema,full', batch_size = 1000)",
        pg.url("src")
    );
    assert_eq!(ok(&serve, &create), "CREATE JOB");
    wait_sql(
        &serve,
        "SELECT state FROM ferry.jobs WHERE name = 'j1'",
        "completed",
        MINUTE,
    );
    assert_eq!(
        ok(
            &serve,
            "SELECT state, full_percent, rows_done FROM ferry.jobs WHERE name = 'j1'"
        ),
        "completed|100|8000"
    );
    assert_eq!(
        maria
            .sql("dst", "SELECT count(*), count(DISTINCT id), max(id) FROM t")
            .unwrap()
            .trim(),
        "8000\t8000\t8000"
    );
    // One catalog: HTTP sees the job SQL made.
    assert_eq!(serve.get("/v1/jobs/j1").body["state"], "completed");
    assert!(ok(&serve, "SHOW JOBS").starts_with("j1|1|completed|"));
    assert!(ok(&serve, "SHOW JOB j1").contains("completed"));
    assert_eq!(
        ok(
            &serve,
            "SELECT count(*) > 0 FROM ferry.events WHERE job = 'j1' AND to_state = 'completed'"
        ),
        "t"
    );
    assert_eq!(
        ok(
            &serve,
            "SELECT source_table, status, rows_done FROM ferry.job_tables WHERE job = 'j1'"
        ),
        "public.t|finished|8000"
    );

    // The error cases, each with its SQLSTATE, none changing anything.
    fails(&serve, "PAUSE JOB j1", "55000");
    fails(&serve, "PAUSE JOB nope", "42704");
    let (success, _, notice) = sql(&serve, "PAUSE JOB IF EXISTS nope");
    assert!(
        success && notice.contains("does not exist, skipping"),
        "{notice}"
    );
    fails(&serve, &create, "42710");
    let (success, out, notice) = sql(
        &serve,
        &create.replace("CREATE JOB j1", "CREATE JOB IF NOT EXISTS j1"),
    );
    assert!(
        success && out == "CREATE JOB" && notice.contains("already exists, skipping"),
        "{notice}"
    );
    let error = fails(&serve, "CREATE JOB j9 FROM 'x' INTO 'y'", "42601");
    assert!(
        error.contains("\"INTO\"") && error.contains("LINE 1"),
        "{error}"
    );
    fails(
        &serve,
        "INSERT INTO ferry.jobs (name) VALUES ('x')",
        "25006",
    );
    fails(&serve, "DELETE FROM ferry.jobs", "25006");
    let error = fails(
        &serve,
        &create
            .replace("CREATE JOB j1", "CREATE JOB j9")
            .replace("batch_size", "batch_sise"),
        "22023",
    );
    assert!(error.contains("did you mean batch_size"), "{error}");
    fails(
        &serve,
        &create
            .replace("CREATE JOB j1", "CREATE JOB j9")
            .replace("id <= 8000", "id <= "),
        "22023",
    );
    fails(&serve, "SELECT * FROM ferry.jobz", "42P01");
    // No table functions to make rows without end; no statement beyond a megabyte.
    let (success, _, error) = sql(&serve, "SELECT count(*) FROM range(10000000000)");
    assert!(!success && error.contains("ERROR:"), "{error}");
    let long = format!("SELECT '{}'", "x".repeat(1 << 20));
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=ferry dbname=ferry sslmode=disable",
            serve.sql_port.unwrap()
        ))
        .args([
            "-XAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(long.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("54000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (success, out, notice) = sql(&serve, "PRECHECK JOB IF EXISTS nope");
    assert!(
        success && out.is_empty() && notice.contains("skipping"),
        "{notice}"
    );
    fails(&serve, "SELECT nope FROM ferry.jobs", "42703");
    assert_eq!(ok(&serve, "SELECT count(*) FROM ferry.jobs"), "1");
    // A copy is a draft of the same spec, under its own name.
    assert_eq!(ok(&serve, "CREATE JOB j1_copy LIKE j1"), "CREATE JOB");
    assert_eq!(
        ok(
            &serve,
            "SELECT state FROM ferry.jobs WHERE name = 'j1_copy'"
        ),
        "draft"
    );
    assert_eq!(ok(&serve, "DROP JOB j1_copy"), "DROP JOB");

    // A wrong sink password: the precheck names the fix; patched, it completes.
    maria
        .sql(
            "mysql",
            "CREATE USER 'writer'@'%' IDENTIFIED BY 'good'; GRANT ALL ON *.* TO 'writer'@'%';",
        )
        .unwrap();
    let wrong = format!("mysql://writer:wrong@127.0.0.1:{}/dst2", maria.port());
    ok(
        &serve,
        &format!(
            "CREATE JOB j2 FROM '{}' TO '{wrong}' RULES ('INSERT INTO dst2.t SELECT * FROM public.t') WITH (types = 'schema,full')",
            pg.url("src")
        ),
    );
    wait_sql(
        &serve,
        "SELECT state FROM ferry.jobs WHERE name = 'j2'",
        "precheck_failed",
        MINUTE,
    );
    assert_eq!(
        ok(&serve, "SELECT item, status, fix <> '' FROM ferry.precheck_items WHERE job = 'j2' AND status = 'failed'"),
        "sink.connectivity|failed|t"
    );
    assert!(
        !ok(&serve, "SELECT * FROM ferry.jobs").contains("wrong"),
        "a password is shown"
    );
    let items = ok(&serve, "PRECHECK JOB j2");
    assert!(items.contains("j2|sink.connectivity|failed|t|"), "{items}");
    ok(
        &serve,
        &format!(
            "ALTER JOB j2 SET (\"sink.url\" = '{}')",
            wrong.replace("writer:wrong", "writer:good")
        ),
    );
    assert_eq!(ok(&serve, "START JOB j2"), "START JOB");
    wait_sql(
        &serve,
        "SELECT state FROM ferry.jobs WHERE name = 'j2'",
        "completed",
        MINUTE,
    );
    assert_eq!(
        maria.sql("dst2", "SELECT count(*) FROM t").unwrap().trim(),
        "10000"
    );

    // The extended protocol, as drivers use it: parameters, typed rows, SQLSTATEs.
    let port = serve.sql_port.unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=ferry dbname=ferry"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("tokio-postgres connects");
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT id, name, state, rows_done, full_percent FROM ferry.jobs WHERE name = $1",
                &[&"j1"],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>(0), 1);
        assert_eq!(rows[0].get::<_, &str>(2), "completed");
        assert_eq!(rows[0].get::<_, i64>(3), 8000);
        assert_eq!(rows[0].get::<_, f64>(4), 100.0);
        let rows = client
            .query(
                "SELECT name FROM ferry.jobs WHERE id > $1 ORDER BY id",
                &[&0i64],
            )
            .await
            .unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(names, ["j1", "j2"]);
        let since = std::time::SystemTime::now() - Duration::from_secs(3600);
        let rows = client
            .query(
                "SELECT count(*) FROM ferry.events WHERE job = $1 AND at > $2",
                &[&"j1", &since],
            )
            .await
            .unwrap();
        assert!(
            rows[0].get::<_, i64>(0) >= 3,
            "j1's events of the last hour"
        );
        let error = client.execute("PAUSE JOB j1", &[]).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        let error = client.execute("STOP JOB nope", &[]).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT)
        );
        let shown = client.simple_query("SHOW JOBS").await.unwrap();
        assert!(shown.len() >= 2);
        // DROP through the driver; the job is gone from every view.
        assert_eq!(client.execute("DROP JOB j2", &[]).await.unwrap(), 0);
    });
    assert_eq!(serve.get("/v1/jobs/j2").status, 404);
    assert_eq!(
        ok(&serve, "SELECT count(*) FROM ferry.jobs WHERE name = 'j2'"),
        "0"
    );
}

#[test]
fn an_incremental_job_pauses_resumes_cuts_over_and_drops_from_psql() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, 2_000);
    let maria = maria_with(&["dst"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &["--pg", "127.0.0.1:0"]);
    let count = |what: &str| {
        maria
            .sql("dst", &format!("SELECT {what} FROM t"))
            .unwrap()
            .trim()
            .to_string()
    };

    assert_eq!(
        ok(
            &serve,
            &format!(
                "CREATE JOB j3 FROM '{}' TO '{}' RULES ($$INSERT INTO dst.t SELECT * FROM public.t$$) WITH (types = 'schema,full,incremental')",
                pg.url("src"),
                maria.url("dst")
            )
        ),
        "CREATE JOB"
    );
    wait_sql(
        &serve,
        "SELECT substate FROM ferry.jobs WHERE name = 'j3'",
        "caught_up",
        MINUTE,
    );
    assert_eq!(count("count(*)"), "2000");

    assert_eq!(ok(&serve, "PAUSE JOB j3"), "PAUSE JOB");
    assert_eq!(
        ok(&serve, "PAUSE JOB j3"),
        "PAUSE JOB",
        "a second pause is a no-op"
    );
    wait_sql(
        &serve,
        "SELECT state FROM ferry.jobs WHERE name = 'j3'",
        "paused",
        MINUTE,
    );
    pg.psql(
        "src",
        "INSERT INTO public.t SELECT g, 'later ' || g FROM generate_series(2001, 2500) g",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count("count(*)"), "2000", "a paused job wrote");

    // Limits while paused, and a bad one refused.
    assert_eq!(
        ok(
            &serve,
            "SET LIMIT FOR JOB j3 (rows_per_sec = 5000, mb_per_sec = 20)"
        ),
        "SET LIMIT"
    );
    assert_eq!(
        serve.get("/v1/jobs/j3").body["limits"]["rows_per_sec"],
        5000
    );
    fails(&serve, "SET LIMIT FOR JOB j3 (mb_per_sec = 0)", "22023");
    fails(&serve, "SET LIMIT FOR JOB j3 (rows = 5)", "22023");
    assert_eq!(
        ok(&serve, "SET LIMIT FOR JOB j3 (rows_per_sec = DEFAULT)"),
        "SET LIMIT"
    );
    assert_eq!(
        ok(
            &serve,
            "SELECT limit_rows_per_sec IS NULL, limit_mb_per_sec FROM ferry.jobs WHERE name = 'j3'"
        ),
        "t|20"
    );

    // The pause survives a kill -9 of the server.
    let data = serve.kill9();
    let serve = Serve::start(&data, &["--pg", "127.0.0.1:0"]);
    assert_eq!(
        ok(
            &serve,
            "SELECT state, desired_state FROM ferry.jobs WHERE name = 'j3'"
        ),
        "paused|paused"
    );
    assert_eq!(ok(&serve, "RESUME JOB j3"), "RESUME JOB");
    wait_for("the resumed job to apply the changes", MINUTE, || {
        count("count(*)") == "2500"
    });
    assert_eq!(count("count(DISTINCT id)"), "2500");
    wait_sql(
        &serve,
        "SELECT substate FROM ferry.jobs WHERE name = 'j3'",
        "caught_up",
        MINUTE,
    );

    assert_eq!(
        ok(
            &serve,
            "CUTOVER JOB j3 WITH (max_lag_seconds = 5, timeout = '2m')"
        ),
        "CUTOVER JOB"
    );
    assert_eq!(
        ok(&serve, "SELECT state FROM ferry.jobs WHERE name = 'j3'"),
        "stopped"
    );
    fails(&serve, "RESUME JOB j3", "55000");
    assert_eq!(ok(&serve, "DROP JOB j3"), "DROP JOB");
    assert_eq!(
        pg.psql(
            "src",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'ferry%'"
        )
        .unwrap()
        .trim(),
        "0"
    );
    assert_eq!(
        ok(&serve, "SELECT count(*) FROM ferry.jobs WHERE name = 'j3'"),
        "0"
    );
    let (success, _, notice) = sql(&serve, "DROP JOB IF EXISTS j3");
    assert!(success && notice.contains("skipping"), "{notice}");
}

#[test]
fn a_token_is_the_password_and_a_certificate_turns_on_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let serve = Serve::start(
        &dir.path().join("data"),
        &[
            "--pg",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let refused = serve.psql("SELECT 1", &[("PGPASSWORD", "wrong")]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let answered = serve.psql(
        "\\conninfo",
        &[("PGPASSWORD", "s3cret-token"), ("PGSSLMODE", "require")],
    );
    let out = String::from_utf8_lossy(&answered.stdout);
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(out.contains("SSL connection"), "{out}");
    let answered = serve.psql(
        "SELECT count(*) FROM ferry.jobs",
        &[("PGPASSWORD", "s3cret-token")],
    );
    assert_eq!(String::from_utf8_lossy(&answered.stdout).trim(), "0");
    assert!(
        !serve.log().contains("s3cret-token"),
        "the token is in the log"
    );
}

/// The README's psql session, run as written.
#[test]
fn the_readme_sql_session_runs_as_written() {
    let script = ferry_testkit::serve::readme_example("sql-example");
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, 1_000);
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &["--pg", "127.0.0.1:0"]);
    let port = serve.sql_port.unwrap().to_string();
    ferry_testkit::serve::run_example(
        &serve,
        &script,
        &[
            ("PG", port),
            ("SOURCE", pg.url("src")),
            ("SINK", pg.url("dst")),
        ],
    );
    assert_eq!(
        pg.psql("dst", "SELECT count(*), count(DISTINCT id) FROM public.t")
            .unwrap()
            .trim(),
        "1000|1000"
    );
    assert_eq!(
        ok(&serve, "SELECT count(*) FROM ferry.jobs"),
        "0",
        "the session drops its job"
    );
}
