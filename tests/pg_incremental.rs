//! Incremental migrations on real PostgreSQL servers: a snapshot handed off to logical
//! replication while writers keep changing the source, through the `ferry` binary as a user
//! runs it. Every test compares the sink with the rules' SELECT over the source, content not
//! counts, after the writers stop and ferry catches up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_testkit::cli::{self, describe, wait_for, Dice, Writers};
use ferry_testkit::PgServer;

const SOURCE_SCHEMA: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.orders (
    id bigint PRIMARY KEY,
    customer integer NOT NULL,
    amount numeric(12,2),
    note text,
    big text);
CREATE TABLE shop.items (
    order_id bigint, line integer, qty integer NOT NULL,
    PRIMARY KEY (order_id, line));
CREATE TABLE shop.marker (id integer PRIMARY KEY);
-- Rows move into the rule's WHERE by updates that leave the TOASTed column alone.
ALTER TABLE shop.orders REPLICA IDENTITY FULL;
INSERT INTO shop.orders
SELECT g, g % 97, (g % 300)::numeric / 2, 'note ' || g,
       CASE WHEN g % 50 = 0 THEN (SELECT string_agg(md5(g::text || x::text), '') FROM generate_series(1, 200) x) END
FROM generate_series(1, 20000) g;
INSERT INTO shop.items SELECT g / 4, g % 4, g % 9 FROM generate_series(1, 8000) g;
ANALYZE;
"#;

/// The rules every test here runs: a filter that rows move into and out of, a rename, and a
/// table with a composite key.
const RULES: [&str; 3] = [
    "INSERT INTO sales.orders SELECT id, customer, amount AS total, note, big FROM shop.orders WHERE amount > 20",
    "INSERT INTO sales.items SELECT * FROM shop.items",
    "INSERT INTO sales.marker SELECT * FROM shop.marker",
];

/// What the sink must equal: (source query, sink query).
const COMPARE: [(&str, &str); 2] = [
    (
        "SELECT id, customer, amount, note, md5(big) FROM shop.orders WHERE amount > 20 ORDER BY id",
        "SELECT id, customer, total, note, md5(big) FROM sales.orders ORDER BY id",
    ),
    (
        "SELECT * FROM shop.items ORDER BY order_id, line",
        "SELECT * FROM sales.items ORDER BY order_id, line",
    ),
];

fn server() -> PgServer {
    let server = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server.psql("source", SOURCE_SCHEMA).unwrap();
    server
}

fn write_job(server: &PgServer, dir: &Path, migration: &str) -> PathBuf {
    let mut text = format!(
        "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\n{migration}\n",
        server.url("source"),
        server.url("sink")
    );
    for rule in RULES {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    let path = dir.join("sync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until ferry has applied a group of changes (or an idle position): it is streaming.
fn wait_until_streaming(server: &PgServer) {
    wait_for("ferry to stream changes", Duration::from_secs(120), || {
        server
            .psql("sink", "SELECT count(*) FROM _ferry.applied")
            .map(|out| out.trim() == "1")
            .unwrap_or(false)
    });
}

/// Writers of this test's load (see `write_until`) on `url`.
fn start_writers(url: String, seed: u64) -> Writers {
    Writers::start(move |stop, count| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(write_until(url, seed, stop, count))
    })
}

/// Writes to the source until stopped: inserts, updates of the filtered column (rows move in
/// and out of the rule's WHERE), of a TOASTed column and around it, of the primary key,
/// deletes, multi-statement transactions and truncates.
async fn write_until(url: String, seed: u64, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("writer connects");
    tokio::spawn(connection);
    let mut dice = Dice(seed);
    let mut next_id = 1_000_000 + seed as i64 * 10_000_000;
    while !stop.load(Ordering::Relaxed) {
        let id = 1 + dice.roll(20_000) as i64;
        let statement = match dice.roll(12) {
            0 | 1 => {
                next_id += 1;
                format!(
                    "INSERT INTO shop.orders VALUES ({next_id}, {}, {}, 'new', NULL)",
                    dice.roll(97),
                    dice.roll(400)
                )
            }
            // Across the filter: rows move into and out of amount > 20.
            2 | 3 => format!(
                "UPDATE shop.orders SET amount = {} WHERE id = {id}",
                dice.roll(60)
            ),
            // Around the TOASTed column: it is not sent, and must be kept.
            4 => format!(
                "UPDATE shop.orders SET note = 'touched {}' WHERE id % 50 = 0 AND id = {}",
                dice.roll(1000),
                id - id % 50 + 50
            ),
            // The TOASTed value itself changes.
            5 => format!(
                "UPDATE shop.orders SET big = repeat(md5('{}'), 100) WHERE id = {id}",
                dice.roll(1000)
            ),
            // The key changes.
            6 => {
                next_id += 1;
                format!("UPDATE shop.orders SET id = {next_id} WHERE id = {id}")
            }
            7 => format!("DELETE FROM shop.orders WHERE id = {id}"),
            8 => format!(
                "BEGIN; INSERT INTO shop.items VALUES ({id}, 10 + {}, 1) ON CONFLICT DO NOTHING;
                 UPDATE shop.items SET qty = qty + 1 WHERE order_id = {};
                 DELETE FROM shop.items WHERE order_id = {}; COMMIT",
                dice.roll(5),
                dice.roll(2000),
                dice.roll(2000)
            ),
            9 => format!(
                "UPDATE shop.orders SET amount = amount + 1, note = 'bulk' WHERE id BETWEEN {id} AND {id} + 30"
            ),
            10 if dice.roll(40) == 0 => {
                "BEGIN; TRUNCATE shop.items; INSERT INTO shop.items SELECT g, 1, 1 FROM generate_series(1, 50) g; COMMIT".to_string()
            }
            _ => format!(
                "UPDATE shop.items SET qty = {} WHERE order_id = {}",
                dice.roll(9),
                dice.roll(2000)
            ),
        };
        match client.batch_execute(&statement).await {
            Ok(()) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            // A key change can collide with a row another statement made; that is the
            // source refusing it, not a test failure.
            Err(error) if error.as_db_error().is_some() => {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            Err(error) => panic!("writer failed: {error}"),
        }
    }
}

/// Inserts marker `id` at the source and waits until the sink holds it: every change
/// committed before it is then applied too.
fn catch_up(server: &PgServer, id: i32) {
    server
        .psql("source", &format!("INSERT INTO shop.marker VALUES ({id})"))
        .unwrap();
    wait_for(
        "ferry to apply the marker",
        Duration::from_secs(120),
        || {
            server
                .psql(
                    "sink",
                    &format!("SELECT count(*) FROM sales.marker WHERE id = {id}"),
                )
                .map(|out| out.trim() == "1")
                .unwrap_or(false)
        },
    );
}

/// The sink equals the source: by ferry's own verify and by comparing the content here.
fn assert_verified(server: &PgServer, job: &Path) {
    let output = cli::ferry("verify", job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("verify passed: 3 target tables equal"),
        "{}",
        describe(&output)
    );
    assert_sink_equals_source(server);
}

fn assert_sink_equals_source(server: &PgServer) {
    for (source_query, sink_query) in COMPARE {
        let expected = server.psql("source", source_query).unwrap();
        let landed = server.psql("sink", sink_query).unwrap();
        assert!(
            !expected.trim().is_empty(),
            "nothing selected: {source_query}"
        );
        if landed != expected {
            let expected: Vec<&str> = expected.lines().collect();
            let landed: Vec<&str> = landed.lines().collect();
            let missing: Vec<_> = expected
                .iter()
                .filter(|l| !landed.contains(l))
                .take(5)
                .collect();
            let extra: Vec<_> = landed
                .iter()
                .filter(|l| !expected.contains(l))
                .take(5)
                .collect();
            panic!(
                "sink differs from the rule's SELECT ({} rows vs {}):\n missing {missing:?}\n extra {extra:?}\n query {source_query}",
                landed.len(),
                expected.len()
            );
        }
    }
}

#[test]
fn snapshot_hands_off_to_streaming_while_writers_keep_writing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &server,
        dir.path(),
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 500\nparallelism = 2\nchunk_rows = 4000",
    );
    let writers = start_writers(server.url("source"), 1);
    wait_for("the writers to start", Duration::from_secs(30), || {
        writers.transactions() > 20
    });
    let child = cli::spawn("run", &job);
    // Keep writing through the snapshot and well into streaming.
    wait_for("ferry to stream changes", Duration::from_secs(120), || {
        server
            .psql("sink", "SELECT count(*) FROM _ferry.applied")
            .map(|out| out.trim() == "1")
            .unwrap_or(false)
    });
    let started = writers.transactions();
    wait_for(
        "more writes while streaming",
        Duration::from_secs(60),
        || writers.transactions() > started + 300,
    );
    let written = writers.finish();
    catch_up(&server, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("changes read"), "{stdout}");
    assert!(written > 300);
    assert_verified(&server, &job);

    // Resuming after a clean stop continues where it ended.
    let writers = start_writers(server.url("source"), 2);
    wait_for("more writes", Duration::from_secs(30), || {
        writers.transactions() > 200
    });
    writers.finish();
    let child = cli::spawn("run", &job);
    catch_up(&server, 2);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("resuming the job from its checkpoint"),
        "{stderr}"
    );
    assert_verified(&server, &job);

    // verify finds each kind of difference and names the rows.
    server
        .psql(
            "sink",
            "DELETE FROM sales.orders WHERE id = (SELECT min(id) FROM sales.orders);
             UPDATE sales.orders SET note = 'tampered' WHERE id = (SELECT max(id) FROM sales.orders);
             INSERT INTO sales.items VALUES (-5, 1, 1);",
        )
        .unwrap();
    let output = cli::ferry("verify", &job);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "DIFFERENT: 1 missing in the target, 0 not at the source, 1 with other values"
        ) && stdout.contains("note=tampered")
            && stdout.contains("not at the source: (order_id=-5, line=1, qty=1)"),
        "{stdout}"
    );

    // ferry drop removes the slot and publication.
    let output = cli::ferry("drop", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("replication slot ferry_sync"));
    assert_eq!(
        server
            .psql(
                "source",
                "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)"
            )
            .unwrap()
            .trim(),
        "0"
    );
}

#[test]
fn killed_at_random_points_it_resumes_without_loss_or_duplicates() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &server,
        dir.path(),
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 200\nparallelism = 2\nchunk_rows = 2000",
    );
    let writers = start_writers(server.url("source"), 3);
    // Early kills land in the snapshot, later ones while streaming.
    cli::kill_rounds(&job, 5, 300, &mut Dice(7));
    let written = writers.finish();
    assert!(written > 100);
    let child = cli::spawn("run", &job);
    catch_up(&server, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    assert_verified(&server, &job);
}

#[test]
fn precheck_names_each_problem_and_the_statement_that_fixes_it() {
    let server = server();
    server
        .psql(
            "source",
            "ALTER TABLE shop.orders REPLICA IDENTITY DEFAULT;
             CREATE TABLE shop.log (at timestamptz, line text);",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &server,
        dir.path(),
        "types = [\"schema\", \"full\", \"incremental\"]",
    );
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("[[rules]]\nsql = 'SELECT * FROM shop.log'\n");
    std::fs::write(&job, &text).unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("shop.log has no primary key")
            && stderr.contains("ALTER TABLE \"shop\".\"log\" REPLICA IDENTITY FULL"),
        "{stderr}"
    );

    // Without the keyless table, the filtered table with TOASTed columns is the problem.
    let text = text.replace("[[rules]]\nsql = 'SELECT * FROM shop.log'\n", "");
    std::fs::write(&job, &text).unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ALTER TABLE \"shop\".\"orders\" REPLICA IDENTITY FULL")
            && stderr.contains("note, big"),
        "{stderr}"
    );
    assert_eq!(
        server
            .psql("source", "SELECT count(*) FROM pg_replication_slots")
            .unwrap()
            .trim(),
        "0",
        "check creates nothing"
    );
}

#[test]
fn source_restarts_during_the_snapshot_and_mid_stream_are_survived_without_loss() {
    let mut server = server();
    let dir = tempfile::tempdir().unwrap();
    // The rate limit stretches the 28 k-row snapshot over several seconds, so that the first
    // restart lands while it runs.
    let job = write_job(
        &server,
        dir.path(),
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 1000\nparallelism = 2\nchunk_rows = 2000\nmax_rows_per_second = 4000",
    );
    let child = cli::spawn("run", &job);
    wait_for("a committed part", Duration::from_secs(60), || {
        server
            .psql("sink", "SELECT count(*) FROM _ferry.parts")
            .map(|out| out.trim().parse::<u32>().unwrap_or(0) >= 1)
            .unwrap_or(false)
    });
    server.restart().unwrap();
    let writers = start_writers(server.url("source"), 4);
    wait_for("writes", Duration::from_secs(30), || {
        writers.transactions() > 200
    });
    writers.finish();
    wait_until_streaming(&server);
    catch_up(&server, 1);

    server.restart().unwrap();
    let writers = start_writers(server.url("source"), 5);
    wait_for("writes after the restart", Duration::from_secs(30), || {
        writers.transactions() > 200
    });
    writers.finish();
    catch_up(&server, 2);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("trying again after a pause")
            && stderr.contains("resuming the full migration"),
        "{stderr}"
    );
    assert_verified(&server, &job);
}

/// A table without a primary key (REPLICA IDENTITY FULL): a multiset of rows, with duplicate
/// rows, NULLs and a json column, changed copy by copy while ferry copies and follows it.
const KEYLESS_SCHEMA: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.events (kind integer, qty integer, label text, payload json);
ALTER TABLE shop.events REPLICA IDENTITY FULL;
CREATE TABLE shop.marker (id integer PRIMARY KEY);
INSERT INTO shop.events
SELECT g % 40, g % 7, CASE WHEN g % 5 = 0 THEN NULL ELSE 'e' || (g % 13) END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE json_build_object('k', g % 11) END
FROM generate_series(1, 8000) g;
ANALYZE;
"#;

/// Sets its flag when dropped, unwinding included.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One random change to `shop.events`, often to one copy of a duplicated row.
fn keyless_change(dice: &mut Dice) -> String {
    let kind = dice.roll(40);
    let qty = dice.roll(7);
    match dice.roll(6) {
        0 => format!(
            "INSERT INTO shop.events SELECT kind, qty, label, payload FROM shop.events \
             WHERE kind = {kind} LIMIT 2"
        ),
        1 => format!("INSERT INTO shop.events VALUES ({kind}, {qty}, NULL, '{{\"k\": 1}}')"),
        2 => format!(
            "DELETE FROM shop.events WHERE ctid = (SELECT ctid FROM shop.events \
             WHERE kind = {kind} AND qty = {qty} LIMIT 1)"
        ),
        3 => format!(
            "UPDATE shop.events SET qty = qty + 1 WHERE ctid = (SELECT ctid FROM shop.events \
             WHERE kind = {kind} LIMIT 1)"
        ),
        4 => format!("UPDATE shop.events SET label = 'moved' WHERE kind = {kind} AND qty = {qty}"),
        _ => format!("BEGIN; DELETE FROM shop.events WHERE kind = {kind} AND qty = {qty}; INSERT INTO shop.events VALUES ({kind}, 0, 'x', NULL), ({kind}, 0, 'x', NULL); COMMIT"),
    }
}

#[test]
fn a_table_without_a_key_is_followed_by_whole_rows_and_starts_over_if_cut_mid_snapshot() {
    let server = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server.psql("source", KEYLESS_SCHEMA).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("events.toml");
    // The rate limit keeps the snapshot running long enough to be cut.
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\n\
             types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 500\nparallelism = 1\n\
             chunk_rows = 1000\nmax_rows_per_second = 2000\n\
             [[rules]]\nsql = 'INSERT INTO sales.events SELECT kind, qty AS amount, label, payload FROM shop.events WHERE qty > 0'\n\
             [[rules]]\nsql = 'INSERT INTO sales.marker SELECT * FROM shop.marker'\n",
            server.url("source"),
            server.url("sink")
        ),
    )
    .unwrap();
    let stop_writing = AtomicBool::new(false);
    let child = std::thread::scope(|scope| {
        // Stops the writer also when a step below fails, so the scope can end.
        let _stop_writer = SetOnDrop(&stop_writing);
        let writer = scope.spawn(|| {
            let mut dice = Dice(11);
            let mut written = 0u64;
            while !stop_writing.load(Ordering::Relaxed) {
                server.psql("source", &keyless_change(&mut dice)).unwrap();
                written += 1;
            }
            written
        });

        // Cut ferry during the snapshot: the rerun cannot resume a keyless table part by part.
        let mut child = cli::spawn("run", &job);
        wait_for("a committed part", Duration::from_secs(60), || {
            server
                .psql("sink", "SELECT count(*) FROM _ferry.parts")
                .map(|out| out.trim().parse::<u32>().unwrap_or(0) >= 1)
                .unwrap_or(false)
        });
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), None, "{}", describe(&output));

        let child = cli::spawn("run", &job);
        wait_until_streaming(&server);
        std::thread::sleep(Duration::from_secs(2));
        stop_writing.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(written > 20, "only {written} changes written");
        child
    });
    catch_up(&server, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the job starts over"), "{stderr}");

    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("verify passed: 2 target tables equal"),
        "{stdout}"
    );
    // The same multiset, compared here too: each distinct row with its count.
    let source = server
        .psql(
            "source",
            "SELECT kind, qty, label, payload::text, count(*) FROM shop.events WHERE qty > 0 \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        )
        .unwrap();
    let sink = server
        .psql(
            "sink",
            "SELECT kind, amount, label, payload::text, count(*) FROM sales.events \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        )
        .unwrap();
    assert!(source.lines().count() > 100);
    assert_eq!(source, sink);

    // A lost copy is found and named with its count.
    server
        .psql(
            "sink",
            "DELETE FROM sales.events WHERE ctid = (SELECT ctid FROM sales.events WHERE label IS NULL LIMIT 1)",
        )
        .unwrap();
    let output = cli::ferry("verify", &job);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(
            "DIFFERENT: 1 missing in the target, 0 not at the source, 0 with other values"
        ),
        "{}",
        describe(&output)
    );
}

/// Rows in the sink's targets: what the source has served so far, less what the rule's
/// filter drops (parts are committed whole, so this moves a part at a time).
fn rows_landed(server: &PgServer) -> u64 {
    server
        .psql(
            "sink",
            "SELECT (SELECT count(*) FROM sales.orders) + (SELECT count(*) FROM sales.items)",
        )
        .ok()
        .and_then(|out| out.trim().parse().ok())
        .unwrap_or(0)
}

/// Rows that land in a measuring window of about `seconds`, and the window's length.
fn rows_in_window(server: &PgServer, seconds: u64) -> (u64, f64) {
    let (before, began) = (rows_landed(server), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    (
        rows_landed(server).saturating_sub(before),
        began.elapsed().as_secs_f64(),
    )
}

#[test]
fn ferry_limit_changes_a_running_database_jobs_rate() {
    const LIMIT: u64 = 200;
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &server,
        dir.path(),
        &format!(
            "types = [\"schema\", \"full\", \"incremental\"]\nparallelism = 1\nchunk_rows = {LIMIT}\nmax_rows_per_second = {LIMIT}\n"
        ),
    );
    let child = cli::spawn("run", &job);
    wait_for("the first part to land", Duration::from_secs(120), || {
        rows_landed(&server) > 0
    });
    // Under the job file's limit: what lands in a window is bounded by the rate over the
    // window, a second's burst and the parts in flight (generously).
    let (limited, window) = rows_in_window(&server, 4);
    let bound = (LIMIT as f64 * (window + 3.0)) as u64;
    assert!(
        limited <= bound,
        "{limited} rows landed in {window:.1} s under a limit of {LIMIT} rows/s"
    );

    let output = cli::ferry_with("limit", &job, &["--rows-per-second", "0"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rows_per_second = 0"),
        "{}",
        describe(&output)
    );
    // The job reads the new limit within a second; then the rate is no longer held to it.
    std::thread::sleep(Duration::from_millis(1500));
    let total: u64 = 20000 + 8000;
    let (unlimited, window) = rows_in_window(&server, 4);
    let landed = rows_landed(&server);
    let held = (LIMIT as f64 * (window + 3.0)) as u64;
    assert!(
        unlimited > held || landed >= total * 8 / 10,
        "only {unlimited} rows landed in {window:.1} s after the limit was lifted (held to {held})"
    );

    wait_until_streaming(&server);
    catch_up(&server, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("limits changed (ferry limit)"),
        "{}",
        describe(&output)
    );
    assert_verified(&server, &job);
}
