//! Arrow batches encoded as binary COPY (`COPY … FROM STDIN (FORMAT binary)`) rows for the
//! target table's actual column types.
//!
//! Each column is first cast, exactly, to the Arrow type matching its target column (an
//! integer that does not fit is an error, never a wrapped value); then rows are written
//! field by field with one type dispatch per column per batch, not per value.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Decimal256Array, DurationMicrosecondArray, FixedSizeBinaryArray, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, BytesMut};

use crate::decode::SIGNATURE;
use crate::error::PgError;
use crate::numeric;
use crate::types::{PgType, EPOCH_DAYS, EPOCH_MICROS};

/// The Arrow type a value must have to be written into a column of PostgreSQL type `target`,
/// given the type it has now; `None` when no conversion is exact for every value.
///
/// Only conversions that keep every value or fail loudly are allowed: integers into any
/// integer column (an overflow is an error), integers into floats only where the float holds
/// them exactly, lower-resolution times into higher. Float → integer, f64 → real, i64 →
/// double precision and nanosecond times would round silently and are refused; decimals are
/// checked value by value against the column's scale when written.
pub(crate) fn wire_type(target: PgType, input: &DataType) -> Option<DataType> {
    use DataType::*;
    let integer = matches!(
        input,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
    );
    let small_integer = matches!(input, Int8 | Int16 | UInt8);
    let text = matches!(input, Utf8 | LargeUtf8 | Utf8View);
    let exact = match target {
        PgType::Bool => matches!(input, Boolean),
        PgType::Int2 | PgType::Int4 | PgType::Int8 => integer,
        PgType::Float4 => matches!(input, Float16 | Float32) || small_integer,
        PgType::Float8 => {
            matches!(input, Float16 | Float32 | Float64 | Int32 | UInt32) || small_integer
        }
        PgType::Numeric { .. } | PgType::NumericText => {
            integer || text || matches!(input, Decimal128(..) | Decimal256(..))
        }
        PgType::Text | PgType::Json | PgType::Jsonb => text,
        PgType::Bytea => matches!(
            input,
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_)
        ),
        PgType::Date => matches!(input, Date32),
        PgType::Time => matches!(
            input,
            Time64(TimeUnit::Microsecond)
                | Time32(TimeUnit::Second)
                | Time32(TimeUnit::Millisecond)
        ),
        PgType::Timestamp | PgType::Timestamptz => matches!(
            input,
            Timestamp(
                TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond,
                _
            )
        ),
        PgType::Uuid => matches!(input, FixedSizeBinary(16)),
        PgType::Interval => matches!(input, Duration(TimeUnit::Microsecond)),
    };
    if !exact {
        return None;
    }
    let wanted = match target {
        PgType::Numeric { .. } | PgType::NumericText => match input {
            Decimal128(..) | Decimal256(..) | Utf8 => input.clone(),
            _ if text => Utf8,
            _ => Decimal128(38, 0),
        },
        PgType::Timestamptz => match input {
            Timestamp(_, Some(zone)) => Timestamp(TimeUnit::Microsecond, Some(zone.clone())),
            _ => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        },
        other => other.arrow_type(),
    };
    (wanted == *input || can_cast_types(input, &wanted)).then_some(wanted)
}

/// One target column: its name and PostgreSQL type.
#[derive(Clone, Debug)]
pub(crate) struct TargetColumn {
    pub(crate) name: String,
    pub(crate) ty: PgType,
}

/// Encodes batches for one target table.
pub(crate) struct CopyEncoder {
    table: String,
    columns: Vec<TargetColumn>,
    scratch: Vec<i16>,
}

impl CopyEncoder {
    pub(crate) fn new(table: String, columns: Vec<TargetColumn>) -> CopyEncoder {
        CopyEncoder {
            table,
            columns,
            scratch: Vec::with_capacity(16),
        }
    }

    /// The stream header: signature, flags, no extension.
    pub(crate) fn header(out: &mut BytesMut) {
        out.put_slice(SIGNATURE);
        out.put_i32(0);
        out.put_i32(0);
    }

    /// The stream trailer.
    pub(crate) fn trailer(out: &mut BytesMut) {
        out.put_i16(-1);
    }

    fn error(&self, column: &str, message: String) -> PgError {
        PgError::Encode {
            table: self.table.clone(),
            column: column.to_string(),
            message,
        }
    }

    /// Appends every row of `batch` (columns in target-column order) to `out`.
    pub(crate) fn encode(
        &mut self,
        batch: &RecordBatch,
        out: &mut BytesMut,
    ) -> Result<(), PgError> {
        if batch.num_columns() != self.columns.len() {
            return Err(self.error(
                "",
                format!(
                    "batch has {} columns, the table {}",
                    batch.num_columns(),
                    self.columns.len()
                ),
            ));
        }
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (column, array) in self.columns.iter().zip(batch.columns()) {
            let wanted = wire_type(column.ty, array.data_type()).ok_or_else(|| {
                self.error(
                    &column.name,
                    format!(
                        "values of type {} cannot be written as {}",
                        array.data_type(),
                        column.ty.declaration()
                    ),
                )
            })?;
            arrays.push(if wanted == *array.data_type() {
                Arc::clone(array)
            } else {
                cast_with_options(array, &wanted, &options)
                    .map_err(|e| self.error(&column.name, format!("cannot convert exactly: {e}")))?
            });
        }
        let writers: Vec<(Option<&NullBuffer>, ColumnWriter<'_>)> = self
            .columns
            .iter()
            .zip(&arrays)
            .map(|(column, array)| (array.nulls(), ColumnWriter::new(column.ty, array)))
            .collect();
        let estimate: usize = arrays
            .iter()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            + batch.num_rows() * (2 + 4 * arrays.len());
        out.reserve(estimate);
        let field_count = self.columns.len() as i16;
        for row in 0..batch.num_rows() {
            out.put_i16(field_count);
            for (index, (nulls, writer)) in writers.iter().enumerate() {
                if nulls.is_some_and(|n| n.is_null(row)) {
                    out.put_i32(-1);
                    continue;
                }
                if let Err(message) = writer.write(row, &mut self.scratch, out) {
                    let name = self.columns[index].name.clone();
                    return Err(PgError::Encode {
                        table: self.table.clone(),
                        column: name,
                        message,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A column downcast once per batch to the concrete array its target type needs.
enum ColumnWriter<'a> {
    Bool(&'a BooleanArray),
    Int2(&'a Int16Array),
    Int4(&'a Int32Array),
    Int8(&'a Int64Array),
    Float4(&'a Float32Array),
    Float8(&'a Float64Array),
    Decimal128(&'a Decimal128Array, i8, Option<i8>),
    Decimal256(&'a Decimal256Array, i8, Option<i8>),
    NumericText(&'a StringArray, Option<i8>),
    Text(&'a StringArray),
    Jsonb(&'a StringArray),
    Bytea(&'a BinaryArray),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Interval(&'a DurationMicrosecondArray),
    Timestamp(&'a TimestampMicrosecondArray),
    Uuid(&'a FixedSizeBinaryArray),
}

impl<'a> ColumnWriter<'a> {
    /// `array` already has the type [`wire_type`] chose for `ty`.
    fn new(ty: PgType, array: &'a ArrayRef) -> ColumnWriter<'a> {
        let target_scale = match ty {
            PgType::Numeric { scale, .. } => Some(scale),
            _ => None,
        };
        match (ty, array.data_type()) {
            (PgType::Bool, _) => ColumnWriter::Bool(array.as_boolean()),
            (PgType::Int2, _) => ColumnWriter::Int2(array.as_primitive()),
            (PgType::Int4, _) => ColumnWriter::Int4(array.as_primitive()),
            (PgType::Int8, _) => ColumnWriter::Int8(array.as_primitive()),
            (PgType::Float4, _) => ColumnWriter::Float4(array.as_primitive()),
            (PgType::Float8, _) => ColumnWriter::Float8(array.as_primitive()),
            (PgType::Numeric { .. } | PgType::NumericText, DataType::Decimal128(_, scale)) => {
                ColumnWriter::Decimal128(array.as_primitive(), *scale, target_scale)
            }
            (PgType::Numeric { .. } | PgType::NumericText, DataType::Decimal256(_, scale)) => {
                ColumnWriter::Decimal256(array.as_primitive(), *scale, target_scale)
            }
            (PgType::Numeric { .. } | PgType::NumericText, _) => {
                ColumnWriter::NumericText(array.as_string(), target_scale)
            }
            (PgType::Text | PgType::Json, _) => ColumnWriter::Text(array.as_string()),
            (PgType::Jsonb, _) => ColumnWriter::Jsonb(array.as_string()),
            (PgType::Bytea, _) => ColumnWriter::Bytea(array.as_binary()),
            (PgType::Date, _) => ColumnWriter::Date(array.as_primitive()),
            (PgType::Time, _) => ColumnWriter::Time(array.as_primitive()),
            (PgType::Interval, _) => ColumnWriter::Interval(array.as_primitive()),
            (PgType::Timestamp | PgType::Timestamptz, _) => {
                ColumnWriter::Timestamp(array.as_primitive())
            }
            (PgType::Uuid, _) => ColumnWriter::Uuid(array.as_fixed_size_binary()),
        }
    }

    fn write(&self, row: usize, scratch: &mut Vec<i16>, out: &mut BytesMut) -> Result<(), String> {
        match self {
            ColumnWriter::Bool(a) => {
                out.put_i32(1);
                out.put_u8(u8::from(a.value(row)));
            }
            ColumnWriter::Int2(a) => {
                out.put_i32(2);
                out.put_i16(a.value(row));
            }
            ColumnWriter::Int4(a) => {
                out.put_i32(4);
                out.put_i32(a.value(row));
            }
            ColumnWriter::Int8(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row));
            }
            ColumnWriter::Float4(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row));
            }
            ColumnWriter::Float8(a) => {
                out.put_i32(8);
                out.put_f64(a.value(row));
            }
            ColumnWriter::Decimal128(a, scale, target) => {
                numeric::write_scaled(a.value(row), *scale, *target, scratch, out)?
            }
            ColumnWriter::Decimal256(a, scale, target) => {
                numeric::write_scaled(a.value(row), *scale, *target, scratch, out)?
            }
            ColumnWriter::NumericText(a, target) => {
                numeric::write_text(a.value(row), *target, scratch, out)?
            }
            ColumnWriter::Text(a) => put_bytes(out, a.value(row).as_bytes())?,
            ColumnWriter::Jsonb(a) => {
                let document = a.value(row).as_bytes();
                put_length(out, document.len() + 1)?;
                out.put_u8(1);
                out.put_slice(document);
            }
            ColumnWriter::Bytea(a) => put_bytes(out, a.value(row))?,
            ColumnWriter::Date(a) => {
                let days = a.value(row);
                out.put_i32(4);
                out.put_i32(match days {
                    i32::MAX | i32::MIN => days,
                    _ => days
                        .checked_sub(EPOCH_DAYS)
                        .ok_or_else(|| format!("date {days} is out of range"))?,
                });
            }
            ColumnWriter::Time(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row));
            }
            ColumnWriter::Interval(a) => {
                // microseconds, days, months: the whole span as microseconds.
                out.put_i32(16);
                out.put_i64(a.value(row));
                out.put_i32(0);
                out.put_i32(0);
            }
            ColumnWriter::Timestamp(a) => {
                let micros = a.value(row);
                out.put_i32(8);
                out.put_i64(match micros {
                    i64::MAX | i64::MIN => micros,
                    _ => micros
                        .checked_sub(EPOCH_MICROS)
                        .ok_or_else(|| format!("timestamp {micros} is out of range"))?,
                });
            }
            ColumnWriter::Uuid(a) => put_bytes(out, a.value(row))?,
        }
        Ok(())
    }
}

fn put_length(out: &mut BytesMut, length: usize) -> Result<(), String> {
    let length = i32::try_from(length)
        .map_err(|_| format!("a value of {length} bytes is over PostgreSQL's 1 GB field limit"))?;
    out.put_i32(length);
    Ok(())
}

fn put_bytes(out: &mut BytesMut, value: &[u8]) -> Result<(), String> {
    put_length(out, value.len())?;
    out.put_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;
    use crate::decode::CopyDecoder;

    #[test]
    fn encoded_rows_decode_to_the_same_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(i64::MIN)])),
                Arc::new(StringArray::from(vec![Some(""), Some("ünï"), None])),
                Arc::new(Date32Array::from(vec![Some(-1), Some(0), Some(i32::MAX)])),
            ],
        )
        .unwrap();
        let types = [PgType::Int8, PgType::Text, PgType::Date];
        let columns = ["id", "name", "day"]
            .iter()
            .zip(types)
            .map(|(name, ty)| TargetColumn {
                name: name.to_string(),
                ty,
            })
            .collect();
        let mut out = BytesMut::new();
        CopyEncoder::header(&mut out);
        CopyEncoder::new("t".into(), columns)
            .encode(&batch, &mut out)
            .unwrap();
        CopyEncoder::trailer(&mut out);
        let mut decoder = CopyDecoder::new("t".into(), schema, &types, 100);
        let mut ready = Vec::new();
        decoder.feed(&out, &mut ready).unwrap();
        let (decoded, _) = decoder.finish().unwrap().unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(
            decoded.column(0).as_primitive::<Int64Type>().value(2),
            i64::MIN
        );
    }

    #[test]
    fn narrowing_that_loses_data_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 70_000]))])
            .unwrap();
        let columns = vec![TargetColumn {
            name: "n".into(),
            ty: PgType::Int2,
        }];
        let error = CopyEncoder::new("t".into(), columns)
            .encode(&batch, &mut BytesMut::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("column n"), "{error}");
        assert_eq!(wire_type(PgType::Uuid, &DataType::Utf8), None);
        // Conversions that would round silently are refused up front.
        assert_eq!(wire_type(PgType::Int4, &DataType::Float64), None);
        assert_eq!(wire_type(PgType::Int4, &DataType::Decimal128(10, 2)), None);
        assert_eq!(wire_type(PgType::Float4, &DataType::Float64), None);
        assert_eq!(wire_type(PgType::Float8, &DataType::Int64), None);
        assert_eq!(
            wire_type(
                PgType::Timestamp,
                &DataType::Timestamp(TimeUnit::Nanosecond, None)
            ),
            None
        );
        assert_eq!(
            wire_type(PgType::Int2, &DataType::Int64),
            Some(DataType::Int16)
        );
    }

    #[test]
    fn decimals_with_more_fraction_than_the_column_are_refused_per_value() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Decimal128(12, 4), false),
            Field::new("t", DataType::Utf8, false),
        ]));
        let batch = |d: i128, t: &str| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(
                        Decimal128Array::from(vec![d])
                            .with_precision_and_scale(12, 4)
                            .unwrap(),
                    ),
                    Arc::new(StringArray::from(vec![t])),
                ],
            )
            .unwrap()
        };
        let columns = vec![
            TargetColumn {
                name: "d".into(),
                ty: PgType::Numeric {
                    precision: 10,
                    scale: 2,
                },
            },
            TargetColumn {
                name: "t".into(),
                ty: PgType::Numeric {
                    precision: 10,
                    scale: 2,
                },
            },
        ];
        let mut encoder = CopyEncoder::new("t".into(), columns);
        // 1.2300 and "1.2300" are exactly 1.23.
        encoder
            .encode(&batch(12300, "1.2300"), &mut BytesMut::new())
            .unwrap();
        let error = encoder
            .encode(&batch(12345, "1.23"), &mut BytesMut::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("column d") && error.contains("scale 2"),
            "{error}"
        );
        let error = encoder
            .encode(&batch(12300, "1.235"), &mut BytesMut::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("column t") && error.contains("scale 2"),
            "{error}"
        );
    }
}
