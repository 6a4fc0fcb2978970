//! The change feed: a publication and a logical replication slot (pgoutput) named after the
//! job, streamed over the replication protocol and decoded into change batches.
//!
//! A new feed is created on a replication session that stays open and idle until streaming
//! starts: `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` exports the snapshot of the slot's
//! consistent point, the full migration reads every part under it, and only then does
//! `START_REPLICATION` begin, at that point. Every change committed before it is in the
//! snapshot, every change after it is in the stream: no gap, no overlap.
//!
//! The server keeps the log from the slot's confirmed position on; ferry confirms a position
//! only after the sink committed everything up to it (see [`ChangeStream::acknowledge`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tracing::{info, warn};

use ferry_engine::{
    ChangeEvent, ChangeFeed, ChangeRequest, ChangeStream, Position, Snapshot, SnapshotRequest,
};

use crate::config::{quote_ident, quote_table, PgEndpoint};
use crate::error::PgError;
use crate::pgoutput::{ChangeDecoder, StreamTable};
use crate::snapshot::{column_types, PostgresSource};

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's clock starts there).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn pg_time(micros: i64) -> SystemTime {
    let unix = micros.saturating_add(PG_EPOCH_MICROS);
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_micros(unix as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Checks what a change feed of `request` needs from the source, reporting every failure
/// at once with the statement that fixes it.
pub(crate) async fn check(
    endpoint: &PgEndpoint,
    request: &ChangeRequest,
) -> ferry_engine::Result<()> {
    let client = endpoint.connect().await?;
    // A feed of this name that serves another job definition is not this job's to take.
    claim_publication(&client, endpoint, &request.name, &request.definition, false).await?;
    let mut problems = Vec::new();
    let wal_level: String = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(endpoint.query_error("reading wal_level"))?
        .get(0);
    if wal_level != "logical" {
        problems.push(format!(
            "wal_level is '{wal_level}'; run ALTER SYSTEM SET wal_level = logical and restart the server"
        ));
    }
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(endpoint.query_error("reading the role's privileges"))?;
    let (user, may_replicate): (String, bool) = (row.get(0), row.get(1));
    if !may_replicate {
        problems.push(format!(
            "role {user} may not replicate; run ALTER ROLE {} REPLICATION",
            quote_ident(&user)
        ));
    }
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE slot_name = $1) > 0,
                    current_setting('max_replication_slots')::int8 - count(*)
             FROM pg_replication_slots",
            &[&request.name],
        )
        .await
        .map_err(endpoint.query_error("reading the replication slots"))?;
    let (exists, free): (bool, i64) = (row.get(0), row.get(1));
    if !exists && free < 1 {
        problems.push(
            "no replication slot is free (max_replication_slots); drop an unused one with SELECT pg_drop_replication_slot('…') or raise max_replication_slots".into(),
        );
    }
    for (index, table) in request.tables.iter().enumerate() {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|&c| table.table.columns.field(c).name().clone())
            .collect();
        let row = client
            .query_one(
                "SELECT c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                        (SELECT string_agg(a.attname::text, ', ' ORDER BY a.attnum) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attstorage <> 'p' AND a.attname::text = ANY($2))
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&quote_table(&table.table.id), &columns],
            )
            .await
            .map_err(endpoint.query_error(format!("reading {}", table.table.id)))?;
        let (identity, has_key, toastable): (String, bool, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let name = quote_table(&table.table.id);
        if let Some(toastable) = toastable {
            if request.filtered.contains(&index) && identity != "f" {
                problems.push(format!(
                    "{}: an update can move a row into the rule's WHERE while leaving a large (TOASTed) value of {toastable} unchanged, and the source then does not send that value; run ALTER TABLE {name} REPLICA IDENTITY FULL so updates carry the whole row",
                    table.table.id
                ));
            }
        }
        if !has_key && identity != "f" {
            problems.push(format!(
                "{} has no primary key: add one (ALTER TABLE {name} ADD PRIMARY KEY (…)), or let ferry apply its changes by whole rows with ALTER TABLE {name} REPLICA IDENTITY FULL (every update and delete then logs the whole old row, and each group of changes scans the target table once), or leave the table out of the rules",
                table.table.id
            ));
        } else if identity == "n" {
            problems.push(format!(
                "{} sends no old row images (REPLICA IDENTITY NOTHING); run ALTER TABLE {name} REPLICA IDENTITY DEFAULT",
                table.table.id
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PgError::Precheck {
            message: format!(
                "the source at {} cannot feed incremental migration:\n  - {}",
                endpoint.display(),
                problems.join("\n  - ")
            ),
        }
        .into())
    }
}

/// Opens the feed `request.name`, creating its publication and slot when missing.
pub(crate) async fn open_feed(
    source: PostgresSource,
    request: ChangeRequest,
) -> ferry_engine::Result<Box<dyn ChangeFeed>> {
    let endpoint = source.endpoint().clone();
    let client = endpoint.connect().await?;
    let mut tables = Vec::with_capacity(request.tables.len());
    for table in &request.tables {
        let (schema, types) = column_types(table)?;
        // Deletes carry only the key and updates may leave values out: every column may
        // be NULL in a change batch.
        let schema = Arc::new(arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        tables.push(StreamTable {
            id: Arc::new(table.table.id.clone()),
            schema,
            types,
        });
    }
    let publication_exists =
        claim_publication(&client, &endpoint, &request.name, &request.definition, true).await?;
    let slot = client
        .query_opt(
            "SELECT plugin::text, database::text, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&request.name],
        )
        .await
        .map_err(endpoint.query_error("looking for the replication slot"))?;
    if !publication_exists {
        let list: Vec<String> = request
            .tables
            .iter()
            .map(|t| quote_table(&t.table.id))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(&request.name),
                list.join(", ")
            ))
            .await
            .map_err(endpoint.query_error(format!("creating publication {}", request.name)))?;
        claim_publication(&client, &endpoint, &request.name, &request.definition, true).await?;
        info!(publication = %request.name, tables = list.len(), "publication created");
    }
    let config = endpoint.replication(&request.name)?;
    let decoder = ChangeDecoder::new(tables, request.batch_size);
    match slot {
        Some(row) => {
            let (plugin, database): (String, String) = (row.get(0), row.get(1));
            if plugin != "pgoutput" || Some(database.as_str()) != endpoint.database() {
                return Err(PgError::Precheck {
                    message: format!(
                        "replication slot {} exists but belongs to database {database} with plugin {plugin}; give the job another name or drop the slot",
                        request.name
                    ),
                }
                .into());
            }
            let confirmed: Option<String> = row.get(2);
            Ok(Box::new(PgFeed {
                endpoint,
                source,
                config,
                session: None,
                snapshot_name: None,
                consistent_point: None,
                confirmed: confirmed
                    .and_then(|text| Lsn::parse(&text).ok())
                    .map(|l| l.as_u64()),
                decoder,
            }))
        }
        None => {
            let mut session = endpoint.replication_client(config.clone(), true).await?;
            let rows = session
                .simple_query(&format!(
                    "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                    quote_ident(&request.name)
                ))
                .await
                .map_err(replication_error(&endpoint))?;
            let text = |column: usize| {
                rows.first()
                    .and_then(|row| row.get(column).cloned().flatten())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            };
            let point =
                text(1)
                    .and_then(|t| Lsn::parse(&t).ok())
                    .ok_or_else(|| PgError::Replication {
                        message: "CREATE_REPLICATION_SLOT returned no consistent point".into(),
                    })?;
            let snapshot_name = text(2).ok_or_else(|| PgError::Replication {
                message: "CREATE_REPLICATION_SLOT exported no snapshot".into(),
            })?;
            info!(slot = %request.name, consistent_point = %point, "replication slot created");
            Ok(Box::new(PgFeed {
                endpoint,
                source,
                config,
                session: Some(session),
                snapshot_name: Some(snapshot_name),
                consistent_point: Some(point.as_u64()),
                confirmed: Some(point.as_u64()),
                decoder,
            }))
        }
    }
}

fn replication_error(
    endpoint: &PgEndpoint,
) -> impl FnOnce(pgwire_replication::PgWireError) -> PgError + '_ {
    move |error| PgError::ReplicationConnection {
        endpoint: endpoint.display().to_string(),
        message: error.to_string(),
    }
}

/// A feed at the source, not streaming yet.
struct PgFeed {
    endpoint: PgEndpoint,
    source: PostgresSource,
    config: pgwire_replication::ReplicationConfig,
    /// The session that created the slot, idle so its exported snapshot stays valid.
    session: Option<ReplicationClient>,
    snapshot_name: Option<String>,
    consistent_point: Option<u64>,
    /// The slot's confirmed position when the feed was opened.
    confirmed: Option<u64>,
    decoder: ChangeDecoder,
}

#[async_trait]
impl ChangeFeed for PgFeed {
    fn consistent_point(&self) -> Option<Position> {
        self.consistent_point.map(|lsn| Position::Postgres { lsn })
    }

    async fn snapshot(
        &mut self,
        request: SnapshotRequest,
    ) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        let Some(name) = self.snapshot_name.clone() else {
            return Err(ferry_engine::Error::Internal(
                "only a feed created by this run has a matching snapshot".into(),
            ));
        };
        self.source.open_snapshot(request, Some(name)).await
    }

    async fn start(
        self: Box<Self>,
        from: Option<Position>,
    ) -> ferry_engine::Result<Box<dyn ChangeStream>> {
        let from = match from {
            Some(Position::Postgres { lsn }) => Some(lsn),
            Some(other) => {
                return Err(ferry_engine::Error::Internal(format!(
                    "a PostgreSQL feed cannot start from {other}"
                )))
            }
            None => None,
        };
        if let (Some(from), Some(confirmed)) = (from, self.confirmed) {
            if confirmed > from {
                return Err(PgError::Precheck {
                    message: format!(
                        "replication slot {} has confirmed {} but the sink holds changes only up to {}: the changes in between are gone from the source; run ferry drop and start the job again",
                        self.config.slot,
                        Lsn::from_u64(confirmed),
                        Lsn::from_u64(from)
                    ),
                }
                .into());
            }
        }
        let start = from.or(self.consistent_point).unwrap_or(0);
        let client = match self.session {
            Some(mut session) => {
                session
                    .start()
                    .await
                    .map_err(replication_error(&self.endpoint))?;
                session
            }
            None => {
                let config = self
                    .config
                    .clone()
                    .with_start_lsn(Lsn::from_u64(start))
                    .with_ack_lsn(Lsn::from_u64(start));
                self.endpoint.replication_client(config, false).await?
            }
        };
        let mut stream = PgStream {
            endpoint: self.endpoint,
            client,
            decoder: self.decoder,
            pending: VecDeque::new(),
            skip_before: from.unwrap_or(0),
            skipping: false,
            acknowledged: start,
        };
        stream
            .client
            .wait_started()
            .await
            .map_err(replication_error(&stream.endpoint))?;
        info!(slot = %self.config.slot, from = %Lsn::from_u64(start), "streaming changes");
        Ok(Box::new(stream))
    }
}

/// A streaming replication session.
struct PgStream {
    endpoint: PgEndpoint,
    client: ReplicationClient,
    decoder: ChangeDecoder,
    pending: VecDeque<ChangeEvent>,
    /// Transactions whose commit record starts before this are already applied.
    skip_before: u64,
    skipping: bool,
    acknowledged: u64,
}

#[async_trait]
impl ChangeStream for PgStream {
    async fn next(&mut self) -> ferry_engine::Result<Option<ChangeEvent>> {
        let mut out = Vec::new();
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            // The only await point: a cancelled call loses nothing.
            let event = self
                .client
                .recv()
                .await
                .map_err(replication_error(&self.endpoint))?;
            let Some(event) = event else {
                return Ok(None);
            };
            match event {
                ReplicationEvent::Begin { final_lsn, .. } => {
                    self.skipping = final_lsn.as_u64() < self.skip_before;
                    if !self.skipping {
                        self.decoder.begin(final_lsn.as_u64());
                    }
                }
                ReplicationEvent::XLogData { data, .. } => {
                    if !self.skipping {
                        self.decoder.message(&data, &mut out)?;
                    }
                }
                ReplicationEvent::Commit {
                    end_lsn,
                    commit_time_micros,
                    ..
                } => {
                    if std::mem::take(&mut self.skipping) {
                        continue;
                    }
                    self.decoder.commit(&mut out)?;
                    out.push(ChangeEvent::Commit {
                        position: Position::Postgres {
                            lsn: end_lsn.as_u64(),
                        },
                        committed_at: pg_time(commit_time_micros),
                    });
                }
                ReplicationEvent::KeepAlive {
                    wal_end,
                    server_time_micros,
                    ..
                } => out.push(ChangeEvent::Idle {
                    position: Position::Postgres {
                        lsn: wal_end.as_u64(),
                    },
                    at: pg_time(server_time_micros),
                }),
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
            }
            self.pending.extend(out.drain(..));
        }
    }

    fn acknowledge(&mut self, position: &Position) {
        match position {
            Position::Postgres { lsn } if *lsn > self.acknowledged => {
                self.acknowledged = *lsn;
                self.client.update_applied_lsn(Lsn::from_u64(*lsn));
            }
            Position::Postgres { .. } => {}
            other => warn!(position = %other, "a PostgreSQL feed cannot acknowledge this"),
        }
    }
}

/// The comment on a publication that records which job definition it serves.
const DEFINITION_PREFIX: &str = "ferry job definition ";

/// Whether publication `name` exists; when it does, checks that it records `definition`
/// (with `record`, writes it there when it records none, as publications made by an older
/// ferry). A publication of another definition is refused: two job files share the name.
async fn claim_publication(
    client: &tokio_postgres::Client,
    endpoint: &PgEndpoint,
    name: &str,
    definition: &str,
    record: bool,
) -> ferry_engine::Result<bool> {
    let row = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(endpoint.query_error("looking for the publication"))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let comment: Option<String> = row.get(0);
    match comment
        .as_deref()
        .and_then(|c| c.strip_prefix(DEFINITION_PREFIX))
    {
        Some(recorded) if recorded == definition => Ok(true),
        Some(recorded) => Err(ferry_engine::Error::NameTaken {
            job: name.strip_prefix("ferry_").unwrap_or(name).to_string(),
            place: format!("the replication slot and publication {name} at the source"),
            theirs: recorded.to_string(),
            ours: definition.to_string(),
        }),
        None if record => {
            let recorded = client
                .batch_execute(&format!(
                    "COMMENT ON PUBLICATION {} IS {}",
                    quote_ident(name),
                    crate::config::quote_literal(&format!("{DEFINITION_PREFIX}{definition}"))
                ))
                .await;
            match recorded {
                Ok(()) => {}
                // A publication made in advance by another role: ferry may not comment on
                // it; the sink's record and the checkpoint still name the job.
                Err(e)
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
                {
                    warn!(publication = %name, "cannot record the job on the publication (not its owner)");
                }
                Err(e) => {
                    return Err(endpoint
                        .query_error(format!("recording the job on publication {name}"))(
                        e
                    )
                    .into())
                }
            }
            Ok(true)
        }
        None => Ok(true),
    }
}

/// Drops the slot and publication `name`; returns what was removed.
pub(crate) async fn drop_feed(
    endpoint: &PgEndpoint,
    name: &str,
    definition: Option<&str>,
) -> ferry_engine::Result<Vec<String>> {
    let client = endpoint.connect().await?;
    // Another job's feed of the same name stays (unless forced).
    if let Some(definition) = definition {
        claim_publication(&client, endpoint, name, definition, false).await?;
    }
    let mut removed = Vec::new();
    let slot = client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(endpoint.query_error("looking for the replication slot"))?;
    if let Some(row) = slot {
        let active: Option<i32> = row.get(0);
        if let Some(pid) = active {
            return Err(PgError::Precheck {
                message: format!(
                    "replication slot {name} is in use by process {pid}; stop the running job (ferry stop, or Ctrl-C) first"
                ),
            }
            .into());
        }
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&name])
            .await
            .map_err(endpoint.query_error(format!("dropping replication slot {name}")))?;
        removed.push(format!("replication slot {name}"));
    }
    let publication = !client
        .query("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .map_err(endpoint.query_error("looking for the publication"))?
        .is_empty();
    if publication {
        client
            .batch_execute(&format!("DROP PUBLICATION {}", quote_ident(name)))
            .await
            .map_err(endpoint.query_error(format!("dropping publication {name}")))?;
        removed.push(format!("publication {name}"));
    }
    Ok(removed)
}

/// Bytes of WAL the slot `name` holds back, `None` without such a slot.
pub(crate) async fn retained_log(
    endpoint: &PgEndpoint,
    name: &str,
) -> ferry_engine::Result<Option<u64>> {
    let client = endpoint.connect().await?;
    let row = client
        .query_opt(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(endpoint.query_error("reading the replication slot"))?;
    Ok(row.map(|row| row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64))
}
