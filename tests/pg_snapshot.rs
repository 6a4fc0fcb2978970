//! Full migrations on real PostgreSQL servers, run through the `ferry` binary as a user would.
//! Every test starts its own server with fresh databases and compares content, not counts.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::PgServer;

/// A server with a `source` and a `sink` database.
fn servers() -> PgServer {
    let server = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    server.create_database("source").unwrap();
    server.create_database("sink").unwrap();
    server
}

fn job(server: &PgServer, sink_url: &str, migration: &str, rules: &[&str]) -> String {
    let mut text = format!(
        "[source]\nurl = \"{}\"\n[sink]\nurl = \"{sink_url}\"\n[migration]\n{migration}\n",
        server.url("source")
    );
    for rule in rules {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    text
}

fn ferry(command: &str, job_text: &str, dir: &Path) -> Output {
    let path = dir.join("job.toml");
    std::fs::write(&path, job_text).unwrap();
    Command::new(ferry_testkit::cli::binary())
        .arg(command)
        .arg(&path)
        .output()
        .expect("run ferry")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "ferry failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_same(server: &PgServer, source_query: &str, sink_query: &str) {
    let expected = server.psql("source", source_query).unwrap();
    let landed = server.psql("sink", sink_query).unwrap();
    assert!(
        !expected.trim().is_empty(),
        "the source query selects nothing: {source_query}"
    );
    assert_eq!(
        landed, expected,
        "sink differs from the rule's SELECT\n source: {source_query}\n sink: {sink_query}"
    );
}

const ALL_TYPES: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.everything (
    id integer PRIMARY KEY,
    b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
    n_small numeric(12,2), n_big numeric(40,10), n_free numeric,
    t text, vc varchar(20), c char(5), bin bytea,
    d date, tm time, ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb);
INSERT INTO shop.everything VALUES
 (1, true, -32768, -2147483648, -9223372036854775808, 1.5, -1e300,
  -1234567890.12, 123456789012345678901234567890.1234567890,
  3.14159265358979323846264338327950288419716939937510582097494459,
  'plain', '', 'ab', '\x00ff10', '1969-07-20', '00:00:00', '1900-01-01 00:00:00.000001',
  '1969-12-31 23:59:59.999999+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2]}', '{"b": {"c": null}}'),
 (2, false, 32767, 2147483647, 9223372036854775807, 'NaN', 'Infinity',
  0.01, -0.0000000001, 'NaN',
  'ünïcødé ✓ 漢字 🚀', 'x', 'abcde', '', '9999-12-31', '23:59:59.999999', '2262-04-11 23:47:16.5',
  'infinity', '00000000-0000-0000-0000-000000000000', '[]', '[]'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, true, 0, 0, 0, '-Infinity', -0.0, 0, 0, '-Infinity',
  E'line\nbreak\ttab "quote" \\ backslash', 'twenty characters!!!', 'é', '\x', '-infinity', '12:34:56',
  '0044-03-15 12:00:00 BC', '2000-01-01 00:00:00+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '"a string"', '{"unicode": "漢字", "n": 1.50}'),
 (5, false, 1, 1, 1, 0.1, 0.1, 9999999999.99, 999999999999999999999999999999.9999999999,
  -0.000000000000000000000000000000000001, 'x', NULL, NULL, NULL, '0001-01-01', NULL,
  '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', NULL, 'null', 'null');
"#;

const SHOP: &str = r#"
CREATE TABLE shop.orders (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(10,2), placed date);
INSERT INTO shop.orders
    SELECT g, CASE WHEN g % 2 = 0 THEN 'n' || g ELSE 'o' || g END, (g % 500) * 1.25,
           date '2020-01-01' + g % 1000
    FROM generate_series(1, 20000) g;
CREATE TABLE shop.customers (id integer PRIMARY KEY, "Email" text, country char(2));
INSERT INTO shop.customers SELECT g, 'c' || g || '@example.com', (ARRAY['DE','FR','US'])[1 + g % 3]
    FROM generate_series(1, 300) g;
CREATE TABLE shop.notes (note_id integer, body text);
INSERT INTO shop.notes VALUES (1, 'no primary key'), (2, NULL);
ANALYZE;
"#;

#[test]
fn every_type_round_trips_exactly_with_nulls_and_edge_values() {
    let server = servers();
    server.psql("source", ALL_TYPES).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = job(
        &server,
        &server.url("sink"),
        "types = [\"schema\", \"full\"]\nbatch_size = 2",
        &["INSERT INTO archive.all_types SELECT * FROM shop.everything"],
    );
    assert_success(&ferry("run", &text, dir.path()));
    assert_same(
        &server,
        "SELECT * FROM shop.everything ORDER BY id",
        "SELECT * FROM archive.all_types ORDER BY id",
    );
    // The schema migration recreated every declared type, not an approximation.
    let declared = |db: &str, schema: &str, table: &str| {
        server
            .psql(
                db,
                &format!(
                    "SELECT string_agg(column_name || ' ' || format_type(atttypid, atttypmod) || \
                     CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) \
                     FROM information_schema.columns c JOIN pg_attribute a \
                     ON a.attrelid = '{schema}.{table}'::regclass AND a.attname = c.column_name \
                     WHERE c.table_schema = '{schema}' AND c.table_name = '{table}'"
                ),
            )
            .unwrap()
    };
    assert_eq!(
        declared("sink", "archive", "all_types"),
        declared("source", "shop", "everything")
    );
    let key = server
        .psql("sink", "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'archive.all_types'::regclass AND contype = 'p'")
        .unwrap();
    assert_eq!(key.trim(), "PRIMARY KEY (id)");
}

#[test]
fn renames_filters_and_patterns_land_exactly_what_the_rules_select() {
    let server = servers();
    server
        .psql("source", &format!("CREATE SCHEMA shop; {SHOP}"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = job(
        &server,
        &server.url("sink"),
        "types = [\"schema\", \"full\"]\nbatch_size = 1000\nparallelism = 3\nchunk_rows = 3000",
        &[
            "INSERT INTO sales.big_orders SELECT id, name AS full_name, amount * 2 AS doubled, placed FROM shop.orders WHERE amount > 100 AND name LIKE 'n%'",
            "INSERT INTO sales.march SELECT id, upper(name) AS shout FROM shop.orders o WHERE extract_month(o.placed) = 3",
            "INSERT INTO crm.v_* SELECT id, \"Email\" AS email FROM shop.cust* WHERE country IN ('DE', 'FR')",
            "INSERT INTO 'misc.${1}_copy' SELECT * FROM 'shop\\.(no.*)'",
        ],
    );
    // extract_month is not a function: the rule must fail at check time, naming it.
    let output = ferry("run", &text, dir.path());
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rules[1].sql") && stderr.contains("extract_month"),
        "{stderr}"
    );

    let text = text.replace(
        "extract_month(o.placed) = 3",
        "o.placed >= '2021-03-01' AND o.placed < '2021-04-01' AND o.id % 7 = 0",
    );
    let check = ferry("check", &text, dir.path());
    assert_success(&check);
    let plan = String::from_utf8_lossy(&check.stdout);
    // Two rules read shop.orders: the source narrows by their OR, each rule filters exactly.
    assert!(
        plan.contains("source filters  WHERE (\"amount\" > 100 AND \"name\" LIKE 'n%') OR ("),
        "{plan}"
    );
    assert!(
        plan.contains("ferry filters  WHERE \"amount\" > 100 AND \"name\" LIKE 'n%'"),
        "{plan}"
    );
    // One rule on shop.customers: pushed down exactly, not evaluated again.
    assert!(plan.contains("source filters  WHERE \"country\" IN ('DE', 'FR')\n  → crm.v_customers (id, email) by rules[2]\nshop.notes"), "{plan}");
    assert!(plan.contains("→ crm.v_customers (id, email)"), "{plan}");
    assert!(plan.contains("→ misc.notes_copy"), "{plan}");

    assert_success(&ferry("run", &text, dir.path()));
    assert_same(
        &server,
        "SELECT id, name, amount * 2, placed FROM shop.orders WHERE amount > 100 AND name LIKE 'n%' ORDER BY id",
        "SELECT id, full_name, doubled, placed FROM sales.big_orders ORDER BY id",
    );
    assert_same(
        &server,
        "SELECT id, upper(name) FROM shop.orders o WHERE o.placed >= '2021-03-01' AND o.placed < '2021-04-01' AND o.id % 7 = 0 ORDER BY id",
        "SELECT id, shout FROM sales.march ORDER BY id",
    );
    assert_same(
        &server,
        "SELECT id, \"Email\" FROM shop.customers WHERE country IN ('DE', 'FR') ORDER BY id",
        "SELECT id, email FROM crm.v_customers ORDER BY id",
    );
    assert_same(
        &server,
        "SELECT * FROM shop.notes ORDER BY 1",
        "SELECT * FROM misc.notes_copy ORDER BY 1",
    );
    // The computed column got a type from its expression; the renamed key stays the key.
    let doubled = server
        .psql("sink", "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'sales.big_orders'::regclass AND attname = 'doubled'")
        .unwrap();
    assert!(doubled.trim().starts_with("numeric"), "{doubled}");
}

#[test]
fn a_bad_rule_fails_before_anything_is_written() {
    let server = servers();
    server
        .psql(
            "source",
            &format!(
                "CREATE SCHEMA shop; {SHOP} CREATE TABLE shop.hosts (id int PRIMARY KEY, ip inet);"
            ),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "SELECT id, amout FROM shop.orders",
            "unknown column amout in shop.orders; did you mean amount?",
        ),
        (
            "SELECT * FROM shop.order",
            "unknown table shop.order in the source; did you mean shop.orders?",
        ),
        (
            "SELECT id FROM shop.orders WHERE amount +",
            "does not parse",
        ),
        (
            "SELECT id FROM shop.orders WHERE amount + 1",
            "not a boolean condition",
        ),
        (
            "SELECT * FROM shop.hosts",
            "column ip of shop.hosts: type inet cannot be carried",
        ),
        (
            "SELECT id, count(*) AS n FROM shop.orders GROUP BY id",
            "GROUP BY",
        ),
        ("SELECT * FROM shop.nothing_*", "matches no table"),
    ];
    for (rule, message) in cases {
        let text = job(
            &server,
            &server.url("sink"),
            "types = [\"schema\", \"full\"]",
            &["SELECT * FROM shop.customers", rule],
        );
        for command in ["check", "run"] {
            let output = ferry(command, &text, dir.path());
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command} {rule}: {stderr}");
            assert!(
                stderr.contains(message),
                "{command} {rule}: expected «{message}» in:\n{stderr}"
            );
        }
        let tables = server
            .psql("sink", "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
            .unwrap();
        assert_eq!(tables.trim(), "0", "{rule} wrote to the sink");
    }
    let bad_job = "[source]\nurl = \"x\"\n[sink]\nurl = \"y\"\n[migration]\nbatchsize = 3\n";
    let output = ferry("check", bad_job, dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `batchsize`"));
}

#[test]
fn target_tables_with_rows_are_refused_unless_the_job_says_what_to_do() {
    let server = servers();
    server
        .psql("source", &format!("CREATE SCHEMA shop; {SHOP}"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = ["INSERT INTO copy.orders SELECT * FROM shop.orders WHERE id <= 500"];
    let schema_only = job(&server, &server.url("sink"), "types = [\"schema\"]", &rules);
    assert_success(&ferry("run", &schema_only, dir.path()));
    assert_eq!(
        server
            .psql("sink", "SELECT count(*) FROM copy.orders")
            .unwrap()
            .trim(),
        "0"
    );

    let full_only = job(&server, &server.url("sink"), "types = [\"full\"]", &rules);
    assert_success(&ferry("run", &full_only, dir.path()));
    // The same job again resumes from its checkpoint: it is complete, nothing is copied.
    let resumed = ferry("run", &full_only, dir.path());
    assert_success(&resumed);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("completed by an earlier run"));
    // Another job into the same targets finds rows that are not its own.
    let other = format!("name = \"other\"\n{full_only}");
    let again = ferry("run", &other, dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has rows"));

    let truncate = format!("name = \"third\"\n{full_only}")
        .replace("[migration]", "existing_rows = \"truncate\"\n[migration]");
    assert_success(&ferry("run", &truncate, dir.path()));
    assert_same(
        &server,
        "SELECT * FROM shop.orders WHERE id <= 500 ORDER BY id",
        "SELECT * FROM copy.orders ORDER BY id",
    );

    let missing = job(
        &server,
        &server.url("sink"),
        "types = [\"full\"]",
        &["INSERT INTO copy.absent SELECT * FROM shop.orders"],
    );
    let output = ferry("run", &format!("name = \"missing\"\n{missing}"), dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("does not exist; create it, or add \"schema\""));
}

/// Runs a full job into the file sink at `scheme://dir` and checks every file of
/// `lake.orders` (read by `read`) holds exactly the rows the rule selects.
fn file_sink_writes_one_directory_per_table(
    scheme: &str,
    read: impl Fn(&std::path::Path) -> Vec<arrow::record_batch::RecordBatch>,
) {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    let server = servers();
    server
        .psql("source", &format!("CREATE SCHEMA shop; {SHOP}"))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{scheme}://{}", out.path().display());
    let text = job(
        &server,
        &url,
        "types = [\"schema\", \"full\"]\nbatch_size = 512\nchunk_rows = 5000",
        &["INSERT INTO lake.orders SELECT id, name AS label, amount FROM shop.orders WHERE amount >= 600"],
    );
    assert_success(&ferry("run", &text, dir.path()));
    let table_dir = out.path().join("lake").join("orders");
    let mut rows: Vec<(i64, String, Option<i128>)> = Vec::new();
    for entry in std::fs::read_dir(&table_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some(scheme),
            "{path:?}"
        );
        for batch in read(&path) {
            assert_eq!(batch.schema().field(1).name(), "label");
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let labels = batch.column(1).as_string::<i32>();
            let amounts = batch.column(2).as_primitive::<Decimal128Type>();
            for row in 0..batch.num_rows() {
                let amount = (!amounts.is_null(row)).then(|| amounts.value(row));
                rows.push((ids.value(row), labels.value(row).to_string(), amount));
            }
        }
    }
    rows.sort();
    let expected: Vec<(i64, String, Option<i128>)> = server
        .psql("source", "SELECT id, name, (amount * 100)::bigint FROM shop.orders WHERE amount >= 600 ORDER BY id")
        .unwrap()
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split('|').collect();
            (parts[0].parse().unwrap(), parts[1].to_string(), parts[2].parse().ok())
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(rows, expected);
    // The same job again finds itself complete; another job into the same directory is
    // refused rather than mixing files.
    assert_success(&ferry("run", &text, dir.path()));
    let again = ferry("run", &format!("name = \"other\"\n{text}"), dir.path());
    assert_eq!(again.status.code(), Some(2));
    // Files take no changes: an incremental job is refused before it starts.
    let incremental = text.replace("\"schema\", \"full\"", "\"full\", \"incremental\"");
    let refused = ferry("check", &incremental, dir.path());
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("full migrations only"));
    // verify reads the files back; a file gone shows as rows missing.
    let verified = ferry("verify", &text, dir.path());
    assert_success(&verified);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("equal"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let first = std::fs::read_dir(&table_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let lost = read(&first).iter().map(|b| b.num_rows()).sum::<usize>();
    std::fs::remove_file(&first).unwrap();
    let verified = ferry("verify", &text, dir.path());
    assert_eq!(verified.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        stdout.contains("missing in target") && stdout.contains(&format!("{lost} missing")),
        "{stdout}"
    );
}

#[test]
fn parquet_sink_writes_one_directory_per_table() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    file_sink_writes_one_directory_per_table("parquet", |path| {
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    });
}

#[test]
fn arrow_sink_writes_ipc_files_any_arrow_reader_opens() {
    file_sink_writes_one_directory_per_table("arrow", |path| {
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(path).unwrap(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    });
}

#[test]
fn ctrl_c_stops_cleanly_and_leaves_only_whole_parts() {
    let server = servers();
    server
        .psql(
            "source",
            "CREATE TABLE big (id bigint PRIMARY KEY, payload text);
             INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g;
             ANALYZE big;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Batches of one row make the copy slow enough to interrupt in the middle.
    let text = job(
        &server,
        &server.url("sink"),
        "types = [\"schema\", \"full\"]\nbatch_size = 1\nparallelism = 2\nchunk_rows = 50000",
        &["SELECT * FROM public.big"],
    );
    let path = dir.path().join("job.toml");
    std::fs::write(&path, text).unwrap();
    let child = Command::new(ferry_testkit::cli::binary())
        .arg("run")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (with a deadline) until the schema step created the target and rows flow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = server
            .psql(
                "sink",
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%FROM STDIN%'",
            )
            .unwrap();
        if rows.trim() != "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ferry never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    // Each part is committed whole or not at all: the row count is a sum of whole parts.
    let count: u64 = server
        .psql("sink", "SELECT count(*) FROM public.big")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        count % 50_000,
        0,
        "a part was committed partly: {count} rows"
    );
    assert!(
        count < 200_000,
        "the run finished before it could be stopped"
    );
}

#[test]
fn tables_without_an_integer_key_are_split_by_block_ranges() {
    let server = servers();
    server
        .psql(
            "source",
            "CREATE TABLE events (code text PRIMARY KEY, n int);
             INSERT INTO events SELECT md5(g::text), g FROM generate_series(1, 30000) g;
             CREATE TABLE logs (line text, at int);
             INSERT INTO logs SELECT 'line ' || g, g % 100 FROM generate_series(1, 30000) g;
             DELETE FROM logs WHERE at = 7;
             ANALYZE;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = job(
        &server,
        &server.url("sink"),
        "types = [\"schema\", \"full\"]\nbatch_size = 700\nparallelism = 3\nchunk_rows = 5000",
        &["INSERT INTO copy.* SELECT * FROM public.*"],
    );
    let output = ferry("run", &text, dir.path());
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for table in ["public.events", "public.logs"] {
        let parts = stderr
            .lines()
            .filter(|l| l.contains("part committed") && l.contains(table))
            .count();
        assert!(parts >= 5, "{table} was read in {parts} parts:\n{stderr}");
    }
    assert_same(
        &server,
        "SELECT * FROM events ORDER BY code",
        "SELECT * FROM copy.events ORDER BY code",
    );
    assert_same(
        &server,
        "SELECT * FROM logs ORDER BY line",
        "SELECT * FROM copy.logs ORDER BY line",
    );
}

#[test]
fn quotes_in_rules_keep_their_meaning_in_the_source_query_and_in_ferry() {
    let server = servers();
    server
        .psql(
            "source",
            r#"CREATE SCHEMA shop;
            CREATE TABLE shop.people (id int PRIMARY KEY, name text, "co""l" int);
            INSERT INTO shop.people VALUES (1, 'O''Brien', 10), (2, 'plain', 20),
                (3, 'x', 30), (4, E'back\\slash', 40), (5, 'tab	ü''"', 50);"#,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One rule per target: each filter is pushed down exactly (the source evaluates it); the
    // rules over `shop.people` also go through ferry's own evaluation of each rule.
    let rules = [
        // The doubled quote is part of the literal: no row is named that, so none is copied.
        r#"INSERT INTO copy.injected SELECT * FROM shop.people WHERE name = 'x'' OR 1=1 --'"#,
        r#"INSERT INTO copy.irish SELECT id, "co""l" AS "v""al" FROM shop.people WHERE name = 'O''Brien' OR name = E'back\\slash'"#,
        r#"INSERT INTO copy.mixed SELECT id FROM shop.people WHERE name IN ('tab	ü''"', $$x$$) AND "co""l" > 0"#,
    ];
    let text = job(
        &server,
        &server.url("sink"),
        "types = [\"schema\", \"full\"]",
        &rules,
    );
    assert_success(&ferry("check", &text, dir.path()));
    assert_success(&ferry("run", &text, dir.path()));
    assert_eq!(
        server
            .psql("sink", "SELECT count(*) FROM copy.injected")
            .unwrap()
            .trim(),
        "0"
    );
    assert_same(
        &server,
        r#"SELECT id, "co""l" FROM shop.people WHERE id IN (1, 4) ORDER BY id"#,
        r#"SELECT id, "v""al" FROM copy.irish ORDER BY id"#,
    );
    assert_same(
        &server,
        "SELECT id FROM shop.people WHERE id IN (3, 5) ORDER BY id",
        "SELECT id FROM copy.mixed ORDER BY id",
    );
}
