//! Incremental migrations out of real MariaDB servers: a snapshot handed off to the binlog
//! while writers keep changing the source, through the `ferry` binary as a user runs it.
//! Each test ends with the writers stopped, ferry caught up (a marker row written last has
//! arrived) and the sink compared with the source by `ferry verify` and by aggregates
//! computed on both servers.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::cli::{self, describe, wait_for, Dice, Writers};
use ferry_testkit::{MariaServer, PgServer};
use mysql_async::prelude::Queryable;

const SOURCE_SCHEMA: &str = r#"
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer int NOT NULL,
    amount decimal(12,2),
    note varchar(200),
    big mediumtext,
    paid_at timestamp(6) NULL DEFAULT NULL,
    state enum('new','paid','gone') NOT NULL DEFAULT 'new',
    flags set('a','b','c') NOT NULL DEFAULT '',
    legacy varchar(40) CHARACTER SET latin1,
    tiny tinyint unsigned
) CHARACTER SET utf8mb4;
CREATE TABLE items (
    order_id bigint, line int, qty int NOT NULL,
    PRIMARY KEY (order_id, line));
CREATE TABLE marker (id int PRIMARY KEY);
INSERT INTO orders
SELECT seq, seq % 97, (seq % 300) / 2, CONCAT('note ', seq),
       IF(seq % 50 = 0, REPEAT(MD5(seq), 200), NULL),
       IF(seq % 3 = 0, FROM_UNIXTIME(1700000000 + seq + 0.25), NULL),
       ELT(1 + seq % 3, 'new', 'paid', 'gone'), IF(seq % 2 = 0, 'a,c', 'b'),
       IF(seq % 7 = 0, 'café €', NULL), seq % 256
FROM seq_1_to_20000;
INSERT INTO items SELECT seq DIV 4, seq % 4, seq % 9 FROM seq_1_to_8000;
"#;

/// A filter rows move into and out of, renames, a composite key.
const RULES: [&str; 3] = [
    "INSERT INTO sales.orders SELECT id, customer, amount AS total, note, big, paid_at, state, flags, legacy, tiny FROM shop.orders WHERE amount > 20",
    "INSERT INTO sales.items SELECT * FROM shop.items",
    "INSERT INTO sales.marker SELECT * FROM shop.marker",
];

/// Aggregates that must agree: (MariaDB query, PostgreSQL query).
const COMPARE: [(&str, &str); 2] = [
    (
        "SELECT COUNT(*), SUM(customer), SUM(amount), SUM(LENGTH(note)), SUM(tiny), COUNT(paid_at), COUNT(legacy)
         FROM orders WHERE amount > 20",
        "SELECT count(*), sum(customer), sum(total), sum(length(note)), sum(tiny), count(paid_at), count(legacy)
         FROM sales.orders",
    ),
    (
        "SELECT COUNT(*), SUM(order_id), SUM(line * qty) FROM items",
        "SELECT count(*), sum(order_id), sum(line * qty) FROM sales.items",
    ),
];

fn servers() -> (MariaServer, PgServer) {
    let source = MariaServer::start()
        .expect("start MariaDB (apt-get install -y mariadb-server mariadb-client)");
    source.create_database("shop").unwrap();
    source.sql("shop", SOURCE_SCHEMA).unwrap();
    let sink = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    sink.create_database("sink").unwrap();
    (source, sink)
}

fn write_job(dir: &Path, source: &MariaServer, sink: &PgServer, migration: &str) -> PathBuf {
    let mut text = format!(
        "[source]\nurl = \"{}\"\n[source.options]\nserver_id = 4242\n[sink]\nurl = \"{}\"\n[migration]\n{migration}\n",
        source.url("shop"),
        sink.url("sink")
    );
    for rule in RULES {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    let path = dir.join("binlog.toml");
    std::fs::write(&path, text).unwrap();
    path
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

/// Writes to the source until stopped: inserts, updates across the filter, of the key, of
/// ENUM/SET/latin1/TIMESTAMP columns and of a large text, deletes, multi-statement
/// transactions and now and then a TRUNCATE.
async fn write_until(url: String, seed: u64, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut dice = Dice(seed);
    let mut next_id = 1_000_000 + seed as i64 * 10_000_000;
    let mut conn: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = conn.as_mut() else {
            // The source may be restarting: connect again until it is back.
            match mysql_async::Conn::from_url(url.as_str()).await {
                Ok(c) => conn = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        let id = 1 + dice.roll(20_000) as i64;
        let statements: Vec<String> = match dice.roll(13) {
            0 | 1 => {
                next_id += 1;
                vec![format!(
                    "INSERT INTO orders (id, customer, amount, note, state, flags, legacy, tiny) VALUES ({next_id}, {}, {}, 'new', 'paid', 'c', 'naïve', 255)",
                    dice.roll(97),
                    dice.roll(400)
                )]
            }
            // Across the filter: rows move into and out of amount > 20.
            2 | 3 => vec![format!(
                "UPDATE orders SET amount = {} WHERE id = {id}",
                dice.roll(60)
            )],
            4 => vec![format!(
                "UPDATE orders SET state = 'gone', flags = 'a,b,c', legacy = 'Œuvre {}', paid_at = NOW(6) WHERE id = {id}",
                dice.roll(1000)
            )],
            5 => vec![format!(
                "UPDATE orders SET big = REPEAT(MD5('{}'), 100) WHERE id = {id}",
                dice.roll(1000)
            )],
            // The key changes.
            6 => {
                next_id += 1;
                vec![format!("UPDATE orders SET id = {next_id} WHERE id = {id}")]
            }
            7 => vec![format!("DELETE FROM orders WHERE id = {id}")],
            8 => vec![
                "BEGIN".into(),
                format!(
                    "INSERT IGNORE INTO items VALUES ({id}, 10 + {}, 1)",
                    dice.roll(5)
                ),
                format!(
                    "UPDATE items SET qty = qty + 1 WHERE order_id = {}",
                    dice.roll(2000)
                ),
                format!("DELETE FROM items WHERE order_id = {}", dice.roll(2000)),
                "COMMIT".into(),
            ],
            9 => vec![format!(
                "UPDATE orders SET amount = amount + 1, note = 'bulk' WHERE id BETWEEN {id} AND {id} + 30"
            )],
            10 if dice.roll(40) == 0 => vec![
                "TRUNCATE TABLE items".into(),
                "INSERT INTO items SELECT seq, 1, 1 FROM seq_1_to_50".into(),
            ],
            11 => vec![format!(
                "UPDATE orders SET paid_at = NULL, legacy = NULL, tiny = NULL WHERE id = {id}"
            )],
            _ => vec![format!(
                "UPDATE items SET qty = {} WHERE order_id = {}",
                dice.roll(9),
                dice.roll(2000)
            )],
        };
        let mut failed = None;
        for statement in &statements {
            if let Err(error) = client.query_drop(statement).await {
                failed = Some(error);
                break;
            }
        }
        match failed {
            None => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            // A key change can collide with a row another statement made: the source
            // refusing it is not a test failure.
            Some(mysql_async::Error::Server(_)) => {
                let _ = client.query_drop("ROLLBACK").await;
            }
            // The connection went (a restarting source): connect again.
            Some(_) => conn = None,
        }
    }
}

/// Inserts marker `id` at the source and waits until the sink holds it: every change
/// committed before it is then applied too.
fn catch_up(source: &MariaServer, sink: &PgServer, id: i32) {
    source
        .sql("shop", &format!("INSERT INTO marker VALUES ({id})"))
        .unwrap();
    wait_for(
        "ferry to apply the marker",
        Duration::from_secs(120),
        || {
            sink.psql(
                "sink",
                &format!("SELECT count(*) FROM sales.marker WHERE id = {id}"),
            )
            .map(|out| out.trim() == "1")
            .unwrap_or(false)
        },
    );
}

/// Waits until ferry has applied a group of changes: it is streaming.
fn wait_until_streaming(sink: &PgServer) {
    wait_for("ferry to stream changes", Duration::from_secs(180), || {
        sink.psql("sink", "SELECT count(*) FROM _ferry.applied")
            .map(|out| out.trim() == "1")
            .unwrap_or(false)
    });
}

/// The sink equals the source: by ferry's own verify and by aggregates on both servers.
fn assert_verified(source: &MariaServer, sink: &PgServer, job: &Path) {
    let output = cli::ferry("verify", job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("verify passed: 3 target tables equal"),
        "{}",
        describe(&output)
    );
    for (source_query, sink_query) in COMPARE {
        let expected: Vec<String> = source
            .sql("shop", source_query)
            .unwrap()
            .split_whitespace()
            .map(|v| v.trim_end_matches(".00").to_string())
            .collect();
        let landed: Vec<String> = sink
            .psql("sink", sink_query)
            .unwrap()
            .split(['|', '\n'])
            .map(|v| v.trim().trim_end_matches(".00").to_string())
            .filter(|v| !v.is_empty())
            .collect();
        assert_eq!(landed, expected, "{source_query}");
    }
}

/// Values of one changed row as the sink holds them, for the types the binlog sends in
/// its own forms (ENUM numbers, SET masks, latin1 bytes, TIMESTAMP seconds).
fn row_in_sink(sink: &PgServer, id: i64) -> String {
    sink.psql(
        "sink",
        &format!(
            "SELECT state, flags, legacy, tiny, to_char(paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
             FROM sales.orders WHERE id = {id}"
        ),
    )
    .unwrap()
    .trim()
    .to_string()
}

#[test]
fn snapshot_hands_off_to_the_binlog_while_writers_keep_writing() {
    let (source, sink) = servers();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 500\nparallelism = 2\nchunk_rows = 4000",
    );
    let check = cli::ferry("check", &job);
    assert!(check.status.success(), "{}", describe(&check));
    let writers = start_writers(source.url("shop"), 1);
    wait_for("the writers to start", Duration::from_secs(30), || {
        writers.transactions() > 20
    });
    let child = cli::spawn("run", &job);
    wait_until_streaming(&sink);
    let started = writers.transactions();
    wait_for(
        "more writes while streaming",
        Duration::from_secs(60),
        || writers.transactions() > started + 300,
    );
    // A schema change mid-stream: a column no rule selects is added and written.
    source
        .sql(
            "shop",
            "INSERT INTO orders (id, customer, amount) VALUES (-2, 5, 5);
             ALTER TABLE orders ADD COLUMN extra int NULL AFTER customer;
             UPDATE orders SET extra = 7, amount = 99 WHERE id = -2",
        )
        .unwrap();
    let written = writers.finish();
    // Values the binlog encodes its own way, written last so they stay as written.
    source
        .sql(
            "shop",
            "UPDATE orders SET amount = 50, state = 'gone', flags = 'a,c', legacy = 'Œuvre à €5', tiny = 200,
                    paid_at = '2024-02-29 23:59:59.123456' WHERE id = -2;
             INSERT INTO orders (id, customer, amount, state, flags, tiny, paid_at) VALUES (-1, 1, 21, 'new', '', 0, '1970-01-01 00:00:01')",
        )
        .unwrap();
    catch_up(&source, &sink, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the source changed its schema") && stderr.contains("ADD COLUMN extra"),
        "{stderr}"
    );
    assert!(written > 300);
    assert_eq!(
        row_in_sink(&sink, -2),
        "gone|a,c|Œuvre à €5|200|2024-02-29 23:59:59.123456",
        "source: {:?} {stderr}",
        source.sql("shop", "SELECT * FROM orders WHERE id = -2")
    );
    assert_eq!(row_in_sink(&sink, -1), "new|||0|1970-01-01 00:00:01.000000");
    assert_verified(&source, &sink, &job);

    // A clean stop resumes where it ended, also across a restart of the source.
    let writers = start_writers(source.url("shop"), 2);
    let child = cli::spawn("run", &job);
    wait_for("more writes", Duration::from_secs(30), || {
        writers.transactions() > 300
    });
    // Restart the source once ferry streams again (a source gone while ferry plans the
    // job is a failed start, not a lost connection).
    catch_up(&source, &sink, 10);
    let mut source = source;
    source.restart().unwrap();
    let started = writers.transactions();
    wait_for("writes after the restart", Duration::from_secs(60), || {
        writers.transactions() > started + 300
    });
    writers.finish();
    catch_up(&source, &sink, 2);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("resuming the job from its checkpoint")
            && stderr.contains("trying again after a pause"),
        "{stderr}"
    );
    assert_verified(&source, &sink, &job);
}

/// Purges every binlog file but the current one. MariaDB keeps a file until its binlog
/// checkpoint has passed it (InnoDB has flushed the commits in it), so this waits for that.
fn purge_older_binlogs(source: &MariaServer) {
    let current = source.sql("shop", "SHOW MASTER STATUS").unwrap();
    let current = current.split_whitespace().next().unwrap().to_string();
    wait_for(
        "the older binlogs to be purged",
        Duration::from_secs(60),
        || {
            source
                .sql("shop", &format!("PURGE BINARY LOGS TO '{current}'"))
                .unwrap();
            let files = source.sql("shop", "SHOW BINARY LOGS").unwrap();
            files.lines().count() == 1
        },
    );
}

#[test]
fn killed_at_random_points_it_resumes_and_by_gtid_once_its_binlog_file_is_gone() {
    let (source, sink) = servers();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 200\nparallelism = 2\nchunk_rows = 2000",
    );
    let writers = start_writers(source.url("shop"), 3);
    cli::kill_rounds(&job, 5, 300, &mut Dice(11));
    let written = writers.finish();
    assert!(written > 100);
    let child = cli::spawn("run", &job);
    catch_up(&source, &sink, 1);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Resumed by the binlog file and offset it recorded (a clean file name: the first
    // ROTATE's checksum is not part of it).
    let resumed_at = stderr
        .lines()
        .find(|line| line.contains("reading the binlog from its file and offset"))
        .and_then(|line| line.split("file=").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    assert!(
        resumed_at
            .strip_prefix("binlog.")
            .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit())),
        "{resumed_at:?} in {stderr}"
    );
    assert_verified(&source, &sink, &job);

    // The binlog file the checkpoint names is purged (everything in it was applied): the
    // next run finds its place by GTID.
    source
        .sql(
            "shop",
            "FLUSH BINARY LOGS; UPDATE orders SET amount = 77 WHERE id BETWEEN 1 AND 40; DELETE FROM items WHERE order_id < 10",
        )
        .unwrap();
    purge_older_binlogs(&source);
    let child = cli::spawn("run", &job);
    catch_up(&source, &sink, 2);
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reading from the GTID position instead"),
        "{stderr}"
    );
    assert_verified(&source, &sink, &job);

    // Changes purged before they were applied are gone: the run says so and how to go on.
    source
        .sql(
            "shop",
            "FLUSH BINARY LOGS; UPDATE orders SET amount = 78 WHERE id = 1; FLUSH BINARY LOGS",
        )
        .unwrap();
    purge_older_binlogs(&source);
    let mut child = cli::spawn("run", &job);
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "ferry kept running: {}",
                describe(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ferry drop") && stderr.contains("binlog"),
        "{stderr}"
    );
}

#[test]
fn precheck_names_each_binlog_setting_and_grant_with_its_fix() {
    let (source, sink) = servers();
    source
        .sql(
            "shop",
            "CREATE TABLE notes (body varchar(20)) CHARACTER SET utf8mb4;
             CREATE TABLE wide (id int PRIMARY KEY, t varchar(10) CHARACTER SET gbk);
             SET GLOBAL binlog_row_image = 'MINIMAL';
             SET GLOBAL binlog_row_metadata = 'MINIMAL';
             SET GLOBAL binlog_expire_logs_seconds = 3600;
             CREATE USER 'plain'@'127.0.0.1';
             GRANT SELECT, RELOAD ON *.* TO 'plain'@'127.0.0.1';",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mysql://plain@127.0.0.1:{}/shop", source.port());
    let text = format!(
        "[source]\nurl = \"{url}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\n\
         [[rules]]\nsql = 'SELECT * FROM shop.notes'\n[[rules]]\nsql = 'SELECT * FROM shop.wide'\n",
        sink.url("sink")
    );
    let job = dir.path().join("precheck.toml");
    std::fs::write(&job, text).unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "binlog_row_image is MINIMAL; run SET GLOBAL binlog_row_image = 'FULL'",
        "binlog_row_metadata is MINIMAL; run SET GLOBAL binlog_row_metadata = 'FULL'",
        "binlogs are purged after 1.0 hours",
        "GRANT REPLICATION SLAVE ON *.* TO 'plain'@'127.0.0.1'",
        "GRANT REPLICATION CLIENT ON *.* TO 'plain'@'127.0.0.1'",
        "shop.notes has no primary key",
        "column t of shop.wide is gbk",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
    // `run` checks the source as `check` does before it writes anything to the sink: no
    // target table, no bookkeeping schema.
    let output = cli::ferry("run", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("binlog_row_metadata is MINIMAL"));
    let written = sink
        .psql(
            "sink",
            "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        )
        .unwrap();
    assert_eq!(
        written.trim(),
        "0",
        "run wrote to the sink before checking the source"
    );
}

/// Waits until the MariaDB sink answers `query` with 1: ferry streams, or a marker arrived.
fn wait_for_one(sink: &MariaServer, query: &str) {
    wait_for(query, Duration::from_secs(180), || {
        sink.sql("shop", query).is_ok_and(|out| out.trim() == "1")
    });
}

/// Stops the job, which must end cleanly, and runs `ferry verify`, which must find all
/// `tables` target tables equal.
fn stop_and_verify(job: &Path, child: Child, tables: usize) {
    let output = cli::stop(job, child);
    assert!(output.status.success(), "{}", describe(&output));
    let output = cli::ferry("verify", job);
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains(&format!("verify passed: {tables} target tables equal")),
        "{}",
        describe(&output)
    );
}

/// A job file with `rules` from `source_url` into `sink_url`.
fn write_job_between(
    dir: &Path,
    source_url: &str,
    sink_url: &str,
    migration: &str,
    rules: &[&str],
) -> PathBuf {
    let mut text = format!(
        "[source]\nurl = \"{source_url}\"\n[sink]\nurl = \"{sink_url}\"\n[migration]\n{migration}\n"
    );
    for rule in rules {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    let path = dir.join("between.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn mariadb_changes_land_in_mariadb_through_kills_with_types_kept() {
    let (source, pg) = servers();
    drop(pg);
    let sink = MariaServer::start_with_id(2).unwrap();
    sink.create_database("shop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job_between(
        dir.path(),
        &source.url("shop"),
        &sink.url("shop"),
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 300\nparallelism = 2\nchunk_rows = 3000",
        &RULES,
    );
    let writers = start_writers(source.url("shop"), 5);
    cli::kill_rounds(&job, 4, 400, &mut Dice(17));
    let child = cli::spawn("run", &job);
    wait_for_one(&sink, "SELECT COUNT(*) FROM _ferry.applied");
    let started = writers.transactions();
    wait_for("writes while streaming", Duration::from_secs(60), || {
        writers.transactions() > started + 300
    });
    assert!(writers.finish() > 300);
    source
        .sql(
            "shop",
            "INSERT INTO orders (id, customer, amount, state, flags, legacy, tiny, paid_at)
             VALUES (-3, 1, 30.5, 'paid', 'b,c', 'Ça €', 255, '2038-01-19 03:14:07.999999');
             INSERT INTO marker VALUES (1)",
        )
        .unwrap();
    wait_for_one(&sink, "SELECT COUNT(*) FROM sales.marker WHERE id = 1");
    stop_and_verify(&job, child, 3);
    for (source_query, _) in COMPARE {
        let sink_query = source_query
            .replace("FROM orders", "FROM sales.orders")
            .replace("FROM items", "FROM sales.items")
            .replace("amount", "total");
        assert_eq!(
            sink.sql("shop", &sink_query).unwrap(),
            source.sql("shop", source_query).unwrap(),
            "{sink_query}"
        );
    }
    // Same engine: declared types are kept, and the values with them.
    let row = "SELECT state, flags, legacy, tiny, paid_at FROM {} WHERE id = -3";
    assert_eq!(
        sink.sql("shop", &row.replace("{}", "sales.orders"))
            .unwrap(),
        source.sql("shop", &row.replace("{}", "orders")).unwrap()
    );
    assert_eq!(
        sink.sql(
            "shop",
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'sales' AND TABLE_NAME = 'orders' AND COLUMN_NAME IN ('state', 'flags') ORDER BY COLUMN_NAME"
        )
        .unwrap(),
        "set('a','b','c')\nenum('new','paid','gone')\n"
    );
}

#[test]
fn postgres_changes_land_in_mariadb_through_a_kill() {
    let pg = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    pg.create_database("source").unwrap();
    pg.psql(
        "source",
        "CREATE SCHEMA shop;
         CREATE TABLE shop.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2),
                                     opened timestamptz, tags jsonb, active boolean);
         ALTER TABLE shop.accounts REPLICA IDENTITY FULL;
         CREATE TABLE shop.marker (id int PRIMARY KEY);
         -- Updates that leave the TOASTed body alone do not send it: the sink keeps its own.
         CREATE TABLE shop.docs (id int PRIMARY KEY, n int, body text);
         INSERT INTO shop.docs SELECT g, 0, (SELECT string_agg(md5(g::text || x::text), '') FROM generate_series(1, 200) x)
         FROM generate_series(1, 300) g;
         INSERT INTO shop.accounts SELECT g, 'owner ' || g, g * 1.5, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour',
                                          jsonb_build_object('g', g), g % 2 = 0 FROM generate_series(1, 10000) g;",
    )
    .unwrap();
    let sink = MariaServer::start().unwrap();
    sink.create_database("shop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job_between(
        dir.path(),
        &pg.url("source"),
        &sink.url("shop"),
        "types = [\"schema\", \"full\", \"incremental\"]\nbatch_size = 300\nparallelism = 2\nchunk_rows = 2500",
        &[
            "INSERT INTO bank.accounts SELECT id, owner AS holder, balance, opened, tags, active FROM shop.accounts WHERE balance >= 100",
            "INSERT INTO bank.marker SELECT * FROM shop.marker",
            "INSERT INTO bank.docs SELECT * FROM shop.docs",
        ],
    );
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let url = pg.url("source");
        let stop_writing = Arc::clone(&stop_writing);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let mut dice = Dice(23);
                let mut written = 0u64;
                let mut next = 100_000i64;
                while !stop_writing.load(Ordering::Relaxed) {
                    let id = 1 + dice.roll(10_000) as i64;
                    let statement = match dice.roll(7) {
                        6 => format!("UPDATE shop.docs SET n = n + 1 WHERE id = {}", id % 300 + 1),
                        0 => {
                            next += 1;
                            format!("INSERT INTO shop.accounts VALUES ({next}, 'n{next}', {}, now(), '{{\"n\": 1}}', true)", dice.roll(500))
                        }
                        1 => format!("UPDATE shop.accounts SET balance = {} WHERE id = {id}", dice.roll(200)),
                        2 => format!("DELETE FROM shop.accounts WHERE id = {id}"),
                        3 => format!("UPDATE shop.accounts SET owner = owner || '''x', tags = NULL, active = NOT active WHERE id BETWEEN {id} AND {id} + 5"),
                        4 => {
                            next += 1;
                            format!("UPDATE shop.accounts SET id = {next} WHERE id = {id}")
                        }
                        _ => format!("BEGIN; UPDATE shop.accounts SET balance = balance + 1 WHERE id = {id}; DELETE FROM shop.accounts WHERE id = {id} + 1; COMMIT"),
                    };
                    if client.batch_execute(&statement).await.is_ok() {
                        written += 1;
                    } else {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                }
                written
            })
        })
    };
    cli::kill_rounds(&job, 2, 400, &mut Dice(29));
    let child = cli::spawn("run", &job);
    wait_for_one(&sink, "SELECT COUNT(*) FROM _ferry.applied");
    std::thread::sleep(Duration::from_secs(2));
    stop_writing.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 100);
    pg.psql("source", "INSERT INTO shop.marker VALUES (1)")
        .unwrap();
    wait_for_one(&sink, "SELECT COUNT(*) FROM bank.marker");
    stop_and_verify(&job, child, 3);
    let expected = pg
        .psql(
            "source",
            "SELECT count(*), sum(balance), sum(length(owner)), count(tags), sum(active::int) FROM shop.accounts WHERE balance >= 100",
        )
        .unwrap();
    let landed = sink
        .sql(
            "shop",
            "SELECT COUNT(*), SUM(balance), SUM(CHAR_LENGTH(holder)), COUNT(tags), SUM(active) FROM bank.accounts",
        )
        .unwrap();
    assert_eq!(landed.trim().replace('\t', "|"), expected.trim());
    let expected = pg
        .psql(
            "source",
            "SELECT sum(n), sum(length(body)), count(DISTINCT md5(body)) FROM shop.docs",
        )
        .unwrap();
    let landed = sink
        .sql(
            "shop",
            "SELECT SUM(n), SUM(CHAR_LENGTH(body)), COUNT(DISTINCT MD5(body)) FROM bank.docs",
        )
        .unwrap();
    assert_eq!(landed.trim().replace('\t', "|"), expected.trim());
    assert!(!expected.starts_with("0|"), "{expected}");
}
