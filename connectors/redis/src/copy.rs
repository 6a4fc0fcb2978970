//! Moving a source Redis into a target: the RDB of a full resync written as native commands
//! (each key deleted first, then rebuilt slice by slice, its expiry set as an absolute
//! `PEXPIREAT`; function libraries loaded), then the source's command stream replayed in order — the stream a replica
//! executes, so the target converges on the source exactly as a replica would.
//!
//! The RDB is parsed on a blocking thread as its bytes arrive (bounded channels both ways), so
//! neither the RDB nor a big key is ever held whole.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use ferry_engine::RateLimit;

use tokio::sync::mpsc;

use crate::error::RedisError;
use crate::rdb::{Event, Kind, RdbReader, Values};
use crate::replica::{Replica, StreamCommand};
use crate::rules::{plan, KeyRow, Planned, Rules};
use crate::sink::RedisWriter;
use crate::status::MigrationStatus;

/// Batches of events the RDB parser may run ahead of the writer.
const BATCHES_AHEAD: usize = 4;

/// Events per batch handed from the parser thread to the writer: one hand-off per event
/// would cost a thread wake-up per key.
const BATCH_EVENTS: usize = 512;

/// Memory that closes a batch early, so a batch of big slices stays small: with
/// [`BATCHES_AHEAD`], what waits between parser and writer stays near a megabyte.
const BATCH_MEMORY: usize = 256 << 10;

/// What an element costs in memory besides its bytes (its vector and the tuple around it).
const ELEMENT_OVERHEAD: usize = 48;

/// Bytes of commands queued before they are sent, whatever their count.
const BATCH_BYTES: usize = 1 << 20;

/// The job's limits, shared by the full copy and the command stream and changeable while it
/// runs ([`RateLimit::set_per_second`]): source bytes a second (RDB bytes, then stream bytes)
/// and keys or commands a second. `0` is no limit.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Source bytes a second.
    pub bytes: Arc<RateLimit>,
    /// Keys (full copy) or commands (stream) a second.
    pub rows: Arc<RateLimit>,
    /// The counters the moved keys, bytes and commands are added to (the same as the limits
    /// count: what passes through them).
    pub status: Arc<MigrationStatus>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // A short burst: a bandwidth limit is expected to hold over a transfer of
            // seconds, not only over minutes.
            bytes: Arc::new(RateLimit::new(0).with_burst(std::time::Duration::from_millis(100))),
            rows: Arc::new(RateLimit::new(0)),
            status: Arc::new(MigrationStatus::default()),
        }
    }
}

/// How a migration writes.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Commands per pipelined batch.
    pub batch: usize,
    /// The target holds none of the keys (checked empty, or emptied): collections are
    /// built without deleting first, which spares the target a command per key.
    pub target_empty: bool,
    /// The job's rules: which keys and commands move, into which databases (`None`: all, as
    /// they are).
    pub rules: Option<Rules>,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            batch: 512,
            target_empty: false,
            rules: None,
        }
    }
}

/// What a full copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Keys written.
    pub keys: u64,
    /// Keys the rules left behind.
    pub skipped: u64,
    /// Bytes of RDB received.
    pub rdb_bytes: u64,
}

/// A `Read` over chunks arriving on a channel (for the blocking RDB parser).
struct ChannelReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Writes the RDB the replica is receiving (after a full resync) into `writer`, sending a
/// batch whenever `options.batch` commands are queued. Returns the replica, ready for the
/// command stream.
pub async fn copy_rdb(
    replica: Replica,
    writer: &mut RedisWriter,
    options: CopyOptions,
    limits: &Limits,
) -> Result<(Replica, CopyStats), RedisError> {
    let batch = options.batch.max(1);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Vec<u8>>(16);
    let bandwidth = Arc::clone(&limits.bytes);
    let status = Arc::clone(&limits.status);
    let feeder = tokio::spawn(async move {
        let mut replica = replica;
        let mut bytes = 0u64;
        loop {
            match replica.rdb_chunk().await {
                Ok(Some(chunk)) => {
                    bytes += chunk.len() as u64;
                    bandwidth.take(chunk.len() as u64).await;
                    status.add_bytes(chunk.len() as u64);
                    if chunk_tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => return (replica, Err(error)),
            }
        }
        (replica, Ok(bytes))
    });
    let (event_tx, mut event_rx) = mpsc::channel::<Vec<_>>(BATCHES_AHEAD);
    let parser = tokio::task::spawn_blocking(move || {
        let mut reader = RdbReader::new(ChannelReader {
            chunks: chunk_rx,
            current: Vec::new(),
            at: 0,
        });
        let mut batch = Vec::with_capacity(BATCH_EVENTS);
        let mut payload = 0;
        loop {
            let event = reader.next_event();
            let last = !matches!(event, Ok(Some(_)));
            if let Ok(Some(Event::Values(values))) = &event {
                payload += values.payload_bytes() + values.len() * ELEMENT_OVERHEAD;
            }
            batch.push(event);
            if last || batch.len() >= BATCH_EVENTS || payload >= BATCH_MEMORY {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_EVENTS));
                payload = 0;
                if event_tx.blocking_send(full).is_err() || last {
                    break;
                }
            }
        }
    });
    let mut stats = CopyStats::default();
    let mut current: Option<(Vec<u8>, Kind, Option<i64>)> = None;
    // The target databases the current key goes to.
    let mut targets: Vec<u64> = Vec::with_capacity(1);
    let mut outcome = Ok(());
    let mut events = Vec::new().into_iter();
    // Under rules, each batch's keys routed at once, in order.
    let mut routes = Vec::new().into_iter();
    loop {
        let event = match events.next() {
            Some(event) => event,
            None => match event_rx.recv().await {
                Some(batch) => {
                    if let Some(rules) = &options.rules {
                        match route_keys(rules, &batch) {
                            Ok(routed) => routes = routed.into_iter(),
                            Err(error) => {
                                outcome = Err(error);
                                break;
                            }
                        }
                    }
                    events = batch.into_iter();
                    continue;
                }
                None => break,
            },
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                outcome = Err(error);
                break;
            }
        };
        match event {
            Event::Key(start) => {
                targets.clear();
                match &options.rules {
                    None => targets.push(start.db),
                    Some(_) => targets.extend(routes.next().unwrap_or_default()),
                }
                if !targets.is_empty() {
                    limits.rows.take(1).await;
                }
                for &db in &targets {
                    writer.select(db);
                    // SET replaces whatever the target holds; a collection is built by
                    // adding to it, so whatever is there goes first.
                    if start.kind != Kind::String && !options.target_empty {
                        writer.command(&[b"DEL", &start.key]);
                    }
                }
                current = Some((start.key, start.kind, start.expire_at_ms));
            }
            Event::Values(values) => {
                if let Some((key, kind, _)) = &current {
                    for &db in &targets {
                        writer.select(db);
                        write_values(writer, key, *kind, &values);
                    }
                }
            }
            Event::KeyEnd => {
                if let Some((key, _, Some(at))) = &current {
                    let at = at.to_string();
                    for &db in &targets {
                        writer.select(db);
                        writer.command(&[b"PEXPIREAT", key, at.as_bytes()]);
                    }
                }
                current = None;
                if targets.is_empty() {
                    stats.skipped += 1;
                } else {
                    stats.keys += 1;
                }
                limits.status.add_key();
            }
            // A Redis 7 function library: loaded into the target as it is.
            Event::Function(code) => writer.command(&[b"FUNCTION", b"LOAD", b"REPLACE", &code]),
            Event::Aux { .. } | Event::Database(_) => {}
        }
        if writer.queued() >= batch || writer.queued_bytes() >= BATCH_BYTES {
            // The target works on this batch while the next one is prepared.
            if let Err(error) = writer.send().await {
                outcome = Err(error);
                break;
            }
        }
    }
    drop(event_rx);
    let _ = parser.await;
    let (replica, received) = feeder
        .await
        .map_err(|e| RedisError::Malformed(format!("the RDB reader stopped: {e}")))?;
    // A link that broke comes first: the parser then saw the RDB end early, and that is
    // only its consequence.
    stats.rdb_bytes = received?;
    outcome?;
    writer.flush().await?;
    Ok((replica, stats))
}

/// Where the rules send each key that starts in `batch`, in order.
fn route_keys(
    rules: &Rules,
    batch: &[Result<Option<Event>, RedisError>],
) -> Result<Vec<Vec<u64>>, RedisError> {
    let rows: Vec<KeyRow<'_>> = batch
        .iter()
        .filter_map(|event| match event {
            Ok(Some(Event::Key(start))) => Some(KeyRow {
                db: start.db,
                key: Some(&start.key),
                kind: Some(start.kind.name()),
                command: None,
            }),
            _ => None,
        })
        .collect();
    rules.selector.route(&rows).map_err(RedisError::Rules)
}

/// Queues what a stream keeps besides its entries: it exists even when empty, its last ID and
/// counters, its consumer groups with their consumers and pending entries.
fn write_stream_meta(writer: &mut RedisWriter, key: &[u8], meta: &crate::rdb::StreamMeta) {
    let id = |id: (u64, u64)| format!("{}-{}", id.0, id.1);
    // A stream whose entries are all gone still exists: make it so, empty.
    writer.command(&[
        b"XGROUP",
        b"CREATE",
        key,
        b"__ferry__:tmp",
        b"0",
        b"MKSTREAM",
    ]);
    writer.command(&[b"XGROUP", b"DESTROY", key, b"__ferry__:tmp"]);
    let last = id(meta.last_id);
    match meta.entries_added {
        Some((added, max_deleted)) => {
            let (added, max_deleted) = (added.to_string(), id(max_deleted));
            writer.command(&[
                b"XSETID",
                key,
                last.as_bytes(),
                b"ENTRIESADDED",
                added.as_bytes(),
                b"MAXDELETEDID",
                max_deleted.as_bytes(),
            ]);
        }
        None => writer.command(&[b"XSETID", key, last.as_bytes()]),
    }
    for group in &meta.groups {
        let last = id(group.last_id);
        // Redis writes an unknown count as -1 (all bits set): the target works it out.
        let read = group
            .entries_read
            .filter(|&n| n != u64::MAX)
            .map(|n| n.to_string());
        let mut args: Vec<&[u8]> = vec![b"XGROUP", b"CREATE", key, &group.name, last.as_bytes()];
        if let Some(read) = &read {
            args.push(b"ENTRIESREAD");
            args.push(read.as_bytes());
        }
        writer.command(&args);
        // The entries delivered and not acknowledged, with their consumer, delivery time
        // and count — what XREADGROUP at the source replicates as (XCLAIM … FORCE).
        for consumer in &group.consumers {
            // Also a consumer whose pending entries were all deleted from the stream (their
            // claims are ignored).
            writer.command(&[
                b"XGROUP",
                b"CREATECONSUMER",
                key,
                &group.name,
                &consumer.name,
            ]);
            for entry in &consumer.pending {
                let (id, at, count) = (
                    id(entry.id),
                    entry.delivered_at_ms.to_string(),
                    entry.deliveries.to_string(),
                );
                writer.command(&[
                    b"XCLAIM",
                    key,
                    &group.name,
                    &consumer.name,
                    b"0",
                    id.as_bytes(),
                    b"TIME",
                    at.as_bytes(),
                    b"RETRYCOUNT",
                    count.as_bytes(),
                    b"FORCE",
                    b"JUSTID",
                ]);
            }
        }
    }
}

/// Queues the commands that add one slice of a value.
fn write_values(writer: &mut RedisWriter, key: &[u8], kind: Kind, values: &Values) {
    match (kind, values) {
        (_, Values::Entries(entries)) => {
            for entry in entries {
                let id = format!("{}-{}", entry.id.0, entry.id.1);
                let mut args: Vec<&[u8]> = vec![b"XADD", key, id.as_bytes()];
                for (field, value) in &entry.fields {
                    args.push(field);
                    args.push(value);
                }
                writer.command(&args);
            }
        }
        (_, Values::StreamMeta(meta)) => write_stream_meta(writer, key, meta),
        (_, Values::String(value)) => writer.command(&[b"SET", key, value]),
        (Kind::Set, Values::Items(members)) if !members.is_empty() => {
            let mut args: Vec<&[u8]> = vec![b"SADD", key];
            args.extend(members.iter().map(Vec::as_slice));
            writer.command(&args);
        }
        (_, Values::Items(items)) if !items.is_empty() => {
            let mut args: Vec<&[u8]> = vec![b"RPUSH", key];
            args.extend(items.iter().map(Vec::as_slice));
            writer.command(&args);
        }
        (_, Values::Pairs(pairs)) if !pairs.is_empty() => {
            let mut args: Vec<&[u8]> = vec![b"HSET", key];
            for (field, value) in pairs {
                args.push(field);
                args.push(value);
            }
            writer.command(&args);
        }
        (_, Values::Scored(members)) if !members.is_empty() => {
            let scores: Vec<String> = members.iter().map(|(_, s)| s.to_string()).collect();
            let mut args: Vec<&[u8]> = vec![b"ZADD", key];
            for ((member, _), score) in members.iter().zip(&scores) {
                args.push(score.as_bytes());
                args.push(member);
            }
            writer.command(&args);
        }
        _ => {}
    }
}

/// Keys that start with this are ferry's own bookkeeping in a target (never compared or
/// migrated).
pub const FERRY_KEY_PREFIX: &[u8] = b"__ferry__:";

/// Where a migration stands in the source's replication stream: what a checkpoint keeps. The
/// database is part of it: a stream resumed mid-way does not repeat the `SELECT` before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPoint {
    /// The replication id followed.
    pub replid: String,
    /// The offset of the last byte applied.
    pub offset: u64,
    /// The database the stream's commands go to at that offset.
    pub db: u64,
}

impl StreamPoint {
    /// The point as the engine's position.
    pub fn position(&self) -> ferry_engine::Position {
        ferry_engine::Position::Redis {
            replid: self.replid.clone(),
            offset: self.offset,
            db: self.db,
        }
    }
}

impl StreamPoint {
    /// The point as kept in a target key: `<replid> <offset> <db>`.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.replid, self.offset, self.db)
    }

    /// The point a target key holds, `None` when it holds none.
    pub fn decode(text: &[u8]) -> Option<StreamPoint> {
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split(' ');
        let point = StreamPoint {
            replid: parts.next()?.to_string(),
            offset: parts.next()?.parse().ok()?,
            db: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(point)
    }
}

/// Queues `SET <key> <value>` in database 0 (where ferry keeps its bookkeeping).
pub(crate) fn queue_mark(writer: &mut RedisWriter, key: &[u8], value: &[u8]) {
    writer.select(0);
    writer.command(&[b"SET", key, value]);
}

/// Replays the source's command stream into `writer` until `done` says the point reached is
/// enough. A batch goes out whenever `batch` commands are queued or the stream has nothing
/// more at hand; after each, `point` moves to what the target now holds and `committed`
/// hears of it — never to the middle of a `MULTI … EXEC`, which the target would drop if the
/// connection broke before `EXEC`. Returns the commands replayed.
///
/// With a `checkpoint` key, every batch is one target transaction that also writes the point
/// into that key (database 0): the target then always holds exactly the commands up to the
/// point it records, whenever ferry stops — the way to resume without replaying a command
/// twice (an `INCR` applied again would count twice). The source's own `MULTI`/`EXEC` then
/// become part of the batch's transaction, never cut across two.
#[allow(clippy::too_many_arguments)]
pub async fn apply_stream(
    replica: &mut Replica,
    writer: &mut RedisWriter,
    options: &CopyOptions,
    limits: &Limits,
    checkpoint: Option<&[u8]>,
    point: &mut StreamPoint,
    committed: &mut (dyn FnMut(&StreamPoint) + Send),
    done: &(dyn Fn(&StreamPoint) -> bool + Sync),
) -> Result<u64, RedisError> {
    let batch = options.batch.max(1);
    let mut replayed = 0;
    // What the target will hold once the queued commands are sent.
    let mut queued = point.clone();
    let mut in_multi = false;
    // A batch transaction is open on the target connection (checkpoint mode).
    let mut open = false;
    // Commands read and not yet queued, and under rules what the target runs for each of
    // them (planned together: the rules run over a batch of rows at once).
    let mut pending: VecDeque<StreamCommand> = VecDeque::new();
    let mut plans: VecDeque<Vec<Planned>> = VecDeque::new();
    // The point the batch in flight (sent, not yet answered) brings the target to.
    let mut sent_point: Option<StreamPoint> = None;
    loop {
        if pending.is_empty() {
            while pending.len() < batch {
                match replica.buffered_command()? {
                    Some(command) => pending.push_back(command),
                    None => break,
                }
            }
            if pending.is_empty() {
                if let (Some(key), true, false) = (checkpoint, open, in_multi) {
                    queue_mark(writer, key, queued.encode().as_bytes());
                    writer.command(&[b"EXEC"]);
                    open = false;
                }
                writer.flush().await?;
                // Everything sent is answered: the target holds what was queued, or inside a
                // transaction of the source's, what the last batch sent before it brought.
                let sent = sent_point.take();
                let reached = if !in_multi && !open {
                    Some(queued.clone())
                } else {
                    sent
                };
                if let Some(reached) = reached.filter(|r| r != point) {
                    reach(point, reached, limits, committed);
                }
                // Stop only between transactions: a MULTI left open on the target
                // connection would swallow what comes next.
                if !in_multi && done(point) {
                    return Ok(replayed);
                }
                pending.push_back(replica.next_command().await?);
            }
            if let Some(rules) = &options.rules {
                plans = plan_pending(rules, &pending, queued.db)?.into();
            }
        }
        let command = pending.pop_front().expect("a command was read");
        limits.bytes.take(command.offset - queued.offset).await;
        limits.status.add_bytes(command.offset - queued.offset);
        queued.offset = command.offset;
        let boundary = match step(&command.args) {
            Step::Ignore => continue,
            Step::Replconf => {
                if command
                    .args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
                {
                    replica.ack().await?;
                }
                continue;
            }
            Step::Select(db) => {
                queued.db = db;
                continue;
            }
            Step::Edge { multi } => {
                in_multi = multi;
                true
            }
            Step::Data => false,
        };
        limits.rows.take(1).await;
        if checkpoint.is_some() {
            if !open {
                writer.command(&[b"MULTI"]);
                open = true;
            }
            // The batch's own transaction holds the source's.
            if boundary {
                continue;
            }
        }
        match (&options.rules, boundary) {
            (Some(_), false) => {
                let planned = plans.pop_front().expect("a plan per data command");
                if !planned.is_empty() {
                    replayed += 1;
                }
                for (db, args) in &planned {
                    writer.select(*db);
                    writer.command_owned(args);
                }
            }
            // A transaction's edge under rules: the target's database is the plans' business.
            (Some(_), true) => writer.command_owned(&command.args),
            (None, _) => {
                writer.select(queued.db);
                writer.command_owned(&command.args);
                replayed += 1;
            }
        }
        limits.status.add_command();
        if writer.queued() >= batch || writer.queued_bytes() >= BATCH_BYTES {
            if let (Some(key), false) = (checkpoint, in_multi) {
                queue_mark(writer, key, queued.encode().as_bytes());
                writer.command(&[b"EXEC"]);
                open = false;
            }
            // The batch before is answered once this one is sent: the target holds its point.
            writer.send().await?;
            if let Some(sent) = sent_point.take() {
                reach(point, sent, limits, committed);
            }
            if !in_multi && !open {
                sent_point = Some(queued.clone());
            }
        }
    }
}

/// The target now holds the source up to `reached`: the point moves there and is reported.
fn reach(
    point: &mut StreamPoint,
    reached: StreamPoint,
    limits: &Limits,
    committed: &mut (dyn FnMut(&StreamPoint) + Send),
) {
    *point = reached;
    limits.status.set_offset(point.offset);
    committed(point);
}

/// What a command of the stream is to the replay.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing to do (`PING`, an empty command).
    Ignore,
    /// `REPLCONF` (a `GETACK` is answered).
    Replconf,
    /// `SELECT`: the database the commands after it go to (0 when it names none).
    Select(u64),
    /// `MULTI` (`multi`), `EXEC` or `DISCARD`: a transaction's edge.
    Edge { multi: bool },
    /// A command that changes data: replayed (under rules, as planned).
    Data,
}

/// Sorts one command of the stream; the replay and the rules' planning agree through it.
fn step(args: &[Vec<u8>]) -> Step {
    let Some(name) = args.first() else {
        return Step::Ignore;
    };
    let is = |word: &[u8]| name.eq_ignore_ascii_case(word);
    if is(b"PING") {
        Step::Ignore
    } else if is(b"REPLCONF") {
        Step::Replconf
    } else if is(b"SELECT") {
        Step::Select(
            args.get(1)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        )
    } else if is(b"MULTI") {
        Step::Edge { multi: true }
    } else if is(b"EXEC") || is(b"DISCARD") {
        Step::Edge { multi: false }
    } else {
        Step::Data
    }
}

/// What the target runs for each data command of `pending` (every command but `PING`,
/// `REPLCONF`, `SELECT` and transaction edges), the first running in database `db`.
fn plan_pending(
    rules: &Rules,
    pending: &VecDeque<StreamCommand>,
    mut db: u64,
) -> Result<Vec<Vec<Planned>>, RedisError> {
    let mut commands = Vec::with_capacity(pending.len());
    for command in pending {
        match step(&command.args) {
            Step::Select(selected) => db = selected,
            Step::Data => commands.push((db, command.args.as_slice())),
            Step::Ignore | Step::Replconf | Step::Edge { .. } => {}
        }
    }
    plan(rules.selector.as_ref(), &rules.commands, &commands).map_err(RedisError::Rules)
}
