//! ferry-postgres: PostgreSQL as a source (a consistent snapshot read over binary COPY, split
//! into primary-key ranges read in parallel) and as a sink (target tables created to match,
//! rows written with binary COPY).
//!
//! Same files as every connector: `config` (URL, connecting), `types` (type mapping),
//! `schema` (catalog), `snapshot` (source), `sink`, `error`; plus the binary COPY codec
//! (`decode`, `encode`, `numeric`).
#![warn(missing_docs)]

mod apply;
#[doc(hidden)]
pub mod bench;
mod changes;
pub mod config;
mod decode;
mod encode;
pub mod error;
mod numeric;
mod pgoutput;
mod schema;
pub mod sink;
pub mod snapshot;
pub mod types;

pub use config::PgEndpoint;
pub use error::PgError;
pub use sink::{recorded_position, PostgresSink};
pub use snapshot::PostgresSource;

use std::sync::Arc;

use ferry_engine::{Capabilities, Connector, ConnectorOptions, OpenedSource, Shape};

/// PostgreSQL as the job runtime's registry knows it.
pub static CONNECTOR: Connector = Connector {
    name: "PostgreSQL",
    schemes: &["postgres", "postgresql"],
    url_form: "postgres://user@host:port/database",
    shape: Shape::Tables,
    capabilities: Capabilities {
        source: true,
        sink: true,
        change_feed: true,
        applies_changes: true,
        key_ordered_reads: true,
        files: false,
    },
    source_options: ferry_tls::OPTIONS,
    sink_options: ferry_tls::OPTIONS,
    open_source: Some(open_source),
    open_sink: Some(open_sink),
    read_back: Some(read_back),
};

fn open_source(
    url: &str,
    options: ConnectorOptions,
    _job: &str,
) -> ferry_engine::Result<OpenedSource> {
    let endpoint = PgEndpoint::parse(url, options, "source")?;
    Ok(OpenedSource {
        display: endpoint.display().to_string(),
        source: Arc::new(PostgresSource::new(endpoint)),
    })
}

fn open_sink(
    url: &str,
    options: ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn ferry_engine::Sink>> {
    Ok(Arc::new(PostgresSink::new(PgEndpoint::parse(
        url, options, "sink",
    )?)))
}

fn read_back(
    url: &str,
    options: ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn ferry_engine::Source>> {
    Ok(Arc::new(PostgresSource::new(PgEndpoint::parse(
        url, options, "sink",
    )?)))
}
