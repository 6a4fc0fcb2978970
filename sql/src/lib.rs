//! ferry-sql: the job file and its SQL rules.
//!
//! A job file (TOML) names the source, the sink, the migration types and the rules. Rules are
//! SQL (`INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE
//! amount > 100`), parsed with sqlparser and resolved against the real source catalog before
//! any data moves: unknown tables and columns are errors that name the closest existing name.
//! What a source can evaluate itself is rendered back into its SQL for push-down.
#![warn(missing_docs)]

pub mod error;
pub mod job;
pub mod offsets;
pub mod pushdown;
pub mod resolve;
pub mod rule;
pub mod suggest;
mod table_spec;

pub use error::SqlError;
pub use job::{JobFile, MigrationType, RuleConfig};
pub use resolve::{resolve_rules, OutputColumn, ResolvedRule};
pub use rule::Rule;
/// The sqlparser this crate parses with, re-exported so transforms use the same AST types.
pub use sqlparser;
