//! Table identities and schemas as the engine sees them: an Arrow schema plus the primary key
//! and, in field metadata, the column's type as the source declared it.

use std::fmt;

use arrow::datatypes::SchemaRef;

/// Field-metadata key holding the column's type as the source declared it
/// (`numeric(40,5)`, `character varying(20)`), so a sink of the same engine can recreate it.
pub const SOURCE_TYPE_KEY: &str = "ferry.source_type";
/// Field-metadata key naming the engine of [`SOURCE_TYPE_KEY`] (`postgres`).
pub const SOURCE_ENGINE_KEY: &str = "ferry.source_engine";
/// Field-metadata key marking how a UTF-8 column is to be read: `json`, `jsonb` or `numeric`
/// (an unconstrained numeric carried exactly as text).
pub const TEXT_KIND_KEY: &str = "ferry.text_kind";
/// Field-metadata key set on a column whose type the source cannot carry; the value says
/// why. Such a column is listed in the catalog (typed `Null`) but may not be selected.
pub const UNSUPPORTED_KEY: &str = "ferry.unsupported";
/// Arrow's canonical extension-name key; ferry sets it to [`UUID_EXTENSION`] on uuid columns.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Arrow's canonical extension name for UUIDs stored as `FixedSizeBinary(16)`.
pub const UUID_EXTENSION: &str = "arrow.uuid";

/// A table's name: its schema (PostgreSQL) or database (MySQL) and its name.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TableId {
    /// The schema (PostgreSQL) or database (MySQL) holding the table.
    pub schema: String,
    /// The table's name within it.
    pub name: String,
}

impl TableId {
    /// A table id from its parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> TableId {
        TableId {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A table's shape: columns as an Arrow schema, the primary key and a size estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    /// The table's name.
    pub id: TableId,
    /// The columns, in table order, with source types in field metadata.
    pub columns: SchemaRef,
    /// Indexes into `columns` of the primary key, in key order; empty when there is none.
    pub primary_key: Vec<usize>,
    /// The source's estimate of the row count, when it has one.
    pub estimated_rows: Option<u64>,
}

impl TableSchema {
    /// The index of the column called `name`, exactly.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.fields().iter().position(|f| f.name() == name)
    }
}
