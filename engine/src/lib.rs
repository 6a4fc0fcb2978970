//! ferry-engine: the core every connector stands on.
//!
//! A migration moves [`ChangeBatch`]es — Arrow rows of one table, the change [`Op`] of each row
//! and the source [`Position`] they came from — from a [`Source`] through [`Transform`]s into a
//! [`Sink`]. The [`pipeline`] runs those stages as tokio tasks joined by bounded channels, so
//! memory is bounded by batch size × queue depth × parallelism, never by table size.
//!
//! This crate knows no database driver and no SQL parser: connectors, rules and transforms
//! depend on it, never the other way round.
#![warn(missing_docs)]

pub mod batch;
pub mod changes;
pub mod checkpoint;
pub mod coalesce;
pub mod connector;
pub mod error;
pub mod identity;
pub mod lock;
pub mod options;
pub mod pipeline;
pub mod position;
pub mod progress;
pub mod rate;
pub mod retry;
pub mod schema;
pub mod sink;
pub mod source;
pub mod streaming;
pub mod transform;

pub use batch::{ChangeBatch, Op, Ops, Unchanged};
pub use changes::{ChangeEvent, ChangeFeed, ChangeRequest, ChangeStream};
pub use checkpoint::{CheckpointCell, CheckpointStore, JobState};
pub use coalesce::{Coalescer, Patches, TableChanges};
pub use connector::{Capabilities, Connector, OpenedSource, Shape};
pub use error::{Error, ErrorClass, Result};
pub use identity::ServerIdentity;
pub use lock::{Holder, JobLock};
pub use options::ConnectorOptions;
pub use pipeline::{run_snapshot, Route, RunOptions, SnapshotProgress, TableFlow};
pub use position::{binlog_file_number, Position};
pub use progress::{Lag, Progress, StreamProgress, TableProgress};
pub use rate::{Limits, RateLimit};
pub use retry::RetryPolicy;
pub use schema::{TableId, TableSchema};
pub use sink::{
    compare_claim, ChangeApplier, ExistingRows, NameLimit, PartMarker, PrepareOptions,
    PreparedTables, Sink, SinkLock, SinkWriter, WriterOptions,
};
pub use source::{
    check_tiling, split_range, FilterDialect, PartRange, Snapshot, SnapshotPart, SnapshotRequest,
    SnapshotTable, Source,
};
pub use streaming::{run_changes, ChangeRouting, StreamOptions};
pub use transform::Transform;

/// Options that create a file only its owner can read and write (0600): job state, locks
/// and the service's catalog are ferry's alone.
pub fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates (or truncates) `path` for writing, readable by its owner only (0600).
pub fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}
