//! Coalescing the changes of whole source transactions into what a sink applies to one target
//! table: per primary key only its last state, as columnar batches, so a sink applies a group
//! of transactions with one statement per kind of change instead of one per row.
//!
//! A [`Coalescer`] takes the (transformed) change batches of one target table in source order
//! and [`Coalescer::finish`]es into [`TableChanges`]: one or more segments, applied by the sink
//! in order within one transaction. Within a segment every key appears once, and the sink
//! applies its parts in this order: truncate, patches, deletes, upserts. That order is right
//! for any mix of changes to distinct keys; where a change could not be folded into the
//! segment without depending on a different order (a key change whose row keeps values the
//! source did not send, landing on a key already touched), the coalescer starts a new segment.
//!
//! Values the source did not send ([`Unchanged`]) are filled from an earlier image of the same
//! row in the segment where there is one; what is still missing becomes a patch, which the sink
//! applies as an UPDATE that keeps its own values of those columns.
//!
//! A table without a primary key is a multiset of rows, and its changes are whole rows (the
//! source sends complete old images: REPLICA IDENTITY FULL). An insert adds one copy of a row,
//! a delete removes one, an update does both; these commute, so the coalescer only counts, per
//! distinct row, the copies added minus those removed, and the segment says "remove n copies
//! of this row" and "add n copies of that one" — the same table whatever order the sink
//! applies them in.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::interleave;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, Rows, SortField};

use crate::batch::{ChangeBatch, Op, Unchanged};
use crate::error::{Error, Result};
use crate::schema::TableId;

/// Changes to one target table, ready for a sink: apply `truncate`, then `patches`, then
/// `deletes`, then `upserts`. Every key appears in at most one of them.
#[derive(Clone, Debug)]
pub struct TableChanges {
    /// The target table.
    pub table: Arc<TableId>,
    /// Empty the table first.
    pub truncate: bool,
    /// Rows updated at the source with some values not sent: the sink updates its row with
    /// key `keys` and keeps its own value wherever `unchanged` says so.
    pub patches: Option<Patches>,
    /// Key columns (the target's primary key, in key order) of rows to remove.
    pub deletes: Option<RecordBatch>,
    /// Whole rows to insert, or to put in place of the row with the same key.
    pub upserts: Option<RecordBatch>,
    /// The table has no primary key: `deletes` holds whole rows, each removing one copy of
    /// an equal row (a row listed twice removes two), and `upserts` are plain inserts.
    pub whole_rows: bool,
}

impl TableChanges {
    /// Rows this segment touches.
    pub fn num_rows(&self) -> usize {
        self.patches.as_ref().map_or(0, |p| p.rows.num_rows())
            + self.deletes.as_ref().map_or(0, RecordBatch::num_rows)
            + self.upserts.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// Updates that keep some of the sink's values.
#[derive(Clone, Debug)]
pub struct Patches {
    /// The key of the sink row to update, in key order: the row's key before the update (it
    /// differs from the key in `rows` when the update changed the key).
    pub keys: RecordBatch,
    /// The new rows; a value `unchanged` marks is a placeholder.
    pub rows: RecordBatch,
    /// Which values of `rows` the sink keeps.
    pub unchanged: Unchanged,
}

/// Where a value comes from: (batch, row) in the segment's batches.
type Source = (u32, u32);

/// The state of one key in the current segment.
enum Entry {
    /// Remove the sink's row; the key's values are at `key`.
    Delete { key: Source },
    /// Insert or replace with the row at `row`, its missing values taken from `fills`.
    Upsert { row: Source, fills: Fills },
    /// Update the sink's row whose key is at `from` with the row at `row`; values still missing
    /// after `fills` are kept from the sink.
    Patch {
        from: Source,
        row: Source,
        fills: Fills,
    },
    /// The row moved to another key by a patch: nothing to do here.
    Moved,
    /// A table without a key: copies of the row at `row` added (`net` > 0) or removed.
    Count { row: Source, net: i64 },
}

/// Per column: where a value missing from the row comes from instead (`None`: still missing).
/// Empty when nothing is missing.
type Fills = Vec<Option<Source>>;

/// The batches of a segment with their missing-value masks.
struct Segment {
    batches: Vec<(RecordBatch, Option<Unchanged>)>,
    /// Entries in the order their keys first appeared.
    entries: Vec<Entry>,
    /// Key → index into `entries`; keys come from the source, a fast seeded hash suffices.
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    truncate: bool,
}

impl Segment {
    fn new(truncate: bool) -> Segment {
        Segment {
            batches: Vec::new(),
            entries: Vec::new(),
            index: HashMap::default(),
            truncate,
        }
    }

    fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    fn set(&mut self, key: &[u8], entry: Entry) {
        match self.index.get(key) {
            Some(&i) => self.entries[i] = entry,
            None => {
                self.index.insert(key.into(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn missing(&self, (batch, row): Source, column: usize) -> bool {
        self.batches[batch as usize]
            .1
            .as_ref()
            .is_some_and(|m| m.is_unchanged(column, row as usize))
    }
}

/// Folds change batches of one target table into [`TableChanges`].
pub struct Coalescer {
    table: Arc<TableId>,
    schema: SchemaRef,
    key: Vec<usize>,
    /// No primary key: rows are counted, not folded by key (the key is every column).
    whole_rows: bool,
    converter: RowConverter,
    segment: Segment,
    done: Vec<TableChanges>,
    rows: usize,
}

impl Coalescer {
    /// A coalescer for target `table` with columns `schema` and primary key `key` (column
    /// indexes, in key order); an empty key counts whole rows.
    pub fn new(table: Arc<TableId>, schema: SchemaRef, key: Vec<usize>) -> Result<Coalescer> {
        let whole_rows = key.is_empty();
        let key = if whole_rows {
            (0..schema.fields().len()).collect()
        } else {
            key
        };
        let fields = key
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| internal(&table, e))?;
        let schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Coalescer {
            table,
            schema,
            key,
            whole_rows,
            converter,
            segment: Segment::new(false),
            done: Vec::new(),
            rows: 0,
        })
    }

    /// Rows taken since the last [`Coalescer::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Takes the rows of one change batch, in source order.
    pub fn push(&mut self, batch: &ChangeBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        let columns: Vec<ArrayRef> = self
            .key
            .iter()
            .map(|&i| Arc::clone(batch.rows.column(i)))
            .collect();
        let keys = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| internal(&self.table, e))?;
        let mut batch_index = self.add_batch(batch);
        if self.whole_rows {
            return self.count(batch, &keys, batch_index);
        }
        let mut row = 0;
        let count = batch.num_rows();
        while row < count {
            let op = batch.ops.op(row);
            let key = keys.row(row);
            let here = (batch_index, row as u32);
            match op {
                Op::Insert => self.segment.set(
                    key.as_ref(),
                    Entry::Upsert {
                        row: here,
                        fills: Vec::new(),
                    },
                ),
                Op::Delete => {
                    if self.moved_in(key.as_ref()) {
                        // The sink row still sits at the key the patch moves it from.
                        self.cut(batch)?;
                        batch_index = 0;
                    }
                    let here = (batch_index, row as u32);
                    self.segment.set(key.as_ref(), Entry::Delete { key: here });
                }
                Op::UpdateBefore => {
                    if row + 1 >= count || batch.ops.op(row + 1) != Op::UpdateAfter {
                        return Err(Error::Internal(format!(
                            "an old row image of {} is not followed by its new image",
                            self.table
                        )));
                    }
                    let old_key: Box<[u8]> = key.as_ref().into();
                    let new_key: Box<[u8]> = keys.row(row + 1).as_ref().into();
                    if old_key != new_key {
                        // A key change touching keys already in the segment in a way the fixed
                        // apply order cannot express starts a new segment.
                        let new_has_missing = batch.unchanged.as_ref().is_some_and(|m| {
                            (0..batch.rows.num_columns()).any(|c| m.is_unchanged(c, row + 1))
                        });
                        let touches = self.segment.entry(&old_key).is_some()
                            || self.segment.entry(&new_key).is_some();
                        if self.moved_in(&old_key) || (new_has_missing && touches) {
                            self.cut(batch)?;
                            batch_index = 0;
                        }
                    }
                    self.update(
                        &old_key,
                        &new_key,
                        (batch_index, row as u32),
                        (batch_index, row as u32 + 1),
                    );
                    row += 2;
                    continue;
                }
                Op::UpdateAfter => {
                    let key: Box<[u8]> = key.as_ref().into();
                    self.update(&key, &key, here, here);
                }
            }
            row += 1;
        }
        Ok(())
    }

    /// Counts the rows of `batch` (at `batch_index`) of a table without a key.
    fn count(&mut self, batch: &ChangeBatch, keys: &Rows, batch_index: u32) -> Result<()> {
        if let Some(unchanged) = &batch.unchanged {
            let columns = batch.rows.num_columns();
            if (0..batch.num_rows()).any(|r| (0..columns).any(|c| unchanged.is_unchanged(c, r))) {
                return Err(Error::Internal(format!(
                    "a change of {} (no primary key) came without its whole row",
                    self.table
                )));
            }
        }
        for row in 0..batch.num_rows() {
            let by = match batch.ops.op(row) {
                Op::Insert | Op::UpdateAfter => 1,
                Op::Delete | Op::UpdateBefore => -1,
            };
            let key = keys.row(row);
            match self.segment.index.get(key.as_ref()) {
                Some(&i) => {
                    if let Entry::Count { net, .. } = &mut self.segment.entries[i] {
                        *net += by;
                    }
                }
                None => self.segment.set(
                    key.as_ref(),
                    Entry::Count {
                        row: (batch_index, row as u32),
                        net: by,
                    },
                ),
            }
        }
        Ok(())
    }

    /// Whether the patch at `key` moved its row in from another key.
    fn moved_in(&self, key: &[u8]) -> bool {
        match self.segment.entry(key) {
            Some(Entry::Patch { from, .. }) => {
                let (batch, row) = *from;
                // The key the row is moved from, in the same comparable form.
                let columns: Vec<ArrayRef> = self
                    .key
                    .iter()
                    .map(|&i| {
                        self.segment.batches[batch as usize]
                            .0
                            .column(i)
                            .slice(row as usize, 1)
                    })
                    .collect();
                self.converter
                    .convert_columns(&columns)
                    .map(|rows| rows.row(0).as_ref() != key)
                    .unwrap_or(true)
            }
            _ => false,
        }
    }

    fn add_batch(&mut self, batch: &ChangeBatch) -> u32 {
        self.segment
            .batches
            .push((batch.rows.clone(), batch.unchanged.clone()));
        (self.segment.batches.len() - 1) as u32
    }

    /// Ends the current segment and starts a new one holding only `batch`.
    fn cut(&mut self, batch: &ChangeBatch) -> Result<()> {
        let finished = std::mem::replace(&mut self.segment, Segment::new(false));
        if let Some(changes) = self.materialize(&finished)? {
            self.done.push(changes);
        }
        self.add_batch(batch);
        Ok(())
    }

    /// An update of the row at `old_key` to the image at `new` (whose old image, if the
    /// source sent one, is at `old`).
    fn update(&mut self, old_key: &[u8], new_key: &[u8], old: Source, new: Source) {
        let columns = self.schema.fields().len();
        let mut fills: Fills = Vec::new();
        let mut still_missing = false;
        if (0..columns).any(|c| self.segment.missing(new, c)) {
            fills = vec![None; columns];
            let earlier = self.segment.entry(old_key);
            for (column, fill) in fills.iter_mut().enumerate() {
                if !self.segment.missing(new, column) {
                    continue;
                }
                *fill = match earlier {
                    Some(Entry::Upsert { row, fills }) | Some(Entry::Patch { row, fills, .. }) => {
                        let source = fills.get(column).copied().flatten().unwrap_or(*row);
                        (!self.segment.missing(source, column)).then_some(source)
                    }
                    _ => None,
                };
                still_missing |= fill.is_none();
            }
        }
        let moved = old_key != new_key;
        if still_missing {
            let from = match self.segment.entry(old_key) {
                Some(Entry::Patch { from, .. }) => *from,
                _ => old,
            };
            self.segment.set(
                new_key,
                Entry::Patch {
                    from,
                    row: new,
                    fills,
                },
            );
            if moved {
                self.segment.set(old_key, Entry::Moved);
            }
        } else {
            if moved {
                let delete = match self.segment.entry(old_key) {
                    // The sink row still sits at the key the patch moves it from.
                    Some(Entry::Patch { from, .. }) => *from,
                    _ => old,
                };
                self.segment.set(old_key, Entry::Delete { key: delete });
            }
            self.segment.set(new_key, Entry::Upsert { row: new, fills });
        }
    }

    /// Empties the table: what came before in this segment no longer matters.
    pub fn truncate(&mut self) {
        self.segment = Segment::new(true);
    }

    /// The coalesced changes since the last call, in apply order; empty when there were none.
    pub fn finish(&mut self) -> Result<Vec<TableChanges>> {
        let segment = std::mem::replace(&mut self.segment, Segment::new(false));
        if let Some(changes) = self.materialize(&segment)? {
            self.done.push(changes);
        }
        self.rows = 0;
        Ok(std::mem::take(&mut self.done))
    }

    fn materialize(&self, segment: &Segment) -> Result<Option<TableChanges>> {
        self.try_materialize(segment)
            .map_err(|e| internal(&self.table, e))
    }

    fn try_materialize(&self, segment: &Segment) -> Result<Option<TableChanges>, ArrowError> {
        if segment.entries.is_empty() && !segment.truncate {
            return Ok(None);
        }
        let mut deletes = Vec::new();
        let mut upserts: Vec<(Source, &Fills)> = Vec::new();
        let mut patches: Vec<(Source, Source, &Fills)> = Vec::new();
        let no_fills: Fills = Vec::new();
        for entry in &segment.entries {
            match entry {
                Entry::Delete { key } => deletes.push(*key),
                Entry::Upsert { row, fills } => upserts.push((*row, fills)),
                Entry::Patch { from, row, fills } => patches.push((*from, *row, fills)),
                Entry::Moved => {}
                Entry::Count { row, net } => {
                    let copies = net.unsigned_abs() as usize;
                    if *net < 0 {
                        deletes.extend(std::iter::repeat_n(*row, copies));
                    } else {
                        upserts.extend(std::iter::repeat_n((*row, &no_fills), copies));
                    }
                }
            }
        }
        let columns: Vec<Vec<&dyn Array>> = (0..self.schema.fields().len())
            .map(|c| {
                segment
                    .batches
                    .iter()
                    .map(|(batch, _)| batch.column(c).as_ref())
                    .collect()
            })
            .collect();
        let key_schema = Arc::new(Schema::new(
            self.key
                .iter()
                .map(|&i| self.schema.field(i).clone())
                .collect::<Vec<_>>(),
        ));
        let gather_keys = |sources: &[Source]| -> Result<RecordBatch, ArrowError> {
            let indices: Vec<(usize, usize)> = sources
                .iter()
                .map(|&(b, r)| (b as usize, r as usize))
                .collect();
            let arrays = self
                .key
                .iter()
                .map(|&c| interleave(&columns[c], &indices))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::clone(&key_schema), arrays)
        };
        let gather_rows = |rows: &[(Source, &Fills)]| -> Result<RecordBatch, ArrowError> {
            let arrays = (0..columns.len())
                .map(|c| {
                    let indices: Vec<(usize, usize)> = rows
                        .iter()
                        .map(|(row, fills)| {
                            let (b, r) = fills.get(c).copied().flatten().unwrap_or(*row);
                            (b as usize, r as usize)
                        })
                        .collect();
                    interleave(&columns[c], &indices)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
        };
        let patches = if patches.is_empty() {
            None
        } else {
            let keys = gather_keys(&patches.iter().map(|(from, _, _)| *from).collect::<Vec<_>>())?;
            let images: Vec<(Source, &Fills)> = patches
                .iter()
                .map(|(_, row, fills)| (*row, *fills))
                .collect();
            let rows = gather_rows(&images)?;
            let masks = (0..columns.len())
                .map(|c| {
                    let missing: Vec<bool> = images
                        .iter()
                        .map(|(row, fills)| {
                            let source = fills.get(c).copied().flatten().unwrap_or(*row);
                            segment.missing(source, c)
                        })
                        .collect();
                    Some(BooleanArray::from(missing))
                })
                .collect();
            let unchanged = Unchanged::new(masks).ok_or_else(|| {
                ArrowError::InvalidArgumentError("a patch with nothing to keep".into())
            })?;
            Some(Patches {
                keys,
                rows,
                unchanged,
            })
        };
        let deletes = (!deletes.is_empty())
            .then(|| gather_keys(&deletes))
            .transpose()?;
        let upserts = (!upserts.is_empty())
            .then(|| gather_rows(&upserts))
            .transpose()?;
        Ok(Some(TableChanges {
            table: Arc::clone(&self.table),
            truncate: segment.truncate,
            patches,
            deletes,
            upserts,
            whole_rows: self.whole_rows,
        }))
    }
}

fn internal(table: &TableId, error: impl std::fmt::Display) -> Error {
    Error::Internal(format!("coalescing changes of {table}: {error}"))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray, UInt8Array};
    use arrow::datatypes::{DataType, Field, Int64Type};

    use super::*;
    use crate::batch::Ops;
    use crate::position::Position;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("big", DataType::Utf8, true),
        ]))
    }

    /// One change row: op, id, name, big (`None` with `missing` means not sent).
    type Row = (Op, i64, Option<&'static str>, Option<&'static str>);

    fn batch(rows: &[Row], missing_big: &[usize]) -> ChangeBatch {
        let ids = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let names: StringArray = rows.iter().map(|r| r.2).collect();
        let bigs: StringArray = rows.iter().map(|r| r.3).collect();
        let ops = UInt8Array::from_iter_values(rows.iter().map(|r| r.0 as u8));
        let mask: Vec<bool> = (0..rows.len()).map(|i| missing_big.contains(&i)).collect();
        ChangeBatch {
            table: Arc::new(TableId::new("s", "t")),
            rows: RecordBatch::try_new(
                schema(),
                vec![Arc::new(ids), Arc::new(names), Arc::new(bigs)],
            )
            .unwrap(),
            ops: Ops::PerRow(ops),
            position: Position::Postgres { lsn: 1 },
            source_bytes: 0,
            unchanged: Unchanged::new(vec![None, None, Some(BooleanArray::from(mask))]),
        }
    }

    fn coalescer() -> Coalescer {
        Coalescer::new(Arc::new(TableId::new("s", "t")), schema(), vec![0]).unwrap()
    }

    fn ids(batch: &Option<RecordBatch>) -> Vec<i64> {
        batch.as_ref().map_or_else(Vec::new, |b| {
            b.column(0).as_primitive::<Int64Type>().values().to_vec()
        })
    }

    fn strings(batch: &RecordBatch, column: usize) -> Vec<Option<String>> {
        batch
            .column(column)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn the_last_state_of_each_key_wins() {
        let mut c = coalescer();
        c.push(&batch(
            &[
                (Op::Insert, 1, Some("a"), Some("x")),
                (Op::Insert, 2, Some("b"), Some("y")),
                (Op::UpdateAfter, 1, Some("a2"), Some("x")),
                (Op::Delete, 2, None, None),
                (Op::Insert, 3, Some("c"), None),
                (Op::Delete, 4, None, None),
                (Op::Delete, 3, None, None),
                (Op::Insert, 3, Some("c2"), None),
            ],
            &[],
        ))
        .unwrap();
        let changes = c.finish().unwrap();
        assert_eq!(changes.len(), 1);
        let changes = &changes[0];
        assert!(changes.patches.is_none() && !changes.truncate);
        assert_eq!(ids(&changes.upserts), [1, 3]);
        assert_eq!(ids(&changes.deletes), [2, 4]);
        let upserts = changes.upserts.as_ref().unwrap();
        assert_eq!(
            strings(upserts, 1),
            [Some("a2".to_string()), Some("c2".to_string())]
        );
        assert!(c.finish().unwrap().is_empty(), "finish resets");
    }

    #[test]
    fn a_key_change_deletes_the_old_key_and_writes_the_new() {
        let mut c = coalescer();
        c.push(&batch(
            &[
                (Op::UpdateBefore, 1, None, None),
                (Op::UpdateAfter, 10, Some("a"), Some("x")),
            ],
            &[],
        ))
        .unwrap();
        let changes = c.finish().unwrap();
        assert_eq!(ids(&changes[0].upserts), [10]);
        assert_eq!(ids(&changes[0].deletes), [1]);
    }

    #[test]
    fn values_not_sent_are_filled_from_an_earlier_image_or_kept_by_a_patch() {
        let mut c = coalescer();
        c.push(&batch(
            &[
                (Op::Insert, 1, Some("a"), Some("big one")),
                (Op::UpdateAfter, 1, Some("a2"), None),
                (Op::UpdateAfter, 2, Some("b2"), None),
            ],
            &[1, 2],
        ))
        .unwrap();
        let changes = c.finish().unwrap();
        let changes = &changes[0];
        // Key 1 had its whole row earlier in the segment: an upsert with the value filled.
        assert_eq!(ids(&changes.upserts), [1]);
        assert_eq!(
            strings(changes.upserts.as_ref().unwrap(), 2),
            [Some("big one".to_string())]
        );
        // Key 2 did not: a patch that keeps the sink's value, never a NULL.
        let patches = changes.patches.as_ref().unwrap();
        assert_eq!(
            patches.keys.column(0).as_primitive::<Int64Type>().values(),
            &[2]
        );
        assert!(patches.unchanged.is_unchanged(2, 0));
        assert!(!patches.unchanged.is_unchanged(1, 0));
        assert_eq!(strings(&patches.rows, 1), [Some("b2".to_string())]);
    }

    #[test]
    fn a_moved_row_that_keeps_a_value_is_patched_from_its_old_key() {
        let mut c = coalescer();
        c.push(&batch(
            &[
                (Op::UpdateBefore, 5, None, None),
                (Op::UpdateAfter, 50, Some("m"), None),
            ],
            &[1],
        ))
        .unwrap();
        let changes = c.finish().unwrap();
        assert_eq!(changes.len(), 1);
        let patches = changes[0].patches.as_ref().unwrap();
        assert_eq!(
            patches.keys.column(0).as_primitive::<Int64Type>().values(),
            &[5],
            "the sink row is found by its old key"
        );
        assert_eq!(
            patches.rows.column(0).as_primitive::<Int64Type>().values(),
            &[50]
        );
        assert!(changes[0].deletes.is_none(), "the move is the patch itself");

        // Deleting the moved row in the same group must remove the old key's row: the
        // coalescer cuts a new segment so the move is applied first.
        let mut c = coalescer();
        c.push(&batch(
            &[
                (Op::UpdateBefore, 5, None, None),
                (Op::UpdateAfter, 50, Some("m"), None),
                (Op::Delete, 50, None, None),
            ],
            &[1],
        ))
        .unwrap();
        let changes = c.finish().unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes[0].patches.is_some());
        assert_eq!(ids(&changes[1].deletes), [50]);
    }

    #[test]
    fn a_truncate_drops_what_came_before_and_is_applied_first() {
        let mut c = coalescer();
        c.push(&batch(&[(Op::Insert, 1, Some("a"), None)], &[]))
            .unwrap();
        c.truncate();
        c.push(&batch(&[(Op::Insert, 2, Some("b"), None)], &[]))
            .unwrap();
        let changes = c.finish().unwrap();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].truncate);
        assert_eq!(ids(&changes[0].upserts), [2]);
    }

    #[test]
    fn an_old_image_without_its_new_image_is_a_bug_not_a_guess() {
        let mut c = coalescer();
        let error = c
            .push(&batch(&[(Op::UpdateBefore, 1, None, None)], &[]))
            .unwrap_err();
        assert!(error.to_string().contains("not followed"), "{error}");
    }

    #[test]
    fn a_table_without_a_key_gets_copies_added_and_removed() {
        let mut c = Coalescer::new(Arc::new(TableId::new("s", "t")), schema(), vec![]).unwrap();
        c.push(&batch(
            &[
                (Op::Insert, 1, Some("a"), None),
                (Op::Insert, 1, Some("a"), None),
                (Op::Insert, 2, Some("b"), None),
                (Op::Delete, 1, Some("a"), None),
                (Op::UpdateBefore, 2, Some("b"), None),
                (Op::UpdateAfter, 2, Some("c"), None),
                (Op::Delete, 3, Some("x"), None),
                (Op::Delete, 4, None, None),
                (Op::Delete, 4, None, None),
            ],
            &[],
        ))
        .unwrap();
        let segments = c.finish().unwrap();
        assert_eq!(segments.len(), 1);
        let changes = &segments[0];
        assert!(changes.whole_rows && changes.patches.is_none());
        // (1, a) added twice and removed once, (2, b) added and updated away.
        let upserts = changes.upserts.as_ref().unwrap();
        assert_eq!(ids(&changes.upserts), vec![1, 2]);
        assert_eq!(
            strings(upserts, 1),
            vec![Some("a".to_string()), Some("c".to_string())]
        );
        // Removals are whole rows, one per copy, NULLs kept.
        let deletes = changes.deletes.as_ref().unwrap();
        assert_eq!(deletes.num_columns(), 3);
        assert_eq!(ids(&changes.deletes), vec![3, 4, 4]);
        assert_eq!(strings(deletes, 1), vec![Some("x".to_string()), None, None]);
    }

    #[test]
    fn a_table_without_a_key_refuses_rows_with_values_not_sent() {
        let mut c = Coalescer::new(Arc::new(TableId::new("s", "t")), schema(), vec![]).unwrap();
        let error = c
            .push(&batch(&[(Op::UpdateAfter, 1, Some("a"), None)], &[0]))
            .unwrap_err();
        assert!(
            error.to_string().contains("without its whole row"),
            "{error}"
        );
    }
}
