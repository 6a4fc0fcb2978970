//! Reading the catalog of a PostgreSQL database: user tables, columns with their types, the
//! primary key and the planner's row estimate, in one query.

use std::sync::Arc;

use arrow::datatypes::Schema;
use tokio_postgres::Client;

use ferry_engine::{TableId, TableSchema};

use crate::config::PgEndpoint;
use crate::error::PgError;
use crate::types::{source_field, PgType};

/// Every ordinary and partitioned table (not partitions: their parent reads them) outside the
/// system schemas. Domains are resolved to their base type.
const CATALOG_QUERY: &str = "
SELECT n.nspname::text, c.relname::text, c.reltuples::float8,
       a.attname::text,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END AS type_oid,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       format_type(a.atttypid, a.atttypmod) AS declared,
       a.attnotnull,
       array_position(i.indkey::int2[], a.attnum)::int4 AS key_position
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_ferry')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
ORDER BY n.nspname, c.relname, a.attnum";

/// Loads the catalog of the database `client` is connected to.
pub(crate) async fn load_catalog(
    client: &Client,
    endpoint: &PgEndpoint,
) -> Result<Vec<TableSchema>, PgError> {
    let rows = client
        .query(CATALOG_QUERY, &[])
        .await
        .map_err(endpoint.query_error("reading the catalog"))?;
    let mut tables: Vec<TableSchema> = Vec::new();
    let mut fields = Vec::new();
    let mut keys: Vec<(i32, usize)> = Vec::new();
    let mut current: Option<(TableId, Option<u64>)> = None;
    let mut finish = |current: Option<(TableId, Option<u64>)>,
                      fields: &mut Vec<_>,
                      keys: &mut Vec<(i32, usize)>| {
        if let Some((id, estimated_rows)) = current {
            keys.sort();
            tables.push(TableSchema {
                id,
                columns: Arc::new(Schema::new(std::mem::take(fields))),
                primary_key: keys.drain(..).map(|(_, column)| column).collect(),
                estimated_rows,
            });
        }
    };
    for row in rows {
        let schema: String = row.get(0);
        let name: String = row.get(1);
        if current
            .as_ref()
            .is_none_or(|(id, _)| id.schema != schema || id.name != name)
        {
            finish(current.take(), &mut fields, &mut keys);
            let estimate: f64 = row.get(2);
            let estimate = (estimate >= 0.0).then_some(estimate as u64);
            current = Some((TableId::new(schema, name), estimate));
        }
        let column: String = row.get(3);
        let type_oid: u32 = row.get(4);
        let typmod: i32 = row.get(5);
        let declared: String = row.get(6);
        let not_null: bool = row.get(7);
        let key_position: Option<i32> = row.get(8);
        if let Some(position) = key_position {
            keys.push((position, fields.len()));
        }
        fields.push(source_field(
            &column,
            PgType::from_oid(type_oid, typmod),
            &declared,
            !not_null,
        ));
    }
    finish(current.take(), &mut fields, &mut keys);
    Ok(tables)
}
