//! ferry-postgres: PostgreSQL as a source (a consistent snapshot read over binary COPY, split
//! into primary-key ranges read in parallel) and as a sink (target tables created to match,
//! rows written with binary COPY).
//!
//! Same files as every connector: `config` (URL, connecting), `types` (type mapping),
//! `schema` (catalog), `snapshot` (source), `sink`, `error`; plus the binary COPY codec
//! (`decode`, `encode`, `numeric`).
#![warn(missing_docs)]

mod apply;
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
