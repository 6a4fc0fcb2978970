//! Comparing a target Redis with its source key by key: type, a digest of the value and the
//! absolute expiry (`PEXPIRETIME`, exact; on a server before Redis 7.0 worked out from `PTTL`
//! and compared within [`TTL_TOLERANCE_MS`]), for every key or every n-th one. Values are read in
//! pieces (`LRANGE` and `XRANGE` by ranges, `SSCAN`/`HSCAN`/`ZSCAN` by cursor) and folded into a
//! digest as they come, so a big key is never held whole; sets, hashes and sorted sets fold
//! order-free; a stream's digest includes its groups' state (`XINFO GROUPS`: consumers,
//! pending entries, last delivered ID).
//!
//! A key missing on one side is looked up again on the other: gone there too means it expired
//! or was deleted while the comparison ran, which is reported apart from real differences.
//! ferry's own bookkeeping keys (`__ferry__:…`) are left out.

use redis_protocol::resp2::types::OwnedFrame;

use crate::copy::FERRY_KEY_PREFIX;
use crate::error::RedisError;
use crate::replica::ReplicaConfig;
use crate::rules::{KeyRow, Selector};
use crate::sink::RedisWriter;

/// Elements read per request of a big value, and keys per `SCAN` step.
const STEP: usize = 1000;

/// Differences shown by name at most.
const SHOWN: usize = 20;

/// What a comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Keys compared.
    pub compared: u64,
    /// Keys at the source missing in the target.
    pub missing: u64,
    /// Keys in the target the source does not have (full comparisons only).
    pub extra: u64,
    /// Keys whose type, value or expiry differ.
    pub different: u64,
    /// Keys that expired or were deleted while the comparison ran.
    pub vanished: u64,
    /// The first differences, in words.
    pub details: Vec<String>,
}

impl VerifyReport {
    /// Whether the target equals the source.
    pub fn equal(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0
    }

    fn note(&mut self, text: String) {
        if self.details.len() < SHOWN {
            self.details.push(text);
        }
    }
}

/// How far apart two expiry times may be when one of them was worked out from a remaining
/// time (`PTTL`, on a server without `PEXPIRETIME`): the reads are apart in time, and a
/// Redis before 7.0 replicates a relative `EXPIRE` that its replicas apply a little later.
pub const TTL_TOLERANCE_MS: i64 = 2_000;

/// A key's type, value digest and absolute expiry (ms, `None`: none).
#[derive(Clone, Debug)]
struct Described {
    kind: String,
    digest: u64,
    expire_at: Option<i64>,
    /// The expiry is the server's own (`PEXPIRETIME`), not worked out from `PTTL`.
    exact: bool,
}

impl Described {
    /// Same type and value, and the same expiry (within [`TTL_TOLERANCE_MS`] unless both
    /// are exact).
    fn matches(&self, other: &Described) -> bool {
        let tolerance = if self.exact && other.exact {
            0
        } else {
            TTL_TOLERANCE_MS
        };
        let expiry = match (self.expire_at, other.expire_at) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= tolerance,
            _ => false,
        };
        self.kind == other.kind && self.digest == other.digest && expiry
    }
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn protocol(server: &ReplicaConfig, message: String) -> RedisError {
    RedisError::Protocol {
        address: server.address.clone(),
        message,
    }
}

fn bytes_of(frame: OwnedFrame) -> Option<Vec<u8>> {
    match frame {
        OwnedFrame::BulkString(bytes) | OwnedFrame::SimpleString(bytes) => Some(bytes),
        OwnedFrame::Integer(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn items(frame: OwnedFrame) -> Vec<Vec<u8>> {
    match frame {
        OwnedFrame::Array(items) => items.into_iter().filter_map(bytes_of).collect(),
        _ => Vec::new(),
    }
}

/// One side of the comparison.
struct Side<'a> {
    config: &'a ReplicaConfig,
    conn: RedisWriter,
    db: Option<u64>,
    /// The server answers `PEXPIRETIME` (Redis 7.0 on); `None` until asked.
    expiry_time: Option<bool>,
}

impl Side<'_> {
    async fn ask(&mut self, args: &[&[u8]]) -> Result<OwnedFrame, RedisError> {
        match self.conn.request(args).await? {
            OwnedFrame::Error(message) => Err(protocol(
                self.config,
                format!(
                    "{} was refused: {message}",
                    String::from_utf8_lossy(args.first().copied().unwrap_or_default())
                ),
            )),
            frame => Ok(frame),
        }
    }

    async fn select(&mut self, db: u64) -> Result<(), RedisError> {
        if self.db != Some(db) {
            self.ask(&[b"SELECT", db.to_string().as_bytes()]).await?;
            self.db = Some(db);
        }
        Ok(())
    }

    /// The databases holding keys, from `INFO keyspace`.
    async fn databases(&mut self) -> Result<Vec<u64>, RedisError> {
        Ok(self
            .conn
            .info("keyspace")
            .await?
            .lines()
            .filter_map(|line| line.strip_prefix("db")?.split(':').next()?.parse().ok())
            .collect())
    }

    /// One `SCAN` step: the next cursor and the keys.
    async fn scan(&mut self, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), RedisError> {
        let step = STEP.to_string();
        match self
            .ask(&[b"SCAN", cursor, b"COUNT", step.as_bytes()])
            .await?
        {
            OwnedFrame::Array(mut parts) if parts.len() == 2 => {
                let keys = items(parts.pop().unwrap_or(OwnedFrame::Null));
                let next = parts.pop().and_then(bytes_of).unwrap_or_default();
                Ok((next, keys))
            }
            other => Err(protocol(
                self.config,
                format!("a bad SCAN reply: {other:?}"),
            )),
        }
    }

    /// Folds a `*SCAN` of `key` (HSCAN, SSCAN, ZSCAN) order-free: pairs of items when
    /// `pairs`.
    async fn scan_value(
        &mut self,
        command: &[u8],
        key: &[u8],
        pairs: bool,
    ) -> Result<u64, RedisError> {
        let (mut cursor, mut digest, mut count) = (b"0".to_vec(), 0u64, 0u64);
        let step = STEP.to_string();
        loop {
            let reply = self
                .ask(&[command, key, &cursor, b"COUNT", step.as_bytes()])
                .await?;
            let OwnedFrame::Array(mut parts) = reply else {
                return Err(protocol(self.config, "a bad *SCAN reply".into()));
            };
            let found = items(parts.pop().unwrap_or(OwnedFrame::Null));
            cursor = parts.pop().and_then(bytes_of).unwrap_or_default();
            let width = if pairs { 2 } else { 1 };
            for element in found.chunks(width) {
                let mut hash = FNV_START;
                for part in element {
                    hash = fnv(fnv(hash, part), &[0]);
                }
                // Summed, so the order the server returns them in does not matter. A scan
                // can return an element twice while the key is being rehashed; on a quiet
                // source that is rare, and it shows as a difference, never as a false equal.
                digest = digest.wrapping_add(hash);
                count += 1;
            }
            if cursor == b"0" {
                return Ok(fnv(digest, &count.to_le_bytes()));
            }
        }
    }

    /// Folds a stream's entries in order, read `STEP` at a time.
    async fn stream_digest(&mut self, key: &[u8]) -> Result<u64, RedisError> {
        let mut digest = FNV_START;
        let mut start = b"-".to_vec();
        let step = STEP.to_string();
        loop {
            let reply = self
                .ask(&[b"XRANGE", key, &start, b"+", b"COUNT", step.as_bytes()])
                .await?;
            let OwnedFrame::Array(entries) = reply else {
                return Err(protocol(self.config, "a bad XRANGE reply".into()));
            };
            let read = entries.len();
            for entry in entries {
                let OwnedFrame::Array(mut parts) = entry else {
                    continue;
                };
                let fields = items(parts.pop().unwrap_or(OwnedFrame::Null));
                let id = parts.pop().and_then(bytes_of).unwrap_or_default();
                digest = fnv(fnv(digest, &id), &[0]);
                for part in &fields {
                    digest = fnv(fnv(digest, part), &[0]);
                }
                // The next range starts after this ID.
                start = [b"(".as_slice(), &id].concat();
            }
            if read < STEP {
                return Ok(digest);
            }
        }
    }

    /// Type, digest and expiry of `key` in `db`; `None` when it does not exist.
    /// `digest` continued with a stream's consumer groups: name, consumers, pending entries
    /// and last delivered ID (not entries read: a server before Redis 7.0 does not count it).
    async fn groups_digest(&mut self, key: &[u8], mut digest: u64) -> Result<u64, RedisError> {
        let OwnedFrame::Array(groups) = self.ask(&[b"XINFO", b"GROUPS", key]).await? else {
            return Err(protocol(self.config, "a bad XINFO GROUPS reply".into()));
        };
        for group in groups {
            let OwnedFrame::Array(fields) = group else {
                continue;
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                let name = bytes_of(name).unwrap_or_default();
                if matches!(
                    name.as_slice(),
                    b"name" | b"consumers" | b"pending" | b"last-delivered-id"
                ) {
                    let value = bytes_of(value).unwrap_or_default();
                    digest = fnv(fnv(fnv(digest, &name), &value), &[0]);
                }
            }
        }
        Ok(digest)
    }

    /// The types of `keys` in database `db` (`none` for a key it lacks), asked together.
    async fn types(&mut self, db: u64, keys: &[Vec<u8>]) -> Result<Vec<String>, RedisError> {
        self.select(db).await?;
        let asks: Vec<Vec<&[u8]>> = keys
            .iter()
            .map(|key| vec![b"TYPE".as_slice(), key])
            .collect();
        Ok(self
            .conn
            .request_many(&asks)
            .await?
            .into_iter()
            .map(|reply| String::from_utf8_lossy(&bytes_of(reply).unwrap_or_default()).into_owned())
            .collect())
    }

    async fn describe(&mut self, db: u64, key: &[u8]) -> Result<Option<Described>, RedisError> {
        self.select(db).await?;
        let kind = bytes_of(self.ask(&[b"TYPE", key]).await?).unwrap_or_default();
        let kind = String::from_utf8_lossy(&kind).into_owned();
        let digest = match kind.as_str() {
            "none" => return Ok(None),
            "string" => fnv(
                FNV_START,
                &bytes_of(self.ask(&[b"GET", key]).await?).unwrap_or_default(),
            ),
            "list" => {
                let mut digest = FNV_START;
                let mut start = 0usize;
                loop {
                    let end = (start + STEP - 1).to_string();
                    let slice = items(
                        self.ask(&[b"LRANGE", key, start.to_string().as_bytes(), end.as_bytes()])
                            .await?,
                    );
                    for item in &slice {
                        digest = fnv(fnv(digest, item), &[0]);
                    }
                    if slice.len() < STEP {
                        break digest;
                    }
                    start += STEP;
                }
            }
            "set" => self.scan_value(b"SSCAN", key, false).await?,
            "hash" => self.scan_value(b"HSCAN", key, true).await?,
            "zset" => self.scan_value(b"ZSCAN", key, true).await?,
            "stream" => {
                let entries = self.stream_digest(key).await?;
                self.groups_digest(key, entries).await?
            }
            // Module types: compared by type only.
            _ => 0,
        };
        let Some((expire_at, exact)) = self.expiry(key).await? else {
            return Ok(None);
        };
        Ok(Some(Described {
            kind,
            digest,
            expire_at,
            exact,
        }))
    }

    /// The key's absolute expiry (ms since 1970, `None`: none) and whether it is the server's
    /// own; `None` when the key is gone. From `PEXPIRETIME`, or on a server without it
    /// (before Redis 7.0) from `PTTL` and this machine's clock.
    async fn expiry(&mut self, key: &[u8]) -> Result<Option<(Option<i64>, bool)>, RedisError> {
        if self.expiry_time != Some(false) {
            match self.conn.request(&[b"PEXPIRETIME", key]).await? {
                OwnedFrame::Error(message)
                    if message.to_lowercase().contains("unknown command") =>
                {
                    self.expiry_time = Some(false);
                }
                OwnedFrame::Integer(-2) => return Ok(None),
                OwnedFrame::Integer(at) => {
                    self.expiry_time = Some(true);
                    return Ok(Some(((at >= 0).then_some(at), true)));
                }
                other => {
                    return Err(protocol(
                        self.config,
                        format!("a bad PEXPIRETIME reply: {other:?}"),
                    ))
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(match self.ask(&[b"PTTL", key]).await? {
            OwnedFrame::Integer(-2) => None,
            OwnedFrame::Integer(left) if left >= 0 => Some((Some(now + left), false)),
            _ => Some((None, false)),
        })
    }
}

/// Compares `target` with `source`: every key when `every` is 1, every `every`-th key of the
/// source's scan otherwise (then keys only in the target are not looked for).
pub async fn verify(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
    every: u64,
) -> Result<VerifyReport, RedisError> {
    verify_selected(source, target, every, None).await
}

/// A type name as [`KeyRow`] holds it.
fn kind_name(kind: &str) -> Option<&'static str> {
    ["string", "list", "set", "zset", "hash", "stream"]
        .into_iter()
        .find(|k| *k == kind)
}

/// Where each of `keys` of source database `db`, of the types `kinds`, belongs in the
/// target under `rules`, routed together.
fn routes(
    rules: &dyn Selector,
    db: u64,
    keys: &[Vec<u8>],
    kinds: &[String],
) -> Result<Vec<Vec<u64>>, RedisError> {
    let rows: Vec<KeyRow<'_>> = keys
        .iter()
        .zip(kinds)
        .map(|(key, kind)| KeyRow {
            db,
            key: Some(key),
            kind: kind_name(kind),
            command: None,
        })
        .collect();
    rules.route(&rows).map_err(|message| RedisError::Protocol {
        address: "the job's rules".into(),
        message,
    })
}

/// [`verify`] under rules: each source key the rules select is compared with its copy in
/// every target database they send it to; keys they leave behind are not compared, and a
/// target key counts as extra unless the rules send a source key there.
pub async fn verify_selected(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
    every: u64,
    rules: Option<&dyn Selector>,
) -> Result<VerifyReport, RedisError> {
    let mut from = Side {
        config: source,
        conn: RedisWriter::connect(source).await?,
        db: None,
        expiry_time: None,
    };
    let mut to = Side {
        config: target,
        conn: RedisWriter::connect(target).await?,
        db: None,
        expiry_time: None,
    };
    let every = every.max(1);
    let mut report = VerifyReport::default();
    let mut seen = 0u64;
    for db in from.databases().await? {
        let mut cursor = b"0".to_vec();
        loop {
            from.select(db).await?;
            let (next, keys) = from.scan(&cursor).await?;
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|key| !key.starts_with(FERRY_KEY_PREFIX))
                .filter(|_| {
                    seen += 1;
                    seen.is_multiple_of(every)
                })
                .collect();
            // Under rules, where each key goes is settled for the whole step before any
            // value is read: keys the rules leave behind are not read at all.
            let targets = match rules {
                Some(rules) => {
                    let kinds = from.types(db, &keys).await?;
                    routes(rules, db, &keys, &kinds)?
                }
                None => vec![vec![db]; keys.len()],
            };
            for (key, targets) in keys.iter().zip(targets) {
                if targets.is_empty() {
                    continue;
                }
                let name = String::from_utf8_lossy(key).into_owned();
                let Some(want) = from.describe(db, key).await? else {
                    report.vanished += 1;
                    continue;
                };
                for to_db in targets {
                    report.compared += 1;
                    let place = if to_db == db {
                        format!("db {db}")
                    } else {
                        format!("db {db} (target db {to_db})")
                    };
                    match to.describe(to_db, key).await? {
                        None if from.describe(db, key).await?.is_none() => report.vanished += 1,
                        None => {
                            report.missing += 1;
                            report.note(format!("{place} key {name:?}: missing in the target"));
                        }
                        Some(got) if got.matches(&want) => {}
                        Some(got) => {
                            report.different += 1;
                            let what = if got.kind != want.kind {
                                format!(
                                    "type {} in the target, {} at the source",
                                    got.kind, want.kind
                                )
                            } else if got.digest != want.digest {
                                "another value".to_string()
                            } else {
                                format!(
                                    "expiry {:?} in the target, {:?} at the source (ms since 1970)",
                                    got.expire_at, want.expire_at
                                )
                            };
                            report.note(format!("{place} key {name:?}: {what}"));
                        }
                    }
                }
            }
            cursor = next;
            if cursor == b"0" {
                break;
            }
        }
    }
    if every == 1 {
        for db in to.databases().await? {
            if rules.is_some_and(|r| !r.target_dbs().contains(&db)) {
                continue;
            }
            let mut cursor = b"0".to_vec();
            loop {
                to.select(db).await?;
                let (next, keys) = to.scan(&cursor).await?;
                let keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|key| !key.starts_with(FERRY_KEY_PREFIX))
                    .collect();
                // A target key is expected when a source database the rules send here holds
                // it and the rules send it here.
                let mut expected = vec![false; keys.len()];
                let sources = rules.map_or_else(|| vec![db], |rules| rules.sources_into(db));
                for from_db in sources {
                    let kinds = from.types(from_db, &keys).await?;
                    let routes = match rules {
                        Some(rules) => routes(rules, from_db, &keys, &kinds)?,
                        None => vec![vec![from_db]; keys.len()],
                    };
                    for ((expected, kind), route) in expected.iter_mut().zip(&kinds).zip(routes) {
                        *expected |= kind != "none" && route.contains(&db);
                    }
                }
                for (key, expected) in keys.iter().zip(expected) {
                    if !expected {
                        report.extra += 1;
                        report.note(format!(
                            "db {db} key {:?}: in the target only",
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
                cursor = next;
                if cursor == b"0" {
                    break;
                }
            }
        }
    }
    Ok(report)
}
