//! ferry's job runtime: every kind of job (tables between PostgreSQL, MySQL/MariaDB and files;
//! a Redis instance into another) planned, run, verified and dropped through one contract
//! ([`Job`]) under one run context ([`RunContext`]: stop signal, live limits, retry policy,
//! events, status), over the connector registry ([`registry`]). It prints nothing: front ends
//! (the `ferry` CLI, the service) render its reports, events and [`JobStatus`].

#![warn(missing_docs)]

pub mod context;
mod error;
pub mod job;
pub mod precheck;
pub mod redis;
pub mod registry;
pub mod spec;
pub mod status;
pub mod table;

pub use context::{ControlFiles, Controls, Event, RunContext};
pub use error::JobError;
pub use job::{
    drop, is_running, open, require_running, run, CheckReport, DropReport, Job, PlanSummary,
    RunReport, TableReport, VerifyReport,
};
pub use precheck::{ItemStatus, Precheck, PrecheckItem};
pub use spec::JobSpec;
pub use status::{Counters, JobStatus, Phase, RunState};

/// What front ends need of the layers below, so that they depend on this crate alone.
pub use ferry_engine::{
    private_file, private_options, CheckpointCell, CheckpointStore, Error, ErrorClass, Position,
    Progress, StreamProgress, TableProgress,
};
/// A Redis job's live counters.
pub use ferry_redis::status::{MigrationState, MigrationStatus};
/// The job file.
pub use ferry_sql::{JobFile, MigrationType};

/// The exit code of a command that failed with `error`, the same for every front end that
/// has exit codes: 2 the user must fix something (before anything was written), 3 a server or
/// the network failed (after the retries), 4 a bug in ferry, 130 stopped (Ctrl-C) before the
/// job was done.
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::Stopped => 130,
        other => match other.class() {
            ErrorClass::User => 2,
            ErrorClass::External => 3,
            ErrorClass::Internal => 4,
        },
    }
}
