//! Errors of compiling and applying rules.

use ferry_engine::error::{ClassifiedError, ErrorClass};

/// A rule that cannot be compiled against its table's columns.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// DataFusion could not plan an expression (a type error, an unknown function).
    #[error("rules[{rule}].sql: `{expr}` on {table}: {message}")]
    Plan {
        /// Index of the rule.
        rule: usize,
        /// The source table.
        table: String,
        /// The expression as written (after name resolution).
        expr: String,
        /// What DataFusion said.
        message: String,
    },
    /// An expression calls a function whose result changes between calls or runs.
    #[error("rules[{rule}].sql: `{expr}` on {table}: {function}() is not deterministic (its value changes from one call or run to the next), so a resumed run, verify and each change would disagree on the row; give the target column a DEFAULT instead, or leave it out")]
    NotDeterministic {
        /// Index of the rule.
        rule: usize,
        /// The source table.
        table: String,
        /// The expression.
        expr: String,
        /// The function.
        function: String,
    },
    /// The WHERE condition is not boolean.
    #[error("rules[{rule}].sql: the WHERE condition `{expr}` on {table} is of type {data_type}, not a boolean condition")]
    NotBoolean {
        /// Index of the rule.
        rule: usize,
        /// The source table.
        table: String,
        /// The condition.
        expr: String,
        /// Its type.
        data_type: String,
    },
}

impl ClassifiedError for TransformError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl From<TransformError> for ferry_engine::Error {
    fn from(error: TransformError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
