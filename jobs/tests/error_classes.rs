//! Every error variant of every crate whose cause a test can build (PostgreSQL's driver errors
//! and the file writers' wrapped errors cannot be; their classes follow the SQLSTATE or the io
//! cause), pinned to its class and the exit code the CLI gives it; rows of the same failure (a
//! value that cannot be read, a target that refuses a value, a connection lost, a bad URL)
//! carry the same class whichever connector raised them.

use ferry_engine::{Error, ErrorClass};
use ferry_jobs::JobError;
use ferry_mysql::MyError;
use ferry_parquet::ParquetError;
use ferry_postgres::PgError;
use ferry_redis::RedisError;
use ferry_sql::SqlError;
use ferry_transforms::TransformError;

use ErrorClass::{External, Internal, User};

fn text(s: &str) -> String {
    s.to_string()
}

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::new(kind, "test")
}

/// (what failed, the error, its class).
fn rows() -> Vec<(&'static str, Error, ErrorClass)> {
    let lost = || io(std::io::ErrorKind::ConnectionReset);
    vec![
        // A URL the connector cannot use: the user's.
        (
            "bad URL: PostgreSQL",
            PgError::Url {
                field: text("source.url"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "bad URL: MySQL",
            MyError::Url {
                field: text("source.url"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "bad URL: files",
            ParquetError::Url {
                field: text("sink.url"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "bad URL: Redis",
            Error::Config {
                field: text("source.url"),
                message: text("x"),
            },
            User,
        ),
        (
            "bad URL: no connector",
            JobError::UnsupportedUrl {
                field: "source.url",
                role: "read from",
                scheme: text("x"),
                context: " yet",
                supported: text("y"),
            }
            .into(),
            User,
        ),
        // A value that cannot be read or carried: the user's (it fails again on every try).
        (
            "value unreadable: PostgreSQL",
            PgError::Decode {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "value unreadable: MySQL",
            MyError::Decode {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "value not carried: PostgreSQL",
            PgError::UnsupportedColumn {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "value not carried: MySQL",
            MyError::UnsupportedColumn {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "value not carried: Redis",
            RedisError::Unsupported {
                db: 0,
                key: text("k"),
                what: text("module"),
            }
            .into(),
            User,
        ),
        (
            "value not carried: rule",
            JobError::UnsupportedColumn {
                rule: 0,
                table: ferry_engine::TableId::new("s", "t"),
                column: text("c"),
                reason: text("x"),
            }
            .into(),
            User,
        ),
        // The target refuses a value or a table: the user's.
        (
            "target refuses a value: PostgreSQL",
            PgError::Encode {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "target refuses a value: MySQL",
            MyError::Encode {
                table: text("t"),
                column: text("c"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "target refuses a command: Redis",
            RedisError::Protocol {
                address: text("h:1"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "target table unfit: PostgreSQL",
            PgError::Target {
                table: text("t"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "target table unfit: MySQL",
            MyError::Target {
                table: text("t"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "target table unfit: files",
            ParquetError::Target {
                table: text("t"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        // A connection lost or a server away: external, retried.
        (
            "connection lost: MySQL",
            MyError::Query {
                endpoint: text("h:1"),
                context: text("x"),
                source: mysql_async::Error::Io(mysql_async::IoError::Io(lost())),
            }
            .into(),
            External,
        ),
        (
            "connection lost: Redis link",
            RedisError::Io {
                address: text("h:1"),
                context: text("x"),
                source: lost(),
            }
            .into(),
            External,
        ),
        (
            "connection lost: Redis RDB",
            RedisError::RdbIo(lost()).into(),
            External,
        ),
        (
            "replication slot still held: PostgreSQL",
            PgError::ReplicationConnection {
                endpoint: text("h:1"),
                message: text("x"),
            }
            .into(),
            External,
        ),
        (
            "disk full (files)",
            ParquetError::Io {
                path: text("/x"),
                source: io(std::io::ErrorKind::StorageFull),
            }
            .into(),
            External,
        ),
        (
            "no permission (files)",
            ParquetError::Io {
                path: text("/x"),
                source: io(std::io::ErrorKind::PermissionDenied),
            }
            .into(),
            User,
        ),
        (
            "file read back failed",
            ParquetError::Read {
                path: text("/x"),
                message: text("x"),
            }
            .into(),
            External,
        ),
        // A stream ferry cannot decode: a bug, whichever protocol.
        (
            "stream undecodable: pgoutput",
            PgError::Replication { message: text("x") }.into(),
            Internal,
        ),
        (
            "stream undecodable: RDB",
            RedisError::Malformed(text("x")).into(),
            Internal,
        ),
        // Settings the source lacks: the user's.
        (
            "precheck: PostgreSQL",
            PgError::Precheck { message: text("x") }.into(),
            User,
        ),
        (
            "precheck: MySQL",
            MyError::Precheck { message: text("x") }.into(),
            User,
        ),
        (
            "unsupported: MySQL",
            MyError::Unsupported { message: text("x") }.into(),
            User,
        ),
        ("rules: Redis", RedisError::Rules(text("x")).into(), User),
        // Job files and rules.
        (
            "job file",
            SqlError::JobFile { message: text("x") }.into(),
            User,
        ),
        (
            "job field",
            SqlError::InvalidField {
                field: text("f"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "rule syntax",
            SqlError::RuleSyntax {
                rule: 0,
                sql: text("x"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "rule unsupported",
            SqlError::RuleUnsupported {
                rule: 0,
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "unknown table",
            SqlError::UnknownTable {
                rule: 0,
                table: text("t"),
                suggestion: None,
            }
            .into(),
            User,
        ),
        (
            "ambiguous table",
            SqlError::AmbiguousTable {
                rule: 0,
                table: text("t"),
                candidates: text("a"),
                example: text("b"),
            }
            .into(),
            User,
        ),
        (
            "no table matched",
            SqlError::NoTableMatched {
                rule: 0,
                pattern: text("p"),
                suggestion: None,
            }
            .into(),
            User,
        ),
        (
            "unknown column",
            SqlError::UnknownColumn {
                rule: 0,
                table: text("t"),
                column: text("c"),
                suggestion: None,
            }
            .into(),
            User,
        ),
        (
            "duplicate column",
            SqlError::DuplicateColumn {
                rule: 0,
                column: text("c"),
            }
            .into(),
            User,
        ),
        (
            "rule plan",
            TransformError::Plan {
                rule: 0,
                table: text("t"),
                expr: text("e"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "rule not deterministic",
            TransformError::NotDeterministic {
                rule: 0,
                table: text("t"),
                expr: text("e"),
                function: text("random"),
            }
            .into(),
            User,
        ),
        (
            "rule not boolean",
            TransformError::NotBoolean {
                rule: 0,
                table: text("t"),
                expr: text("e"),
                data_type: text("Int64"),
            }
            .into(),
            User,
        ),
        (
            "job: not incremental",
            JobError::NotIncremental {
                field: text("f"),
                message: text("x"),
            }
            .into(),
            User,
        ),
        (
            "job: target is the source",
            JobError::TargetIsSource {
                rule: 0,
                table: ferry_engine::TableId::new("s", "t"),
                name: text("t"),
                place: text("p"),
            }
            .into(),
            User,
        ),
        (
            "job: reserved target",
            JobError::ReservedTarget {
                rule: 0,
                table: ferry_engine::TableId::new("s", "t"),
            }
            .into(),
            User,
        ),
        (
            "job: name too long",
            JobError::NameTooLong {
                rule: 0,
                what: "table",
                name: text("t"),
                limit: ferry_engine::NameLimit::Bytes(63),
            }
            .into(),
            User,
        ),
        (
            "job: target conflict",
            JobError::TargetConflict {
                first: 0,
                second: 1,
                target: ferry_engine::TableId::new("s", "t"),
            }
            .into(),
            User,
        ),
        (
            "job: cannot read back",
            JobError::CannotReadBack { sink: "Redis" }.into(),
            User,
        ),
        (
            "job: job file unreadable",
            JobError::JobFile {
                path: text("/x"),
                source: io(std::io::ErrorKind::NotFound),
            }
            .into(),
            User,
        ),
        // The engine's own.
        (
            "connector option",
            Error::Config {
                field: text("source.options.x"),
                message: text("x"),
            },
            User,
        ),
        (
            "checkpoint",
            Error::Checkpoint {
                path: text("/x"),
                message: text("x"),
            },
            User,
        ),
        (
            "already running",
            Error::Running {
                job: text("j"),
                holder: text("h"),
            },
            User,
        ),
        (
            "name taken",
            Error::NameTaken {
                job: text("j"),
                place: text("p"),
                theirs: text("a"),
                ours: text("b"),
            },
            User,
        ),
        (
            "not running",
            Error::NotRunning {
                job: text("j"),
                action: "stop",
            },
            User,
        ),
        (
            "transform on a batch",
            Error::Transform {
                table: text("t"),
                message: text("x"),
            },
            User,
        ),
        ("internal", Error::Internal(text("x")), Internal),
    ]
}

#[test]
fn every_variant_has_its_class_and_exit_code() {
    for (what, error, class) in rows() {
        assert_eq!(error.class(), class, "{what}: {error}");
        let code = match class {
            User => 2,
            External => 3,
            Internal => 4,
        };
        assert_eq!(ferry_jobs::exit_code(&error), code, "{what}: {error}");
        assert!(!error.to_string().is_empty(), "{what}");
    }
    assert_eq!(ferry_jobs::exit_code(&Error::Stopped), 130);
}

#[test]
fn the_same_failure_has_the_same_class_in_every_connector() {
    let rows = rows();
    let mut by_failure = std::collections::BTreeMap::<&str, Vec<(&str, ErrorClass)>>::new();
    for (what, _, class) in &rows {
        if let Some((failure, _)) = what.split_once(": ") {
            by_failure.entry(failure).or_default().push((what, *class));
        }
    }
    for (failure, rows) in by_failure {
        let first = rows[0].1;
        assert!(
            rows.iter().all(|(_, class)| *class == first),
            "{failure} is classed differently: {rows:?}"
        );
    }
}
