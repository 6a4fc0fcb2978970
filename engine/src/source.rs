//! The source contract: discover the catalog, open one consistent snapshot split into parts,
//! read parts in parallel.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::batch::ChangeBatch;
use crate::changes::{ChangeFeed, ChangeRequest};
use crate::error::Result;
use crate::identity::ServerIdentity;
use crate::schema::TableSchema;

/// One table a snapshot reads.
#[derive(Clone, Debug)]
pub struct SnapshotTable {
    /// The table as the catalog describes it.
    pub table: TableSchema,
    /// Indexes into `table.columns` of the columns to read, in the order batches carry them.
    pub columns: Vec<usize>,
    /// A WHERE condition in the source's own SQL, already checked to be safe to run there;
    /// rows it rejects are not read at all.
    pub filter: Option<String>,
}

impl SnapshotTable {
    /// The schema of the batches read for this table (the selected columns, in order).
    pub fn batch_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .columns
            .iter()
            .map(|&i| self.table.columns.field(i).clone())
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }
}

/// What a snapshot is to read and how finely to split it.
#[derive(Clone, Debug)]
pub struct SnapshotRequest {
    /// The tables, in the order parts refer to them.
    pub tables: Vec<SnapshotTable>,
    /// Rows per batch.
    pub batch_size: usize,
    /// How many parts will be read at once; a source splits large tables into at least this
    /// many parts where it can.
    pub parallelism: usize,
    /// The number of rows a part should hold at most, where the source can split a table.
    pub chunk_rows: u64,
    /// Parts planned by an earlier run, to be read again as they are instead of planning
    /// anew (their `table` indexes refer to `tables`).
    pub parts: Option<Vec<SnapshotPart>>,
    /// Read each table as one part, in primary-key order (byte order for text), for
    /// comparing two tables row by row.
    pub ordered: bool,
}

/// One independently readable piece of a snapshot: a whole table or a key range of one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotPart {
    /// Index of the part in the snapshot's plan.
    pub index: u32,
    /// Index into [`SnapshotRequest::tables`].
    pub table: usize,
    /// What the part covers, for logs (`id >= 0 AND id < 250000`); never executed.
    pub description: String,
    /// Which rows of the table the part holds (`None`: all of them), as typed bounds that
    /// the source renders into its own SQL when it reads the part. Kept in the checkpoint,
    /// so a resumed run reads exactly the parts first planned — and nothing read from a
    /// checkpoint is ever run as SQL.
    pub range: Option<PartRange>,
}

/// The rows of a table one snapshot part holds, between typed bounds; an absent bound is
/// open, so values beyond what planning saw are still read by exactly one part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PartRange {
    /// Rows whose primary key (one integer column) is at least `from` and below `to`.
    Key {
        /// The lowest key of the part, included.
        from: Option<i128>,
        /// The first key past the part, excluded.
        to: Option<i128>,
    },
    /// Rows stored in the table's physical blocks from `from` to before `to` (PostgreSQL
    /// `ctid`: within one snapshot each visible row version is in exactly one block).
    Blocks {
        /// The first block, included.
        from: Option<u32>,
        /// The first block past the part, excluded.
        to: Option<u32>,
    },
}

impl SnapshotPart {
    /// The error for a part whose table is not among the snapshot's `tables` (a damaged
    /// checkpoint): refused, never guessed at.
    pub fn unknown_table(&self, tables: usize) -> crate::Error {
        crate::Error::Checkpoint {
            path: "the job's checkpoint".into(),
            message: format!(
                "part {} names table {} of {tables}; `ferry drop` the job and run it again",
                self.index, self.table
            ),
        }
    }
}

impl PartRange {
    /// The bounds as `(from, to)` over one number line.
    pub fn bounds(&self) -> (Option<i128>, Option<i128>) {
        match *self {
            PartRange::Key { from, to } => (from, to),
            PartRange::Blocks { from, to } => (from.map(i128::from), to.map(i128::from)),
        }
    }

    /// The part's rows as a condition on `column` (already quoted for the source), each
    /// bound rendered by `bound` (a number, or a literal of the source's type for it).
    pub fn condition(&self, column: &str, bound: impl Fn(i128) -> String) -> String {
        let (from, to) = self.bounds();
        let mut conditions = Vec::with_capacity(2);
        if let Some(from) = from {
            conditions.push(format!("{column} >= {}", bound(from)));
        }
        if let Some(to) = to {
            conditions.push(format!("{column} < {}", bound(to)));
        }
        if conditions.is_empty() {
            "TRUE".to_string()
        } else {
            conditions.join(" AND ")
        }
    }

    /// The range in words, for logs.
    pub fn describe(&self, column: &str) -> String {
        self.condition(column, |bound| bound.to_string())
    }
}

/// Checks parts as a checkpoint holds them: numbered in order, each of a table among the
/// `tables`, and together splitting every table into ranges that cover it exactly once (one
/// whole-table part, or key or block ranges from an open start to an open end, each
/// beginning where the one before ends). A checkpoint that fails this was damaged or
/// edited, and reading it would skip or repeat rows.
pub fn check_tiling(parts: &[SnapshotPart], tables: usize) -> std::result::Result<(), String> {
    for (position, part) in parts.iter().enumerate() {
        if part.index as usize != position {
            return Err(format!(
                "part {position} of the snapshot is numbered {}",
                part.index
            ));
        }
        if part.table >= tables {
            return Err(format!(
                "part {} belongs to table {} of {tables}",
                part.index, part.table
            ));
        }
    }
    for table in 0..tables {
        let ranges: Vec<Option<PartRange>> = parts
            .iter()
            .filter(|p| p.table == table)
            .map(|p| p.range)
            .collect();
        let gap = || {
            Err(format!(
                "the parts of table {table} do not cover it exactly once"
            ))
        };
        match ranges.as_slice() {
            [] => return gap(),
            [None] => continue,
            _ if ranges.iter().any(Option::is_none) => return gap(),
            _ => {}
        }
        let blocks = matches!(ranges[0], Some(PartRange::Blocks { .. }));
        if ranges
            .iter()
            .any(|r| matches!(r, Some(PartRange::Blocks { .. })) != blocks)
        {
            return gap();
        }
        let mut bounds: Vec<(Option<i128>, Option<i128>)> =
            ranges.iter().flatten().map(PartRange::bounds).collect();
        // Open starts first, then by start.
        bounds.sort_by_key(|(from, _)| (from.is_some(), *from));
        let contiguous = bounds.windows(2).all(|pair| match (pair[0].1, pair[1].0) {
            (Some(end), Some(start)) => end == start,
            _ => false,
        });
        let ends_open = bounds.first().is_some_and(|b| b.0.is_none())
            && bounds.last().is_some_and(|b| b.1.is_none());
        if !contiguous || !ends_open {
            return gap();
        }
    }
    Ok(())
}

/// Splits `[start, start + span)` into `parts` contiguous ranges of equal width: the first
/// open below, the last open above. `None` for a single part (the whole table).
pub fn split_range(
    start: i128,
    span: i128,
    parts: i128,
) -> Vec<Option<(Option<i128>, Option<i128>)>> {
    if parts <= 1 || span <= 0 {
        return vec![None];
    }
    let step = (span + parts - 1) / parts;
    (0..parts)
        .map(|i| {
            let low = start + i * step;
            Some((
                (i > 0).then_some(low),
                (i < parts - 1).then_some(low + step),
            ))
        })
        .collect()
}

/// The SQL a source can evaluate a rule's filter in (push-down: the source then sends only
/// the rows the filter keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterDialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

/// The source side of a migration.
#[async_trait]
pub trait Source: Send + Sync {
    /// The SQL this source evaluates pushed-down filters in; `None` when it runs no SQL
    /// (ferry then filters every row itself).
    fn filter_dialect(&self) -> Option<FilterDialect>;

    /// Whether an ordered snapshot ([`SnapshotRequest::ordered`]) comes in primary-key order,
    /// so that `ferry verify` can merge it with the other side; a source that cannot (files)
    /// is compared as a multiset of rows.
    fn reads_in_key_order(&self) -> bool;

    /// The server and database this source reads, as the server reports it (see
    /// [`ServerIdentity`]). Connects; changes nothing.
    async fn identity(&self) -> Result<ServerIdentity>;

    /// Whether a connection to the source is encrypted and how the server's certificate is
    /// checked, in words, for `ferry check`. Connects; changes nothing.
    async fn transport(&self) -> Result<String> {
        Ok("local files (no network connection)".into())
    }

    /// Every user table visible to the source with columns, primary key and size estimate.
    /// Fails with a user error when a column's type cannot be carried only once that column
    /// is selected (see [`Snapshot`]), never here.
    async fn catalog(&self) -> Result<Vec<TableSchema>>;

    /// Opens one consistent snapshot over all requested tables: every part, read by any
    /// worker, sees the same point in the source's history. Fails with a user error naming
    /// the column when a selected column's type cannot be carried.
    async fn snapshot(&self, request: SnapshotRequest) -> Result<Arc<dyn Snapshot>>;

    /// Checks that the source can feed changes of `request`'s tables (the log settings,
    /// privileges, every table keyed): a user error names each table or setting and the
    /// statement that fixes it. Changes nothing.
    async fn check_changes(&self, request: &ChangeRequest) -> Result<()>;

    /// Opens the change feed `request.name`, creating it when it does not exist. A feed
    /// created here comes with the matching snapshot (see [`ChangeFeed`]).
    async fn changes(&self, request: ChangeRequest) -> Result<Box<dyn ChangeFeed>>;

    /// Removes the change feed `name` and everything the source keeps for it; returns what
    /// was removed, in words. Removing a feed that does not exist is not an error.
    ///
    /// With `definition`, a feed recorded for another job definition is not removed: the
    /// error names it ([`crate::Error::NameTaken`]); without (`ferry drop --force`) it is.
    async fn drop_changes(&self, name: &str, definition: Option<&str>) -> Result<Vec<String>>;

    /// How many bytes of log the source keeps for the feed `name` (it cannot recycle them
    /// until they are acknowledged), `None` when there is no such feed.
    async fn retained_log(&self, name: &str) -> Result<Option<u64>>;

    /// Whether the source itself keeps each change feed and its log (a PostgreSQL
    /// replication slot). A MySQL feed is only a binlog position in the job's checkpoint:
    /// the server keeps its binlog by its own retention settings and knows no feeds.
    fn keeps_feeds(&self) -> bool {
        true
    }
}

/// An open, consistent snapshot. It stays valid until [`Snapshot::close`] or drop.
#[async_trait]
pub trait Snapshot: Send + Sync {
    /// The parts, in plan order. Each row of each table is in exactly one part.
    fn parts(&self) -> &[SnapshotPart];

    /// The schema of the batches read for table `table` (an index into the request).
    fn batch_schema(&self, table: usize) -> SchemaRef;

    /// Reads one part and sends its rows in batches of at most the request's batch size, in
    /// source order. Parts may be read concurrently. Waits when `out` is full (backpressure).
    /// Returns the number of rows read. On error, rows already sent stay sent: the caller
    /// must not commit the part.
    async fn read(&self, part: &SnapshotPart, out: mpsc::Sender<ChangeBatch>) -> Result<u64>;

    /// Releases the snapshot on the source. Reading after close fails.
    async fn close(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u32, table: usize, range: Option<(Option<i128>, Option<i128>)>) -> SnapshotPart {
        SnapshotPart {
            index,
            table,
            description: String::new(),
            range: range.map(|(from, to)| PartRange::Key { from, to }),
        }
    }

    #[test]
    fn parts_must_cover_each_table_exactly_once() {
        let good = [
            part(0, 0, Some((None, Some(10)))),
            part(1, 0, Some((Some(10), Some(20)))),
            part(2, 0, Some((Some(20), None))),
            part(3, 1, None),
        ];
        check_tiling(&good, 2).unwrap();
        let mut dropped = good.to_vec();
        dropped.remove(1);
        for part in dropped.iter_mut().enumerate() {
            part.1.index = part.0 as u32;
        }
        assert!(check_tiling(&dropped, 2).unwrap_err().contains("table 0"));
        let mut narrowed = good.to_vec();
        narrowed[2].range = Some(PartRange::Key {
            from: Some(20),
            to: Some(30),
        });
        assert!(check_tiling(&narrowed, 2).is_err());
        let mut overlapping = good.to_vec();
        overlapping[1].range = Some(PartRange::Key {
            from: Some(5),
            to: Some(20),
        });
        assert!(check_tiling(&overlapping, 2).is_err());
        assert!(check_tiling(&good[..3], 2).is_err(), "table 1 has no part");
        assert!(
            check_tiling(&good, 1).is_err(),
            "a part of a table not planned"
        );
        let mut renumbered = good.to_vec();
        renumbered[0].index = 7;
        assert!(check_tiling(&renumbered, 2).is_err());
    }
}
