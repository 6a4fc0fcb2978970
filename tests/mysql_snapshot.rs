//! Full migrations from real MariaDB servers into PostgreSQL, through the `ferry` binary as a
//! user runs it: every mapped type with NULLs and edge values compared row by row in text
//! form on both sides, a table split into key ranges read in parallel, a filter and renames,
//! and the errors for what cannot be carried.

use std::path::{Path, PathBuf};

use ferry_testkit::cli::{self, describe};
use ferry_testkit::{MariaServer, PgServer};

const TYPES_TABLE: &str = r#"
CREATE TABLE shop.kinds (
    id int PRIMARY KEY,
    ti tinyint, tu tinyint unsigned, si smallint, su smallint unsigned,
    mi mediumint, mu mediumint unsigned, i int, iu int unsigned, bi bigint, bu bigint unsigned,
    d decimal(12,2), dw decimal(65,30), f float, db double,
    c char(5), vc varchar(50), tx text, en enum('a','b'), st set('x','y'), js json,
    bn binary(4), vb varbinary(20), bl blob,
    dt date, dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, yr year, b1 bit(1), b12 bit(12),
    tm time(6)
) CHARACTER SET utf8mb4;
INSERT INTO shop.kinds VALUES
 (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615,
  -1234567890.12, 12345678901234567890123456789012345.123456789012345678901234567891,
  1.5, -2.25,
  'ab', 'héllo 🙂 wörld', REPEAT('long text ', 500), 'b', 'x,y', '{"k": [1, 2, "drei"]}',
  'ab', x'00ff10', x'deadbeef',
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.499999', 2155, b'1', b'101010101010',
  '838:59:59'),
 (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0,
  0.00, -0.000000000000000000000000000001, 0, 0,
  '', '', '', 'a', '', '[]',
  '', '', '',
  '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:01', 1901, b'0', b'0', '-00:00:00.000001'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

/// Each column of `shop.kinds` as text, the same on both sides: (MariaDB, PostgreSQL).
const COLUMNS: [(&str, &str); 31] = [
    ("id", "id"),
    ("ti", "ti"),
    ("tu", "tu"),
    ("si", "si"),
    ("su", "su"),
    ("mi", "mi"),
    ("mu", "mu"),
    ("i", "i"),
    ("iu", "iu"),
    ("bi", "bi"),
    ("bu", "bu"),
    ("d", "d"),
    ("dw", "dw"),
    ("f", "f"),
    ("db", "db"),
    ("c", "c"),
    ("vc", "vc"),
    ("md5(tx)", "md5(tx)"),
    ("en", "en"),
    ("st", "st"),
    ("js", "js"),
    ("hex(bn)", "upper(encode(bn, 'hex'))"),
    ("hex(vb)", "upper(encode(vb, 'hex'))"),
    ("hex(bl)", "upper(encode(bl, 'hex'))"),
    ("dt", "dt"),
    (
        "date_format(dtm, '%Y-%m-%d %H:%i:%s.%f')",
        "to_char(dtm, 'YYYY-MM-DD HH24:MI:SS.US')",
    ),
    (
        "date_format(ts, '%Y-%m-%d %H:%i:%s.%f')",
        "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    ),
    ("yr", "yr"),
    (
        "CASE WHEN b1 IS NULL THEN NULL WHEN b1 THEN 'true' ELSE 'false' END",
        "b1",
    ),
    ("cast(b12 AS unsigned)", "b12"),
    ("time_to_sec(tm)", "extract(epoch from tm)"),
];

fn servers() -> (MariaServer, PgServer) {
    let source = MariaServer::start()
        .expect("start MariaDB (apt-get install -y mariadb-server mariadb-client)");
    source.create_database("shop").unwrap();
    let sink = PgServer::start().expect("start PostgreSQL (apt-get install -y postgresql)");
    sink.create_database("sink").unwrap();
    (source, sink)
}

fn write_job(dir: &Path, source: &MariaServer, sink: &PgServer, rules: &[&str]) -> PathBuf {
    let mut text = format!(
        "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\"]\n\
         batch_size = 1000\nparallelism = 3\nchunk_rows = 4000\n",
        source.url("shop"),
        sink.url("sink")
    );
    for rule in rules {
        text.push_str(&format!("[[rules]]\nsql = '''{rule}'''\n"));
    }
    let path = dir.join("from_mariadb.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_mapped_type_and_a_split_table_arrive_in_postgres() {
    let (source, sink) = servers();
    source.sql("shop", TYPES_TABLE).unwrap();
    source
        .sql(
            "shop",
            "CREATE TABLE shop.orders (id bigint unsigned PRIMARY KEY, customer int NOT NULL,
                 amount decimal(10,2) NOT NULL, note varchar(40));
             INSERT INTO shop.orders
             SELECT seq, seq % 97, (seq % 300) / 2, IF(seq % 7 = 0, NULL, CONCAT('note ', seq))
             FROM seq_1_to_20000;
             ANALYZE TABLE shop.orders;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        &[
            "INSERT INTO sales.kinds SELECT * FROM shop.kinds",
            "INSERT INTO sales.big_orders SELECT id, customer AS client, amount AS total, note FROM shop.orders WHERE amount > 100",
        ],
    );
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("snapshot taken at binlog position"),
        "{stderr}"
    );
    // The 20 000-row table was read as several key ranges.
    assert!(stderr.matches("part committed").count() >= 4, "{stderr}");

    // Every value, in text form on both sides.
    let (expected, actual) = kinds_as_text(&source, &sink, "shop.kinds");
    assert_eq!(expected.len(), 3);
    assert_columns_equal(&expected, &actual);

    // The filtered, renamed table: the same rows by content.
    let expected = source
        .sql(
            "shop",
            "SELECT COUNT(*), SUM(id), SUM(customer), SUM(amount), COUNT(note), \
             MD5(GROUP_CONCAT(CONCAT_WS(',', id, customer, amount, IFNULL(note, 'NULL')) ORDER BY id SEPARATOR ';')) \
             FROM shop.orders WHERE amount > 100",
        )
        .unwrap()
        .replace('\t', "|");
    let actual = sink
        .psql(
            "sink",
            "SELECT count(*), sum(id), sum(client), sum(total), count(note), \
             md5(string_agg(concat_ws(',', id, client, total, coalesce(note, 'NULL')), ';' ORDER BY id)) \
             FROM sales.big_orders",
        )
        .unwrap();
    assert_eq!(expected.trim(), actual.trim());
    assert!(expected.starts_with("6534|"), "{expected}");
}

/// Every row of MariaDB table `table` and of the sink's `sales.kinds`, each column as text.
fn kinds_as_text(source: &MariaServer, sink: &PgServer, table: &str) -> (Vec<String>, Vec<String>) {
    let maria_list: Vec<String> = COLUMNS
        .iter()
        .map(|(m, _)| format!("IFNULL({m}, 'NULL')"))
        .collect();
    let pg_list: Vec<String> = COLUMNS
        .iter()
        .map(|(_, p)| format!("coalesce(({p})::text, 'NULL')"))
        .collect();
    let expected = source
        .sql(
            "shop",
            &format!(
                "SET time_zone = '+00:00'; SELECT {} FROM {table} ORDER BY id",
                maria_list.join(", ")
            ),
        )
        .unwrap();
    let actual = sink
        .psql(
            "sink",
            &format!(
                "SELECT {} FROM sales.kinds ORDER BY id",
                pg_list.join(" || '\t' || ")
            ),
        )
        .unwrap();
    (
        expected.lines().map(str::to_string).collect(),
        actual.lines().map(str::to_string).collect(),
    )
}

/// The rows are equal column by column (the first difference names its column).
fn assert_columns_equal(expected: &[String], actual: &[String]) {
    for (want, got) in expected.iter().zip(actual) {
        for ((column, want), got) in COLUMNS.iter().zip(want.split('\t')).zip(got.split('\t')) {
            assert_eq!(want, got, "column {}", column.0);
        }
    }
    assert_eq!(expected.len(), actual.len());
}

#[test]
fn every_mapped_type_arrives_through_the_binlog_too() {
    let (source, sink) = servers();
    source.sql("shop", TYPES_TABLE).unwrap();
    source
        .sql("shop", "CREATE TABLE shop.live LIKE shop.kinds")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        &["INSERT INTO sales.kinds SELECT * FROM shop.live"],
    );
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "types = [\"schema\", \"full\"]",
        "types = [\"schema\", \"full\", \"incremental\"]",
    );
    std::fs::write(&job, text).unwrap();
    let mut child = cli::spawn("run", &job);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let streaming = || {
        sink.psql("sink", "SELECT count(*) FROM _ferry.applied")
            .is_ok_and(|out| out.trim() == "1")
    };
    while !streaming() {
        assert!(std::time::Instant::now() < deadline, "ferry never streamed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every value as the binlog encodes it: inserted, then one row updated to another's
    // values and one deleted and inserted again.
    source
        .sql(
            "shop",
            "INSERT INTO shop.live SELECT * FROM shop.kinds;
             INSERT INTO shop.live SELECT 4, ti, tu, si, su, mi, mu, i, iu, bi, bu, d, dw, f, db, c, vc, tx, en, st, js,
                                          bn, vb, bl, dt, dtm, ts, yr, b1, b12, tm FROM shop.kinds WHERE id = 3;
             UPDATE shop.live l JOIN shop.kinds k ON k.id = 1 SET l.ti = k.ti, l.tu = k.tu, l.si = k.si, l.su = k.su,
                 l.mi = k.mi, l.mu = k.mu, l.i = k.i, l.iu = k.iu, l.bi = k.bi, l.bu = k.bu, l.d = k.d, l.dw = k.dw,
                 l.f = k.f, l.db = k.db, l.c = k.c, l.vc = k.vc, l.tx = k.tx, l.en = k.en, l.st = k.st, l.js = k.js,
                 l.bn = k.bn, l.vb = k.vb, l.bl = k.bl, l.dt = k.dt, l.dtm = k.dtm, l.ts = k.ts, l.yr = k.yr,
                 l.b1 = k.b1, l.b12 = k.b12, l.tm = k.tm WHERE l.id = 4;
             DELETE FROM shop.live WHERE id = 2;
             INSERT INTO shop.live SELECT * FROM shop.kinds WHERE id = 2;",
        )
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (expected, actual) = kinds_as_text(&source, &sink, "shop.live");
        if expected == actual || std::time::Instant::now() > deadline {
            assert_eq!(expected.len(), 4);
            assert_columns_equal(&expected, &actual);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn what_cannot_be_carried_is_named_with_the_fix() {
    let (source, sink) = servers();
    source
        .sql(
            "shop",
            "CREATE TABLE shop.shifts (id int PRIMARY KEY, spot point, day date);
             INSERT INTO shop.shifts VALUES (1, POINT(1, 2), '2026-01-01');",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A spatial column is refused before anything is written.
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        &["INSERT INTO sales.shifts SELECT * FROM shop.shifts"],
    );
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spot") && stderr.contains("point"),
        "{stderr}"
    );

    // A zero date is an error naming the column and the row, not a silent NULL.
    source
        .sql(
            "shop",
            "SET SESSION sql_mode = ''; INSERT INTO shop.shifts VALUES (2, POINT(3, 4), '0000-00-00');",
        )
        .unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        &["INSERT INTO sales.days SELECT id, day FROM shop.shifts"],
    );
    let output = cli::ferry("run", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("column day") && stderr.contains("zero date") && stderr.contains("id=2"),
        "{stderr}"
    );
}

const PG_SOURCE: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.things (
    id bigint PRIMARY KEY, i integer, n numeric(12,2), f double precision, r real,
    b boolean, t text, vc varchar(20), by bytea, d date, ts timestamp(6), tz timestamptz,
    j jsonb, u uuid);
INSERT INTO shop.things VALUES
 (1, -2147483648, -9999999999.99, 3.5, 1.25, true, E'it''s \\ "quoted"\nnewline 🙂', 'x',
  '\x00ff0a', '1000-01-01', '9999-12-31 23:59:59.999999', '2030-06-01 12:00:00.123456+02',
  '{"k": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, 0, 0, 0, 0, false, '', '', '', '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00',
  '[]', '00000000-0000-0000-0000-000000000000'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO shop.things SELECT g, g, g / 3.0, g * 1.5, g, g % 2 = 0, 'row ' || g, 'v' || g,
  decode(md5(g::text), 'hex'), date '2000-01-01' + g, timestamp '2000-01-01' + g * interval '1 minute',
  timestamptz '2000-01-01 00:00:00+00' + g * interval '1 second', jsonb_build_object('g', g),
  md5(g::text)::uuid
FROM generate_series(4, 6000) g;
-- Keys that differ only by case stay two rows.
CREATE TABLE shop.codes (code text PRIMARY KEY, label text);
INSERT INTO shop.codes VALUES ('a', 'lower'), ('A', 'upper'), ('ä', 'umlaut');
ANALYZE;
"#;

#[test]
fn postgres_and_mariadb_fill_mariadb_and_verify_finds_them_equal() {
    let (maria, pg) = servers();
    pg.create_database("source").unwrap();
    pg.psql("source", PG_SOURCE).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // PostgreSQL → MariaDB: target tables created with the closest exact types.
    let job = dir.path().join("to_mariadb.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\"]\n\
             batch_size = 700\nparallelism = 2\nchunk_rows = 2000\n\
             [[rules]]\nsql = 'INSERT INTO copy.things SELECT * FROM shop.things'\n\
             [[rules]]\nsql = 'INSERT INTO copy.codes SELECT code, label AS what FROM shop.codes'\n",
            pg.url("source"),
            maria.url("shop")
        ),
    )
    .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("verify passed: 2 target tables equal"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        maria
            .sql(
                "copy",
                "SELECT GROUP_CONCAT(code ORDER BY code SEPARATOR ',') FROM copy.codes"
            )
            .unwrap()
            .trim(),
        "A,a,ä"
    );
    // A difference is found: verify reads MariaDB back.
    maria
        .sql("copy", "UPDATE copy.things SET t = 'tampered' WHERE id = 4")
        .unwrap();
    let output = cli::ferry("verify", &job);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));

    // MariaDB → MariaDB: the declared types are kept (same engine).
    maria.create_database("mirror_src").unwrap();
    maria
        .sql(
            "mirror_src",
            &TYPES_TABLE.replace("shop.kinds", "mirror_src.kinds"),
        )
        .unwrap();
    let job = dir.path().join("mirror.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\"]\n\
             [[rules]]\nsql = 'INSERT INTO mirror_dst.kinds SELECT * FROM mirror_src.kinds'\n",
            maria.url("mirror_src"),
            maria.url("mirror_src")
        ),
    )
    .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let declared = |db: &str| {
        maria
            .sql(
                db,
                &format!(
                    "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'kinds'"
                ),
            )
            .unwrap()
    };
    assert_eq!(declared("mirror_src"), declared("mirror_dst"));
    let all = |db: &str| {
        maria
            .sql(db, &format!("SELECT * FROM {db}.kinds ORDER BY id"))
            .unwrap()
    };
    assert_eq!(all("mirror_src"), all("mirror_dst"));
    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn the_account_needs_reload_and_copies_without_the_binlog_position_if_it_must() {
    let (source, sink) = servers();
    source
        .sql(
            "shop",
            "CREATE TABLE shop.small (id int PRIMARY KEY, v varchar(10));
             INSERT INTO shop.small VALUES (1, 'one'), (2, 'two');
             CREATE USER 'reader'@'127.0.0.1';
             GRANT SELECT ON *.* TO 'reader'@'127.0.0.1';",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &sink,
        &["INSERT INTO sales.small SELECT * FROM shop.small"],
    );
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("mysql://ferry@", "mysql://reader@");
    std::fs::write(&job, text).unwrap();

    // Without RELOAD there is no consistent moment across connections: named, with the grant.
    let output = cli::ferry("run", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GRANT RELOAD"), "{stderr}");

    // With RELOAD but without the right to read the binlog position, a full migration
    // still runs, and says what it could not read.
    source
        .sql("shop", "GRANT RELOAD ON *.* TO 'reader'@'127.0.0.1'")
        .unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BINLOG MONITOR"), "{stderr}");
    assert_eq!(
        sink.psql(
            "sink",
            "SELECT string_agg(v, ',' ORDER BY id) FROM sales.small"
        )
        .unwrap()
        .trim(),
        "one,two"
    );
}

#[test]
fn a_value_that_does_not_fit_an_existing_target_column_is_an_error_not_a_cut() {
    let (maria, pg) = servers();
    pg.create_database("source").unwrap();
    pg.psql(
        "source",
        "CREATE TABLE public.words (id int PRIMARY KEY, w text);
         INSERT INTO public.words VALUES (1, 'ok'), (2, 'far too long');",
    )
    .unwrap();
    maria
        .sql(
            "shop",
            "CREATE TABLE shop.words (id int PRIMARY KEY, w varchar(5));",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("narrow.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"full\"]\n\
             [[rules]]\nsql = 'INSERT INTO shop.words SELECT * FROM public.words'\n",
            pg.url("source"),
            maria.url("shop")
        ),
    )
    .unwrap();
    let output = cli::ferry("run", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        // INSERT says "Data too long for column 'w'", LOAD DATA "Data truncated for column 'w'".
        stderr.contains("shop.words") && stderr.contains("column 'w'"),
        "{stderr}"
    );
    // Nothing of the failed part stays.
    assert_eq!(
        maria
            .sql("shop", "SELECT COUNT(*) FROM shop.words")
            .unwrap()
            .trim(),
        "0"
    );

    // A server that refuses LOAD DATA LOCAL INFILE gets multi-row INSERTs instead.
    pg.psql("source", "UPDATE public.words SET w = 'fits' WHERE id = 2")
        .unwrap();
    maria.sql("shop", "SET GLOBAL local_infile = 0").unwrap();
    let output = cli::ferry("run", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("refuses LOAD DATA LOCAL INFILE"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        maria
            .sql("shop", "SELECT GROUP_CONCAT(w ORDER BY id) FROM shop.words")
            .unwrap()
            .trim(),
        "ok,fits"
    );
}
