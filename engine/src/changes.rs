//! The change-feed contract: a source's log of committed changes (PostgreSQL's WAL through
//! logical replication), read in commit order from a position, with a snapshot that matches
//! the feed's start exactly so a full migration hands off to it with no gap and no overlap.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::position::Position;
use crate::source::{Snapshot, SnapshotRequest, SnapshotTable};

/// What a change feed is to follow.
#[derive(Clone, Debug)]
pub struct ChangeRequest {
    /// The feed's name at the source, unique per job (a PostgreSQL replication slot and
    /// publication are named after it).
    pub name: String,
    /// What the job is (see `Plan::definition` in the binary): a source that keeps feeds
    /// records it beside the feed and refuses to hand the feed to another definition.
    pub definition: String,
    /// The tables to follow and the columns to decode, as the snapshot reads them.
    pub tables: Vec<SnapshotTable>,
    /// Rows per batch at most; a batch never spans two tables or two transactions.
    pub batch_size: usize,
    /// Indexes into `tables` of the tables some rule filters with a WHERE: an update can
    /// move a row into the target, so it must carry every value of the row.
    pub filtered: Vec<usize>,
}

/// One event of a change stream, in source commit order.
#[derive(Clone, Debug)]
pub enum ChangeEvent {
    /// Changed rows of one table within the current transaction, in source order. An update
    /// is an [`crate::Op::UpdateAfter`] row, preceded by its [`crate::Op::UpdateBefore`] row
    /// in the same batch when the source sent the old image (always when the key changed).
    Rows(ChangeBatch),
    /// Tables emptied within the current transaction (indexes into the request's tables).
    Truncate(Vec<usize>),
    /// The current transaction committed: every event since the previous `Commit` belongs to
    /// it, and `position` (larger than any before) is where to resume after it.
    Commit {
        /// The transaction's position.
        position: Position,
        /// When the source committed it.
        committed_at: SystemTime,
    },
    /// Nothing to apply; the source has written its log up to `position` as of `at`. Lets lag
    /// be measured while the source is idle.
    Idle {
        /// How far the source's log reaches.
        position: Position,
        /// The source's clock when it said so.
        at: SystemTime,
    },
}

/// A change feed that exists at the source, not yet streaming.
#[async_trait]
pub trait ChangeFeed: Send {
    /// Where the feed begins when this call created it (`None` when it existed already): a
    /// snapshot from [`ChangeFeed::snapshot`] holds exactly the changes committed before it.
    /// It may move forward when that snapshot is opened (a MySQL feed takes its exact point
    /// under the snapshot's lock); the caller records it again then.
    fn consistent_point(&self) -> Option<Position>;

    /// Opens the snapshot that matches the feed's start. Only a feed created by this call has
    /// one, and only until [`ChangeFeed::start`]; it fails otherwise. The snapshot must be
    /// read completely before `start` is called.
    async fn snapshot(&mut self, request: SnapshotRequest) -> Result<Arc<dyn Snapshot>>;

    /// Starts streaming the transactions that commit after `from`: the last position
    /// applied, or where the feed began as an earlier run recorded it (all since the feed's
    /// start when `None`). A transaction at or before `from` may still be delivered again
    /// after a crash; the caller skips it by position.
    async fn start(self: Box<Self>, from: Option<Position>) -> Result<Box<dyn ChangeStream>>;
}

/// A stream of committed changes.
#[async_trait]
pub trait ChangeStream: Send {
    /// The next event; waits for the source. `None` once the stream was stopped. Fails with
    /// an external error when the connection is lost (the caller reconnects from its last
    /// applied position).
    async fn next(&mut self) -> Result<Option<ChangeEvent>>;

    /// Tells the source that every transaction up to `position` is durably applied, so it may
    /// recycle its log up to there. Never called with a position not yet committed at the
    /// sink; never moves backward.
    fn acknowledge(&mut self, position: &Position);
}
