//! Errors of the job runtime that belong to no connector: all the user's to fix, found before
//! anything is written.

use ferry_engine::error::{ClassifiedError, ErrorClass};
use ferry_engine::TableId;

/// Errors of planning that belong to no connector.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A URL names an engine ferry does not support on that side.
    #[error("{field}: ferry cannot {role} '{scheme}'{context}; use {supported}")]
    UnsupportedUrl {
        /// `source.url` or `sink.url`.
        field: &'static str,
        /// "read from" or "write to".
        role: &'static str,
        /// The URL's scheme.
        scheme: String,
        /// Why: ` yet` (no connector takes the scheme), or what it cannot be combined with.
        context: &'static str,
        /// The URL forms that are supported there.
        supported: String,
    },
    /// `ferry verify` cannot read this sink back.
    #[error("sink.url: ferry verify reads the target back, which it cannot do for a {sink} sink")]
    CannotReadBack {
        /// The sink's connector.
        sink: &'static str,
    },
    /// The job file cannot be read.
    #[error("cannot read the job file {path}: {source}")]
    JobFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A selected column cannot be carried.
    #[error(
        "rules[{rule}].sql: column {column} of {table}: {reason}; leave it out of the SELECT list"
    )]
    UnsupportedColumn {
        /// The rule.
        rule: usize,
        /// The source table.
        table: TableId,
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// The job cannot run incrementally as configured.
    #[error("{field}: {message}")]
    NotIncremental {
        /// The job field at fault.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A target table is one of the job's source tables: the sink reaches the source's own
    /// server and database.
    #[error("rules[{rule}].sql: the target {table} is the source table itself: sink.url reaches the same {place} as source.url (as the servers report themselves, whatever the URLs say), so writing it would destroy or double the rows ferry reads; give the rule another target (INSERT INTO other_schema.{name} …) or point sink.url at another database")]
    TargetIsSource {
        /// The rule.
        rule: usize,
        /// The table.
        table: TableId,
        /// Its bare name, for the suggestion.
        name: String,
        /// The server (and database) both URLs reach.
        place: String,
    },
    /// A target is in a schema of the server's or ferry's own.
    #[error("rules[{rule}].sql: the target {table} is in a schema the sink keeps for itself (its system catalog, or ferry's bookkeeping in _ferry); write the rows to a schema of your own")]
    ReservedTarget {
        /// The rule.
        rule: usize,
        /// The target.
        table: TableId,
    },
    /// A target name is longer than the sink keeps.
    #[error("rules[{rule}].sql: the target {what} name '{name}' is longer than the {limit} the sink keeps whole (it would cut it, and two cut names could become one); choose a shorter one in the rule (INSERT INTO … or AS)")]
    NameTooLong {
        /// The rule.
        rule: usize,
        /// `schema`, `table` or `column`.
        what: &'static str,
        /// The name.
        name: String,
        /// The sink's limit.
        limit: ferry_engine::NameLimit,
    },
    /// Two rules write the same target table with different columns.
    #[error("rules[{first}] and rules[{second}] both write {target} but with different columns; give one of them another target")]
    TargetConflict {
        /// The first rule.
        first: usize,
        /// The second rule.
        second: usize,
        /// The target table.
        target: TableId,
    },
}

impl ClassifiedError for JobError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl From<JobError> for ferry_engine::Error {
    fn from(error: JobError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
