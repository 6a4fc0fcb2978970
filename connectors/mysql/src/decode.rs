//! Values of MySQL's binary result protocol into Arrow columns, one builder per column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, DurationMicrosecondBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, Int8Builder,
    StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::DataType;
use mysql_async::Value;

use crate::types::MyType;

/// Builds one Arrow column from binary-protocol values.
pub(crate) enum ColumnBuilder {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    /// DECIMAL arrives as exact text; cast to the decimal type when the batch is finished.
    Decimal(StringBuilder, DataType),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    /// TIME as a span of microseconds.
    Time(DurationMicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Year(Int16Builder),
    Bool(BooleanBuilder),
    Bits(Int64Builder),
}

/// Days from 1970-01-01 to the proleptic Gregorian date (year, month, day).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn integer(value: &Value) -> Result<i128, String> {
    match value {
        Value::Int(v) => Ok(i128::from(*v)),
        Value::UInt(v) => Ok(i128::from(*v)),
        Value::Bytes(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.trim().parse::<i128>().ok())
            .ok_or_else(|| format!("{value:?} is not an integer")),
        other => Err(format!("{other:?} is not an integer")),
    }
}

fn float(value: &Value) -> Result<f64, String> {
    match value {
        Value::Float(v) => Ok(f64::from(*v)),
        Value::Double(v) => Ok(*v),
        Value::Int(v) => Ok(*v as f64),
        Value::UInt(v) => Ok(*v as f64),
        Value::Bytes(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("{value:?} is not a number")),
        other => Err(format!("{other:?} is not a number")),
    }
}

fn bytes(value: &Value) -> Result<&[u8], String> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        other => Err(format!("{other:?} is not a string")),
    }
}

/// (days since 1970-01-01, microseconds into the day) of a DATE/DATETIME/TIMESTAMP value.
fn date_time(value: &Value) -> Result<(i64, i64), String> {
    match value {
        Value::Date(year, month, day, hour, minute, second, micros) => {
            if *month == 0 || *day == 0 {
                return Err(format!(
                    "zero date {year:04}-{month:02}-{day:02}: no date has this value; change it at the source (UPDATE … SET … = NULL or a real date) or leave the column out of the rule"
                ));
            }
            let days = days_from_civil(i64::from(*year), u32::from(*month), u32::from(*day));
            let micros_of_day = ((i64::from(*hour) * 60 + i64::from(*minute)) * 60
                + i64::from(*second))
                * 1_000_000
                + i64::from(*micros);
            Ok((days, micros_of_day))
        }
        other => Err(format!("{other:?} is not a date")),
    }
}

fn narrow<T: TryFrom<i128>>(value: i128, what: &str) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{value} does not fit {what}"))
}

impl ColumnBuilder {
    pub(crate) fn new(ty: MyType, capacity: usize) -> ColumnBuilder {
        let data_type = ty.arrow_type();
        match (ty, &data_type) {
            (MyType::Decimal { .. }, _) => ColumnBuilder::Decimal(
                StringBuilder::with_capacity(capacity, capacity * 8),
                data_type,
            ),
            (MyType::Year, _) => ColumnBuilder::Year(Int16Builder::with_capacity(capacity)),
            (MyType::Bit { width: 1 }, _) => {
                ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity))
            }
            (MyType::Bit { .. }, _) => ColumnBuilder::Bits(Int64Builder::with_capacity(capacity)),
            (_, DataType::Int8) => ColumnBuilder::Int8(Int8Builder::with_capacity(capacity)),
            (_, DataType::Int16) => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            (_, DataType::Int32) => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            (_, DataType::Int64) => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            (_, DataType::UInt8) => ColumnBuilder::UInt8(UInt8Builder::with_capacity(capacity)),
            (_, DataType::UInt16) => ColumnBuilder::UInt16(UInt16Builder::with_capacity(capacity)),
            (_, DataType::UInt32) => ColumnBuilder::UInt32(UInt32Builder::with_capacity(capacity)),
            (_, DataType::UInt64) => ColumnBuilder::UInt64(UInt64Builder::with_capacity(capacity)),
            (_, DataType::Float32) => {
                ColumnBuilder::Float32(Float32Builder::with_capacity(capacity))
            }
            (_, DataType::Float64) => {
                ColumnBuilder::Float64(Float64Builder::with_capacity(capacity))
            }
            (_, DataType::Binary) => {
                ColumnBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            (_, DataType::Date32) => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            (_, DataType::Duration(_)) => {
                ColumnBuilder::Time(DurationMicrosecondBuilder::with_capacity(capacity))
            }
            (_, DataType::Timestamp(_, zone)) => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                zone.is_some(),
            ),
            _ => ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// Appends one value; an error says what is wrong with it.
    pub(crate) fn append(&mut self, value: &Value) -> Result<(), String> {
        if matches!(value, Value::NULL) {
            self.append_null();
            return Ok(());
        }
        match self {
            ColumnBuilder::Int8(b) => b.append_value(narrow(integer(value)?, "TINYINT")?),
            ColumnBuilder::Int16(b) => b.append_value(narrow(integer(value)?, "SMALLINT")?),
            ColumnBuilder::Int32(b) => b.append_value(narrow(integer(value)?, "INT")?),
            ColumnBuilder::Int64(b) => b.append_value(narrow(integer(value)?, "BIGINT")?),
            ColumnBuilder::UInt8(b) => b.append_value(narrow(integer(value)?, "TINYINT UNSIGNED")?),
            ColumnBuilder::UInt16(b) => {
                b.append_value(narrow(integer(value)?, "SMALLINT UNSIGNED")?)
            }
            ColumnBuilder::UInt32(b) => b.append_value(narrow(integer(value)?, "INT UNSIGNED")?),
            ColumnBuilder::UInt64(b) => b.append_value(narrow(integer(value)?, "BIGINT UNSIGNED")?),
            ColumnBuilder::Year(b) => b.append_value(narrow(integer(value)?, "YEAR")?),
            ColumnBuilder::Decimal(b, _) => {
                b.append_value(std::str::from_utf8(bytes(value)?).map_err(|e| e.to_string())?)
            }
            ColumnBuilder::Float32(b) => b.append_value(float(value)? as f32),
            ColumnBuilder::Float64(b) => b.append_value(float(value)?),
            ColumnBuilder::Text(b) => b.append_value(
                std::str::from_utf8(bytes(value)?)
                    .map_err(|_| "the text is not valid UTF-8".to_string())?,
            ),
            ColumnBuilder::Binary(b) => b.append_value(bytes(value)?),
            ColumnBuilder::Date(b) => {
                let (days, _) = date_time(value)?;
                b.append_value(narrow(i128::from(days), "a date")?)
            }
            ColumnBuilder::Timestamp(b, _) => {
                let (days, micros) = date_time(value)?;
                b.append_value(days * 86_400_000_000 + micros)
            }
            ColumnBuilder::Time(b) => b.append_value(span(value)?),
            ColumnBuilder::Bool(b) => b.append_value(bits(value)? != 0),
            ColumnBuilder::Bits(b) => b.append_value(bits(value)?),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int8(b) => b.append_null(),
            ColumnBuilder::Int16(b) | ColumnBuilder::Year(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) | ColumnBuilder::Bits(b) => b.append_null(),
            ColumnBuilder::UInt8(b) => b.append_null(),
            ColumnBuilder::UInt16(b) => b.append_null(),
            ColumnBuilder::UInt32(b) => b.append_null(),
            ColumnBuilder::UInt64(b) => b.append_null(),
            ColumnBuilder::Decimal(b, _) | ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::Timestamp(b, _) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
        }
    }

    /// The column built so far; the builder starts empty again.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            ColumnBuilder::Int8(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) | ColumnBuilder::Year(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) | ColumnBuilder::Bits(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt8(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt16(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt32(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, data_type) => {
                let text: ArrayRef = Arc::new(b.finish());
                let options = CastOptions {
                    safe: false,
                    ..CastOptions::default()
                };
                cast_with_options(&text, data_type, &options).map_err(|e| e.to_string())?
            }
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b, utc) => {
                let array = b.finish();
                if *utc {
                    Arc::new(array.with_timezone("UTC"))
                } else {
                    Arc::new(array)
                }
            }
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
        })
    }
}

/// A TIME value as signed microseconds.
fn span(value: &Value) -> Result<i64, String> {
    match value {
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let total = ((i64::from(*days) * 24 + i64::from(*hours)) * 60 + i64::from(*minutes))
                * 60
                + i64::from(*seconds);
            let total = total * 1_000_000 + i64::from(*micros);
            Ok(if *negative { -total } else { total })
        }
        other => Err(format!("{other:?} is not a TIME")),
    }
}

/// A BIT value: big-endian bytes (or an integer).
fn bits(value: &Value) -> Result<i64, String> {
    match value {
        Value::Bytes(bytes) if bytes.len() <= 8 => Ok(bytes
            .iter()
            .fold(0i64, |acc, byte| (acc << 8) | i64::from(*byte))),
        Value::Int(v) => Ok(*v),
        Value::UInt(v) => i64::try_from(*v).map_err(|e| e.to_string()),
        other => Err(format!("{other:?} is not a BIT value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1000, 1, 1), -354_285);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }

    #[test]
    fn values_land_in_their_columns_and_bad_ones_say_why() {
        let mut ints = ColumnBuilder::new(
            MyType::Int {
                bits: 8,
                unsigned: true,
            },
            4,
        );
        ints.append(&Value::UInt(255)).unwrap();
        ints.append(&Value::NULL).unwrap();
        assert!(ints
            .append(&Value::Int(-1))
            .unwrap_err()
            .contains("does not fit"));
        assert_eq!(ints.finish().unwrap().len(), 2);

        let mut decimals = ColumnBuilder::new(
            MyType::Decimal {
                precision: 12,
                scale: 2,
            },
            4,
        );
        decimals
            .append(&Value::Bytes(b"-1234567890.12".to_vec()))
            .unwrap();
        let array = decimals.finish().unwrap();
        assert_eq!(array.data_type(), &DataType::Decimal128(12, 2));

        let mut dates = ColumnBuilder::new(MyType::Date, 4);
        let error = dates.append(&Value::Date(0, 0, 0, 0, 0, 0, 0)).unwrap_err();
        assert!(error.contains("zero date"), "{error}");
        let mut bits = ColumnBuilder::new(MyType::Bit { width: 12 }, 1);
        bits.append(&Value::Bytes(vec![0x0a, 0xbc])).unwrap();
        let array = bits.finish().unwrap();
        assert_eq!(
            array
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0),
            0x0abc
        );
    }
}
