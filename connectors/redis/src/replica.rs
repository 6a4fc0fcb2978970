//! The replication link: ferry connects to the source as one of its replicas.
//!
//! Handshake: `AUTH` when a password is given, `PING`, `REPLCONF listening-port 0`,
//! `REPLCONF capa eof capa psync2`, then `PSYNC <replid> <offset + 1>` to continue from a
//! checkpoint (`PSYNC ? -1` for a first copy). The source answers `+CONTINUE` (partial
//! resync: only the commands since then follow) or `+FULLRESYNC <replid> <offset>` (an RDB
//! snapshot follows, then the commands after it). Before answering and while it prepares the
//! RDB it sends bare newlines as keep-alives.
//!
//! The RDB arrives either as `$<length>\r\n` and that many bytes (no CRLF after them) when the
//! source writes it to disk first, or as `$EOF:<40-byte mark>\r\n`, the bytes, and the mark
//! again when it streams it straight from its fork (diskless). That framing is not RESP and is
//! read here by hand; the command stream after it is RESP, decoded with `redis-protocol`, whose
//! consumed-bytes count gives the replication offset exactly (every byte of the stream counts,
//! the source's periodic `PING`s and `SELECT`s included).
//!
//! The replica tells the source how far it got with `REPLCONF ACK <offset>` — every second, as
//! Redis's own replicas do (a first ACK during a diskless sync can be lost), and at once when
//! the source asks with `REPLCONF GETACK`.

use crate::error::RedisError;
use std::time::{Duration, Instant};

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ferry_tls::{ClientConfig, Secret, Stream, TlsSettings};

/// How often the replica reports its offset.
pub const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Where a server is, how to log in and whether over TLS (a source, or a target: the same
/// settings reach either).
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// `host:port`.
    pub address: String,
    /// The ACL user, if not the default one.
    pub user: Option<String>,
    /// The password, if the server wants one.
    pub password: Option<Secret>,
    /// The TLS configuration (`rediss://`, or `sslmode` given), `None` for plain TCP.
    pub tls: Option<Arc<ClientConfig>>,
    /// The TLS settings it was made from, for messages.
    pub tls_settings: TlsSettings,
}

impl ReplicaConfig {
    /// `address` over plain TCP, no password.
    pub fn plain(address: impl Into<String>) -> ReplicaConfig {
        ReplicaConfig {
            address: address.into(),
            user: None,
            password: None,
            tls: None,
            tls_settings: TlsSettings::disabled("source"),
        }
    }

    /// Connects to the server, over TLS when configured; a failed handshake is a sentence
    /// naming the server and the fix.
    pub(crate) async fn open(&self, context: &str) -> Result<Stream, RedisError> {
        ferry_tls::connect(&self.address, self.tls.clone())
            .await
            .map_err(|source| {
                match ferry_tls::explain(&source, &self.address, &self.tls_settings) {
                    Some(message) => RedisError::Tls {
                        address: self.address.clone(),
                        message,
                    },
                    None => RedisError::Io {
                        address: self.address.clone(),
                        context: context.into(),
                        source,
                    },
                }
            })
    }
}

/// How the source answered `PSYNC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStart {
    /// A full copy follows: an RDB, then the commands after `offset`.
    Full {
        /// The source's replication id.
        replid: String,
        /// The offset the RDB stands at.
        offset: u64,
    },
    /// The commands after the requested offset follow.
    Partial {
        /// The replication id to follow from now on (the source's new one after a failover).
        replid: String,
    },
}

/// A command from the source's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCommand {
    /// The command and its arguments.
    pub args: Vec<Vec<u8>>,
    /// The replication offset after it.
    pub offset: u64,
}

/// A live replication link.
pub struct Replica {
    config: ReplicaConfig,
    socket: Stream,
    buffer: Vec<u8>,
    /// Start of the unread part of `buffer`.
    at: usize,
    scratch: Vec<u8>,
    replid: String,
    offset: u64,
    last_ack: Instant,
    rdb: Option<RdbFraming>,
}

/// How the RDB being received ends.
#[derive(Clone, Debug)]
enum RdbFraming {
    /// After this many more bytes.
    Length(u64),
    /// At this mark (diskless sync).
    Mark(Vec<u8>),
    /// Received whole.
    Done,
}

impl Replica {
    fn io(&self, context: &str) -> impl FnOnce(std::io::Error) -> RedisError + '_ {
        let context = context.to_string();
        move |source| RedisError::Io {
            address: self.config.address.clone(),
            context,
            source,
        }
    }

    fn protocol(&self, message: impl Into<String>) -> RedisError {
        RedisError::Protocol {
            address: self.config.address.clone(),
            message: message.into(),
        }
    }

    /// Connects and asks for the stream after `from` (replication id, last offset applied),
    /// or for a full copy when `from` is `None`.
    pub async fn connect(
        config: ReplicaConfig,
        from: Option<(&str, u64)>,
    ) -> Result<(Replica, SyncStart), RedisError> {
        let socket = config.open("connecting").await?;
        let mut replica = Replica {
            config,
            socket,
            buffer: Vec::new(),
            at: 0,
            scratch: Vec::new(),
            replid: String::new(),
            offset: 0,
            last_ack: Instant::now(),
            rdb: None,
        };
        if let Some(password) = replica.config.password.clone() {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &replica.config.user {
                auth.push(user.as_bytes().to_vec());
            }
            auth.push(password.expose().as_bytes().to_vec());
            replica.expect_ok(&auth, "logging in (AUTH)").await?;
        }
        replica.send(&[b"PING".to_vec()]).await?;
        let pong = replica.line().await?;
        if pong.starts_with('-') {
            return Err(replica.protocol(format!(
                "PING was refused ({pong}); give the source's password in the URL (redis://:password@host:port)"
            )));
        }
        replica
            .expect_ok(
                &[
                    b"REPLCONF".to_vec(),
                    b"listening-port".to_vec(),
                    b"0".to_vec(),
                ],
                "announcing a replica (REPLCONF)",
            )
            .await?;
        replica
            .expect_ok(
                &[
                    b"REPLCONF".to_vec(),
                    b"capa".to_vec(),
                    b"eof".to_vec(),
                    b"capa".to_vec(),
                    b"psync2".to_vec(),
                ],
                "announcing a replica (REPLCONF capa)",
            )
            .await?;
        let (replid, offset) = match from {
            Some((replid, offset)) => (replid.to_string(), (offset + 1).to_string()),
            None => ("?".to_string(), "-1".to_string()),
        };
        replica
            .send(&[b"PSYNC".to_vec(), replid.into_bytes(), offset.into_bytes()])
            .await?;
        let answer = replica.line().await?;
        let mut words = answer.split_whitespace();
        let start = match words.next() {
            Some("+FULLRESYNC") => {
                let replid = words.next().unwrap_or_default().to_string();
                let offset = words
                    .next()
                    .and_then(|o| o.parse().ok())
                    .ok_or_else(|| replica.protocol(format!("a bad PSYNC answer: {answer}")))?;
                replica.replid = replid.clone();
                replica.offset = offset;
                SyncStart::Full { replid, offset }
            }
            Some("+CONTINUE") => {
                let replid = words
                    .next()
                    .map(str::to_string)
                    .or_else(|| from.map(|(r, _)| r.to_string()))
                    .unwrap_or_default();
                replica.replid = replid.clone();
                replica.offset = from.map_or(0, |(_, o)| o);
                SyncStart::Partial { replid }
            }
            _ => {
                return Err(replica.protocol(format!(
                    "the source does not take this replica ({answer}); is it a replica itself with replica-serve-stale-data off, or does the account lack the PSYNC permission?"
                )))
            }
        };
        Ok((replica, start))
    }

    /// The replication id being followed.
    pub fn replid(&self) -> &str {
        &self.replid
    }

    /// The offset of the last byte of the command stream read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    async fn fill(&mut self) -> Result<(), RedisError> {
        if self.at > 0 && self.at == self.buffer.len() {
            self.buffer.clear();
            self.at = 0;
        } else if self.at > READ_CHUNK {
            self.buffer.drain(..self.at);
            self.at = 0;
        }
        // Read into a scratch buffer first: a read cancelled (by the ACK timer) leaves the
        // stream's buffer as it was.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(READ_CHUNK, 0);
        let read = self.socket.read(&mut scratch).await;
        let read = read.map_err(self.io("reading the replication stream"))?;
        self.buffer.extend_from_slice(&scratch[..read]);
        self.scratch = scratch;
        if read == 0 {
            return Err(self.io("reading the replication stream")(
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the source closed the connection",
                ),
            ));
        }
        Ok(())
    }

    async fn send(&mut self, args: &[Vec<u8>]) -> Result<(), RedisError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let written = self.socket.write_all(&out).await;
        written.map_err(self.io("writing to the source"))
    }

    /// One reply line, skipping the bare newlines a source sends as keep-alives.
    async fn line(&mut self) -> Result<String, RedisError> {
        loop {
            while self.buffer.get(self.at) == Some(&b'\n') {
                self.at += 1;
            }
            if let Some(end) = self.buffer[self.at..].iter().position(|&b| b == b'\n') {
                let line = &self.buffer[self.at..self.at + end];
                let line =
                    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned();
                self.at += end + 1;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn expect_ok(&mut self, args: &[Vec<u8>], doing: &str) -> Result<(), RedisError> {
        self.send(args).await?;
        let reply = self.line().await?;
        if reply.starts_with("+OK") {
            Ok(())
        } else {
            Err(self.protocol(format!("{doing}: {reply}")))
        }
    }

    /// Reads the RDB of a full resync, handing its bytes to `chunk` in order; returns how many
    /// there were.
    pub async fn read_rdb(
        &mut self,
        mut chunk: impl FnMut(&[u8]) -> Result<(), RedisError>,
    ) -> Result<u64, RedisError> {
        let mut total = 0;
        while let Some(bytes) = self.rdb_chunk().await? {
            total += bytes.len() as u64;
            chunk(&bytes)?;
        }
        Ok(total)
    }

    /// The next piece of the RDB of a full resync, `None` once it is complete (the command
    /// stream follows). Cancelling the call loses nothing.
    pub async fn rdb_chunk(&mut self) -> Result<Option<Vec<u8>>, RedisError> {
        if self.rdb.is_none() {
            let header = self.line().await?;
            let Some(framing) = header.strip_prefix('$') else {
                return Err(self.protocol(format!("expected the RDB, got {header:?}")));
            };
            self.rdb = Some(match framing.strip_prefix("EOF:") {
                Some(mark) => RdbFraming::Mark(mark.as_bytes().to_vec()),
                None => RdbFraming::Length(
                    framing
                        .parse()
                        .map_err(|_| self.protocol(format!("a bad RDB length: {header:?}")))?,
                ),
            });
        }
        loop {
            let pending = &self.buffer[self.at..];
            match &mut self.rdb {
                None | Some(RdbFraming::Done) => return Ok(None),
                Some(RdbFraming::Length(0)) => {
                    self.rdb = Some(RdbFraming::Done);
                    return Ok(None);
                }
                Some(RdbFraming::Length(remaining)) if !pending.is_empty() => {
                    let take = (pending.len() as u64).min(*remaining) as usize;
                    *remaining -= take as u64;
                    let bytes = pending[..take].to_vec();
                    self.at += take;
                    return Ok(Some(bytes));
                }
                Some(RdbFraming::Mark(mark)) => {
                    // Hold back as many bytes as the mark is long until it is clear whether
                    // they are the mark.
                    if pending.len() >= mark.len() && pending.ends_with(mark) {
                        let body = pending.len() - mark.len();
                        let bytes = pending[..body].to_vec();
                        self.at = self.buffer.len();
                        self.rdb = Some(RdbFraming::Done);
                        if !bytes.is_empty() {
                            return Ok(Some(bytes));
                        }
                        continue;
                    }
                    let safe = pending.len().saturating_sub(mark.len());
                    if safe > 0 {
                        let bytes = pending[..safe].to_vec();
                        self.at += safe;
                        return Ok(Some(bytes));
                    }
                }
                Some(RdbFraming::Length(_)) => {}
            }
            self.fill().await?;
        }
    }

    /// The next command already received, without waiting for the network.
    pub fn buffered_command(&mut self) -> Result<Option<StreamCommand>, RedisError> {
        let decoded = decode(&self.buffer[self.at..])
            .map_err(|e| self.protocol(format!("a malformed command in the stream: {e:?}")))?;
        let Some((frame, consumed)) = decoded else {
            return Ok(None);
        };
        self.at += consumed;
        self.offset += consumed as u64;
        let args = match frame {
            OwnedFrame::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    OwnedFrame::BulkString(bytes) | OwnedFrame::SimpleString(bytes) => Ok(bytes),
                    OwnedFrame::Integer(i) => Ok(i.to_string().into_bytes()),
                    other => Err(other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|other| {
                    self.protocol(format!("an unexpected value in a command: {other:?}"))
                })?,
            other => {
                return Err(self.protocol(format!("a stream frame that is no command: {other:?}")))
            }
        };
        Ok(Some(StreamCommand {
            args,
            offset: self.offset,
        }))
    }

    /// The next command of the stream. Answers `REPLCONF GETACK` itself (it still counts in
    /// the offset) and sends an ACK whenever one is due.
    pub async fn next_command(&mut self) -> Result<StreamCommand, RedisError> {
        loop {
            if self.last_ack.elapsed() >= ACK_INTERVAL {
                self.ack().await?;
            }
            let Some(command) = self.buffered_command()? else {
                // Wait for more, but not past the next ACK.
                let wait = ACK_INTERVAL.saturating_sub(self.last_ack.elapsed());
                match tokio::time::timeout(wait, self.fill()).await {
                    Ok(filled) => filled?,
                    Err(_) => self.ack().await?,
                }
                continue;
            };
            let getack = command.args.len() >= 2
                && command.args[0].eq_ignore_ascii_case(b"REPLCONF")
                && command.args[1].eq_ignore_ascii_case(b"GETACK");
            if getack {
                self.ack().await?;
            }
            return Ok(command);
        }
    }

    /// Reports the offset read so far.
    pub async fn ack(&mut self) -> Result<(), RedisError> {
        self.last_ack = Instant::now();
        let offset = self.offset.to_string().into_bytes();
        self.send(&[b"REPLCONF".to_vec(), b"ACK".to_vec(), offset])
            .await
    }
}
