//! PostgreSQL types ↔ Arrow types: what ferry can carry, how, and what it writes back.
//!
//! | PostgreSQL | Arrow | notes |
//! |---|---|---|
//! | boolean | Boolean | |
//! | smallint, integer, bigint | Int16, Int32, Int64 | |
//! | real, double precision | Float32, Float64 | NaN and ±Infinity kept |
//! | numeric(p,s), p ≤ 38 | Decimal128(p,s) | exact; NaN/Infinity are errors |
//! | numeric(p,s), p ≤ 76 | Decimal256(p,s) | exact |
//! | numeric (no typmod), or s > p, s < 0, p > 76 | Utf8, `ferry.text_kind=numeric` | exact decimal text |
//! | text, varchar(n), char(n), name | Utf8 | char(n) keeps its padding |
//! | bytea | Binary | |
//! | date | Date32 | ±infinity kept as i32::MAX / i32::MIN |
//! | time | Time64(µs) | |
//! | interval | Duration(µs) | days as 24 h; one with months (no fixed length) is an error |
//! | timestamp | Timestamp(µs) | ±infinity kept as i64::MAX / i64::MIN |
//! | timestamptz | Timestamp(µs, UTC) | |
//! | uuid | FixedSizeBinary(16), `arrow.uuid` | |
//! | json, jsonb | Utf8, `ferry.text_kind=json/jsonb` | the document text |
//!
//! Domains are carried as their base type. Any other type (arrays, ranges,
//! network types, enums, …) is listed in the catalog but is an error naming the column as soon
//! as a rule selects it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

use ferry_engine::schema::{
    EXTENSION_NAME_KEY, SOURCE_ENGINE_KEY, SOURCE_TYPE_KEY, TEXT_KIND_KEY, UNSUPPORTED_KEY,
    UUID_EXTENSION,
};

/// The engine name put in [`SOURCE_ENGINE_KEY`].
pub const ENGINE: &str = "postgres";

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
pub(crate) const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(crate) const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL type ferry reads and writes in binary COPY format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    /// boolean
    Bool,
    /// smallint
    Int2,
    /// integer
    Int4,
    /// bigint
    Int8,
    /// real
    Float4,
    /// double precision
    Float8,
    /// numeric(p,s) carried as Decimal128 or Decimal256
    Numeric {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// numeric without a usable typmod, carried as exact text
    NumericText,
    /// text, varchar, char, name
    Text,
    /// bytea
    Bytea,
    /// date
    Date,
    /// time without time zone
    Time,
    /// interval, carried as a span of microseconds (MySQL's TIME lands here)
    Interval,
    /// timestamp without time zone
    Timestamp,
    /// timestamp with time zone
    Timestamptz,
    /// uuid
    Uuid,
    /// json
    Json,
    /// jsonb
    Jsonb,
}

/// Well-known type oids (pg_type.h).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const INTERVAL: u32 = 1186;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

impl PgType {
    /// The type for a column's type oid and typmod, `None` when ferry cannot carry it.
    pub fn from_oid(type_oid: u32, typmod: i32) -> Option<PgType> {
        Some(match type_oid {
            oid::BOOL => PgType::Bool,
            oid::INT2 => PgType::Int2,
            oid::INT4 => PgType::Int4,
            oid::INT8 => PgType::Int8,
            oid::FLOAT4 => PgType::Float4,
            oid::FLOAT8 => PgType::Float8,
            oid::NUMERIC => numeric_from_typmod(typmod),
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => PgType::Text,
            oid::BYTEA => PgType::Bytea,
            oid::DATE => PgType::Date,
            oid::TIME => PgType::Time,
            oid::INTERVAL => PgType::Interval,
            oid::TIMESTAMP => PgType::Timestamp,
            oid::TIMESTAMPTZ => PgType::Timestamptz,
            oid::UUID => PgType::Uuid,
            oid::JSON => PgType::Json,
            oid::JSONB => PgType::Jsonb,
            _ => return None,
        })
    }

    /// The Arrow type batches carry for this PostgreSQL type.
    pub fn arrow_type(self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric { precision, scale } if precision <= 38 => {
                DataType::Decimal128(precision, scale)
            }
            PgType::Numeric { precision, scale } => DataType::Decimal256(precision, scale),
            PgType::NumericText | PgType::Text | PgType::Json | PgType::Jsonb => DataType::Utf8,
            PgType::Bytea => DataType::Binary,
            PgType::Date => DataType::Date32,
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Interval => DataType::Duration(TimeUnit::Microsecond),
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgType::Uuid => DataType::FixedSizeBinary(16),
        }
    }

    /// The value of [`TEXT_KIND_KEY`] for UTF-8 columns that are not plain text.
    fn text_kind(self) -> Option<&'static str> {
        match self {
            PgType::NumericText => Some("numeric"),
            PgType::Json => Some("json"),
            PgType::Jsonb => Some("jsonb"),
            _ => None,
        }
    }

    /// The type to declare for an Arrow field when ferry creates a target column and the
    /// field did not come from PostgreSQL: the closest exact PostgreSQL type, or `None`.
    pub fn for_arrow_field(field: &Field) -> Option<(PgType, String)> {
        let kind = field.metadata().get(TEXT_KIND_KEY).map(String::as_str);
        let is_uuid =
            field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str) == Some(UUID_EXTENSION);
        let pg = match field.data_type() {
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::Int2,
            DataType::Int32 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::UInt64 => PgType::Numeric {
                precision: 20,
                scale: 0,
            },
            DataType::Float16 | DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
                PgType::Numeric {
                    precision: *precision,
                    scale: *scale,
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match kind {
                Some("numeric") => PgType::NumericText,
                Some("json") => PgType::Json,
                Some("jsonb") => PgType::Jsonb,
                _ => PgType::Text,
            },
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PgType::Bytea,
            DataType::FixedSizeBinary(16) if is_uuid => PgType::Uuid,
            DataType::FixedSizeBinary(_) => PgType::Bytea,
            DataType::Date32 => PgType::Date,
            DataType::Time64(_) | DataType::Time32(_) => PgType::Time,
            DataType::Duration(TimeUnit::Microsecond) => PgType::Interval,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            _ => return None,
        };
        Some((pg, pg.declaration()))
    }

    /// The SQL type name used in CREATE TABLE.
    pub fn declaration(self) -> String {
        match self {
            PgType::Bool => "boolean".into(),
            PgType::Int2 => "smallint".into(),
            PgType::Int4 => "integer".into(),
            PgType::Int8 => "bigint".into(),
            PgType::Float4 => "real".into(),
            PgType::Float8 => "double precision".into(),
            PgType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            PgType::NumericText => "numeric".into(),
            PgType::Text => "text".into(),
            PgType::Bytea => "bytea".into(),
            PgType::Date => "date".into(),
            PgType::Time => "time".into(),
            PgType::Interval => "interval".into(),
            PgType::Timestamp => "timestamp".into(),
            PgType::Timestamptz => "timestamptz".into(),
            PgType::Uuid => "uuid".into(),
            PgType::Json => "json".into(),
            PgType::Jsonb => "jsonb".into(),
        }
    }
}

fn numeric_from_typmod(typmod: i32) -> PgType {
    if typmod < 4 {
        return PgType::NumericText;
    }
    let packed = typmod - 4;
    let precision = (packed >> 16) & 0xffff;
    // PostgreSQL 15 stores the scale as an 11-bit signed number.
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    if (1..=76).contains(&precision) && (0..=precision).contains(&scale) {
        PgType::Numeric {
            precision: precision as u8,
            scale: scale as i8,
        }
    } else {
        PgType::NumericText
    }
}

/// The Arrow field for a source column: its carried type plus metadata that lets a
/// PostgreSQL sink recreate the declared type (`declared`, from `format_type`).
pub fn source_field(name: &str, pg: Option<PgType>, declared: &str, nullable: bool) -> Field {
    let mut metadata = HashMap::from([
        (SOURCE_ENGINE_KEY.to_string(), ENGINE.to_string()),
        (SOURCE_TYPE_KEY.to_string(), declared.to_string()),
    ]);
    let Some(pg) = pg else {
        metadata.insert(
            UNSUPPORTED_KEY.to_string(),
            format!("type {declared} cannot be carried by ferry yet"),
        );
        return Field::new(name, DataType::Null, true).with_metadata(metadata);
    };
    if let Some(kind) = pg.text_kind() {
        metadata.insert(TEXT_KIND_KEY.to_string(), kind.to_string());
    }
    if pg == PgType::Uuid {
        metadata.insert(EXTENSION_NAME_KEY.to_string(), UUID_EXTENSION.to_string());
    }
    Field::new(name, pg.arrow_type(), nullable).with_metadata(metadata)
}

/// The declared type to use when creating a target column for `field`: the source's own
/// declaration when the source is PostgreSQL too, else the closest exact type.
pub fn target_declaration(field: &Arc<Field>) -> Option<String> {
    let metadata = field.metadata();
    if metadata.get(SOURCE_ENGINE_KEY).map(String::as_str) == Some(ENGINE) {
        if let Some(declared) = metadata.get(SOURCE_TYPE_KEY) {
            // Only reuse the declaration while the field still has the type it was read as
            // (an expression over the column may have changed it).
            let still_same = PgType::for_arrow_field(field)
                .is_some_and(|(pg, _)| pg.arrow_type() == *field.data_type());
            if still_same {
                return Some(declared.clone());
            }
        }
    }
    PgType::for_arrow_field(field).map(|(_, declaration)| declaration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | (scale & 0x7ff)) + 4
    }

    #[test]
    fn numeric_typmods_pick_exact_arrow_types() {
        assert_eq!(
            PgType::from_oid(1700, typmod(12, 2)).unwrap().arrow_type(),
            DataType::Decimal128(12, 2)
        );
        assert_eq!(
            PgType::from_oid(1700, typmod(40, 5)).unwrap().arrow_type(),
            DataType::Decimal256(40, 5)
        );
        assert_eq!(PgType::from_oid(1700, -1), Some(PgType::NumericText));
        assert_eq!(
            PgType::from_oid(1700, typmod(5, -2)),
            Some(PgType::NumericText)
        );
        assert_eq!(
            PgType::from_oid(1700, typmod(2, 5)),
            Some(PgType::NumericText)
        );
        assert_eq!(PgType::from_oid(869, -1), None, "inet is not carried");
    }

    #[test]
    fn fields_keep_the_declared_type_for_a_postgres_sink() {
        let field = Arc::new(source_field(
            "price",
            PgType::from_oid(1700, typmod(40, 5)),
            "numeric(40,5)",
            true,
        ));
        assert_eq!(target_declaration(&field).as_deref(), Some("numeric(40,5)"));
        let varchar = Arc::new(source_field(
            "name",
            Some(PgType::Text),
            "character varying(20)",
            false,
        ));
        assert_eq!(
            target_declaration(&varchar).as_deref(),
            Some("character varying(20)")
        );
        let computed = Arc::new(Field::new("total", DataType::Int64, true));
        assert_eq!(target_declaration(&computed).as_deref(), Some("bigint"));
        let unsupported = source_field("ip", None, "inet", true);
        assert!(unsupported.metadata().contains_key(UNSUPPORTED_KEY));
    }
}
