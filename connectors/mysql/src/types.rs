//! MySQL/MariaDB types and their Arrow forms, from `information_schema.COLUMNS`.
//!
//! | MySQL | Arrow | notes |
//! |---|---|---|
//! | TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT | Int8/16/32/32/64 | |
//! | the same UNSIGNED | UInt8/16/32/32/64 | |
//! | DECIMAL(p,s) | Decimal128 (p ≤ 38) / Decimal256 | exact |
//! | FLOAT, DOUBLE | Float32, Float64 | |
//! | CHAR, VARCHAR, *TEXT, ENUM, SET, JSON | Utf8 | read as utf8mb4 |
//! | BINARY, VARBINARY, *BLOB | Binary | |
//! | DATE | Date32 | a zero date is an error naming the row |
//! | DATETIME(n) | Timestamp(µs) | |
//! | TIMESTAMP(n) | Timestamp(µs, UTC) | read with the session in UTC |
//! | YEAR | Int16 | |
//! | TIME(n) | Duration(µs) | ±838:59:59: a span, not a time of day |
//! | BIT(1) / BIT(n ≤ 63) | Boolean / Int64 | |
//!
//! BIT(64) and spatial types are listed with a reason and refused when a rule selects them.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, TimeUnit};
use ferry_engine::schema::{SOURCE_ENGINE_KEY, SOURCE_TYPE_KEY, TEXT_KIND_KEY, UNSUPPORTED_KEY};

/// The engine name in field metadata and [`ferry_engine::Source::engine`].
pub const ENGINE: &str = "mysql";

/// A column type ferry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MyType {
    /// An integer of `bits` bits (24 for MEDIUMINT).
    Int {
        /// Width in bits.
        bits: u8,
        /// UNSIGNED.
        unsigned: bool,
    },
    /// DECIMAL(precision, scale).
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// FLOAT.
    Float,
    /// DOUBLE.
    Double,
    /// Text of any kind (read as utf8mb4).
    Text,
    /// JSON (text).
    Json,
    /// Bytes.
    Binary,
    /// DATE.
    Date,
    /// DATETIME.
    DateTime,
    /// TIMESTAMP (an instant).
    Timestamp,
    /// YEAR.
    Year,
    /// TIME: a signed span of up to 838:59:59, not a time of day.
    Time,
    /// BIT(n).
    Bit {
        /// n.
        width: u8,
    },
}

impl MyType {
    /// The type of a column as `information_schema.COLUMNS` describes it (`DATA_TYPE`,
    /// `COLUMN_TYPE`, `NUMERIC_PRECISION`, `NUMERIC_SCALE`); `None` when ferry cannot carry it.
    pub fn from_catalog(
        data_type: &str,
        column_type: &str,
        precision: Option<u64>,
        scale: Option<u64>,
    ) -> Option<MyType> {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        let int = |bits| Some(MyType::Int { bits, unsigned });
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" => int(8),
            "smallint" => int(16),
            "mediumint" => int(24),
            "int" | "integer" => int(32),
            "bigint" => int(64),
            "decimal" | "numeric" => Some(MyType::Decimal {
                precision: precision.unwrap_or(10).clamp(1, 76) as u8,
                scale: scale.unwrap_or(0).min(76) as i8,
            }),
            "float" => Some(MyType::Float),
            "double" | "real" => Some(MyType::Double),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" => {
                // MariaDB's JSON is LONGTEXT with a json_valid check; MySQL names it.
                Some(MyType::Text)
            }
            "json" => Some(MyType::Json),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Some(MyType::Binary)
            }
            "date" => Some(MyType::Date),
            "datetime" => Some(MyType::DateTime),
            "timestamp" => Some(MyType::Timestamp),
            "year" => Some(MyType::Year),
            "time" => Some(MyType::Time),
            "bit" => {
                let width = precision.unwrap_or(1);
                (width < 64).then_some(MyType::Bit { width: width as u8 })
            }
            _ => None,
        }
    }

    /// The type of a column declared as `declared` (`COLUMN_TYPE`: `int(10) unsigned`,
    /// `decimal(12,2)`, `bit(12)`).
    pub fn from_declared(declared: &str) -> Option<MyType> {
        let lower = declared.to_ascii_lowercase();
        let data = lower.split(['(', ' ']).next().unwrap_or_default();
        let numbers: Vec<u64> = lower
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(inside, _)| {
                inside
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        MyType::from_catalog(
            data,
            &lower,
            numbers.first().copied(),
            numbers.get(1).copied(),
        )
    }

    /// The Arrow type values of this type are carried as.
    pub fn arrow_type(self) -> DataType {
        match self {
            MyType::Int { bits, unsigned } => match (bits, unsigned) {
                (8, false) => DataType::Int8,
                (8, true) => DataType::UInt8,
                (16, false) => DataType::Int16,
                (16, true) => DataType::UInt16,
                (24 | 32, false) => DataType::Int32,
                (24 | 32, true) => DataType::UInt32,
                (_, false) => DataType::Int64,
                (_, true) => DataType::UInt64,
            },
            MyType::Decimal { precision, scale } if precision <= 38 => {
                DataType::Decimal128(precision, scale)
            }
            MyType::Decimal { precision, scale } => DataType::Decimal256(precision, scale),
            MyType::Float => DataType::Float32,
            MyType::Double => DataType::Float64,
            MyType::Text | MyType::Json => DataType::Utf8,
            MyType::Binary => DataType::Binary,
            MyType::Date => DataType::Date32,
            MyType::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            MyType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            MyType::Year => DataType::Int16,
            MyType::Time => DataType::Duration(TimeUnit::Microsecond),
            MyType::Bit { width: 1 } => DataType::Boolean,
            MyType::Bit { .. } => DataType::Int64,
        }
    }
}

/// The Arrow field for a source column: its carried type, or `Null` with the reason when
/// ferry cannot carry it, plus the declared type (`int(10) unsigned`) in metadata.
pub fn source_field(name: &str, ty: Option<MyType>, declared: &str, nullable: bool) -> Field {
    let mut metadata = HashMap::from([
        (SOURCE_ENGINE_KEY.to_string(), ENGINE.to_string()),
        (SOURCE_TYPE_KEY.to_string(), declared.to_string()),
    ]);
    let Some(ty) = ty else {
        metadata.insert(
            UNSUPPORTED_KEY.to_string(),
            format!("type {declared} cannot be carried by ferry yet"),
        );
        return Field::new(name, DataType::Null, true).with_metadata(metadata);
    };
    if ty == MyType::Json {
        metadata.insert(TEXT_KIND_KEY.to_string(), "json".to_string());
    }
    Field::new(name, ty.arrow_type(), nullable).with_metadata(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_arrow() {
        let ty = |data: &str, column: &str, p, s| {
            MyType::from_catalog(data, column, p, s).map(MyType::arrow_type)
        };
        assert_eq!(
            ty("int", "int(10) unsigned", Some(10), Some(0)),
            Some(DataType::UInt32)
        );
        assert_eq!(
            ty("mediumint", "mediumint(9)", Some(7), Some(0)),
            Some(DataType::Int32)
        );
        assert_eq!(
            ty("bigint", "bigint(20) unsigned", None, None),
            Some(DataType::UInt64)
        );
        assert_eq!(
            ty("decimal", "decimal(65,30)", Some(65), Some(30)),
            Some(DataType::Decimal256(65, 30))
        );
        assert_eq!(ty("bit", "bit(1)", Some(1), None), Some(DataType::Boolean));
        assert_eq!(ty("bit", "bit(64)", Some(64), None), None);
        assert_eq!(
            ty("time", "time(6)", None, None),
            Some(DataType::Duration(TimeUnit::Microsecond))
        );
        assert_eq!(
            ty("enum", "enum('a','b')", None, None),
            Some(DataType::Utf8)
        );
        let unsupported = source_field("t", None, "point", true);
        assert!(unsupported.metadata()[UNSUPPORTED_KEY].contains("point"));
    }
}
