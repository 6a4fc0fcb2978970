//! The change-batch model: Arrow rows of one table, the change op of each row, the position.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, UInt8Array};
use arrow::compute::filter;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::position::Position;
use crate::schema::TableId;

/// What happened to a row at the source.
///
/// An update is a before/after pair of rows, so a WHERE filter can turn it into an insert (the
/// row moves into the filter) or a delete (it moves out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// A new row (every snapshot row is an insert).
    Insert = 0,
    /// The row image before an update.
    UpdateBefore = 1,
    /// The row image after an update.
    UpdateAfter = 2,
    /// A removed row.
    Delete = 3,
}

impl Op {
    /// The op for its `u8` code, `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Op> {
        match code {
            0 => Some(Op::Insert),
            1 => Some(Op::UpdateBefore),
            2 => Some(Op::UpdateAfter),
            3 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// The ops of a batch's rows, aligned with the rows.
#[derive(Clone, Debug, PartialEq)]
pub enum Ops {
    /// Every row is an insert (snapshots): costs nothing per row.
    AllInsert,
    /// One [`Op`] code per row, in row order.
    PerRow(UInt8Array),
}

impl Ops {
    /// The op of row `index`.
    pub fn op(&self, index: usize) -> Op {
        match self {
            Ops::AllInsert => Op::Insert,
            Ops::PerRow(codes) => Op::from_code(codes.value(index)).unwrap_or(Op::Insert),
        }
    }

    /// Keeps the ops of the rows `mask` keeps, so ops stay aligned with filtered rows.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Ops, ArrowError> {
        match self {
            Ops::AllInsert => Ok(Ops::AllInsert),
            Ops::PerRow(codes) => {
                let kept = filter(codes, mask)?;
                let kept = kept
                    .as_any()
                    .downcast_ref::<UInt8Array>()
                    .cloned()
                    .ok_or_else(|| ArrowError::CastError("op codes are not u8".into()))?;
                Ok(Ops::PerRow(kept))
            }
        }
    }
}

/// Which values of a batch the source did not send because they did not change: PostgreSQL
/// leaves out an unchanged TOASTed value of an updated row. Such a value is a NULL placeholder
/// in the rows; a sink must keep the value it already has, never write the placeholder.
///
/// One optional mask per column (aligned with the batch's columns); `None` for a column none
/// of whose values is missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Unchanged {
    columns: Vec<Option<BooleanArray>>,
}

impl Unchanged {
    /// Masks per column; `None` when no value at all is missing.
    pub fn new(columns: Vec<Option<BooleanArray>>) -> Option<Unchanged> {
        let columns: Vec<Option<BooleanArray>> = columns
            .into_iter()
            .map(|mask| mask.filter(|m| m.true_count() > 0))
            .collect();
        columns
            .iter()
            .any(Option::is_some)
            .then_some(Unchanged { columns })
    }

    /// The mask of column `column`, `None` when all its values are present.
    pub fn column(&self, column: usize) -> Option<&BooleanArray> {
        self.columns.get(column).and_then(Option::as_ref)
    }

    /// Whether the value of `column` in row `row` was left out.
    pub fn is_unchanged(&self, column: usize, row: usize) -> bool {
        self.column(column).is_some_and(|mask| mask.value(row))
    }

    /// The indexes of the columns with at least one missing value.
    pub fn columns_with_missing(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(index, mask)| mask.as_ref().map(|_| index))
    }

    /// Keeps the rows `mask` keeps, as [`arrow::compute::filter_record_batch`] does.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Option<Unchanged>, ArrowError> {
        let columns = self
            .columns
            .iter()
            .map(|column| {
                column
                    .as_ref()
                    .map(|c| filter(c, mask).map(|kept| kept.as_boolean().clone()))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Unchanged::new(columns))
    }

    /// The masks of computed columns: output column `i` is missing in a row where any of the
    /// input columns `inputs[i]` it is computed from is.
    pub fn project(&self, inputs: &[Vec<usize>]) -> Result<Option<Unchanged>, ArrowError> {
        let columns = inputs
            .iter()
            .map(|sources| {
                let mut combined: Option<BooleanArray> = None;
                for mask in sources.iter().filter_map(|&i| self.column(i)) {
                    combined = Some(match combined {
                        None => mask.clone(),
                        Some(so_far) => arrow::compute::or(&so_far, mask)?,
                    });
                }
                Ok(combined)
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        Ok(Unchanged::new(columns))
    }
}

/// Rows of one table with the op of each row and the position they came from.
#[derive(Clone, Debug)]
pub struct ChangeBatch {
    /// The table the rows belong to (the source table before routing, the target table after).
    pub table: Arc<TableId>,
    /// The row images.
    pub rows: RecordBatch,
    /// One op per row.
    pub ops: Ops,
    /// Where at the source the last row of this batch came from.
    pub position: Position,
    /// Bytes the rows took on the source's wire, for throughput figures.
    pub source_bytes: u64,
    /// Values the source did not send because they did not change (see [`Unchanged`]);
    /// `None` when every value is present, as in every snapshot batch.
    pub unchanged: Option<Unchanged>,
}

impl ChangeBatch {
    /// A batch of snapshot rows: all inserts.
    pub fn snapshot(
        table: Arc<TableId>,
        rows: RecordBatch,
        position: Position,
        source_bytes: u64,
    ) -> ChangeBatch {
        ChangeBatch {
            table,
            rows,
            ops: Ops::AllInsert,
            position,
            source_bytes,
            unchanged: None,
        }
    }

    /// A batch of decoded changes: `columns` in `schema`'s order, one op code per row
    /// ([`Op`] as u8), and per column the rows whose value the source did not send (`None`
    /// for a column where none is missing).
    pub fn changes(
        table: Arc<TableId>,
        schema: arrow::datatypes::SchemaRef,
        columns: Vec<arrow::array::ArrayRef>,
        ops: Vec<u8>,
        unchanged: Vec<Option<Vec<bool>>>,
        position: Position,
        source_bytes: u64,
    ) -> Result<ChangeBatch, ArrowError> {
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(ops.len()));
        let rows = RecordBatch::try_new_with_options(schema, columns, &options)?;
        let unchanged = Unchanged::new(
            unchanged
                .into_iter()
                .map(|mask| mask.map(BooleanArray::from))
                .collect(),
        );
        Ok(ChangeBatch {
            table,
            rows,
            ops: Ops::PerRow(UInt8Array::from(ops)),
            position,
            source_bytes,
            unchanged,
        })
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtering_keeps_ops_aligned_with_rows() {
        let ops = Ops::PerRow(UInt8Array::from(vec![0, 1, 2, 3]));
        let mask = BooleanArray::from(vec![false, true, false, true]);
        let kept = ops.filter(&mask).unwrap();
        assert_eq!(kept.op(0), Op::UpdateBefore);
        assert_eq!(kept.op(1), Op::Delete);
        assert_eq!(Ops::AllInsert.filter(&mask).unwrap(), Ops::AllInsert);
    }

    #[test]
    fn op_codes_round_trip() {
        for op in [Op::Insert, Op::UpdateBefore, Op::UpdateAfter, Op::Delete] {
            assert_eq!(Op::from_code(op as u8), Some(op));
        }
        assert_eq!(Op::from_code(9), None);
    }
}
