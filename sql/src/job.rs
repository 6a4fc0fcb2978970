//! The job file: TOML mapped with serde, unknown keys rejected, defaults as named constants.
//!
//! ```toml
//! [source]
//! url = "postgres://user@127.0.0.1:5432/shop"
//! [sink]
//! url = "postgres://user@127.0.0.1:5433/warehouse"   # or mysql://, redis://, parquet:///dir, arrow:///dir
//! [migration]
//! types = ["schema", "full"]
//! batch_size = 8192
//! parallelism = 4
//! max_rows_per_second = 50000    # optional; no limit by default
//! [[rules]]
//! sql = "INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE amount > 100"
//! ```

use ferry_engine::ConnectorOptions;
use serde::{Deserialize, Serialize};

use crate::error::SqlError;

/// Rows per batch unless the job says otherwise: large enough that per-batch costs (a channel
/// hop, a transform call, a COPY message) vanish, small enough to stay in L2-sized chunks.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// Largest batch accepted: beyond this a batch of wide rows can take hundreds of megabytes.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Parts read and written at once unless the job says otherwise: saturates a small server
/// without opening many connections.
pub const DEFAULT_PARALLELISM: usize = 4;
/// Most parts at once: each holds a source and a sink connection.
pub const MAX_PARALLELISM: usize = 64;
/// Rows per snapshot part where a table can be split: large enough that a part's setup (a
/// transaction and a query) is negligible, small enough that workers share a table evenly.
pub const DEFAULT_CHUNK_ROWS: u64 = 250_000;

/// Longest job name: the change feed adds a `ferry_` prefix, and PostgreSQL names (slots,
/// publications) hold 63 bytes.
pub const MAX_NAME_LENGTH: usize = 48;

/// A job name is lower-case letters, digits and `_`, starting with a letter: it names a
/// replication slot, which allows nothing else.
fn validate_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_NAME_LENGTH;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid job name: use up to {MAX_NAME_LENGTH} lower-case letters, digits and _, starting with a letter"
        ))
    }
}

/// A whole job file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The job's name: its checkpoint, its part markers in the sink and its change feed at
    /// the source (replication slot and publication `ferry_<name>`) are named after it.
    /// Defaults to the job file's name without extension.
    pub name: Option<String>,
    /// Where rows come from.
    pub source: SourceConfig,
    /// Where rows go.
    pub sink: SinkConfig,
    /// What kind of migration and how to schedule it.
    #[serde(default)]
    pub migration: MigrationConfig,
    /// The rules: which tables move, renamed and filtered how.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// The `[source]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `postgres://user:password@host:port/database`, `mysql://user:password@host:port` or
    /// `redis://host:port`.
    pub url: String,
    /// `[source.options]`: the source connector's own options (a MySQL source's
    /// `server_id`, a Redis source's `resume_mode`), each checked by that connector.
    #[serde(default)]
    pub options: toml::Table,
    /// Where `server_id` was before it became a MySQL source's option: refused with the
    /// new spelling.
    #[serde(default)]
    server_id: Option<toml::Value>,
}

impl SourceConfig {
    /// `[source.options]`, for the source's connector to take.
    pub fn connector_options(&self) -> Result<ConnectorOptions, SqlError> {
        connector_options("source.options", &self.options)
    }
}

impl SinkConfig {
    /// `[sink.options]`, for the sink's connector to take.
    pub fn connector_options(&self) -> Result<ConnectorOptions, SqlError> {
        connector_options("sink.options", &self.options)
    }
}

/// A connector's options as text: numbers, booleans and strings (unquoted); nothing nested.
fn connector_options(field: &str, table: &toml::Table) -> Result<ConnectorOptions, SqlError> {
    let mut values = std::collections::BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(SqlError::InvalidField {
                    field: format!("{field}.{key}"),
                    message: "takes a number, a string or true/false".into(),
                })
            }
        };
        values.insert(key.clone(), text);
    }
    Ok(ConnectorOptions::new(field, values))
}

/// The `[sink]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `postgres://…`, `mysql://…`, `redis://…` (from a Redis source), `parquet:///dir` or
    /// `arrow:///dir`.
    pub url: String,
    /// What to do when a target table already has rows: `fail` (default), `append` or
    /// `truncate`.
    #[serde(default)]
    pub existing_rows: ExistingRowsConfig,
    /// `[sink.options]`: the sink connector's own options, checked by that connector.
    #[serde(default)]
    pub options: toml::Table,
}

/// `sink.existing_rows`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExistingRowsConfig {
    /// Refuse to start when a target table has rows.
    #[default]
    Fail,
    /// Add to the rows already there.
    Append,
    /// Empty the target tables first.
    Truncate,
}

/// A migration type, as in `migration.types`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum MigrationType {
    /// Create target schemas and tables.
    Schema,
    /// Copy a consistent snapshot of the rows.
    Full,
    /// Follow the source's change log.
    Incremental,
}

/// The `[migration]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationConfig {
    /// Which migration types to run, in the order schema → full → incremental.
    #[serde(default = "default_types")]
    pub types: Vec<MigrationType>,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Parts read and written at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Rows per snapshot part where a table can be split by its key.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Most source rows read per second, snapshot and changes together; 0 (the default)
    /// means no limit. Protects a busy source during a migration.
    #[serde(default)]
    pub max_rows_per_second: u64,
    /// Most source megabytes (10^6 bytes) per second (1 … 10240), snapshot and changes
    /// together; 0 (the default) means no limit.
    #[serde(default)]
    pub bandwidth_limit_mb: u64,
    /// Where `resume_mode` was before it became a Redis source's option: refused with the
    /// new spelling.
    #[serde(default)]
    resume_mode: Option<toml::Value>,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            types: default_types(),
            batch_size: DEFAULT_BATCH_SIZE,
            parallelism: DEFAULT_PARALLELISM,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            max_rows_per_second: 0,
            bandwidth_limit_mb: 0,
            resume_mode: None,
        }
    }
}

fn default_types() -> Vec<MigrationType> {
    vec![MigrationType::Schema, MigrationType::Full]
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_parallelism() -> usize {
    DEFAULT_PARALLELISM
}
fn default_chunk_rows() -> u64 {
    DEFAULT_CHUNK_ROWS
}

/// The numbers a job file's numeric key takes, for a value serde refused (negative, too
/// large, not a whole number) at `span` of `text`: `None` for other keys and errors.
fn valid_range(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split('=').next()?.trim().trim_matches('"');
    let range = match key {
        "batch_size" => format!("1 to {MAX_BATCH_SIZE} rows"),
        "parallelism" => format!("1 to {MAX_PARALLELISM}"),
        "chunk_rows" => format!("1 to {} rows", u64::MAX),
        "max_rows_per_second" => format!("0 (no limit) to {}", u64::MAX),
        "bandwidth_limit_mb" => "0 (no limit) to 10240 MB/s".to_string(),
        _ => return None,
    };
    Some(format!("{key} takes a whole number from {range}"))
}

/// One `[[rules]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule as SQL.
    pub sql: String,
}

impl JobFile {
    /// Parses and validates a job file's text.
    pub fn parse(text: &str) -> Result<JobFile, SqlError> {
        let job: JobFile = toml::from_str(text).map_err(|error| {
            let mut message = error.to_string().trim_end().to_string();
            if let Some(range) = error.span().and_then(|span| valid_range(text, span)) {
                message.push_str(&format!("\n{range}"));
            }
            SqlError::JobFile { message }
        })?;
        job.validate()?;
        Ok(job)
    }

    /// The job's name: `name` from the file, else `file_stem` (the job file's name) made
    /// valid. Fails when `name` is invalid.
    pub fn job_name(&self, file_stem: &str) -> Result<String, SqlError> {
        match &self.name {
            Some(name) => Ok(name.clone()),
            None => {
                let mut name: String = file_stem
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .take(MAX_NAME_LENGTH)
                    .collect();
                if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    name.insert_str(0, "job_");
                    name.truncate(MAX_NAME_LENGTH);
                }
                validate_name(&name).map_err(|message| SqlError::InvalidField {
                    field: "name".into(),
                    message: format!("{message}; set name = \"…\" in the job file"),
                })?;
                Ok(name)
            }
        }
    }

    /// Whether the job runs migration type `kind`.
    pub fn runs(&self, kind: MigrationType) -> bool {
        self.migration.types.contains(&kind)
    }

    fn validate(&self) -> Result<(), SqlError> {
        let invalid = |field: &str, message: String| SqlError::InvalidField {
            field: field.to_string(),
            message,
        };
        let migration = &self.migration;
        if migration.types.is_empty() {
            return Err(invalid(
                "migration.types",
                "is empty; list at least one of \"schema\", \"full\", \"incremental\"".into(),
            ));
        }
        let mut seen = migration.types.clone();
        seen.sort();
        if seen.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(invalid("migration.types", "lists a type twice".into()));
        }
        if let Some(name) = &self.name {
            validate_name(name).map_err(|message| invalid("name", message))?;
        }
        if !(1..=MAX_BATCH_SIZE).contains(&migration.batch_size) {
            return Err(invalid(
                "migration.batch_size",
                format!(
                    "is {}; it must be between 1 and {MAX_BATCH_SIZE} rows",
                    migration.batch_size
                ),
            ));
        }
        if !(1..=MAX_PARALLELISM).contains(&migration.parallelism) {
            return Err(invalid(
                "migration.parallelism",
                format!(
                    "is {}; it must be between 1 and {MAX_PARALLELISM}",
                    migration.parallelism
                ),
            ));
        }
        if migration.chunk_rows == 0 {
            return Err(invalid(
                "migration.chunk_rows",
                "is 0; it must be at least 1".into(),
            ));
        }
        if let Some(value) = &self.source.server_id {
            return Err(invalid(
                "source.server_id",
                format!("is an option of a MySQL/MariaDB source now; write it as\n  [source.options]\n  server_id = {value}"),
            ));
        }
        if let Some(value) = &migration.resume_mode {
            return Err(invalid(
                "migration.resume_mode",
                format!("is an option of a Redis source now; write it as\n  [source.options]\n  resume_mode = {value}"),
            ));
        }
        if migration.bandwidth_limit_mb > 10_240 {
            return Err(invalid(
                "migration.bandwidth_limit_mb",
                format!(
                    "is {}; it must be between 1 and 10240 MB/s (0: no limit)",
                    migration.bandwidth_limit_mb
                ),
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.sql.trim().is_empty() {
                return Err(invalid(&format!("rules[{index}].sql"), "is empty".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[source]
url = "postgres://user@127.0.0.1:5432/shop"
[sink]
url = "postgres://user@127.0.0.1:5433/warehouse"
[migration]
types = ["schema", "full"]
batch_size = 8192
parallelism = 4
[[rules]]
sql = "INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE amount > 100"
"#;

    #[test]
    fn the_documented_minimal_job_parses() {
        let job = JobFile::parse(MINIMAL).unwrap();
        assert_eq!(job.migration.batch_size, 8192);
        assert_eq!(job.migration.chunk_rows, DEFAULT_CHUNK_ROWS);
        assert!(job.runs(MigrationType::Schema) && job.runs(MigrationType::Full));
        assert_eq!(job.sink.existing_rows, ExistingRowsConfig::Fail);
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_valid_ones() {
        let text = MINIMAL.replace("batch_size", "batchsize");
        let error = JobFile::parse(&text).unwrap_err().to_string();
        assert!(error.contains("unknown field `batchsize`"), "{error}");
        assert!(error.contains("batch_size"), "{error}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let text = MINIMAL.replace("batch_size = 8192", "batch_size = 0");
        let error = JobFile::parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("migration.batch_size: is 0"), "{error}");
        let text = MINIMAL.replace("parallelism = 4", "parallelism = 1000");
        let error = JobFile::parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("migration.parallelism"), "{error}");
    }

    #[test]
    fn numbers_serde_refuses_name_the_valid_range() {
        for (from, to, expected) in [
            (
                "batch_size = 8192",
                "batch_size = -1",
                "batch_size takes a whole number from 1 to 1048576",
            ),
            (
                "parallelism = 4",
                "parallelism = 1e3",
                "parallelism takes a whole number from 1 to 64",
            ),
            (
                "parallelism = 4",
                "max_rows_per_second = -5",
                "max_rows_per_second takes a whole number from 0 (no limit)",
            ),
        ] {
            let error = JobFile::parse(&MINIMAL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{to}: {error}");
        }
    }

    #[test]
    fn connector_keys_of_the_old_spelling_show_the_new_one() {
        let error = JobFile::parse(&MINIMAL.replace("[sink]", "server_id = 4242\n[sink]"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("source.server_id: is an option of a MySQL/MariaDB source now; write it as\n  [source.options]\n  server_id = 4242"),
            "{error}"
        );
        let error = JobFile::parse(&MINIMAL.replace("parallelism = 4", "resume_mode = \"manual\""))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[source.options]\n  resume_mode = \"manual\""),
            "{error}"
        );
        let job = JobFile::parse(&MINIMAL.replace(
            "[sink]",
            "[source.options]\nserver_id = 4242\nmode = \"x\"\n[sink]",
        ))
        .unwrap();
        let options = job.source.connector_options().unwrap();
        assert!(!options.is_empty());
        let nested = MINIMAL.replace("[sink]", "[source.options]\nlist = [1]\n[sink]");
        let error = JobFile::parse(&nested)
            .unwrap()
            .source
            .connector_options()
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("source.options.list: takes a number"),
            "{error}"
        );
    }

    #[test]
    fn job_names_default_to_the_file_and_must_suit_a_replication_slot() {
        let job = JobFile::parse(MINIMAL).unwrap();
        assert_eq!(job.job_name("Orders-Sync").unwrap(), "orders_sync");
        assert_eq!(job.job_name("2024").unwrap(), "job_2024");
        let named = JobFile::parse(&format!("name = \"nightly_copy\"\n{MINIMAL}")).unwrap();
        assert_eq!(named.job_name("whatever").unwrap(), "nightly_copy");
        let error = JobFile::parse(&format!("name = \"Bad Name\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("name: 'Bad Name' is not a valid job name"),
            "{error}"
        );
        let incremental = MINIMAL.replace(
            "\"schema\", \"full\"",
            "\"schema\", \"full\", \"incremental\"",
        );
        assert!(JobFile::parse(&incremental)
            .unwrap()
            .runs(MigrationType::Incremental));
    }

    #[test]
    fn an_unknown_migration_type_is_rejected() {
        let text = MINIMAL.replace("\"schema\", \"full\"", "\"schema\", \"fulll\"");
        let error = JobFile::parse(&text).unwrap_err().to_string();
        assert!(error.contains("fulll"), "{error}");
    }
}
