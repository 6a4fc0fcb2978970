//! The transform contract: synchronous, CPU-only, batch in, batch out.

use arrow::datatypes::SchemaRef;

use crate::batch::ChangeBatch;
use crate::error::Result;

/// Turns batches of one source table into batches of one target table: filters rows,
/// computes and renames columns, routes to the target name.
///
/// Called from many tasks at once; implementations hold no per-call state. Ops stay aligned
/// with rows.
pub trait Transform: Send + Sync {
    /// The schema of the batches [`Transform::apply`] returns.
    fn output_schema(&self) -> SchemaRef;

    /// Transforms one batch. Returns `None` when no row is left. Fails with a
    /// [`crate::Error::Transform`] when an expression cannot be evaluated on these rows
    /// (an overflow, a bad cast), naming the table.
    fn apply(&self, batch: &ChangeBatch) -> Result<Option<ChangeBatch>>;
}
