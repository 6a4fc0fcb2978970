//! Arrow values as MySQL SQL literals, for multi-row `INSERT … VALUES` statements, and the
//! column types ferry creates target columns with.
//!
//! Literals are written for a session with backslash escapes on (ferry's sessions set
//! `sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'`) and `time_zone = '+00:00'`.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, Field, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::array_value_to_string;
use ferry_engine::schema::{SOURCE_ENGINE_KEY, SOURCE_TYPE_KEY, TEXT_KIND_KEY};

use crate::types::{MyType, ENGINE};

/// Longest text a key column may hold in a created table: InnoDB keys are at most 3072
/// bytes, 768 utf8mb4 characters.
const KEY_TEXT_CHARS: usize = 768;

/// The column type to create for `field` in a MySQL table: the source's own declaration when
/// the source is MySQL too and the value kept its type, else the closest exact type. `None`
/// when MySQL has no type that holds the values exactly.
pub(crate) fn target_declaration(field: &Arc<Field>, in_key: bool) -> Result<String, String> {
    let metadata = field.metadata();
    if metadata.get(SOURCE_ENGINE_KEY).map(String::as_str) == Some(ENGINE) {
        if let Some(declared) = metadata.get(SOURCE_TYPE_KEY) {
            let still_same = MyType::from_declared(declared)
                .is_some_and(|ty| ty.arrow_type() == *field.data_type());
            if still_same {
                return Ok(declared.clone());
            }
        }
    }
    let json = metadata.get(TEXT_KIND_KEY).map(String::as_str) == Some("json");
    Ok(match field.data_type() {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            if *p > 65 || *s > 30 || *s < 0 {
                return Err(format!(
                    "DECIMAL({p},{s}) does not fit MySQL's DECIMAL (at most 65 digits, 30 after the point); cast it in the rule, e.g. CAST(x AS DECIMAL(65,30))"
                ));
            }
            format!("DECIMAL({p},{s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if in_key => {
            format!("VARCHAR({KEY_TEXT_CHARS})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if json => "JSON".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "LONGTEXT".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView if in_key => {
            "VARBINARY(3072)".into()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "LONGBLOB".into(),
        DataType::FixedSizeBinary(n) => format!("BINARY({n})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => "DATETIME(6)".into(),
        DataType::Time64(TimeUnit::Microsecond) | DataType::Duration(TimeUnit::Microsecond) => {
            "TIME(6)".into()
        }
        other => return Err(format!("MySQL has no column type for {other} values yet")),
    })
}

/// (year, month, day) of a day count from 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_date(out: &mut String, days: i64) {
    let (year, month, day) = civil_from_days(days);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}");
}

fn push_time_of_day(out: &mut String, micros: i64) {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{fraction:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
}

/// Appends `text` as a quoted string literal.
fn push_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for byte in bytes {
        let _ = write!(out, "{byte:02X}");
    }
    out.push('\'');
}

/// Appends value `row` of `column` as a literal; an error says why it cannot be written.
pub(crate) fn push_literal(out: &mut String, column: &ArrayRef, row: usize) -> Result<(), String> {
    if column.is_null(row) {
        out.push_str("NULL");
        return Ok(());
    }
    macro_rules! number {
        ($t:ty) => {{
            let _ = write!(out, "{}", column.as_primitive::<$t>().value(row));
        }};
    }
    match column.data_type() {
        DataType::Boolean => out.push_str(if column.as_boolean().value(row) {
            "TRUE"
        } else {
            "FALSE"
        }),
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 | DataType::Float64 => {
            let value = match column.data_type() {
                DataType::Float32 => f64::from(column.as_primitive::<Float32Type>().value(row)),
                _ => column.as_primitive::<Float64Type>().value(row),
            };
            if !value.is_finite() {
                return Err(format!("{value} has no MySQL value (no NaN or infinity)"));
            }
            if matches!(column.data_type(), DataType::Float32) {
                let _ = write!(out, "{:?}", value as f32);
            } else {
                let _ = write!(out, "{value:?}");
            }
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let text = array_value_to_string(column, row).map_err(|e| e.to_string())?;
            out.push_str(&text);
        }
        DataType::Utf8 => push_string(out, column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => push_string(out, column.as_string::<i64>().value(row)),
        DataType::Utf8View => push_string(out, column.as_string_view().value(row)),
        DataType::Binary => push_hex(out, column.as_binary::<i32>().value(row)),
        DataType::LargeBinary => push_hex(out, column.as_binary::<i64>().value(row)),
        DataType::BinaryView => push_hex(out, column.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => push_hex(out, column.as_fixed_size_binary().value(row)),
        DataType::Date32 => {
            out.push('\'');
            push_date(
                out,
                i64::from(column.as_primitive::<Date32Type>().value(row)),
            );
            out.push('\'');
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = column.as_primitive::<TimestampMicrosecondType>().value(row);
            out.push('\'');
            push_date(out, micros.div_euclid(86_400_000_000));
            out.push(' ');
            push_time_of_day(out, micros.rem_euclid(86_400_000_000));
            out.push('\'');
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            out.push('\'');
            push_time_of_day(
                out,
                column.as_primitive::<Time64MicrosecondType>().value(row),
            );
            out.push('\'');
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            // A span: hours beyond 24, and a sign (MySQL TIME takes ±838:59:59).
            let micros = column.as_primitive::<DurationMicrosecondType>().value(row);
            out.push('\'');
            if micros < 0 {
                out.push('-');
            }
            push_time_of_day(out, micros.unsigned_abs() as i64);
            out.push('\'');
        }
        other => {
            return Err(format!(
                "MySQL values of type {other} cannot be written yet"
            ))
        }
    }
    Ok(())
}

/// Appends value `row` of `column` as one field of `LOAD DATA`'s text format (fields ended by
/// tab, lines by newline, backslash escapes, `\N` for NULL). `scratch` is working space for
/// numbers and dates, reused across calls so no value allocates.
pub(crate) fn push_field(
    out: &mut Vec<u8>,
    scratch: &mut String,
    column: &ArrayRef,
    row: usize,
) -> Result<(), String> {
    if column.is_null(row) {
        out.extend_from_slice(b"\\N");
        return Ok(());
    }
    let escaped = |out: &mut Vec<u8>, bytes: &[u8]| {
        for &byte in bytes {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0 => out.extend_from_slice(b"\\0"),
                0x1a => out.extend_from_slice(b"\\Z"),
                byte => out.push(byte),
            }
        }
    };
    match column.data_type() {
        DataType::Boolean => out.push(if column.as_boolean().value(row) {
            b'1'
        } else {
            b'0'
        }),
        DataType::Utf8 => escaped(out, column.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => escaped(out, column.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => escaped(out, column.as_string_view().value(row).as_bytes()),
        DataType::Binary => escaped(out, column.as_binary::<i32>().value(row)),
        DataType::LargeBinary => escaped(out, column.as_binary::<i64>().value(row)),
        DataType::BinaryView => escaped(out, column.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => escaped(out, column.as_fixed_size_binary().value(row)),
        _ => {
            // Numbers, dates and times: the literal, without the quotes around dates.
            scratch.clear();
            push_literal(scratch, column, row)?;
            out.extend_from_slice(scratch.trim_matches('\'').as_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        BinaryArray, Date32Array, Float64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;
    use crate::decode::days_from_civil;

    fn literal(column: ArrayRef) -> Vec<Result<String, String>> {
        (0..column.len())
            .map(|row| {
                let mut out = String::new();
                push_literal(&mut out, &column, row).map(|()| out)
            })
            .collect()
    }

    #[test]
    fn load_data_fields_escape_their_separators() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a\tb\\c\nd\0"), None]));
        let mut out = Vec::new();
        push_field(&mut out, &mut String::new(), &text, 0).unwrap();
        out.push(b'|');
        push_field(&mut out, &mut String::new(), &text, 1).unwrap();
        assert_eq!(out, b"a\\tb\\\\c\\nd\\0|\\N");
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![0]));
        let mut out = Vec::new();
        push_field(&mut out, &mut String::new(), &dates, 0).unwrap();
        assert_eq!(out, b"1970-01-01");
    }

    #[test]
    fn dates_round_trip_through_day_counts() {
        for days in [-719_528, -354_285, -1, 0, 11_017, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn values_become_exact_literals() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("it's a \\ back\nslash\0"),
            None,
            Some("🙂"),
        ]));
        assert_eq!(
            literal(text),
            vec![
                Ok("'it\\'s a \\\\ back\\nslash\\0'".to_string()),
                Ok("NULL".to_string()),
                Ok("'🙂'".to_string())
            ]
        );
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![&b"\x00\xff"[..], &b""[..]]));
        assert_eq!(
            literal(bytes),
            vec![Ok("X'00FF'".to_string()), Ok("X''".to_string())]
        );
        let stamps: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![-1, 253_402_300_799_999_999]).with_timezone("UTC"),
        );
        assert_eq!(
            literal(stamps),
            vec![
                Ok("'1969-12-31 23:59:59.999999'".to_string()),
                Ok("'9999-12-31 23:59:59.999999'".to_string())
            ]
        );
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![-354_285]));
        assert_eq!(literal(dates), vec![Ok("'1000-01-01'".to_string())]);
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.5, f64::NAN]));
        let out = literal(floats);
        assert_eq!(out[0], Ok("1.5".to_string()));
        assert!(out[1].as_ref().unwrap_err().contains("NaN"));
    }
}
