//! Binary COPY (`COPY … TO STDOUT (FORMAT binary)`) decoded straight into Arrow builders.
//!
//! The stream is a header, then rows of `i16 field count` and per field `i32 length` (−1 for
//! NULL) plus the value in the type's binary send format, then an `i16 −1` trailer. Chunks may
//! split rows anywhere; a partial row waits for the next chunk. Bytes from the wire never
//! cause a panic: every length is checked and a bad value is an error naming the column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    DurationMicrosecondBuilder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{i256, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bytes::{Buf, BytesMut};

use crate::error::PgError;
use crate::numeric::WireNumeric;
use crate::types::{PgType, EPOCH_DAYS, EPOCH_MICROS};

/// The 11-byte signature that opens every binary COPY stream.
pub(crate) const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Decodes one binary COPY stream into record batches of at most `batch_size` rows.
pub(crate) struct CopyDecoder {
    table: String,
    schema: SchemaRef,
    columns: Vec<ColumnDecoder>,
    batch_size: usize,
    rows: usize,
    batch_bytes: u64,
    header_seen: bool,
    trailer_seen: bool,
    pending: BytesMut,
}

impl CopyDecoder {
    /// A decoder for rows of `schema`, whose columns have the PostgreSQL types `types`.
    pub(crate) fn new(
        table: String,
        schema: SchemaRef,
        types: &[PgType],
        batch_size: usize,
    ) -> CopyDecoder {
        let capacity = batch_size.min(1 << 16);
        let columns = types
            .iter()
            .map(|ty| ColumnDecoder::new(*ty, capacity))
            .collect();
        CopyDecoder {
            table,
            schema,
            columns,
            batch_size,
            rows: 0,
            batch_bytes: 0,
            header_seen: false,
            trailer_seen: false,
            pending: BytesMut::new(),
        }
    }

    /// Decodes the rows `chunk` completes; each full batch (with its wire bytes) goes to
    /// `ready`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        ready: &mut Vec<(RecordBatch, u64)>,
    ) -> Result<(), PgError> {
        if self.pending.is_empty() {
            let consumed = self.parse(chunk, ready)?;
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let consumed = self.parse(&pending, ready);
            self.pending = pending;
            self.pending.advance(consumed?);
        }
        Ok(())
    }

    /// Ends the stream: checks it was complete and returns the last, partial batch.
    pub(crate) fn finish(&mut self) -> Result<Option<(RecordBatch, u64)>, PgError> {
        if !self.trailer_seen || !self.pending.is_empty() {
            return Err(self.error("", "the COPY stream ended in the middle of a row".into()));
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn error(&self, column: &str, message: String) -> PgError {
        PgError::Decode {
            table: self.table.clone(),
            column: column.to_string(),
            message,
        }
    }

    /// Parses whole rows from `data`; returns how many bytes it consumed.
    fn parse(
        &mut self,
        data: &[u8],
        ready: &mut Vec<(RecordBatch, u64)>,
    ) -> Result<usize, PgError> {
        let mut position = 0;
        if !self.header_seen {
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != SIGNATURE {
                return Err(self.error(
                    "",
                    "the COPY stream does not start with the binary signature".into(),
                ));
            }
            let extension = i32::from_be_bytes([data[15], data[16], data[17], data[18]]);
            let Ok(extension) = usize::try_from(extension) else {
                return Err(
                    self.error("", "the COPY header has a negative extension length".into())
                );
            };
            if data.len() < 19 + extension {
                return Ok(0);
            }
            position = 19 + extension;
            self.header_seen = true;
        }
        while !self.trailer_seen {
            let Some(end) = self.row_end(data, position)? else {
                break;
            };
            if i16::from_be_bytes([data[position], data[position + 1]]) == -1 {
                self.trailer_seen = true;
                position = end;
                break;
            }
            let mut at = position + 2;
            for index in 0..self.columns.len() {
                let length =
                    i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                at += 4;
                let column = &mut self.columns[index];
                if length < 0 {
                    column.append_null();
                } else {
                    let value = &data[at..at + length as usize];
                    at += length as usize;
                    if let Err(message) = column.append(value) {
                        let name = self.schema.field(index).name().clone();
                        return Err(self.error(&name, message));
                    }
                }
            }
            self.batch_bytes += (end - position) as u64;
            position = end;
            self.rows += 1;
            if self.rows == self.batch_size {
                ready.push(self.flush()?);
            }
        }
        Ok(position)
    }

    /// Where the row (or trailer) starting at `start` ends, or `None` if `data` does not hold
    /// all of it yet.
    fn row_end(&self, data: &[u8], start: usize) -> Result<Option<usize>, PgError> {
        if data.len() < start + 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([data[start], data[start + 1]]);
        if fields == -1 {
            return Ok(Some(start + 2));
        }
        if fields as isize != self.columns.len() as isize {
            return Err(self.error(
                "",
                format!("a row has {fields} fields, expected {}", self.columns.len()),
            ));
        }
        let mut at = start + 2;
        for _ in 0..fields {
            if data.len() < at + 4 {
                return Ok(None);
            }
            let length = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            at += 4;
            if length > 0 {
                at += length as usize;
                if data.len() < at {
                    return Ok(None);
                }
            } else if length < -1 {
                return Err(self.error("", format!("a field has length {length}")));
            }
        }
        Ok(Some(at))
    }

    fn flush(&mut self) -> Result<(RecordBatch, u64), PgError> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnDecoder::finish).collect();
        // The row count is explicit: a rule may read no column at all (`SELECT 1 AS one`).
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch =
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
                .map_err(|e| self.error("", format!("rows do not fit the table's schema: {e}")))?;
        let bytes = self.batch_bytes;
        self.rows = 0;
        self.batch_bytes = 0;
        Ok((batch, bytes))
    }
}

/// One column's builder, chosen once per column by its PostgreSQL type.
pub(crate) enum ColumnDecoder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Decimal128(Decimal128Builder, u8, i8),
    Decimal256(Decimal256Builder, u8, i8),
    NumericText(StringBuilder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Interval(DurationMicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Uuid(FixedSizeBinaryBuilder),
}

fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

fn utf8(value: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(value).map_err(|e| format!("text is not valid UTF-8: {e}"))
}

impl ColumnDecoder {
    pub(crate) fn new(ty: PgType, capacity: usize) -> ColumnDecoder {
        let text = || StringBuilder::with_capacity(capacity, capacity * 16);
        match ty {
            PgType::Bool => ColumnDecoder::Bool(BooleanBuilder::with_capacity(capacity)),
            PgType::Int2 => ColumnDecoder::Int2(Int16Builder::with_capacity(capacity)),
            PgType::Int4 => ColumnDecoder::Int4(Int32Builder::with_capacity(capacity)),
            PgType::Int8 => ColumnDecoder::Int8(Int64Builder::with_capacity(capacity)),
            PgType::Float4 => ColumnDecoder::Float4(Float32Builder::with_capacity(capacity)),
            PgType::Float8 => ColumnDecoder::Float8(Float64Builder::with_capacity(capacity)),
            PgType::Numeric { precision, scale } if precision <= 38 => ColumnDecoder::Decimal128(
                Decimal128Builder::with_capacity(capacity),
                precision,
                scale,
            ),
            PgType::Numeric { precision, scale } => ColumnDecoder::Decimal256(
                Decimal256Builder::with_capacity(capacity),
                precision,
                scale,
            ),
            PgType::NumericText => ColumnDecoder::NumericText(text()),
            PgType::Text | PgType::Json => ColumnDecoder::Text(text()),
            PgType::Jsonb => ColumnDecoder::Jsonb(text()),
            PgType::Bytea => {
                ColumnDecoder::Bytea(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            PgType::Date => ColumnDecoder::Date(Date32Builder::with_capacity(capacity)),
            PgType::Time => ColumnDecoder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            PgType::Interval => {
                ColumnDecoder::Interval(DurationMicrosecondBuilder::with_capacity(capacity))
            }
            PgType::Timestamp => ColumnDecoder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                false,
            ),
            PgType::Timestamptz => {
                ColumnDecoder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), true)
            }
            PgType::Uuid => {
                ColumnDecoder::Uuid(FixedSizeBinaryBuilder::with_capacity(capacity, 16))
            }
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            ColumnDecoder::Bool(b) => b.append_null(),
            ColumnDecoder::Int2(b) => b.append_null(),
            ColumnDecoder::Int4(b) => b.append_null(),
            ColumnDecoder::Int8(b) => b.append_null(),
            ColumnDecoder::Float4(b) => b.append_null(),
            ColumnDecoder::Float8(b) => b.append_null(),
            ColumnDecoder::Decimal128(b, ..) => b.append_null(),
            ColumnDecoder::Decimal256(b, ..) => b.append_null(),
            ColumnDecoder::NumericText(b) | ColumnDecoder::Text(b) | ColumnDecoder::Jsonb(b) => {
                b.append_null()
            }
            ColumnDecoder::Bytea(b) => b.append_null(),
            ColumnDecoder::Date(b) => b.append_null(),
            ColumnDecoder::Time(b) => b.append_null(),
            ColumnDecoder::Interval(b) => b.append_null(),
            ColumnDecoder::Timestamp(b, _) => b.append_null(),
            ColumnDecoder::Uuid(b) => b.append_null(),
        }
    }

    pub(crate) fn append(&mut self, value: &[u8]) -> Result<(), String> {
        match self {
            ColumnDecoder::Bool(b) => b.append_value(fixed::<1>(value)?[0] != 0),
            ColumnDecoder::Int2(b) => b.append_value(i16::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Int4(b) => b.append_value(i32::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Int8(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Float4(b) => b.append_value(f32::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Float8(b) => b.append_value(f64::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Decimal128(b, _, scale) => {
                b.append_value(WireNumeric::parse(value)?.to_scaled::<i128>(*scale)?)
            }
            ColumnDecoder::Decimal256(b, _, scale) => {
                b.append_value(WireNumeric::parse(value)?.to_scaled::<i256>(*scale)?)
            }
            ColumnDecoder::NumericText(b) => b.append_value(WireNumeric::parse(value)?.to_text()?),
            ColumnDecoder::Text(b) => b.append_value(utf8(value)?),
            ColumnDecoder::Jsonb(b) => match value.split_first() {
                Some((1, document)) => b.append_value(utf8(document)?),
                Some((version, _)) => return Err(format!("jsonb version {version} is not known")),
                None => return Err("jsonb value is empty".into()),
            },
            ColumnDecoder::Bytea(b) => b.append_value(value),
            ColumnDecoder::Date(b) => {
                let days = i32::from_be_bytes(fixed(value)?);
                b.append_value(match days {
                    i32::MAX | i32::MIN => days,
                    _ => days
                        .checked_add(EPOCH_DAYS)
                        .ok_or_else(|| format!("date {days} is out of range"))?,
                });
            }
            ColumnDecoder::Time(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            ColumnDecoder::Interval(b) => {
                let parts: [u8; 16] = fixed(value)?;
                let micros = i64::from_be_bytes(parts[..8].try_into().unwrap_or_default());
                let days = i32::from_be_bytes(parts[8..12].try_into().unwrap_or_default());
                let months = i32::from_be_bytes(parts[12..].try_into().unwrap_or_default());
                if months != 0 {
                    return Err(format!(
                        "an interval of {months} months has no fixed length, and ferry carries intervals as exact durations; leave this column out of the rule's SELECT list"
                    ));
                }
                b.append_value(
                    i64::from(days)
                        .checked_mul(86_400_000_000)
                        .and_then(|d| d.checked_add(micros))
                        .ok_or("the interval does not fit 64-bit microseconds")?,
                );
            }
            ColumnDecoder::Timestamp(b, _) => {
                let micros = i64::from_be_bytes(fixed(value)?);
                b.append_value(match micros {
                    i64::MAX | i64::MIN => micros,
                    _ => micros
                        .checked_add(EPOCH_MICROS)
                        .ok_or_else(|| format!("timestamp {micros} is out of range"))?,
                });
            }
            ColumnDecoder::Uuid(b) => b
                .append_value(fixed::<16>(value)?)
                .map_err(|e| e.to_string())?,
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnDecoder::Bool(b) => Arc::new(b.finish()),
            ColumnDecoder::Int2(b) => Arc::new(b.finish()),
            ColumnDecoder::Int4(b) => Arc::new(b.finish()),
            ColumnDecoder::Int8(b) => Arc::new(b.finish()),
            ColumnDecoder::Float4(b) => Arc::new(b.finish()),
            ColumnDecoder::Float8(b) => Arc::new(b.finish()),
            ColumnDecoder::Decimal128(b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("precision and scale were validated from the typmod"),
            ),
            ColumnDecoder::Decimal256(b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("precision and scale were validated from the typmod"),
            ),
            ColumnDecoder::NumericText(b) | ColumnDecoder::Text(b) | ColumnDecoder::Jsonb(b) => {
                Arc::new(b.finish())
            }
            ColumnDecoder::Bytea(b) => Arc::new(b.finish()),
            ColumnDecoder::Date(b) => Arc::new(b.finish()),
            ColumnDecoder::Time(b) => Arc::new(b.finish()),
            ColumnDecoder::Interval(b) => Arc::new(b.finish()),
            ColumnDecoder::Timestamp(b, with_zone) => {
                let array = b.finish();
                Arc::new(if *with_zone {
                    array.with_timezone("UTC")
                } else {
                    array
                })
            }
            ColumnDecoder::Uuid(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use bytes::BufMut;

    use super::*;

    fn stream(rows: &[Option<i32>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(SIGNATURE);
        out.put_i32(0);
        out.put_i32(0);
        for row in rows {
            out.put_i16(2);
            match row {
                Some(v) => {
                    out.put_i32(4);
                    out.put_i32(*v);
                }
                None => out.put_i32(-1),
            }
            out.put_i32(2);
            out.put_slice("é".as_bytes());
        }
        out.put_i16(-1);
        out.to_vec()
    }

    fn decoder(batch_size: usize) -> CopyDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        CopyDecoder::new(
            "t".into(),
            schema,
            &[PgType::Int4, PgType::Text],
            batch_size,
        )
    }

    #[test]
    fn rows_split_anywhere_decode_the_same() {
        let bytes = stream(&[Some(1), None, Some(-3), Some(4), Some(5)]);
        for split in [1, 2, 3, 7, 19, 64, bytes.len()] {
            let mut decoder = decoder(2);
            let mut ready = Vec::new();
            for chunk in bytes.chunks(split) {
                decoder.feed(chunk, &mut ready).unwrap();
            }
            ready.extend(decoder.finish().unwrap());
            let sizes: Vec<_> = ready.iter().map(|(b, _)| b.num_rows()).collect();
            assert_eq!(sizes, [2, 2, 1], "split {split}");
            let ids: Vec<Option<i32>> = ready
                .iter()
                .flat_map(|(b, _)| {
                    b.column(0)
                        .as_primitive::<Int32Type>()
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(ids, [Some(1), None, Some(-3), Some(4), Some(5)]);
            assert_eq!(ready[0].0.column(1).as_string::<i32>().value(0), "é");
            let total: u64 = ready.iter().map(|(_, bytes)| bytes).sum();
            assert_eq!(total as usize, bytes.len() - 19 - 2);
        }
    }

    #[test]
    fn rows_without_columns_are_counted_not_taken_for_the_trailer() {
        let mut bytes = BytesMut::new();
        bytes.put_slice(SIGNATURE);
        bytes.put_i32(0);
        bytes.put_i32(0);
        for _ in 0..3 {
            bytes.put_i16(0);
        }
        bytes.put_i16(-1);
        let mut decoder = CopyDecoder::new("t".into(), Arc::new(Schema::empty()), &[], 10);
        let mut ready = Vec::new();
        decoder.feed(&bytes, &mut ready).unwrap();
        let (batch, _) = decoder.finish().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn intervals_are_spans_and_months_are_refused() {
        let interval = |micros: i64, days: i32, months: i32| {
            let mut bytes = BytesMut::new();
            bytes.put_i64(micros);
            bytes.put_i32(days);
            bytes.put_i32(months);
            bytes
        };
        let mut column = ColumnDecoder::new(PgType::Interval, 2);
        column.append(&interval(-5_000_001, 1, 0)).unwrap();
        let error = column.append(&interval(0, 0, 1)).unwrap_err();
        assert!(error.contains("months"), "{error}");
        let array = column.finish();
        let spans = array.as_primitive::<arrow::datatypes::DurationMicrosecondType>();
        assert_eq!(spans.value(0), 86_400_000_000 - 5_000_001);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let mut bytes = stream(&[Some(1)]);
        let mut ready = Vec::new();
        // Truncated stream.
        let mut truncated = decoder(8);
        truncated
            .feed(&bytes[..bytes.len() - 4], &mut ready)
            .unwrap();
        assert!(truncated.finish().is_err());
        // Wrong signature.
        let mut wrong = decoder(8);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(wrong.feed(&bad, &mut ready).is_err());
        // Wrong width for an int4.
        let mut narrow = BytesMut::new();
        narrow.put_slice(&bytes[..19]);
        narrow.put_i16(2);
        narrow.put_i32(3);
        narrow.put_slice(&[0, 0, 1]);
        narrow.put_i32(-1);
        narrow.put_i16(-1);
        let error = decoder(8)
            .feed(&narrow, &mut ready)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("id") && error.contains("expected 4 bytes"),
            "{error}"
        );
        // A row with the wrong field count.
        bytes[20] = 3;
        assert!(decoder(8)
            .feed(&bytes, &mut ready)
            .unwrap_err()
            .to_string()
            .contains("3 fields"));
        // Invalid UTF-8.
        let mut invalid = stream(&[Some(1)]);
        let at = invalid.len() - 4;
        invalid[at] = 0xff;
        assert!(decoder(8)
            .feed(&invalid, &mut ready)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        assert!(ready.iter().all(|(b, _)| b.column(0).len() == b.num_rows()));
    }
}
