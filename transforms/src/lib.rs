//! ferry-transforms: resolved rules compiled to DataFusion physical expressions and applied to
//! every change batch.
//!
//! A rule's WHERE becomes a filter that keeps ops aligned with rows; its SELECT list becomes
//! one physical expression per output column. Plain column references keep the source
//! column's field (type and metadata, so a sink of the same engine recreates the exact type),
//! renamed. Types are checked when the rule is compiled, before any data moves.
#![warn(missing_docs)]

mod compile;
mod error;

pub use compile::{Compiler, RuleTransform};
pub use error::TransformError;
