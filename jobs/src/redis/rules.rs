//! A Redis job's rules, compiled: every source database is a table — `db0`, `db1`, … in
//! schema `redis` — whose rows are keys, and keys that streamed commands touch, with the
//! columns
//!
//! | column    | type  | holds                                                            |
//! |-----------|-------|------------------------------------------------------------------|
//! | `db`      | BIGINT| the source database                                               |
//! | `key`     | TEXT  | the key (invalid UTF-8 replaced by U+FFFD); NULL for `FLUSHDB`    |
//! | `type`    | TEXT  | `string`, `list`, `set`, `zset`, `hash`, `stream`; NULL for a command on any type (`DEL`, `EXPIRE`) |
//! | `command` | TEXT  | the command, upper case; NULL in the full copy                    |
//!
//! so that `SELECT * FROM db0 WHERE key LIKE 'user:%'` selects keys,
//! `INSERT INTO db3 SELECT * FROM db0` moves a database, and `WHERE command <> 'FLUSHALL'` leaves a command out. The
//! rules' WHERE runs in DataFusion over Arrow batches of these rows, as the rules of database
//! jobs do; a row stays behind only when the condition is false (NULL lets it through, see
//! [`ferry_redis::rules`]). Values and expiry times are not columns: commands change parts of
//! values (`APPEND`, `HINCRBY`) and set expiries apart from them, so a condition on them
//! could select a key in the full copy and then lose its commands, or the other way round.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use ferry_engine::{Error, TableId, TableSchema};
use ferry_redis::rules::{KeyRow, Selector};
use ferry_sql::{resolve_rules, Rule, RuleConfig, SqlError};
use ferry_transforms::{Compiler, RuleTransform};

/// The schema the rules' source tables and the target databases are named in.
pub const SCHEMA: &str = "redis";

/// The columns of a key row.
fn key_columns() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("db", DataType::Int64, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("type", DataType::Utf8, true),
        Field::new("command", DataType::Utf8, true),
    ]))
}

/// One rule as it applies to one source database.
#[derive(Debug)]
struct Route {
    transform: RuleTransform,
    target: u64,
}

/// The job's rules over keys.
#[derive(Debug)]
pub struct KeyRules {
    columns: SchemaRef,
    by_db: BTreeMap<u64, Vec<Route>>,
}

/// The database number of a table named `db<N>` in [`SCHEMA`], if below `databases`.
fn database_of(table: &TableId, databases: u64) -> Option<u64> {
    if table.schema != SCHEMA {
        return None;
    }
    let n: u64 = table.name.strip_prefix("db")?.parse().ok()?;
    (n < databases && table.name == format!("db{n}")).then_some(n)
}

impl KeyRules {
    /// Compiles `rules` for a source with `databases` databases.
    pub fn compile(rules: &[RuleConfig], databases: u64) -> Result<KeyRules, Error> {
        let columns = key_columns();
        let catalog: Vec<TableSchema> = (0..databases)
            .map(|n| TableSchema {
                id: TableId::new(SCHEMA, format!("db{n}")),
                columns: Arc::clone(&columns),
                primary_key: vec![1],
                estimated_rows: None,
            })
            .collect();
        let parsed = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| Rule::parse(index, &rule.sql))
            .collect::<Result<Vec<_>, _>>()?;
        let compiler = Compiler::new();
        let mut by_db: BTreeMap<u64, Vec<Route>> = BTreeMap::new();
        for rule in resolve_rules(&parsed, &catalog)? {
            let unsupported = |message: String| SqlError::RuleUnsupported {
                rule: rule.rule,
                message,
            };
            let whole =
                rule.columns.len() == columns.fields().len()
                    && rule.columns.iter().enumerate().all(|(i, c)| {
                        c.source_column == Some(i) && &c.name == columns.field(i).name()
                    });
            if !whole {
                return Err(unsupported(
                    "a Redis rule moves whole keys: write SELECT * (choose keys with WHERE, e.g. WHERE key LIKE 'user:%'; move a database with INSERT INTO db3 SELECT * FROM db0)".into(),
                )
                .into());
            }
            let target = database_of(&rule.target, databases).ok_or_else(|| {
                unsupported(format!(
                    "the target {} is not a database of the target Redis; name one of db0 … db{}",
                    rule.target,
                    databases - 1
                ))
            })?;
            let source = database_of(&rule.source.id, databases).expect("catalog names");
            let transform = compiler.compile(&rule, &columns, false)?;
            by_db
                .entry(source)
                .or_default()
                .push(Route { transform, target });
        }
        Ok(KeyRules { columns, by_db })
    }

    /// The rows of `rows` at `at`, as an Arrow batch.
    fn batch(&self, rows: &[KeyRow<'_>], at: &[usize]) -> Result<RecordBatch, String> {
        // Keys are bytes: valid UTF-8 (nearly always) goes in as it is, without a copy per key.
        let mut keys = StringBuilder::with_capacity(at.len(), at.len() * 16);
        for &i in at {
            match rows[i].key {
                Some(key) => keys.append_value(String::from_utf8_lossy(key)),
                None => keys.append_null(),
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                at.iter().map(|&i| rows[i].db as i64),
            )),
            Arc::new(keys.finish()),
            Arc::new(StringArray::from_iter(at.iter().map(|&i| rows[i].kind))),
            Arc::new(StringArray::from_iter(at.iter().map(|&i| rows[i].command))),
        ];
        RecordBatch::try_new(Arc::clone(&self.columns), columns).map_err(|e| e.to_string())
    }
}

impl Selector for KeyRules {
    fn route(&self, rows: &[KeyRow<'_>]) -> Result<Vec<Vec<u64>>, String> {
        let mut routes = vec![Vec::new(); rows.len()];
        let mut by_db: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            by_db.entry(row.db).or_default().push(i);
        }
        for (db, at) in by_db {
            let Some(rules) = self.by_db.get(&db) else {
                continue;
            };
            let batch = self.batch(rows, &at)?;
            for rule in rules {
                let condition = rule
                    .transform
                    .condition(&batch)
                    .map_err(|e| e.to_string())?;
                for (j, &i) in at.iter().enumerate() {
                    // Dropped only when false: NULL is a column the row does not have.
                    let passes = condition
                        .as_ref()
                        .is_none_or(|mask| mask.is_null(j) || mask.value(j));
                    if passes {
                        routes[i].push(rule.target);
                    }
                }
            }
        }
        for route in &mut routes {
            route.sort_unstable();
            route.dedup();
        }
        Ok(routes)
    }

    fn source_dbs(&self) -> Vec<u64> {
        self.by_db.keys().copied().collect()
    }

    fn sources_into(&self, target: u64) -> Vec<u64> {
        self.by_db
            .iter()
            .filter(|(_, routes)| routes.iter().any(|r| r.target == target))
            .map(|(&source, _)| source)
            .collect()
    }

    fn target_dbs(&self) -> Vec<u64> {
        let mut dbs: Vec<u64> = self.by_db.values().flatten().map(|r| r.target).collect();
        dbs.sort_unstable();
        dbs.dedup();
        dbs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &[&str]) -> Result<KeyRules, Error> {
        let configs: Vec<RuleConfig> = sql
            .iter()
            .map(|s| RuleConfig { sql: s.to_string() })
            .collect();
        KeyRules::compile(&configs, 16)
    }

    fn row<'a>(
        db: u64,
        key: Option<&'a str>,
        kind: Option<&'static str>,
        command: Option<&'a str>,
    ) -> KeyRow<'a> {
        KeyRow {
            db,
            key: key.map(str::as_bytes),
            kind,
            command,
        }
    }

    #[test]
    fn keys_filter_and_databases_move() {
        let rules = rules(&[
            "INSERT INTO db3 SELECT * FROM db0 WHERE key LIKE 'user:%' AND type = 'hash'",
            "SELECT * FROM db1 WHERE command IS DISTINCT FROM 'FLUSHDB'",
            "INSERT INTO db3 SELECT * FROM redis.db2",
        ])
        .unwrap();
        let rows = [
            row(0, Some("user:1"), Some("hash"), None),
            row(0, Some("user:1"), Some("string"), None),
            row(0, Some("order:1"), Some("hash"), None),
            // DEL of a hash: type NULL, the key decides.
            row(0, Some("user:2"), None, Some("DEL")),
            row(0, Some("order:2"), None, Some("DEL")),
            row(0, None, None, Some("FLUSHDB")),
            row(1, Some("x"), Some("string"), None),
            row(1, None, None, Some("FLUSHDB")),
            row(2, Some("y"), Some("set"), Some("SADD")),
            row(5, Some("z"), Some("string"), None),
        ];
        let routes = rules.route(&rows).unwrap();
        let want: [&[u64]; 10] = [&[3], &[], &[], &[3], &[], &[3], &[1], &[], &[3], &[]];
        assert_eq!(routes, want.map(|w| w.to_vec()));
        assert_eq!(rules.source_dbs(), [0, 1, 2]);
        assert_eq!(rules.target_dbs(), [1, 3]);
    }

    #[test]
    fn rules_that_cannot_apply_to_keys_are_refused_with_the_fix() {
        let error = |sql: &str| rules(&[sql]).unwrap_err().to_string();
        assert!(error("SELECT key FROM db0").contains("SELECT *"));
        assert!(error("INSERT INTO db99 SELECT * FROM db0").contains("db0 … db15"));
        assert!(error("SELECT * FROM db16").contains("unknown table"));
        assert!(error("SELECT * FROM db0 WHERE keyy = 'a'").contains("did you mean key?"));
        assert!(error("SELECT * FROM db0 WHERE key + 1").contains("rules[0]"));
    }

    #[test]
    fn a_pattern_selects_every_database() {
        let rules = rules(&["SELECT * FROM db* WHERE key NOT LIKE 'tmp:%'"]).unwrap();
        let rows = [
            row(7, Some("a"), Some("string"), None),
            row(7, Some("tmp:a"), Some("string"), None),
        ];
        assert_eq!(rules.route(&rows).unwrap(), [vec![7], vec![]]);
        assert_eq!(rules.target_dbs().len(), 16);
    }

    #[test]
    fn the_readme_rules_compile_and_route() {
        let rules = rules(&[
            "INSERT INTO db3 SELECT * FROM db0 WHERE key LIKE 'user:%'",
            "SELECT * FROM db1 WHERE command <> 'DEL'",
            "SELECT * FROM 'redis.db([2-9]|1[0-5])' WHERE type = 'hash'",
        ])
        .unwrap();
        let rows = [
            row(1, Some("a"), None, Some("DEL")),
            row(1, Some("a"), None, Some("SET")),
            row(12, Some("h"), Some("hash"), None),
            row(12, Some("s"), Some("string"), None),
            row(12, Some("s"), None, Some("EXPIRE")),
        ];
        let want: [&[u64]; 5] = [&[], &[1], &[12], &[], &[12]];
        assert_eq!(rules.route(&rows).unwrap(), want.map(|w| w.to_vec()));
        assert_eq!(rules.source_dbs(), (0..16).collect::<Vec<u64>>());
    }
}
