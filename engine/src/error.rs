//! The engine's error type and the user / external / internal classification every crate's
//! error maps onto, so the CLI knows whether to tell the user to fix something, retry, or
//! report a bug.

use std::fmt;

/// Who has to act on an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad config, bad rule, unknown table: the user fixes it; nothing was written.
    User,
    /// Network or server trouble: retrying later may succeed.
    External,
    /// A bug in ferry.
    Internal,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::User => "user error",
            ErrorClass::External => "external error",
            ErrorClass::Internal => "internal error",
        })
    }
}

/// An error of some crate that knows its own class. Connector errors implement this so the
/// engine can carry them without knowing the connector.
pub trait ClassifiedError: std::error::Error + Send + Sync + 'static {
    /// Who has to act on this error.
    fn class(&self) -> ErrorClass;
}

/// Errors crossing the engine's stages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connector (source or sink) failed; the boxed error says how.
    #[error("{0}")]
    Connector(Box<dyn ClassifiedError>),
    /// A transform failed on a batch of `table`.
    #[error("transforming rows of {table}: {message}")]
    Transform {
        /// The source table whose batch failed.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// The job's checkpoint file cannot be read or written.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Another process runs the job (or drops it) now.
    #[error(
        "job {job} is already running ({holder}); wait for it to end, or stop it with `ferry stop`"
    )]
    Running {
        /// The job.
        job: String,
        /// Who runs it (host, pid, since when), as far as known.
        holder: String,
    },
    /// The job's name is taken at the source or in the sink by another job definition.
    #[error("job {job}: {place} belongs to another job of that name (another source, sink, migration types or rules: recorded as {theirs}, this job file is {ours}); give this job file its own name = \"…\", or `ferry drop` the other job first (`ferry drop --force` removes them from here)")]
    NameTaken {
        /// The job's name.
        job: String,
        /// What holds the other job's records (`the sink's records`, `replication slot …`).
        place: String,
        /// The definition recorded there.
        theirs: String,
        /// This job's definition.
        ours: String,
    },
    /// A command for a running job (`ferry stop`, `ferry limit`) found it not running.
    #[error("job {job} is not running, so there is nothing to {action}; `ferry run` starts it")]
    NotRunning {
        /// The job.
        job: String,
        /// What was asked.
        action: &'static str,
    },
    /// A field of the job file a connector reads (its URL, an option of `[source.options]`
    /// or `[sink.options]`) is unknown or invalid.
    #[error("{field}: {message}")]
    Config {
        /// The field's path (`source.options.server_id`).
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The run was stopped (Ctrl-C or `ferry stop`) before it finished.
    #[error("the run was stopped before it finished")]
    Stopped,
    /// A stage ended unexpectedly (a task panicked or a channel closed early): a bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Who has to act on this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Connector(inner) => inner.class(),
            Error::Transform { .. } => ErrorClass::User,
            Error::Stopped => ErrorClass::User,
            Error::Checkpoint { .. }
            | Error::Running { .. }
            | Error::NotRunning { .. }
            | Error::Config { .. }
            | Error::NameTaken { .. } => ErrorClass::User,
            Error::Internal(_) => ErrorClass::Internal,
        }
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
