//! Errors of job files and rules. All are the user's to fix, and each names the field or rule
//! (`rules[2].sql`), what was expected, and the closest valid name where there is one.

use ferry_engine::error::{ClassifiedError, ErrorClass};

/// An error in a job file or one of its rules.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The job file is not valid TOML or does not have the expected shape.
    #[error("job file: {message}")]
    JobFile {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field has a value outside what it accepts.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field's path (`migration.batch_size`).
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A rule does not parse as SQL.
    #[error("rules[{rule}].sql: does not parse: {message}\n  {sql}")]
    RuleSyntax {
        /// Index of the rule.
        rule: usize,
        /// The rule's text.
        sql: String,
        /// The parser's message.
        message: String,
    },
    /// A rule parses but uses something rules do not support.
    #[error("rules[{rule}].sql: {message}")]
    RuleUnsupported {
        /// Index of the rule.
        rule: usize,
        /// What is not supported and what to write instead.
        message: String,
    },
    /// A rule names a table the source does not have.
    #[error("rules[{rule}].sql: unknown table {table} in the source{}", did_you_mean(.suggestion))]
    UnknownTable {
        /// Index of the rule.
        rule: usize,
        /// The table as written.
        table: String,
        /// The closest existing table.
        suggestion: Option<String>,
    },
    /// A bare table name matches tables in several schemas.
    #[error("rules[{rule}].sql: table {table} is in several schemas ({candidates}); name the schema, e.g. {example}")]
    AmbiguousTable {
        /// Index of the rule.
        rule: usize,
        /// The table as written.
        table: String,
        /// The matching `schema.table` names.
        candidates: String,
        /// One of them, as an example.
        example: String,
    },
    /// A table pattern matches no table.
    #[error("rules[{rule}].sql: the pattern {pattern} matches no table in the source{}", did_you_mean(.suggestion))]
    NoTableMatched {
        /// Index of the rule.
        rule: usize,
        /// The pattern as written.
        pattern: String,
        /// The closest existing table.
        suggestion: Option<String>,
    },
    /// A rule names a column its table does not have.
    #[error("rules[{rule}].sql: unknown column {column} in {table}{}", did_you_mean(.suggestion))]
    UnknownColumn {
        /// Index of the rule.
        rule: usize,
        /// The source table.
        table: String,
        /// The column as written.
        column: String,
        /// The closest existing column.
        suggestion: Option<String>,
    },
    /// Two output columns of a rule have the same name.
    #[error("rules[{rule}].sql: the output column {column} appears twice; rename one with AS")]
    DuplicateColumn {
        /// Index of the rule.
        rule: usize,
        /// The repeated name.
        column: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!("; did you mean {name}?"),
        None => String::new(),
    }
}

impl ClassifiedError for SqlError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl From<SqlError> for ferry_engine::Error {
    fn from(error: SqlError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
