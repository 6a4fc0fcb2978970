//! pgoutput (logical replication protocol, version 1, binary tuples) decoded straight into
//! Arrow change batches.
//!
//! The replication client hands over each message's bytes: Relation messages describe a
//! table's columns (and arrive again after the table changes), Insert / Update / Delete carry
//! row images as tuples, Truncate names tables. Begin and Commit frame transactions. With the
//! `binary` option every value of a type with a binary send function arrives in that format,
//! which [`ColumnDecoder`] already reads for COPY. A value the server left out because it is
//! an unchanged TOASTed value (`'u'`) is taken from the old image when the source sent a full
//! one (REPLICA IDENTITY FULL) and otherwise marked [`Unchanged`], never written as NULL.
//!
//! Rows are kept in source order: a batch holds consecutive changes of one table within one
//! transaction. Bytes from the wire never cause a panic: every length is checked.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;

use ferry_engine::{ChangeBatch, ChangeEvent, Op, Position, TableId};

use crate::decode::ColumnDecoder;
use crate::error::PgError;
use crate::types::PgType;

/// Rows a batch's builders hold room for at first; they grow by doubling. Most source
/// transactions are a few rows, and a batch keeps its builders' capacity for as long as a
/// group holds it: room for thousands of rows per small transaction once cost 600 MB at
/// batch size 8192 (measured with `ferry bench-cdc`).
const INITIAL_ROWS: usize = 16;

/// A table the stream decodes: its id, the columns to decode (names and types) and the
/// schema of its batches.
#[derive(Clone, Debug)]
pub(crate) struct StreamTable {
    pub(crate) id: Arc<TableId>,
    pub(crate) schema: SchemaRef,
    pub(crate) types: Vec<PgType>,
}

/// How a relation's columns map to a requested table.
struct Relation {
    /// Index into the requested tables; `None` for a table no rule selects.
    table: Option<usize>,
    /// Per relation column, the output column it fills.
    columns: Vec<Option<usize>>,
    /// Per relation column, its name.
    names: Vec<String>,
    name: String,
}

/// One value of a tuple, borrowed from the message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Value<'a> {
    Null,
    Unchanged,
    Binary(&'a [u8]),
    Text(&'a [u8]),
}

/// Rows being gathered for one table.
struct Building {
    table: usize,
    columns: Vec<ColumnDecoder>,
    ops: Vec<u8>,
    unchanged: Vec<Option<Vec<bool>>>,
    bytes: u64,
}

/// Decodes pgoutput messages of one replication session into [`ChangeEvent`]s.
pub(crate) struct ChangeDecoder {
    tables: Vec<StreamTable>,
    by_name: HashMap<(String, String), usize>,
    relations: HashMap<u32, Relation>,
    batch_size: usize,
    building: Option<Building>,
    /// The commit position of the open transaction (from Begin), for its rows.
    transaction: Option<u64>,
}

/// A cursor over a message's bytes; every read checks the length.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.data.len() < count {
            return Err(format!(
                "message ends early: needs {count} more bytes, has {}",
                self.data.len()
            ));
        }
        let (head, tail) = self.data.split_at(count);
        self.data = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(self.u32()? as i32)
    }
    fn string(&mut self) -> Result<String, String> {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .ok_or("a string has no terminator")?;
        let text = std::str::from_utf8(&self.data[..end])
            .map_err(|e| format!("a name is not UTF-8: {e}"))?
            .to_string();
        self.data = &self.data[end + 1..];
        Ok(text)
    }
    fn tuple(&mut self, values: &mut Vec<Value<'a>>) -> Result<(), String> {
        values.clear();
        let count = self.i16()?;
        if count < 0 {
            return Err(format!("a tuple has {count} columns"));
        }
        for _ in 0..count {
            let value = match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                kind @ (b'b' | b't') => {
                    let length = self.i32()?;
                    let length = usize::try_from(length)
                        .map_err(|_| format!("a value has length {length}"))?;
                    let bytes = self.take(length)?;
                    if kind == b'b' {
                        Value::Binary(bytes)
                    } else {
                        Value::Text(bytes)
                    }
                }
                other => return Err(format!("unknown tuple value kind {:?}", other as char)),
            };
            values.push(value);
        }
        Ok(())
    }
}

impl ChangeDecoder {
    /// A decoder for `tables`, batches of at most `batch_size` rows.
    pub(crate) fn new(tables: Vec<StreamTable>, batch_size: usize) -> ChangeDecoder {
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(index, table)| ((table.id.schema.clone(), table.id.name.clone()), index))
            .collect();
        ChangeDecoder {
            tables,
            by_name,
            relations: HashMap::new(),
            batch_size: batch_size.max(2),
            building: None,
            transaction: None,
        }
    }

    fn error(&self, message: impl Into<String>) -> PgError {
        PgError::Replication {
            message: message.into(),
        }
    }

    /// A transaction begins; its commit record is at `commit_lsn`.
    pub(crate) fn begin(&mut self, commit_lsn: u64) {
        self.transaction = Some(commit_lsn);
    }

    /// The open transaction committed: returns its last rows, if any.
    pub(crate) fn commit(&mut self, out: &mut Vec<ChangeEvent>) -> Result<(), PgError> {
        self.flush(out)?;
        self.transaction = None;
        Ok(())
    }

    /// Decodes one pgoutput message, appending the events it completes to `out`.
    pub(crate) fn message(
        &mut self,
        data: &[u8],
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), PgError> {
        let Some((&tag, body)) = data.split_first() else {
            return Err(self.error("an empty replication message"));
        };
        let mut reader = Reader { data: body };
        let result = match tag {
            b'R' => self.relation(&mut reader),
            b'I' | b'U' | b'D' => self.change(tag, &mut reader, out),
            b'T' => self.truncate(&mut reader, out),
            // Type, origin and logical messages carry nothing to apply.
            b'Y' | b'O' | b'M' | b'B' | b'C' => Ok(()),
            other => Err(format!("unexpected pgoutput message {:?}", other as char)),
        };
        result.map_err(|message| self.error(message))
    }

    fn relation(&mut self, reader: &mut Reader<'_>) -> Result<(), String> {
        let oid = reader.u32()?;
        let schema = reader.string()?;
        let name = reader.string()?;
        let _identity = reader.u8()?;
        let count = reader.i16()?;
        let table = self.by_name.get(&(schema.clone(), name.clone())).copied();
        let mut columns = Vec::with_capacity(count.max(0) as usize);
        let mut names = Vec::with_capacity(count.max(0) as usize);
        let mut found = vec![false; table.map_or(0, |t| self.tables[t].types.len())];
        for _ in 0..count {
            let _flags = reader.u8()?;
            let column = reader.string()?;
            let type_oid = reader.u32()?;
            let typmod = reader.i32()?;
            let output = table.and_then(|t| self.tables[t].schema.index_of(&column).ok());
            if let (Some(t), Some(index)) = (table, output) {
                let expected = self.tables[t].types[index];
                let arrives = PgType::from_oid(type_oid, typmod);
                // Domains arrive as their own type oid; only a known, different type is a
                // change the decoder cannot follow.
                if arrives.is_some() && arrives != Some(expected) {
                    return Err(format!(
                        "column {column} of {schema}.{name} changed type at the source (now oid {type_oid}); ferry decodes it as {}; restart the job after adapting the target",
                        expected.declaration()
                    ));
                }
                found[index] = true;
            }
            columns.push(output);
            names.push(column);
        }
        if let Some(t) = table {
            if let Some(missing) = found.iter().position(|f| !f) {
                return Err(format!(
                    "column {} of {schema}.{name} is no longer published (dropped or renamed at the source); change the rules and restart the job",
                    self.tables[t].schema.field(missing).name()
                ));
            }
        }
        self.relations.insert(
            oid,
            Relation {
                table,
                columns,
                names,
                name: format!("{schema}.{name}"),
            },
        );
        Ok(())
    }

    fn change(
        &mut self,
        tag: u8,
        reader: &mut Reader<'_>,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), String> {
        let oid = reader.u32()?;
        let relation = self
            .relations
            .get(&oid)
            .ok_or_else(|| format!("a change of relation {oid} came before its description"))?;
        let Some(table) = relation.table else {
            return Ok(());
        };
        let mut old = Vec::new();
        let mut new = Vec::new();
        let mut old_full = false;
        match tag {
            b'I' => {
                expect(reader.u8()?, b'N')?;
                reader.tuple(&mut new)?;
            }
            b'U' => {
                let mut kind = reader.u8()?;
                if kind == b'K' || kind == b'O' {
                    old_full = kind == b'O';
                    reader.tuple(&mut old)?;
                    kind = reader.u8()?;
                }
                expect(kind, b'N')?;
                reader.tuple(&mut new)?;
            }
            _ => {
                let kind = reader.u8()?;
                if kind != b'K' && kind != b'O' {
                    return Err(format!("a delete has tuple kind {:?}", kind as char));
                }
                reader.tuple(&mut old)?;
            }
        }
        let rows = if tag == b'U' && !old.is_empty() { 2 } else { 1 };
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.table != table || b.ops.len() + rows > self.batch_size)
        {
            self.flush(out).map_err(|e| e.to_string())?;
        }
        let relation = &self.relations[&oid];
        let width = self.tables[table].types.len();
        let building = self.building.get_or_insert_with(|| Building {
            table,
            columns: self.tables[table]
                .types
                .iter()
                .map(|ty| ColumnDecoder::new(*ty, INITIAL_ROWS))
                .collect(),
            ops: Vec::new(),
            unchanged: vec![None; width],
            bytes: 0,
        });
        building.bytes += (reader_consumed(&old) + reader_consumed(&new)) as u64;
        match tag {
            b'I' => append(building, relation, &new, None, Op::Insert)?,
            b'U' => {
                if !old.is_empty() {
                    append(building, relation, &old, None, Op::UpdateBefore)?;
                }
                let fill = old_full.then_some(old.as_slice());
                append(building, relation, &new, fill, Op::UpdateAfter)?;
            }
            _ => append(building, relation, &old, None, Op::Delete)?,
        }
        Ok(())
    }

    fn truncate(
        &mut self,
        reader: &mut Reader<'_>,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), String> {
        let count = reader.u32()?;
        let _options = reader.u8()?;
        let mut tables = Vec::new();
        for _ in 0..count {
            let oid = reader.u32()?;
            if let Some(table) = self.relations.get(&oid).and_then(|r| r.table) {
                tables.push(table);
            }
        }
        self.flush(out).map_err(|e| e.to_string())?;
        if !tables.is_empty() {
            out.push(ChangeEvent::Truncate(tables));
        }
        Ok(())
    }

    /// Ends the batch being gathered.
    fn flush(&mut self, out: &mut Vec<ChangeEvent>) -> Result<(), PgError> {
        let Some(mut building) = self.building.take() else {
            return Ok(());
        };
        let table = &self.tables[building.table];
        let arrays: Vec<ArrayRef> = building
            .columns
            .iter_mut()
            .map(ColumnDecoder::finish)
            .collect();
        let batch = ChangeBatch::changes(
            Arc::clone(&table.id),
            Arc::clone(&table.schema),
            arrays,
            building.ops,
            building.unchanged,
            Position::Postgres {
                lsn: self.transaction.unwrap_or(0),
            },
            building.bytes,
        )
        .map_err(|e| self.error(format!("rows of {} do not fit its schema: {e}", table.id)))?;
        out.push(ChangeEvent::Rows(batch));
        Ok(())
    }
}

fn expect(kind: u8, wanted: u8) -> Result<(), String> {
    if kind == wanted {
        Ok(())
    } else {
        Err(format!(
            "expected tuple kind {:?}, got {:?}",
            wanted as char, kind as char
        ))
    }
}

/// Bytes a tuple's values took, for throughput figures.
fn reader_consumed(values: &[Value<'_>]) -> usize {
    values
        .iter()
        .map(|v| match v {
            Value::Binary(bytes) | Value::Text(bytes) => bytes.len() + 5,
            _ => 1,
        })
        .sum()
}

/// Appends one row image. `fill` is a full old image to take unchanged values from.
fn append(
    building: &mut Building,
    relation: &Relation,
    values: &[Value<'_>],
    fill: Option<&[Value<'_>]>,
    op: Op,
) -> Result<(), String> {
    if values.len() != relation.columns.len() {
        return Err(format!(
            "a row of {} has {} values, its description {}",
            relation.name,
            values.len(),
            relation.columns.len()
        ));
    }
    let row = building.ops.len();
    for (position, (value, output)) in values.iter().zip(&relation.columns).enumerate() {
        let Some(output) = *output else { continue };
        let mut value = *value;
        if value == Value::Unchanged {
            if let Some(old) = fill.and_then(|old| old.get(position)) {
                if !matches!(old, Value::Unchanged) {
                    value = *old;
                }
            }
        }
        let column = &mut building.columns[output];
        match value {
            Value::Null => column.append_null(),
            Value::Unchanged => {
                column.append_null();
                let mask = building.unchanged[output].get_or_insert_with(|| vec![false; row]);
                mask.push(true);
                continue;
            }
            Value::Binary(bytes) => column.append(bytes).map_err(|e| {
                format!(
                    "column {} of {}: {e}",
                    relation.names[position], relation.name
                )
            })?,
            Value::Text(_) => {
                return Err(format!(
                    "column {} of {} arrived as text: its type has no binary form",
                    relation.names[position], relation.name
                ))
            }
        }
        if let Some(mask) = &mut building.unchanged[output] {
            mask.push(false);
        }
    }
    building.ops.push(op as u8);
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use bytes::{BufMut, BytesMut};

    use super::*;

    fn decoder(batch_size: usize) -> ChangeDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("body", DataType::Utf8, true),
        ]));
        ChangeDecoder::new(
            vec![StreamTable {
                id: Arc::new(TableId::new("shop", "docs")),
                schema,
                types: vec![PgType::Int8, PgType::Text],
            }],
            batch_size,
        )
    }

    /// A Relation message for shop.docs (id int8 key, extra int4, body text) with oid 7.
    fn relation() -> Vec<u8> {
        relation_of(
            7,
            "docs",
            &[(1, "id", 20), (0, "extra", 23), (0, "body", 25)],
        )
    }

    fn relation_of(relation: u32, table: &str, columns: &[(u8, &str, u32)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(b'R');
        out.put_u32(relation);
        out.put_slice(b"shop\0");
        out.put_slice(table.as_bytes());
        out.put_u8(0);
        out.put_u8(b'd');
        out.put_i16(columns.len() as i16);
        for &(flags, name, oid) in columns {
            out.put_u8(flags);
            out.put_slice(name.as_bytes());
            out.put_u8(0);
            out.put_u32(oid);
            out.put_i32(-1);
        }
        out.to_vec()
    }

    #[derive(Clone, Copy)]
    enum V<'a> {
        N,
        U,
        I8(i64),
        I4(i32),
        S(&'a str),
    }

    fn tuple(out: &mut BytesMut, values: &[V<'_>]) {
        out.put_i16(values.len() as i16);
        for value in values {
            match value {
                V::N => out.put_u8(b'n'),
                V::U => out.put_u8(b'u'),
                V::I8(v) => {
                    out.put_u8(b'b');
                    out.put_i32(8);
                    out.put_i64(*v);
                }
                V::I4(v) => {
                    out.put_u8(b'b');
                    out.put_i32(4);
                    out.put_i32(*v);
                }
                V::S(v) => {
                    out.put_u8(b'b');
                    out.put_i32(v.len() as i32);
                    out.put_slice(v.as_bytes());
                }
            }
        }
    }

    fn insert(values: &[V<'_>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(b'I');
        out.put_u32(7);
        out.put_u8(b'N');
        tuple(&mut out, values);
        out.to_vec()
    }

    fn update(old: Option<(u8, &[V<'_>])>, new: &[V<'_>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(b'U');
        out.put_u32(7);
        if let Some((kind, values)) = old {
            out.put_u8(kind);
            tuple(&mut out, values);
        }
        out.put_u8(b'N');
        tuple(&mut out, new);
        out.to_vec()
    }

    fn rows(events: &[ChangeEvent]) -> Vec<&ChangeBatch> {
        events
            .iter()
            .filter_map(|e| match e {
                ChangeEvent::Rows(batch) => Some(batch),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn changes_decode_into_batches_with_ops_and_the_commit_position() {
        let mut decoder = decoder(100);
        let mut out = Vec::new();
        decoder.message(&relation(), &mut out).unwrap();
        decoder.begin(0x10);
        decoder
            .message(&insert(&[V::I8(1), V::I4(9), V::S("hello")]), &mut out)
            .unwrap();
        // A key change under REPLICA IDENTITY DEFAULT: the old key, then the new row with
        // the TOASTed body not sent.
        decoder
            .message(
                &update(
                    Some((b'K', &[V::I8(1), V::N, V::N])),
                    &[V::I8(2), V::I4(9), V::U],
                ),
                &mut out,
            )
            .unwrap();
        let mut delete = BytesMut::new();
        delete.put_u8(b'D');
        delete.put_u32(7);
        delete.put_u8(b'K');
        tuple(&mut delete, &[V::I8(2), V::N, V::N]);
        decoder.message(&delete, &mut out).unwrap();
        decoder.commit(&mut out).unwrap();
        let batches = rows(&out);
        assert_eq!(batches.len(), 1);
        let batch = batches[0];
        assert_eq!(batch.position, Position::Postgres { lsn: 0x10 });
        let ops: Vec<Op> = (0..batch.num_rows()).map(|i| batch.ops.op(i)).collect();
        assert_eq!(
            ops,
            [Op::Insert, Op::UpdateBefore, Op::UpdateAfter, Op::Delete]
        );
        let ids = batch.rows.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 1, 2, 2]);
        let body = batch.rows.column(1).as_string::<i32>();
        assert_eq!(body.value(0), "hello");
        let unchanged = batch
            .unchanged
            .as_ref()
            .expect("the TOASTed value is marked");
        assert!(unchanged.is_unchanged(1, 2));
        assert!(!unchanged.is_unchanged(1, 0) && !unchanged.is_unchanged(0, 2));
    }

    #[test]
    fn a_full_old_image_fills_values_not_sent() {
        let mut decoder = decoder(100);
        let mut out = Vec::new();
        decoder.message(&relation(), &mut out).unwrap();
        decoder.begin(1);
        decoder
            .message(
                &update(
                    Some((b'O', &[V::I8(1), V::I4(1), V::S("kept")])),
                    &[V::I8(1), V::I4(2), V::U],
                ),
                &mut out,
            )
            .unwrap();
        decoder.commit(&mut out).unwrap();
        let batch = rows(&out)[0];
        assert_eq!(batch.rows.column(1).as_string::<i32>().value(1), "kept");
        assert!(batch.unchanged.is_none());
    }

    #[test]
    fn batches_split_at_the_batch_size_but_never_inside_an_update() {
        let mut decoder = decoder(3);
        let mut out = Vec::new();
        decoder.message(&relation(), &mut out).unwrap();
        decoder.begin(1);
        decoder
            .message(&insert(&[V::I8(1), V::N, V::N]), &mut out)
            .unwrap();
        decoder
            .message(&insert(&[V::I8(2), V::N, V::N]), &mut out)
            .unwrap();
        decoder
            .message(
                &update(
                    Some((b'K', &[V::I8(2), V::N, V::N])),
                    &[V::I8(3), V::N, V::N],
                ),
                &mut out,
            )
            .unwrap();
        decoder.commit(&mut out).unwrap();
        let sizes: Vec<usize> = rows(&out).iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn tables_no_rule_selects_are_skipped_and_truncates_name_the_table() {
        let mut decoder = decoder(10);
        let mut out = Vec::new();
        let other = relation_of(
            8,
            "other",
            &[(1, "id", 20), (0, "extra", 23), (0, "body", 25)],
        );
        decoder.message(&other, &mut out).unwrap();
        decoder.message(&relation(), &mut out).unwrap();
        let mut change = insert(&[V::I8(1), V::N, V::N]);
        change[4] = 8;
        decoder.begin(1);
        decoder.message(&change, &mut out).unwrap();
        let mut truncate = BytesMut::new();
        truncate.put_u8(b'T');
        truncate.put_u32(2);
        truncate.put_u8(0);
        truncate.put_u32(8);
        truncate.put_u32(7);
        decoder.message(&truncate, &mut out).unwrap();
        decoder.commit(&mut out).unwrap();
        assert!(rows(&out).is_empty());
        assert!(matches!(out.as_slice(), [ChangeEvent::Truncate(tables)] if tables == &[0]));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let mut decoder = decoder(10);
        let mut out = Vec::new();
        let relation = relation();
        for cut in 0..relation.len() {
            let _ = decoder.message(&relation[..cut], &mut out);
        }
        decoder.message(&relation, &mut out).unwrap();
        let change = insert(&[V::I8(1), V::I4(3), V::S("x")]);
        for cut in 1..change.len() {
            assert!(
                decoder.message(&change[..cut], &mut out).is_err(),
                "cut {cut}"
            );
        }
        let error = decoder
            .message(&insert(&[V::I8(1)]), &mut out)
            .unwrap_err()
            .to_string();
        assert!(error.contains("1 values"), "{error}");
        let unknown = decoder.message(b"Z", &mut out).unwrap_err().to_string();
        assert!(unknown.contains("unexpected pgoutput message"), "{unknown}");
        let before = decoder.message(&insert(&[V::I8(1)])[..], &mut out);
        assert!(before.is_err());
        let mut unknown_relation = insert(&[V::I8(1), V::N, V::N]);
        unknown_relation[4] = 99;
        assert!(decoder
            .message(&unknown_relation, &mut out)
            .unwrap_err()
            .to_string()
            .contains("before its description"));
    }

    #[test]
    fn a_dropped_column_or_a_changed_type_is_an_error_naming_it() {
        let mut decoder = decoder(10);
        let mut out = Vec::new();
        let changed = relation_of(
            7,
            "docs",
            &[(1, "id", 20), (0, "extra", 23), (0, "body", 23)],
        );
        let error = decoder.message(&changed, &mut out).unwrap_err().to_string();
        assert!(
            error.contains("column body of shop.docs changed type"),
            "{error}"
        );
        let renamed = relation_of(
            7,
            "docs",
            &[(1, "id", 20), (0, "extra", 23), (0, "bodx", 25)],
        );
        let error = decoder.message(&renamed, &mut out).unwrap_err().to_string();
        assert!(
            error.contains("column body of shop.docs is no longer published"),
            "{error}"
        );
    }
}
