//! Row events of the binary log into change batches.
//!
//! Every transaction's row events are preceded by a TABLE_MAP event describing the table as it
//! is when the rows were written: column types and, with `binlog_row_metadata = FULL`, the
//! column names, signedness, character sets and ENUM/SET member names. Columns are matched to
//! the job's columns by name from that description, so a table altered at the source is
//! decoded by its new shape from the next event on (an added column is not carried; a dropped
//! or retyped column the rules select stops the stream with an error naming it).
//!
//! Values arrive in the column's own character set: UTF-8 (utf8mb4, utf8mb3, ascii) is taken
//! as it is and latin1 (MySQL's latin1 is Windows-1252) converted; another character set is an
//! error naming the column. ENUM and SET arrive as member numbers and bit masks and are turned
//! back into their names, TIMESTAMP as seconds since the epoch.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use mysql_async::binlog::events::{OptionalMetadataField, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

use ferry_engine::{ChangeBatch, ChangeEvent, Op, Position, TableId};

use crate::decode::ColumnBuilder;
use crate::encode::civil_from_days;
use crate::error::MyError;
use crate::types::MyType;

/// Rows a new batch has room for before it grows (most transactions are small).
const INITIAL_ROWS: usize = 16;

/// A table the stream decodes: its id, the columns to decode and the schema of its batches.
#[derive(Clone, Debug)]
pub(crate) struct StreamTable {
    pub(crate) id: Arc<TableId>,
    pub(crate) schema: SchemaRef,
    pub(crate) types: Vec<MyType>,
}

/// How a text value's bytes become UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charset {
    Utf8,
    Latin1,
    Binary,
    Other(u16),
}

/// What a binlog value needs to look like the value a snapshot reads.
#[derive(Clone, Debug)]
enum Convert {
    AsIs,
    Text(Charset),
    Timestamp,
    Year,
    /// BINARY(n): the binlog leaves out the zero bytes the column pads its values with.
    PadBinary(usize),
    /// A signed MEDIUMINT: mysql_common 0.37 reads its three bytes without extending the
    /// sign (-1 arrives as 16777215), so values from 2^23 up are negatives.
    SignedMedium,
    Enum(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
}

/// How a table id's columns map to a requested table, as its TABLE_MAP describes it.
struct Mapping {
    tme: TableMapEvent<'static>,
    /// Index into the requested tables; `None` for a table no rule selects.
    table: Option<usize>,
    /// Per binlog column, the output column it fills.
    outputs: Vec<Option<usize>>,
    /// Per binlog column, how its values are converted.
    converts: Vec<Convert>,
    /// Per binlog column, its name.
    names: Vec<String>,
    name: String,
}

/// Rows being gathered for one table.
struct Building {
    table: usize,
    columns: Vec<ColumnBuilder>,
    ops: Vec<u8>,
    unchanged: Vec<Option<Vec<bool>>>,
    bytes: u64,
    /// Per output column, whether the row being appended set it (reused row to row).
    filled: Vec<bool>,
}

/// Decodes the row events of one binlog stream into [`ChangeEvent`]s.
pub(crate) struct BinlogDecoder {
    tables: Vec<StreamTable>,
    by_name: HashMap<(String, String), usize>,
    /// Collation id → character set name, as the server lists them.
    charsets: HashMap<u16, String>,
    mappings: HashMap<u64, Mapping>,
    batch_size: usize,
    building: Option<Building>,
}

impl BinlogDecoder {
    /// A decoder for `tables` (batches of at most `batch_size` rows); `charsets` maps the
    /// server's collation ids to character set names.
    pub(crate) fn new(
        tables: Vec<StreamTable>,
        charsets: HashMap<u16, String>,
        batch_size: usize,
    ) -> BinlogDecoder {
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(index, table)| ((table.id.schema.clone(), table.id.name.clone()), index))
            .collect();
        BinlogDecoder {
            tables,
            by_name,
            charsets,
            mappings: HashMap::new(),
            batch_size: batch_size.max(2),
            building: None,
        }
    }

    /// The table a database and table name refer to, if a rule selects it.
    pub(crate) fn table_index(&self, database: &str, table: &str) -> Option<usize> {
        self.by_name
            .get(&(database.to_string(), table.to_string()))
            .copied()
    }

    /// Learns (or re-learns) what a table id stands for.
    pub(crate) fn table_map(&mut self, tme: &TableMapEvent<'_>) -> Result<(), MyError> {
        if self
            .mappings
            .get(&tme.table_id())
            .is_some_and(|known| known.tme == *tme)
        {
            return Ok(());
        }
        let database = tme.database_name().into_owned();
        let name = tme.table_name().into_owned();
        let table = self.table_index(&database, &name);
        let mapping = match table {
            None => Mapping {
                tme: tme.clone().into_owned(),
                table: None,
                outputs: Vec::new(),
                converts: Vec::new(),
                names: Vec::new(),
                name: format!("{database}.{name}"),
            },
            Some(index) => self.mapping(tme, index, format!("{database}.{name}"))?,
        };
        self.mappings.insert(tme.table_id(), mapping);
        Ok(())
    }

    fn mapping(
        &self,
        tme: &TableMapEvent<'_>,
        index: usize,
        name: String,
    ) -> Result<Mapping, MyError> {
        let table = &self.tables[index];
        let count = tme.columns_count() as usize;
        let broken = |message: String| MyError::Decode {
            table: name.clone(),
            column: String::new(),
            message,
        };
        let mut names = Vec::new();
        let mut enums: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut sets: Vec<Vec<Vec<u8>>> = Vec::new();
        for field in tme.iter_optional_meta() {
            match field.map_err(|e| broken(format!("a bad table description: {e}")))? {
                OptionalMetadataField::ColumnName(columns) => {
                    for column in columns.iter_names() {
                        let column =
                            column.map_err(|e| broken(format!("a bad column name: {e}")))?;
                        names.push(column.name().into_owned());
                    }
                }
                OptionalMetadataField::EnumStrValue(values) => {
                    for members in values.iter_values() {
                        let members =
                            members.map_err(|e| broken(format!("bad ENUM members: {e}")))?;
                        enums.push(
                            members
                                .values()
                                .iter()
                                .map(|v| v.value_raw().to_vec())
                                .collect(),
                        );
                    }
                }
                OptionalMetadataField::SetStrValue(values) => {
                    for members in values.iter_values() {
                        let members =
                            members.map_err(|e| broken(format!("bad SET members: {e}")))?;
                        sets.push(
                            members
                                .values()
                                .iter()
                                .map(|v| v.value_raw().to_vec())
                                .collect(),
                        );
                    }
                }
                _ => {}
            }
        }
        if names.len() != count {
            return Err(MyError::Decode {
                table: name,
                column: String::new(),
                message: "the binlog does not name the table's columns; ferry needs binlog_row_metadata = FULL (SET GLOBAL binlog_row_metadata = FULL, and in the server's option file); events written before the change cannot be decoded, so start the job again from a snapshot after setting it".into(),
            });
        }
        let extractor =
            mysql_async::binlog::events::OptionalMetaExtractor::new(tme.iter_optional_meta())
                .map_err(|e| broken(format!("a bad table description: {e}")))?;
        let mut text_charsets = extractor.iter_charset();
        let mut enum_charsets = extractor.iter_enum_and_set_charset();
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let mut outputs = Vec::with_capacity(count);
        let mut converts = Vec::with_capacity(count);
        let mut found = vec![false; table.types.len()];
        for (position, column) in names.iter().enumerate() {
            let column_type = tme
                .get_column_type(position)
                .map_err(|e| broken(format!("column {column}: {e}")))?
                .ok_or_else(|| broken(format!("column {column} has no type")))?;
            let charset = if column_type.is_character_type() {
                text_charsets.next().transpose().ok().flatten()
            } else if column_type.is_enum_or_set_type() {
                enum_charsets.next().transpose().ok().flatten()
            } else {
                None
            }
            .map(|id| self.charset(id));
            let members = match column_type {
                ColumnType::MYSQL_TYPE_ENUM => enums.next(),
                ColumnType::MYSQL_TYPE_SET => sets.next(),
                _ => None,
            };
            let output = table.schema.index_of(column).ok();
            outputs.push(output);
            let Some(output) = output else {
                converts.push(Convert::AsIs);
                continue;
            };
            found[output] = true;
            let expected = table.types[output];
            let metadata = tme.get_column_metadata(position).unwrap_or(&[]);
            let convert = conversion(column_type, expected, charset, members, metadata).map_err(
                |message| MyError::Decode {
                    table: name.clone(),
                    column: column.clone(),
                    message,
                },
            )?;
            converts.push(convert);
        }
        if let Some(missing) = found.iter().position(|f| !f) {
            return Err(MyError::Decode {
                table: name,
                column: table.schema.field(missing).name().clone(),
                message: "the column is no longer in the table (dropped or renamed at the source); change the rules and the target, then restart the job".into(),
            });
        }
        Ok(Mapping {
            tme: tme.clone().into_owned(),
            table: Some(index),
            outputs,
            converts,
            names,
            name,
        })
    }

    fn charset(&self, collation: u16) -> Charset {
        match self.charsets.get(&collation).map(String::as_str) {
            Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii") => Charset::Utf8,
            Some("latin1") => Charset::Latin1,
            Some("binary") => Charset::Binary,
            _ => Charset::Other(collation),
        }
    }

    /// Decodes one rows event, appending the batches it completes to `out`.
    pub(crate) fn rows(
        &mut self,
        event: &RowsEventData<'_>,
        event_bytes: u64,
        position: &Position,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), MyError> {
        let id = event.table_id();
        let Some(mapping) = self.mappings.get(&id) else {
            return Err(MyError::Decode {
                table: format!("table id {id}"),
                column: String::new(),
                message: "rows arrived before the table's description (TABLE_MAP)".into(),
            });
        };
        let Some(table) = mapping.table else {
            return Ok(());
        };
        let (first, second) = match event {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                (Op::Insert, None)
            }
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => {
                (Op::UpdateBefore, Some(Op::UpdateAfter))
            }
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
                (Op::Delete, None)
            }
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(MyError::Decode {
                    table: mapping.name.clone(),
                    column: String::new(),
                    message: "a partial JSON update (binlog_row_value_options = PARTIAL_JSON) carries no whole row; SET GLOBAL binlog_row_value_options = ''".into(),
                })
            }
        };
        let per_row = if second.is_some() { 2 } else { 1 };
        let before_columns: Option<Vec<bool>> = event
            .columns_before_image()
            .map(|bits| bits.iter().by_vals().collect());
        let after_columns: Option<Vec<bool>> = event
            .columns_after_image()
            .map(|bits| bits.iter().by_vals().collect());
        let mut rows = Vec::new();
        for row in event.rows(&mapping.tme) {
            rows.push(row.map_err(|e| MyError::Decode {
                table: mapping.name.clone(),
                column: String::new(),
                message: format!("a row event cannot be read: {e}"),
            })?);
        }
        let share = event_bytes / rows.len().max(1) as u64;
        for (before, after) in rows {
            if self
                .building
                .as_ref()
                .is_some_and(|b| b.table != table || b.ops.len() + per_row > self.batch_size)
            {
                flush(&mut self.building, &self.tables, position, out)?;
            }
            let mapping = &self.mappings[&id];
            let types = &self.tables[table].types;
            let charsets = &self.charsets;
            let building = self.building.get_or_insert_with(|| Building {
                table,
                columns: types
                    .iter()
                    .map(|ty| ColumnBuilder::new(*ty, INITIAL_ROWS))
                    .collect(),
                ops: Vec::new(),
                unchanged: vec![None; types.len()],
                bytes: 0,
                filled: vec![false; types.len()],
            });
            building.bytes += share;
            match second {
                None if first == Op::Insert => append(
                    building,
                    mapping,
                    after,
                    after_columns.as_deref(),
                    first,
                    charsets,
                )?,
                None => append(
                    building,
                    mapping,
                    before,
                    before_columns.as_deref(),
                    first,
                    charsets,
                )?,
                Some(then) => {
                    append(
                        building,
                        mapping,
                        before,
                        before_columns.as_deref(),
                        first,
                        charsets,
                    )?;
                    append(
                        building,
                        mapping,
                        after,
                        after_columns.as_deref(),
                        then,
                        charsets,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Ends the batch being gathered (at a commit, or before a truncate).
    pub(crate) fn flush(
        &mut self,
        position: &Position,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), MyError> {
        flush(&mut self.building, &self.tables, position, out)
    }
}

/// How values of a binlog column of type `arrives` become values of `expected`.
fn conversion(
    arrives: ColumnType,
    expected: MyType,
    charset: Option<Charset>,
    members: Option<Vec<Vec<u8>>>,
    metadata: &[u8],
) -> Result<Convert, String> {
    use ColumnType::*;
    if expected == MyType::Binary && arrives == MYSQL_TYPE_STRING {
        // The declared length, as the server encodes it for a fixed-length string.
        let length = match metadata {
            [first, second, ..] if first & 0x30 != 0x30 => {
                usize::from(*second) | (usize::from((first & 0x30) ^ 0x30) << 4)
            }
            [_, second, ..] => usize::from(*second),
            _ => 0,
        };
        return Ok(Convert::PadBinary(length));
    }
    let to_utf8 = |members: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        match charset {
            Some(Charset::Latin1) => members.iter().map(|m| latin1_to_utf8(m)).collect(),
            _ => members,
        }
    };
    let fits = match expected {
        MyType::Int {
            bits: 24,
            unsigned: false,
        } => {
            return if arrives == MYSQL_TYPE_INT24 {
                Ok(Convert::SignedMedium)
            } else {
                Err(changed(arrives, expected))
            }
        }
        MyType::Int { .. } => matches!(
            arrives,
            MYSQL_TYPE_TINY
                | MYSQL_TYPE_SHORT
                | MYSQL_TYPE_INT24
                | MYSQL_TYPE_LONG
                | MYSQL_TYPE_LONGLONG
        ),
        MyType::Decimal { .. } => matches!(arrives, MYSQL_TYPE_NEWDECIMAL),
        MyType::Float | MyType::Double => matches!(arrives, MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE),
        MyType::Date => matches!(arrives, MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE),
        MyType::DateTime => matches!(arrives, MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2),
        MyType::Time => matches!(arrives, MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2),
        MyType::Timestamp => {
            return if matches!(arrives, MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2) {
                Ok(Convert::Timestamp)
            } else {
                Err(changed(arrives, expected))
            }
        }
        MyType::Year => {
            return if arrives == MYSQL_TYPE_YEAR {
                Ok(Convert::Year)
            } else {
                Err(changed(arrives, expected))
            }
        }
        MyType::Bit { .. } => arrives == MYSQL_TYPE_BIT,
        MyType::Binary => matches!(
            arrives,
            MYSQL_TYPE_STRING
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_BLOB
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB
        ),
        MyType::Json if arrives == MYSQL_TYPE_JSON => true,
        MyType::Text | MyType::Json => {
            return match arrives {
                MYSQL_TYPE_ENUM => Ok(Convert::Enum(to_utf8(members.ok_or(
                    "the binlog lists no ENUM members; ferry needs binlog_row_metadata = FULL",
                )?))),
                MYSQL_TYPE_SET => Ok(Convert::Set(to_utf8(members.ok_or(
                    "the binlog lists no SET members; ferry needs binlog_row_metadata = FULL",
                )?))),
                MYSQL_TYPE_STRING
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_BLOB
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB => Ok(Convert::Text(charset.unwrap_or(Charset::Utf8))),
                MYSQL_TYPE_JSON => Ok(Convert::AsIs),
                _ => Err(changed(arrives, expected)),
            };
        }
    };
    if fits {
        Ok(Convert::AsIs)
    } else {
        Err(changed(arrives, expected))
    }
}

fn changed(arrives: ColumnType, expected: MyType) -> String {
    format!(
        "the column changed type at the source (the binlog now sends {arrives:?}, ferry decodes it as {expected:?}); adapt the rules and the target, then restart the job"
    )
}

/// Turns one binlog value into the value a snapshot would have read.
fn convert(
    value: BinlogValue<'_>,
    how: &Convert,
    charsets: &HashMap<u16, String>,
) -> Result<Value, String> {
    let value = match value {
        BinlogValue::Value(value) => value,
        BinlogValue::Jsonb(_) => {
            return Value::try_from(value).map_err(|e| format!("a JSON value: {e}"));
        }
        BinlogValue::JsonDiff(_) => {
            return Err("a partial JSON update carries no whole value; SET GLOBAL binlog_row_value_options = ''".into())
        }
    };
    if matches!(value, Value::NULL) {
        return Ok(value);
    }
    Ok(match (how, value) {
        (Convert::AsIs, value) => value,
        (Convert::Text(Charset::Utf8 | Charset::Binary), value) => value,
        (Convert::Text(Charset::Latin1), Value::Bytes(bytes)) => {
            Value::Bytes(latin1_to_utf8(&bytes))
        }
        (Convert::Text(Charset::Other(collation)), _) => {
            let name = charsets
                .get(collation)
                .cloned()
                .unwrap_or_else(|| format!("collation {collation}"));
            return Err(format!(
                "its character set ({name}) is not read from the binlog (ferry reads utf8mb4, utf8mb3, ascii and latin1); convert it: ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4"
            ));
        }
        (Convert::Timestamp, Value::Int(seconds)) => timestamp(seconds, 0),
        (Convert::Timestamp, Value::Bytes(text)) => {
            let text = String::from_utf8_lossy(&text);
            let (seconds, fraction) = text.split_once('.').unwrap_or((&text, ""));
            let seconds: i64 = seconds
                .parse()
                .map_err(|_| format!("{text} is not a TIMESTAMP"))?;
            let micros = if fraction.is_empty() {
                0
            } else {
                format!("{fraction:0<6}")[..6]
                    .parse()
                    .map_err(|_| format!("{text} is not a TIMESTAMP"))?
            };
            timestamp(seconds, micros)
        }
        (Convert::PadBinary(length), Value::Bytes(mut bytes)) => {
            if bytes.len() < *length {
                bytes.resize(*length, 0);
            }
            Value::Bytes(bytes)
        }
        (Convert::SignedMedium, Value::Int(v)) if v >= 1 << 23 => Value::Int(v - (1 << 24)),
        (Convert::SignedMedium, value) => value,
        (Convert::Year, Value::Bytes(text)) => {
            let year: i64 = String::from_utf8_lossy(&text)
                .parse()
                .map_err(|_| "a bad YEAR".to_string())?;
            // The binlog stores YEAR as years after 1900; 0 is the zero year 0000.
            Value::Int(if year == 1900 { 0 } else { year })
        }
        (Convert::Enum(members), Value::Int(number)) => match number {
            0 => Value::Bytes(Vec::new()),
            n => Value::Bytes(
                members
                    .get(n as usize - 1)
                    .cloned()
                    .ok_or_else(|| format!("ENUM member {n} is not listed"))?,
            ),
        },
        (Convert::Set(members), Value::Bytes(mask)) => {
            let mut text = Vec::new();
            for (index, member) in members.iter().enumerate() {
                let set = mask
                    .get(index / 8)
                    .is_some_and(|byte| byte & (1 << (index % 8)) != 0);
                if set {
                    if !text.is_empty() {
                        text.push(b',');
                    }
                    text.extend_from_slice(member);
                }
            }
            Value::Bytes(text)
        }
        (how, value) => return Err(format!("{value:?} does not fit {how:?}")),
    })
}

/// A TIMESTAMP as the UTC date and time a snapshot session (in UTC) reads; 0 is the zero
/// timestamp.
fn timestamp(seconds: i64, micros: u32) -> Value {
    if seconds == 0 && micros == 0 {
        return Value::Date(0, 0, 0, 0, 0, 0, 0);
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let time = seconds.rem_euclid(86_400);
    Value::Date(
        year as u16,
        month as u8,
        day as u8,
        (time / 3600) as u8,
        (time / 60 % 60) as u8,
        (time % 60) as u8,
        micros,
    )
}

/// MySQL's latin1 (Windows-1252, with its five unassigned bytes kept as C1 controls) as UTF-8.
pub(crate) fn latin1_to_utf8(bytes: &[u8]) -> Vec<u8> {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}',
        '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}',
        '\u{178}',
    ];
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        text.push(match byte {
            0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
            other => char::from(other),
        });
    }
    text.into_bytes()
}

/// Appends one row image; `present` says which binlog columns it carries (all when `None`).
fn append(
    building: &mut Building,
    mapping: &Mapping,
    row: Option<BinlogRow>,
    present: Option<&[bool]>,
    op: Op,
    charsets: &HashMap<u16, String>,
) -> Result<(), MyError> {
    let Some(row) = row else {
        return Err(MyError::Decode {
            table: mapping.name.clone(),
            column: String::new(),
            message: format!("a {op:?} row without its image"),
        });
    };
    let mut values = row.unwrap().into_iter();
    let row_index = building.ops.len();
    building.filled.fill(false);
    for (position, output) in mapping.outputs.iter().enumerate() {
        if !present.is_none_or(|p| p.get(position).copied().unwrap_or(false)) {
            continue;
        }
        let value = values.next().ok_or_else(|| MyError::Decode {
            table: mapping.name.clone(),
            column: mapping.names[position].clone(),
            message: "a row image is shorter than its column list".into(),
        })?;
        let Some(output) = *output else { continue };
        let value = convert(value, &mapping.converts[position], charsets)
            .and_then(|value| building.columns[output].append(&value))
            .map_err(|message| MyError::Decode {
                table: mapping.name.clone(),
                column: mapping.names[position].clone(),
                message,
            });
        value?;
        building.filled[output] = true;
    }
    for output in 0..building.columns.len() {
        if building.filled[output] {
            if let Some(mask) = &mut building.unchanged[output] {
                mask.push(false);
            }
            continue;
        }
        // A column the image leaves out (binlog_row_image other than FULL): an update keeps
        // the target's value; a key-only old image needs no other value.
        building.columns[output]
            .append(&Value::NULL)
            .map_err(|message| MyError::Decode {
                table: mapping.name.clone(),
                column: String::new(),
                message,
            })?;
        match op {
            Op::UpdateAfter => building.unchanged[output]
                .get_or_insert_with(|| vec![false; row_index])
                .push(true),
            Op::Insert => {
                return Err(MyError::Decode {
                    table: mapping.name.clone(),
                    column: String::new(),
                    message: "an inserted row leaves columns out; ferry needs binlog_row_image = FULL (SET GLOBAL binlog_row_image = FULL)".into(),
                })
            }
            _ => {
                if let Some(mask) = &mut building.unchanged[output] {
                    mask.push(false);
                }
            }
        }
    }
    building.ops.push(op as u8);
    Ok(())
}

/// Ends the batch being gathered.
fn flush(
    building: &mut Option<Building>,
    tables: &[StreamTable],
    position: &Position,
    out: &mut Vec<ChangeEvent>,
) -> Result<(), MyError> {
    let Some(mut building) = building.take() else {
        return Ok(());
    };
    let table = &tables[building.table];
    let arrays = building
        .columns
        .iter_mut()
        .map(ColumnBuilder::finish)
        .collect::<Result<Vec<ArrayRef>, String>>()
        .map_err(|message| MyError::Decode {
            table: table.id.to_string(),
            column: String::new(),
            message,
        })?;
    let batch = ChangeBatch::changes(
        Arc::clone(&table.id),
        Arc::clone(&table.schema),
        arrays,
        building.ops,
        building.unchanged,
        position.clone(),
        building.bytes,
    )
    .map_err(|e| MyError::Decode {
        table: table.id.to_string(),
        column: String::new(),
        message: format!("rows do not fit the table's schema: {e}"),
    })?;
    out.push(ChangeEvent::Rows(batch));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_windows_1252() {
        assert_eq!(latin1_to_utf8(b"caf\xe9 \x80"), "café €".as_bytes());
        assert_eq!(latin1_to_utf8(b"\x81\x9f"), "\u{81}Ÿ".as_bytes());
    }

    #[test]
    fn binlog_values_become_snapshot_values() {
        let none = HashMap::new();
        let at = |v, how: &Convert| convert(BinlogValue::Value(v), how, &none).unwrap();
        assert_eq!(
            at(Value::Bytes(b"86400.5".to_vec()), &Convert::Timestamp),
            Value::Date(1970, 1, 2, 0, 0, 0, 500_000)
        );
        assert_eq!(
            at(Value::Int(0), &Convert::Timestamp),
            Value::Date(0, 0, 0, 0, 0, 0, 0)
        );
        assert_eq!(
            at(Value::Int(16_777_215), &Convert::SignedMedium),
            Value::Int(-1)
        );
        assert_eq!(
            at(Value::Int(8_388_607), &Convert::SignedMedium),
            Value::Int(8_388_607)
        );
        assert_eq!(
            at(Value::Bytes(b"1900".to_vec()), &Convert::Year),
            Value::Int(0)
        );
        assert_eq!(
            at(Value::Bytes(b"2155".to_vec()), &Convert::Year),
            Value::Int(2155)
        );
        let members = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        assert_eq!(
            at(Value::Int(2), &Convert::Enum(members.clone())),
            Value::Bytes(b"b".to_vec())
        );
        assert_eq!(
            at(Value::Int(0), &Convert::Enum(members.clone())),
            Value::Bytes(Vec::new())
        );
        assert_eq!(
            at(Value::Bytes(vec![0b101]), &Convert::Set(members.clone())),
            Value::Bytes(b"a,c".to_vec())
        );
        assert!(convert(
            BinlogValue::Value(Value::Int(9)),
            &Convert::Enum(members),
            &none
        )
        .is_err());
        let error = convert(
            BinlogValue::Value(Value::Bytes(b"x".to_vec())),
            &Convert::Text(Charset::Other(28)),
            &HashMap::from([(28, "gbk".to_string())]),
        )
        .unwrap_err();
        assert!(error.contains("gbk") && error.contains("CONVERT TO CHARACTER SET"));
    }
}
