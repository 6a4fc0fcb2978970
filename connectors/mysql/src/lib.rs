//! ferry-mysql: MySQL and MariaDB as a source — one consistent snapshot over several
//! connections (taken under a brief `FLUSH TABLES WITH READ LOCK`, with the binlog position it
//! stands at), read by primary-key ranges in parallel over the binary result protocol, then
//! the binary log read as a replica reads it, from that position on — and as a sink for full
//! migrations (LOAD DATA LOCAL INFILE, or multi-row INSERT, one transaction per part).
//!
//! Same files as every connector: `config` (URL, connecting), `types` (type mapping),
//! `snapshot` (source), `changes` (the change feed), `sink`, `error`; plus `decode` (result
//! values into Arrow), `binlog` (row events into change batches) and `encode` (Arrow values
//! into SQL literals, target column types).
//!
//! Built on `mysql_async` with its `binlog` feature (event types from `mysql_common`): the
//! `mysql_cdc` crate the design first named cannot decode what MariaDB 10.11 sends (it
//! truncates microseconds, fails on negative TIME values, reads signed integers as unsigned)
//! and has blocking I/O only; see ../../../shared/DEPENDENCIES.md. MariaDB's own events
//! (GTID, GTID_LIST, BINLOG_CHECKPOINT) are not modelled there and are read here.
#![warn(missing_docs)]

mod apply;
mod binlog;
mod changes;
pub mod config;
mod decode;
mod encode;
pub mod error;
pub mod sink;
pub mod snapshot;
pub mod types;

pub use config::MyEndpoint;
pub use error::MyError;
pub use sink::MysqlSink;
pub use snapshot::{BinlogPosition, MysqlSource};

use std::sync::Arc;

use ferry_engine::{Capabilities, Connector, ConnectorOptions, OpenedSource, Shape};

/// MySQL and MariaDB as the job runtime's registry knows them.
pub static CONNECTOR: Connector = Connector {
    name: "MySQL/MariaDB",
    schemes: &["mysql", "mariadb"],
    url_form: "mysql://user@host:port",
    shape: Shape::Tables,
    capabilities: Capabilities {
        source: true,
        sink: true,
        change_feed: true,
        applies_changes: true,
        key_ordered_reads: true,
        files: false,
    },
    source_options: &[
        "server_id",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "password_file",
    ],
    sink_options: ferry_tls::OPTIONS,
    open_source: Some(open_source),
    open_sink: Some(open_sink),
    read_back: Some(read_back),
};

/// A replica id for job `job` when its options give none: stable per name, in a range
/// servers are rarely given (2^30 … 2^31 - 1).
pub fn replica_id(job: &str) -> u32 {
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let hash = job.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (1 << 30) | (hash & ((1 << 30) - 1))
}

/// `[source.options]`: `server_id`, the replica id the source knows this job by while it reads
/// the binlog; it must differ from every server's and other replica's `server_id`.
fn open_source(
    url: &str,
    mut options: ConnectorOptions,
    job: &str,
) -> ferry_engine::Result<OpenedSource> {
    let server_id = options.take_number("server_id", 1..=u32::MAX)?;
    let endpoint = MyEndpoint::parse(url, &mut options, "source")?;
    options.finish(CONNECTOR.source_options)?;
    Ok(OpenedSource {
        display: endpoint.display().to_string(),
        source: Arc::new(
            MysqlSource::new(endpoint).with_server_id(server_id.unwrap_or_else(|| replica_id(job))),
        ),
    })
}

fn open_sink(
    url: &str,
    mut options: ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn ferry_engine::Sink>> {
    let endpoint = MyEndpoint::parse(url, &mut options, "sink")?;
    options.finish(CONNECTOR.sink_options)?;
    Ok(Arc::new(MysqlSink::new(endpoint)))
}

fn read_back(
    url: &str,
    mut options: ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn ferry_engine::Source>> {
    let endpoint = MyEndpoint::parse(url, &mut options, "sink")?;
    options.finish(CONNECTOR.sink_options)?;
    Ok(Arc::new(MysqlSource::new(endpoint)))
}
