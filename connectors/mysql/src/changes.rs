//! The change feed: the server's binary log, read as a replica reads it (`COM_BINLOG_DUMP`
//! under the job's `server_id`) and decoded into change batches, one commit per source
//! transaction.
//!
//! MySQL keeps no state for a reader, so the feed is only a position: where the full
//! migration's snapshot was taken (read while `FLUSH TABLES WITH READ LOCK` held writes, see
//! [`crate::snapshot`]) or, for an incremental-only job, where the binlog stood when the job
//! began. The job's checkpoint and the sink keep the position of the last applied
//! transaction — binlog file, offset and the GTID state reached there — and a later run
//! resumes from it: by file and offset while the server still has that file, otherwise by
//! GTID (MariaDB), for instance after the files were purged up to a point already applied.
//! The server keeps its binlog by its own retention settings; ferry cannot hold it back as a
//! PostgreSQL slot does, so the precheck reports that retention.
//!
//! Schema changes arrive as QUERY events: `TRUNCATE` of a followed table is applied as a
//! truncate; other DDL on a followed table is logged, not applied to the sink (row events
//! after it are decoded by their own description, see [`crate::binlog`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Row};
use tracing::{info, warn};

use ferry_engine::{
    ChangeEvent, ChangeFeed, ChangeRequest, ChangeStream, Position, Snapshot, SnapshotRequest,
};

use crate::binlog::{BinlogDecoder, StreamTable};
use crate::config::{execute, quote_table, MyEndpoint};
use crate::error::MyError;
use crate::snapshot::{binlog_position, selected_type, BinlogPosition, MysqlSnapshot};

/// How often the server sends a heartbeat while it has nothing else to send.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Character sets whose binlog bytes ferry can read.
const READABLE_CHARSETS: [&str; 6] = ["utf8mb4", "utf8mb3", "utf8", "ascii", "latin1", "binary"];

/// Shortest binlog retention the precheck accepts, in seconds.
const MIN_RETENTION: u64 = 24 * 3600;

/// MariaDB's own event types: GTID (162) opens a transaction; ANNOTATE_ROWS (160),
/// BINLOG_CHECKPOINT (161) and GTID_LIST (163) carry nothing to apply; from 164 on they are
/// encrypted or compressed.
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
const MARIADB_START_ENCRYPTION: u8 = 164;
const MARIADB_LAST_COMPRESSED: u8 = 171;

/// A MariaDB GTID event with this flag is a transaction of one statement (DDL): no XID ends it.
const FL_STANDALONE: u8 = 1;

/// The server's global variables of the given names (absent ones are left out).
async fn variables(
    conn: &mut Conn,
    endpoint: &MyEndpoint,
    names: &[&str],
) -> Result<HashMap<String, String>, MyError> {
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({})",
            list.join(", ")
        ))
        .await
        .map_err(endpoint.error("reading the server's settings"))?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}

/// Checks what a change feed of `request` needs from the source, reporting every failure
/// at once with the statement that fixes it.
pub(crate) async fn check(
    endpoint: &MyEndpoint,
    request: &ChangeRequest,
) -> ferry_engine::Result<()> {
    let mut conn = endpoint.connect().await?;
    let settings = variables(
        &mut conn,
        endpoint,
        &[
            "log_bin",
            "binlog_format",
            "binlog_row_image",
            "binlog_row_metadata",
            "log_bin_compress",
            "binlog_expire_logs_seconds",
            "expire_logs_days",
            "version",
        ],
    )
    .await?;
    let setting = |name: &str| settings.get(name).map(String::as_str).unwrap_or("");
    let version = setting("version").to_string();
    let mut problems = Vec::new();
    if !setting("log_bin").eq_ignore_ascii_case("ON") {
        problems.push("the binary log is off (log_bin); start the server with log_bin (log-bin = mysql-bin and a server_id in [mysqld]); it cannot be turned on at run time".to_string());
    }
    let wanted = [
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("binlog_row_metadata", "FULL"),
    ];
    for (name, value) in wanted {
        match settings.get(name) {
            Some(have) if have.eq_ignore_ascii_case(value) => {}
            Some(have) => problems.push(format!(
                "{name} is {have}; run SET GLOBAL {name} = '{value}' and put {name} = {value} in the server's option file (sessions already open keep the old setting)"
            )),
            None => problems.push(format!(
                "the server ({version}) has no {name} setting; ferry follows MariaDB ≥ 10.5 and MySQL ≥ 8.0.1, whose binlog names each row's columns"
            )),
        }
    }
    if setting("log_bin_compress").eq_ignore_ascii_case("ON") {
        problems.push("the binlog is compressed (log_bin_compress = ON), which ferry cannot read; run SET GLOBAL log_bin_compress = OFF".into());
    }
    let retention = match settings.get("binlog_expire_logs_seconds") {
        Some(seconds) if seconds != "0" => seconds.parse::<u64>().ok(),
        _ => setting("expire_logs_days")
            .parse::<f64>()
            .ok()
            .filter(|days| *days > 0.0)
            .map(|days| (days * 86_400.0) as u64),
    };
    match retention {
        Some(seconds) if seconds < MIN_RETENTION => problems.push(format!(
            "binlogs are purged after {:.1} hours: a job stopped longer loses changes and must start over; keep them a week: SET GLOBAL binlog_expire_logs_seconds = 604800",
            seconds as f64 / 3600.0
        )),
        Some(seconds) => info!(days = seconds as f64 / 86_400.0, "the source purges binlogs after this retention; a job stopped longer must start over"),
        None => info!("the source keeps its binlogs until they are purged by hand"),
    }
    let privileges: Vec<String> = conn
        .query(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES
             WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                    SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
        )
        .await
        .map_err(endpoint.error("reading the account's privileges"))?;
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(endpoint.error("reading the account"))?;
    let user = user.unwrap_or_default();
    let grantee = match user.split_once('@') {
        Some((name, host)) => format!("'{name}'@'{host}'"),
        None => user.clone(),
    };
    let has = |wanted: &[&str]| {
        privileges
            .iter()
            .any(|p| wanted.iter().any(|w| p.eq_ignore_ascii_case(w)))
    };
    if !has(&["REPLICATION SLAVE", "SUPER"]) {
        problems.push(format!(
            "account {user} may not read the binlog; run GRANT REPLICATION SLAVE ON *.* TO {grantee}"
        ));
    }
    if !has(&["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]) {
        problems.push(format!(
            "account {user} may not read binlog positions (SHOW MASTER STATUS); run GRANT REPLICATION CLIENT ON *.* TO {grantee} (BINLOG MONITOR on MariaDB ≥ 10.5)"
        ));
    }
    for table in &request.tables {
        let name = quote_table(&table.table.id);
        if table.table.primary_key.is_empty() {
            problems.push(format!(
                "{} has no primary key, so its changes cannot be applied by key; add one (ALTER TABLE {name} ADD PRIMARY KEY (…)) or leave the table out of the rules",
                table.table.id
            ));
        }
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|&c| table.table.columns.field(c).name().clone())
            .collect();
        let charsets: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CHARACTER_SET_NAME IS NOT NULL",
                (&table.table.id.schema, &table.table.id.name),
            )
            .await
            .map_err(endpoint.error(format!("reading the columns of {}", table.table.id)))?;
        for (column, charset) in charsets {
            if columns.contains(&column) && !READABLE_CHARSETS.contains(&charset.as_str()) {
                problems.push(format!(
                    "column {column} of {} is {charset}, which ferry does not read from the binlog (utf8mb4, utf8mb3, ascii and latin1 it does); run ALTER TABLE {name} CONVERT TO CHARACTER SET utf8mb4, or leave the column out",
                    table.table.id
                ));
            }
        }
    }
    // Closed, not dropped: the server logs a dropped connection as aborted.
    let _ = conn.disconnect().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MyError::Precheck {
            message: format!(
                "the source at {} cannot feed incremental migration:\n  - {}",
                endpoint.display(),
                problems.join("\n  - ")
            ),
        }
        .into())
    }
}

/// Bytes of binlog the server keeps, `None` when the binlog is off.
pub(crate) async fn retained_log(endpoint: &MyEndpoint) -> ferry_engine::Result<Option<u64>> {
    let mut conn = endpoint.connect().await?;
    let logs = binary_logs(&mut conn, endpoint).await?;
    let _ = conn.disconnect().await;
    Ok((!logs.is_empty()).then(|| logs.iter().map(|(_, size)| size).sum()))
}

/// The binlog files the server has, with their sizes.
async fn binary_logs(
    conn: &mut Conn,
    endpoint: &MyEndpoint,
) -> Result<Vec<(String, u64)>, MyError> {
    let rows: Vec<Row> = match conn.query("SHOW BINARY LOGS").await {
        Ok(rows) => rows,
        // 1381: the binary log is off.
        Err(mysql_async::Error::Server(error)) if error.code == 1381 => return Ok(Vec::new()),
        Err(error) => return Err(endpoint.error("listing the binlog files")(error)),
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let file: Option<String> = row.get(0);
            let size: Option<u64> = row.get(1);
            (file.unwrap_or_default(), size.unwrap_or(0))
        })
        .collect())
}

/// Opens a feed of `request`: a new one starts where the binlog stands now, or where a
/// snapshot taken through it stands.
pub(crate) async fn open_feed(
    endpoint: MyEndpoint,
    server_id: u32,
    request: ChangeRequest,
) -> ferry_engine::Result<Box<dyn ChangeFeed>> {
    let mut tables = Vec::with_capacity(request.tables.len());
    for table in &request.tables {
        let mut types = Vec::new();
        let mut fields = Vec::new();
        for &index in &table.columns {
            types.push(selected_type(table, index)?);
            // Before images of a partial row image may leave values out.
            fields.push(table.table.columns.field(index).clone().with_nullable(true));
        }
        tables.push(StreamTable {
            id: Arc::new(table.table.id.clone()),
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
            types,
        });
    }
    let mut conn = endpoint.connect().await?;
    let collations: Vec<(u64, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        )
        .await
        .map_err(endpoint.error("reading the server's collations"))?;
    let charsets = collations
        .into_iter()
        .map(|(id, name)| (id as u16, name))
        .collect();
    let now = binlog_position(&mut conn, &endpoint).await?;
    let _ = conn.disconnect().await;
    Ok(Box::new(MyFeed {
        endpoint,
        server_id,
        point: to_position(&now),
        decoder: BinlogDecoder::new(tables, charsets, request.batch_size),
    }))
}

/// The engine's position for a binlog position.
fn to_position(position: &BinlogPosition) -> Option<Position> {
    (!position.file.is_empty()).then(|| Position::Mysql {
        file: position.file.clone(),
        offset: position.offset,
        gtid: (!position.gtid.is_empty()).then(|| position.gtid.clone()),
    })
}

/// A feed not streaming yet.
struct MyFeed {
    endpoint: MyEndpoint,
    server_id: u32,
    point: Option<Position>,
    decoder: BinlogDecoder,
}

#[async_trait]
impl ChangeFeed for MyFeed {
    fn consistent_point(&self) -> Option<Position> {
        self.point.clone()
    }

    async fn snapshot(
        &mut self,
        request: SnapshotRequest,
    ) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        let snapshot = MysqlSnapshot::open(self.endpoint.clone(), request).await?;
        let point = to_position(snapshot.position()).ok_or_else(|| MyError::Precheck {
            message: "the snapshot's binlog position cannot be read, so changes cannot follow it; grant the account REPLICATION CLIENT (BINLOG MONITOR on MariaDB ≥ 10.5)".into(),
        })?;
        self.point = Some(point);
        Ok(Arc::new(snapshot))
    }

    async fn start(
        self: Box<Self>,
        from: Option<Position>,
    ) -> ferry_engine::Result<Box<dyn ChangeStream>> {
        let from = match from.or(self.point.clone()) {
            Some(Position::Mysql { file, offset, gtid }) => (file, offset, gtid),
            Some(other) => {
                return Err(ferry_engine::Error::Internal(format!(
                    "a MySQL feed cannot start from {other}"
                )))
            }
            None => {
                return Err(MyError::Precheck {
                    message: "the source's binlog position cannot be read (is the binary log on, and may the account read it?)".into(),
                }
                .into())
            }
        };
        let (file, offset, gtid) = from;
        let mut conn = self.endpoint.connect().await?;
        let files = binary_logs(&mut conn, &self.endpoint).await?;
        let by_file = files.iter().any(|(name, _)| *name == file);
        let gtid = gtid.filter(|g| !g.is_empty());
        let settings = variables(
            &mut conn,
            &self.endpoint,
            &["gtid_binlog_pos", "binlog_checksum"],
        )
        .await?;
        let mariadb =
            conn.server_version() >= (10, 0, 0) && settings.contains_key("gtid_binlog_pos");
        let checksums = settings
            .get("binlog_checksum")
            .is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let setup = [
            "SET @mariadb_slave_capability = 4".to_string(),
            format!("SET @master_heartbeat_period = {}", HEARTBEAT.as_nanos()),
        ];
        for statement in &setup {
            execute(
                &mut conn,
                &self.endpoint,
                statement,
                "preparing to read the binlog",
            )
            .await?;
        }
        let request = BinlogStreamRequest::new(self.server_id);
        let request = if by_file {
            info!(%file, offset, server_id = self.server_id, "reading the binlog from its file and offset");
            request.with_filename(file.as_bytes()).with_pos(offset)
        } else if let (Some(state), true) = (&gtid, mariadb) {
            info!(%file, gtid = %state, "the binlog file is gone from the server; reading from the GTID position instead");
            for statement in [
                format!("SET @slave_connect_state = '{}'", state.replace('\'', "")),
                "SET @slave_gtid_strict_mode = 1".to_string(),
            ] {
                execute(
                    &mut conn,
                    &self.endpoint,
                    &statement,
                    "preparing to read the binlog by GTID",
                )
                .await?;
            }
            request.with_filename(b"").with_pos(4u64)
        } else {
            return Err(MyError::Precheck {
                message: format!(
                    "binlog file {file} is gone from the server (purged), and with it the changes ferry has not applied yet; run ferry drop and start the job over, and keep binlogs longer (binlog_expire_logs_seconds)"
                ),
            }
            .into());
        };
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(self.endpoint.error("starting to read the binlog"))?;
        Ok(Box::new(MyStream {
            endpoint: self.endpoint,
            stream,
            decoder: self.decoder,
            pending: VecDeque::new(),
            file,
            gtid_state: parse_gtid_state(gtid.as_deref().unwrap_or_default()),
            transaction: None,
            checksums,
            seen_format: false,
        }))
    }
}

/// The transaction being read.
struct Transaction {
    /// Its MariaDB GTID (domain, server, sequence).
    gtid: Option<(u32, u32, u64)>,
    /// A single statement with no XID after it.
    standalone: bool,
}

/// A binlog being read.
struct MyStream {
    endpoint: MyEndpoint,
    stream: BinlogStream,
    decoder: BinlogDecoder,
    pending: VecDeque<ChangeEvent>,
    /// The binlog file events come from.
    file: String,
    /// The last GTID seen per replication domain: (server, sequence).
    gtid_state: BTreeMap<u32, (u32, u64)>,
    transaction: Option<Transaction>,
    /// The server checksums its events (`binlog_checksum` is not NONE).
    checksums: bool,
    /// A FORMAT_DESCRIPTION event has arrived.
    seen_format: bool,
}

/// Parses MariaDB's `0-1-100,1-2-7`.
fn parse_gtid_state(text: &str) -> BTreeMap<u32, (u32, u64)> {
    text.split(',')
        .filter_map(|gtid| {
            let mut parts = gtid.trim().splitn(3, '-');
            let domain = parts.next()?.parse().ok()?;
            let server = parts.next()?.parse().ok()?;
            let sequence = parts.next()?.parse().ok()?;
            Some((domain, (server, sequence)))
        })
        .collect()
}

fn format_gtid_state(state: &BTreeMap<u32, (u32, u64)>) -> Option<String> {
    (!state.is_empty()).then(|| {
        state
            .iter()
            .map(|(domain, (server, sequence))| format!("{domain}-{server}-{sequence}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A MariaDB GTID event's body: sequence (u64), domain (u32), flags (u8).
fn parse_gtid_event(data: &[u8]) -> Option<(u64, u32, u8)> {
    let sequence = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    Some((sequence, domain, *data.get(12)?))
}

/// The table a `TRUNCATE [TABLE] name` statement empties: (database, table).
fn truncated_table(statement: &str, default_database: &str) -> Option<(String, String)> {
    let mut rest = statement.trim_start();
    let keyword = |rest: &mut &str, word: &str| {
        let matched = rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && rest[word.len()..].starts_with(|c: char| c.is_whitespace());
        if matched {
            *rest = rest[word.len()..].trim_start();
        }
        matched
    };
    if !keyword(&mut rest, "TRUNCATE") {
        return None;
    }
    keyword(&mut rest, "TABLE");
    let mut parts = Vec::new();
    loop {
        let (part, after) = if let Some(quoted) = rest.strip_prefix('`') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '`' {
                    if quoted[i + 1..].starts_with('`') {
                        name.push('`');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            (name, &quoted[end?..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None => break,
        }
    }
    match parts.len() {
        1 => Some((default_database.to_string(), parts.remove(0))),
        2 => {
            let table = parts.remove(1);
            Some((parts.remove(0), table))
        }
        _ => None,
    }
}

impl MyStream {
    fn position(&self, offset: u64) -> Position {
        Position::Mysql {
            file: self.file.clone(),
            offset,
            gtid: format_gtid_state(&self.gtid_state),
        }
    }

    /// The open transaction committed; its next event starts at `offset`.
    fn commit(
        &mut self,
        offset: u64,
        timestamp: u32,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), MyError> {
        if let Some((domain, server, sequence)) = self.transaction.take().and_then(|t| t.gtid) {
            self.gtid_state.insert(domain, (server, sequence));
        }
        let position = self.position(offset);
        self.decoder.flush(&position, out)?;
        out.push(ChangeEvent::Commit {
            position,
            committed_at: UNIX_EPOCH + Duration::from_secs(u64::from(timestamp)),
        });
        Ok(())
    }

    /// A statement: a transaction's BEGIN or COMMIT, or DDL.
    fn query(
        &mut self,
        database: &str,
        statement: &str,
        offset: u64,
        timestamp: u32,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), MyError> {
        let trimmed = statement.trim();
        if trimmed.eq_ignore_ascii_case("BEGIN") {
            self.transaction.get_or_insert(Transaction {
                gtid: None,
                standalone: false,
            });
            return Ok(());
        }
        if trimmed.eq_ignore_ascii_case("COMMIT") {
            return self.commit(offset, timestamp, out);
        }
        if let Some((db, table)) = truncated_table(trimmed, database) {
            if let Some(index) = self.decoder.table_index(&db, &table) {
                let position = self.position(offset);
                self.decoder.flush(&position, out)?;
                info!(table = %format!("{db}.{table}"), "the source truncated a followed table; truncating its targets");
                out.push(ChangeEvent::Truncate(vec![index]));
            }
        } else {
            let lower = trimmed.to_ascii_lowercase();
            let ddl = ["alter", "create", "drop", "rename"]
                .iter()
                .any(|word| lower.starts_with(word));
            if ddl {
                warn!(database, statement = %trimmed, "the source changed its schema; ferry does not apply DDL to the sink: rows after it are decoded by their new shape (added columns are not carried; a dropped column a rule selects stops the job)");
            }
        }
        // DDL commits on its own: it is a transaction of its own in the stream.
        if self.transaction.as_ref().is_none_or(|t| t.standalone) {
            self.commit(offset, timestamp, out)?;
        }
        Ok(())
    }

    fn stream_error(&self, error: mysql_async::Error) -> MyError {
        match error {
            // ER_MASTER_FATAL_ERROR_READING_BINLOG: the server cannot send from there.
            mysql_async::Error::Server(ref server) if server.code == 1236 => MyError::Precheck {
                message: format!(
                    "MySQL at {} cannot send the binlog from {}: {}; if the file was purged, the changes since are gone: run ferry drop and start the job over, and keep binlogs longer (binlog_expire_logs_seconds)",
                    self.endpoint.display(),
                    self.file,
                    server.message
                ),
            },
            error => self.endpoint.error("reading the binlog")(error),
        }
    }
}

#[async_trait]
impl ChangeStream for MyStream {
    async fn next(&mut self) -> ferry_engine::Result<Option<ChangeEvent>> {
        let mut out = Vec::new();
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            // The only await point: a cancelled call loses nothing.
            let event = match self.stream.next().await {
                Some(Ok(event)) => event,
                Some(Err(error)) => return Err(self.stream_error(error).into()),
                None => {
                    return Err(MyError::Query {
                        endpoint: self.endpoint.display().to_string(),
                        context: "reading the binlog".into(),
                        source: mysql_async::Error::Io(mysql_async::IoError::Io(
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the server ended the binlog stream",
                            ),
                        )),
                    }
                    .into())
                }
            };
            let header = event.header();
            let offset = u64::from(header.log_pos());
            let timestamp = header.timestamp();
            match header.event_type_raw() {
                MARIADB_GTID => {
                    let (sequence, domain, flags) =
                        parse_gtid_event(event.data()).ok_or_else(|| MyError::Decode {
                            table: "the binlog".into(),
                            column: String::new(),
                            message: "a GTID event too short to read".into(),
                        })?;
                    self.transaction = Some(Transaction {
                        gtid: Some((domain, header.server_id(), sequence)),
                        standalone: flags & FL_STANDALONE != 0,
                    });
                    continue;
                }
                MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT | MARIADB_GTID_LIST => continue,
                kind if (MARIADB_START_ENCRYPTION..=MARIADB_LAST_COMPRESSED).contains(&kind) => {
                    return Err(MyError::Precheck {
                        message: format!(
                            "the binlog holds an encrypted or compressed event (type {kind}), which ferry cannot read; run SET GLOBAL log_bin_compress = OFF"
                        ),
                    }
                    .into())
                }
                _ => {}
            }
            let data = event.read_data().map_err(|e| MyError::Decode {
                table: "the binlog".into(),
                column: String::new(),
                message: format!("an event at {}:{offset} cannot be read: {e}", self.file),
            })?;
            match data {
                Some(EventData::RotateEvent(rotate)) => {
                    let mut name = rotate.name_raw();
                    // The first ROTATE comes before the FORMAT_DESCRIPTION that tells the
                    // reader about checksums, so its checksum is still part of the name.
                    if !self.seen_format && self.checksums {
                        name = &name[..name.len().saturating_sub(4)];
                    }
                    self.file = String::from_utf8_lossy(name).into_owned();
                }
                Some(EventData::FormatDescriptionEvent(_)) => self.seen_format = true,
                Some(EventData::QueryEvent(query)) => {
                    let database = query.schema().into_owned();
                    let statement = query.query().into_owned();
                    self.query(&database, &statement, offset, timestamp, &mut out)?;
                }
                Some(EventData::TableMapEvent(map)) => self.decoder.table_map(&map)?,
                Some(EventData::RowsEvent(rows)) => {
                    let position = self.position(offset);
                    self.decoder.rows(
                        &rows,
                        u64::from(header.event_size()),
                        &position,
                        &mut out,
                    )?;
                }
                Some(EventData::XidEvent(_)) => self.commit(offset, timestamp, &mut out)?,
                Some(EventData::HeartbeatEvent) if self.transaction.is_none() => {
                    out.push(ChangeEvent::Idle {
                        position: self.position(offset),
                        at: SystemTime::now(),
                    });
                }
                _ => {}
            }
            self.pending.extend(out.drain(..));
        }
    }

    fn acknowledge(&mut self, _position: &Position) {
        // The server keeps no reader state: nothing to tell it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_states_parse_and_print_like_mariadb() {
        let state = parse_gtid_state("0-1-100,2-5-7");
        assert_eq!(state.get(&0), Some(&(1, 100)));
        assert_eq!(state.get(&2), Some(&(5, 7)));
        assert_eq!(format_gtid_state(&state).as_deref(), Some("0-1-100,2-5-7"));
        assert!(parse_gtid_state("").is_empty() && format_gtid_state(&BTreeMap::new()).is_none());
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend(3u32.to_le_bytes());
        body.push(FL_STANDALONE);
        assert_eq!(parse_gtid_event(&body), Some((42, 3, 1)));
        assert_eq!(parse_gtid_event(&body[..12]), None);
    }

    #[test]
    fn truncate_statements_name_their_table() {
        let t = |s| truncated_table(s, "shop");
        assert_eq!(
            t("TRUNCATE TABLE orders"),
            Some(("shop".into(), "orders".into()))
        );
        assert_eq!(
            t("truncate `b``x`.`o.d`"),
            Some(("b`x".into(), "o.d".into()))
        );
        assert_eq!(
            t("TRUNCATE  other.t2 "),
            Some(("other".into(), "t2".into()))
        );
        assert_eq!(t("ALTER TABLE orders ADD c INT"), None);
        assert_eq!(t("TRUNCATEx t"), None);
    }
}
