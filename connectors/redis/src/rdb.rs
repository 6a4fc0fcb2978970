//! A streaming reader of Redis's RDB format (versions 1–11; Redis 7.0 writes 10, 7.2 writes 11),
//! as a replica receives it on a full sync or `SAVE` writes it.
//!
//! [`RdbReader::next_event`] hands out one [`Event`] at a time: auxiliary fields, database
//! switches, and per key a [`Event::Key`], its value in [`Event::Values`] slices of at most
//! the reader's slice size, and [`Event::KeyEnd`]. Large values are stored by Redis as plain
//! sequences (a hash table or skip list written element by element) or as a quicklist of
//! bounded nodes, so memory stays at one slice or one node whatever the key's size; compact
//! encodings (listpack, ziplist, intset) are bounded by the server's `*-max-listpack-*` limits.
//!
//! Encodings read: strings (raw, integer, LZF-compressed), lists (plain, ziplist, quicklist of
//! ziplists, quicklist 2 of listpacks and plain nodes), sets (plain, intset, listpack), sorted
//! sets (plain with text or binary scores, ziplist, listpack), hashes (plain, ziplist,
//! listpack), streams (entries node by node, then the last ID, counters and consumer groups;
//! with their consumers and pending entries). Module values and the old zipmap
//! hashes are errors naming the key: never dropped in silence.

use crate::error::RedisError;
use std::collections::VecDeque;
use std::io::Read;

/// Elements per [`Event::Values`] slice of a plain-encoded value.
pub const DEFAULT_SLICE: usize = 1024;

type Result<T> = std::result::Result<T, RedisError>;

fn malformed(message: impl Into<String>) -> RedisError {
    RedisError::Malformed(message.into())
}

/// The kind of a key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A list.
    List,
    /// A set.
    Set,
    /// A sorted set.
    SortedSet,
    /// A hash.
    Hash,
    /// A stream.
    Stream,
}

impl Kind {
    /// The type's name as Redis's `TYPE` answers it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::SortedSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
        }
    }
}

/// A stream entry ID.
pub type StreamId = (u64, u64);

/// One stream entry: its ID and its fields and values.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry {
    /// The entry's ID.
    pub id: StreamId,
    /// Its fields and values, in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A consumer group of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamGroup {
    /// Its name.
    pub name: Vec<u8>,
    /// The last ID delivered to it.
    pub last_id: StreamId,
    /// Entries read by it (RDB 10 on), for lag.
    pub entries_read: Option<u64>,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// Its consumers, with the entries each holds pending.
    pub consumers: Vec<StreamConsumer>,
}

/// A consumer of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConsumer {
    /// Its name.
    pub name: Vec<u8>,
    /// The entries delivered to it and not acknowledged, in ID order.
    pub pending: Vec<PendingEntry>,
}

/// An entry delivered and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry's ID.
    pub id: StreamId,
    /// When it was last delivered (ms since 1970).
    pub delivered_at_ms: u64,
    /// Times it was delivered.
    pub deliveries: u64,
}

/// What a stream keeps besides its entries.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamMeta {
    /// The last ID ever added.
    pub last_id: StreamId,
    /// Entries ever added, and the largest deleted ID (RDB 10 on).
    pub entries_added: Option<(u64, StreamId)>,
    /// The consumer groups.
    pub groups: Vec<StreamGroup>,
}

/// A key as it begins.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyStart {
    /// Its database.
    pub db: u64,
    /// The key.
    pub key: Vec<u8>,
    /// Its type.
    pub kind: Kind,
    /// When it expires, in Unix milliseconds.
    pub expire_at_ms: Option<i64>,
}

/// A slice of a key's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// A string's value (whole).
    String(Vec<u8>),
    /// List elements (in order) or set members.
    Items(Vec<Vec<u8>>),
    /// Hash fields and values.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// Sorted-set members and scores.
    Scored(Vec<(Vec<u8>, f64)>),
    /// Stream entries (one node's worth).
    Entries(Vec<StreamEntry>),
    /// A stream's last ID, counters and consumer groups (after its entries).
    StreamMeta(StreamMeta),
}

impl Values {
    /// Elements in the slice.
    pub fn len(&self) -> usize {
        match self {
            Values::String(_) => 1,
            Values::Items(items) => items.len(),
            Values::Pairs(pairs) => pairs.len(),
            Values::Scored(scored) => scored.len(),
            Values::Entries(entries) => entries.len(),
            Values::StreamMeta(_) => 1,
        }
    }

    /// Bytes of member, field and value data in the slice (scores count 8).
    pub fn payload_bytes(&self) -> usize {
        match self {
            Values::String(value) => value.len(),
            Values::Items(items) => items.iter().map(Vec::len).sum(),
            Values::Pairs(pairs) => pairs.iter().map(|(f, v)| f.len() + v.len()).sum(),
            Values::Scored(scored) => scored.iter().map(|(m, _)| m.len() + 8).sum(),
            Values::Entries(entries) => entries
                .iter()
                .flat_map(|e| &e.fields)
                .map(|(f, v)| f.len() + v.len())
                .sum(),
            Values::StreamMeta(meta) => meta.groups.len() * 64,
        }
    }

    /// Whether the slice holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One thing read from the RDB.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An auxiliary field (`redis-ver`, `repl-id`, …).
    Aux {
        /// Its name.
        key: Vec<u8>,
        /// Its value.
        value: Vec<u8>,
    },
    /// Keys that follow are in this database.
    Database(u64),
    /// A key begins.
    Key(KeyStart),
    /// A slice of the current key's value.
    Values(Values),
    /// The current key is complete.
    KeyEnd,
    /// A Redis 7 function library (its code).
    Function(Vec<u8>),
}

/// A plain value being read element by element.
#[derive(Clone, Copy, Debug)]
enum Plain {
    /// List elements or set members.
    Items,
    /// Hash field/value pairs.
    Pairs,
    /// Sorted set with scores as text.
    ScoredText,
    /// Sorted set with binary scores.
    ScoredBinary,
}

/// A value still being read across calls.
#[derive(Clone, Copy, Debug)]
enum Pending {
    None,
    Plain {
        plain: Plain,
        remaining: u64,
    },
    /// Stream nodes left, then the stream's metadata; `version` is the value type
    /// (15, 19 or 21).
    Stream {
        remaining: u64,
        version: u8,
    },
    /// Quicklist nodes left; `v2` nodes carry a container type (plain or listpack).
    Quicklist {
        remaining: u64,
        v2: bool,
    },
}

/// Reads events from an RDB byte stream.
pub struct RdbReader<R: Read> {
    input: R,
    slice: usize,
    version: Option<u32>,
    db: u64,
    expire: Option<i64>,
    key: Vec<u8>,
    pending: Pending,
    queue: VecDeque<Event>,
    done: bool,
}

impl<R: Read> RdbReader<R> {
    /// A reader of `input` handing out slices of at most [`DEFAULT_SLICE`] elements.
    pub fn new(input: R) -> RdbReader<R> {
        RdbReader {
            input,
            slice: DEFAULT_SLICE,
            version: None,
            db: 0,
            expire: None,
            key: Vec::new(),
            pending: Pending::None,
            queue: VecDeque::new(),
            done: false,
        }
    }

    /// Slices of at most `slice` elements (at least 1).
    pub fn with_slice(mut self, slice: usize) -> RdbReader<R> {
        self.slice = slice.max(1);
        self
    }

    /// The RDB version, once the header was read.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// The next event; `None` after the end of the RDB (its checksum read).
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        if self.version.is_none() {
            self.header()?;
        }
        if let Some(event) = self.queue.pop_front() {
            return Ok(Some(event));
        }
        if let Some(event) = self.continue_value()? {
            return Ok(Some(event));
        }
        if self.done {
            return Ok(None);
        }
        loop {
            let opcode = self.u8()?;
            match opcode {
                0xFA => {
                    let key = self.string()?;
                    let value = self.string()?;
                    return Ok(Some(Event::Aux { key, value }));
                }
                0xFB => {
                    // RESIZEDB: size hints only.
                    self.length()?;
                    self.length()?;
                }
                0xFC => {
                    let mut bytes = [0u8; 8];
                    self.input.read_exact(&mut bytes)?;
                    self.expire = Some(i64::from_le_bytes(bytes));
                }
                0xFD => {
                    let mut bytes = [0u8; 4];
                    self.input.read_exact(&mut bytes)?;
                    self.expire = Some(i64::from(u32::from_le_bytes(bytes)) * 1000);
                }
                0xFE => {
                    self.db = self.length()?;
                    return Ok(Some(Event::Database(self.db)));
                }
                0xFF => {
                    if self.version.unwrap_or(0) >= 5 {
                        let mut checksum = [0u8; 8];
                        self.input.read_exact(&mut checksum)?;
                    }
                    self.done = true;
                    return Ok(None);
                }
                0xF8 => {
                    // IDLE: LRU idle time.
                    self.length()?;
                }
                0xF9 => {
                    // FREQ: LFU counter.
                    self.u8()?;
                }
                0xF5 => return Ok(Some(Event::Function(self.string()?))),
                0xF6 | 0xF7 => {
                    return Err(RedisError::Unsupported {
                        db: self.db,
                        key: String::new(),
                        what: format!("module or function auxiliary record (opcode {opcode:#x})"),
                    })
                }
                kind => {
                    self.key = self.string()?;
                    let expire = self.expire.take();
                    return self.value(kind, expire).map(Some);
                }
            }
        }
    }

    fn header(&mut self) -> Result<()> {
        let mut header = [0u8; 9];
        self.input.read_exact(&mut header)?;
        if &header[..5] != b"REDIS" {
            return Err(malformed("it does not start with REDIS"));
        }
        let version: u32 = std::str::from_utf8(&header[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed("a bad version number"))?;
        if !(1..=12).contains(&version) {
            return Err(malformed(format!(
                "RDB version {version} is not known (ferry reads 1 to 12)"
            )));
        }
        self.version = Some(version);
        Ok(())
    }

    fn start(&mut self, kind: Kind, expire: Option<i64>) -> Event {
        Event::Key(KeyStart {
            db: self.db,
            key: self.key.clone(),
            kind,
            expire_at_ms: expire,
        })
    }

    fn unsupported(&self, what: &str) -> RedisError {
        RedisError::Unsupported {
            db: self.db,
            key: String::from_utf8_lossy(&self.key).into_owned(),
            what: what.into(),
        }
    }

    /// Begins the value of type `kind` of the current key: returns its `Key` event, queues or
    /// schedules the rest.
    fn value(&mut self, kind: u8, expire: Option<i64>) -> Result<Event> {
        let plain = |plain, kind| (Some(plain), kind);
        let (pending, value_kind) = match kind {
            0 => {
                let value = self.string()?;
                self.queue.push_back(Event::Values(Values::String(value)));
                self.queue.push_back(Event::KeyEnd);
                return Ok(self.start(Kind::String, expire));
            }
            1 => plain(Plain::Items, Kind::List),
            2 => plain(Plain::Items, Kind::Set),
            3 => plain(Plain::ScoredText, Kind::SortedSet),
            4 => plain(Plain::Pairs, Kind::Hash),
            5 => plain(Plain::ScoredBinary, Kind::SortedSet),
            14 | 18 => {
                let remaining = self.length()?;
                self.pending = Pending::Quicklist {
                    remaining,
                    v2: kind == 18,
                };
                return Ok(self.start(Kind::List, expire));
            }
            10 | 11 | 12 | 13 | 16 | 17 | 20 => {
                let blob = self.string()?;
                let (values, value_kind) = match kind {
                    10 => (Values::Items(ziplist(&blob)?), Kind::List),
                    11 => (Values::Items(intset(&blob)?), Kind::Set),
                    12 => (Values::Scored(scored(ziplist(&blob)?)?), Kind::SortedSet),
                    13 => (Values::Pairs(pairs(ziplist(&blob)?)?), Kind::Hash),
                    16 => (Values::Pairs(pairs(listpack(&blob)?)?), Kind::Hash),
                    17 => (Values::Scored(scored(listpack(&blob)?)?), Kind::SortedSet),
                    _ => (Values::Items(listpack(&blob)?), Kind::Set),
                };
                self.queue.push_back(Event::Values(values));
                self.queue.push_back(Event::KeyEnd);
                return Ok(self.start(value_kind, expire));
            }
            9 => {
                return Err(self.unsupported("hash in the zipmap encoding of RDB versions before 4"))
            }
            6 | 7 => return Err(self.unsupported("module value")),
            15 | 19 | 21 => {
                let remaining = self.length()?;
                self.pending = Pending::Stream {
                    remaining,
                    version: kind,
                };
                return Ok(self.start(Kind::Stream, expire));
            }
            other => return Err(malformed(format!("unknown value type {other}"))),
        };
        let remaining = self.length()?;
        if let Some(plain) = pending {
            self.pending = Pending::Plain { plain, remaining };
        }
        Ok(self.start(value_kind, expire))
    }

    /// The next slice of a value being read, or its end.
    fn continue_value(&mut self) -> Result<Option<Event>> {
        match self.pending {
            Pending::None => Ok(None),
            Pending::Stream {
                remaining: 0,
                version,
            } => {
                let meta = self.stream_meta(version)?;
                self.pending = Pending::None;
                self.queue.push_back(Event::KeyEnd);
                Ok(Some(Event::Values(Values::StreamMeta(meta))))
            }
            Pending::Stream { remaining, version } => {
                self.pending = Pending::Stream {
                    remaining: remaining - 1,
                    version,
                };
                let master = self.string()?;
                let node = self.string()?;
                let master: [u8; 16] = master
                    .try_into()
                    .map_err(|_| malformed("a stream node key that is not an ID"))?;
                let entries = stream_node(&master, &node)?;
                Ok(Some(Event::Values(Values::Entries(entries))))
            }
            Pending::Plain { remaining: 0, .. } | Pending::Quicklist { remaining: 0, .. } => {
                self.pending = Pending::None;
                Ok(Some(Event::KeyEnd))
            }
            Pending::Plain { plain, remaining } => {
                let count = remaining.min(self.slice as u64) as usize;
                let values = match plain {
                    Plain::Items => {
                        Values::Items((0..count).map(|_| self.string()).collect::<Result<_>>()?)
                    }
                    Plain::Pairs => Values::Pairs(
                        (0..count)
                            .map(|_| Ok((self.string()?, self.string()?)))
                            .collect::<Result<_>>()?,
                    ),
                    Plain::ScoredText => Values::Scored(
                        (0..count)
                            .map(|_| Ok((self.string()?, self.text_double()?)))
                            .collect::<Result<_>>()?,
                    ),
                    Plain::ScoredBinary => Values::Scored(
                        (0..count)
                            .map(|_| {
                                let member = self.string()?;
                                let mut bytes = [0u8; 8];
                                self.input.read_exact(&mut bytes)?;
                                Ok((member, f64::from_le_bytes(bytes)))
                            })
                            .collect::<Result<_>>()?,
                    ),
                };
                self.pending = Pending::Plain {
                    plain,
                    remaining: remaining - count as u64,
                };
                Ok(Some(Event::Values(values)))
            }
            Pending::Quicklist { remaining, v2 } => {
                self.pending = Pending::Quicklist {
                    remaining: remaining - 1,
                    v2,
                };
                let items = if v2 {
                    let container = self.length()?;
                    let node = self.string()?;
                    match container {
                        // PLAIN: one large element on its own.
                        1 => vec![node],
                        2 => listpack(&node)?,
                        other => {
                            return Err(malformed(format!("quicklist container {other}")));
                        }
                    }
                } else {
                    ziplist(&self.string()?)?
                };
                Ok(Some(Event::Values(Values::Items(items))))
            }
        }
    }

    fn id(&mut self) -> Result<StreamId> {
        Ok((self.length()?, self.length()?))
    }

    /// A stream's metadata after its nodes: last ID, counters, consumer groups with their
    /// consumers and pending entries. A group's pending entries are held while its consumers
    /// are read (each consumer's list names them by ID): some 40 bytes an entry.
    fn stream_meta(&mut self, version: u8) -> Result<StreamMeta> {
        let _length = self.length()?;
        let last_id = self.id()?;
        let entries_added = if version >= 19 {
            let _first_id = self.id()?;
            let max_deleted = self.id()?;
            Some((self.length()?, max_deleted))
        } else {
            None
        };
        let mut groups = Vec::new();
        for _ in 0..self.length()? {
            let name = self.string()?;
            let last_id = self.id()?;
            let entries_read = if version >= 19 {
                Some(self.length()?)
            } else {
                None
            };
            let pending = self.length()?;
            let mut delivered = std::collections::HashMap::new();
            for _ in 0..pending {
                // ID (16 bytes, big-endian), delivery time (8, little-endian), count.
                let id = self.raw_id()?;
                let at = self.bytes(8)?;
                let at = u64::from_le_bytes(at.try_into().expect("8 bytes"));
                delivered.insert(id, (at, self.length()?));
            }
            let mut consumers = Vec::new();
            for _ in 0..self.length()? {
                let name = self.string()?;
                // Seen time, and from RDB type 21 on the active time.
                self.bytes(if version >= 21 { 16 } else { 8 })?;
                let mut pending = Vec::new();
                for _ in 0..self.length()? {
                    let id = self.raw_id()?;
                    let (delivered_at_ms, deliveries) =
                        delivered.get(&id).copied().ok_or_else(|| {
                            malformed("a consumer's pending entry is not the group's")
                        })?;
                    pending.push(PendingEntry {
                        id,
                        delivered_at_ms,
                        deliveries,
                    });
                }
                consumers.push(StreamConsumer { name, pending });
            }
            groups.push(StreamGroup {
                name,
                last_id,
                entries_read,
                pending,
                consumers,
            });
        }
        Ok(StreamMeta {
            last_id,
            entries_added,
            groups,
        })
    }

    /// A stream ID as 16 raw big-endian bytes (in pending entries lists).
    fn raw_id(&mut self) -> Result<StreamId> {
        let raw = self.bytes(16)?;
        let half = |at: usize| u64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        Ok((half(0), half(8)))
    }

    fn u8(&mut self) -> Result<u8> {
        let mut byte = [0u8; 1];
        self.input.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    /// A length, or a special string encoding: (value, is_encoding).
    fn length_or_encoding(&mut self) -> Result<(u64, bool)> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => (u64::from(first & 0x3f), false),
            1 => (
                (u64::from(first & 0x3f) << 8) | u64::from(self.u8()?),
                false,
            ),
            2 => match first {
                0x80 => {
                    let mut bytes = [0u8; 4];
                    self.input.read_exact(&mut bytes)?;
                    (u64::from(u32::from_be_bytes(bytes)), false)
                }
                0x81 => {
                    let mut bytes = [0u8; 8];
                    self.input.read_exact(&mut bytes)?;
                    (u64::from_be_bytes(bytes), false)
                }
                other => return Err(malformed(format!("length prefix {other:#x}"))),
            },
            _ => (u64::from(first & 0x3f), true),
        })
    }

    fn length(&mut self) -> Result<u64> {
        match self.length_or_encoding()? {
            (length, false) => Ok(length),
            (encoding, true) => Err(malformed(format!(
                "a string encoding ({encoding}) where a length belongs"
            ))),
        }
    }

    fn bytes(&mut self, length: u64) -> Result<Vec<u8>> {
        let length = usize::try_from(length).map_err(|_| malformed("a string too long"))?;
        let mut bytes = Vec::new();
        (&mut self.input)
            .take(length as u64)
            .read_to_end(&mut bytes)?;
        if bytes.len() != length {
            return Err(malformed("the stream ended inside a string"));
        }
        Ok(bytes)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.length_or_encoding()? {
            (length, false) => self.bytes(length),
            (0, true) => Ok((self.u8()? as i8).to_string().into_bytes()),
            (1, true) => {
                let mut bytes = [0u8; 2];
                self.input.read_exact(&mut bytes)?;
                Ok(i16::from_le_bytes(bytes).to_string().into_bytes())
            }
            (2, true) => {
                let mut bytes = [0u8; 4];
                self.input.read_exact(&mut bytes)?;
                Ok(i32::from_le_bytes(bytes).to_string().into_bytes())
            }
            (3, true) => {
                let compressed = self.length()?;
                let length = self.length()?;
                let data = self.bytes(compressed)?;
                lzf_decompress(&data, length as usize)
            }
            (other, true) => Err(malformed(format!("string encoding {other}"))),
        }
    }

    /// A score written as text: its length, then the digits (253 NaN, 254 +inf, 255 -inf).
    fn text_double(&mut self) -> Result<f64> {
        match self.u8()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            length => {
                let text = self.bytes(u64::from(length))?;
                parse_double(&text)
            }
        }
    }
}

fn parse_double(text: &[u8]) -> Result<f64> {
    let text = std::str::from_utf8(text).map_err(|_| malformed("a score that is not text"))?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| malformed(format!("score {text:?} is not a number"))),
    }
}

/// LZF decompression (liblzf's format, as Redis writes it).
pub fn lzf_decompress(input: &[u8], length: usize) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(length);
    let mut at = 0;
    let byte = |at: usize| {
        input
            .get(at)
            .copied()
            .ok_or_else(|| malformed("LZF data ends early"))
    };
    while at < input.len() {
        let control = usize::from(input[at]);
        at += 1;
        if control < 32 {
            let run = control + 1;
            let literal = input
                .get(at..at + run)
                .ok_or_else(|| malformed("LZF literal runs past the data"))?;
            out.extend_from_slice(literal);
            at += run;
        } else {
            let mut run = control >> 5;
            if run == 7 {
                run += usize::from(byte(at)?);
                at += 1;
            }
            let back = ((control & 0x1f) << 8) + usize::from(byte(at)?) + 1;
            at += 1;
            let start = out
                .len()
                .checked_sub(back)
                .ok_or_else(|| malformed("LZF back reference before the start"))?;
            for offset in 0..run + 2 {
                let copied = out[start + offset];
                out.push(copied);
            }
        }
        if out.len() > length {
            return Err(malformed("LZF data longer than announced"));
        }
    }
    if out.len() != length {
        return Err(malformed("LZF data shorter than announced"));
    }
    Ok(out)
}

fn slice_at(blob: &[u8], at: usize, len: usize) -> Result<&[u8]> {
    blob.get(at..at + len)
        .ok_or_else(|| malformed("an entry runs past its container"))
}

fn le_signed(bytes: &[u8]) -> i64 {
    // Little-endian, sign-extended from the top byte.
    let mut value: i64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        value |= i64::from(b) << (8 * i);
    }
    let bits = 8 * bytes.len();
    if bits < 64 && value & (1 << (bits - 1)) != 0 {
        value -= 1 << bits;
    }
    value
}

/// The entries of a ziplist (RDB before version 10), integers as decimal text.
pub fn ziplist(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut entries = Vec::new();
    let mut at = 10;
    loop {
        let first = *blob
            .get(at)
            .ok_or_else(|| malformed("a ziplist without its end"))?;
        if first == 0xFF {
            return Ok(entries);
        }
        at += if first < 254 { 1 } else { 5 };
        let encoding = *blob
            .get(at)
            .ok_or_else(|| malformed("a ziplist entry cut short"))?;
        let entry = match encoding >> 6 {
            0 => {
                let length = usize::from(encoding & 0x3f);
                at += 1;
                slice_at(blob, at, length)?.to_vec()
            }
            1 => {
                let length = (usize::from(encoding & 0x3f) << 8)
                    | usize::from(slice_at(blob, at + 1, 1)?[0]);
                at += 2;
                slice_at(blob, at, length)?.to_vec()
            }
            2 => {
                let raw = slice_at(blob, at + 1, 4)?;
                let length = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                at += 5;
                slice_at(blob, at, length)?.to_vec()
            }
            _ => {
                at += 1;
                let (size, value) = match encoding {
                    0xC0 => (2, le_signed(slice_at(blob, at, 2)?)),
                    0xD0 => (4, le_signed(slice_at(blob, at, 4)?)),
                    0xE0 => (8, le_signed(slice_at(blob, at, 8)?)),
                    0xF0 => (3, le_signed(slice_at(blob, at, 3)?)),
                    0xFE => (1, le_signed(slice_at(blob, at, 1)?)),
                    0xF1..=0xFD => (0, i64::from(encoding & 0x0f) - 1),
                    other => return Err(malformed(format!("ziplist encoding {other:#x}"))),
                };
                at += size;
                entries.push(value.to_string().into_bytes());
                continue;
            }
        };
        at += entry.len();
        entries.push(entry);
    }
}

/// The entries of a listpack, integers as decimal text.
pub fn listpack(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut entries = Vec::new();
    let mut at = 6;
    loop {
        let first = *blob
            .get(at)
            .ok_or_else(|| malformed("a listpack without its end"))?;
        if first == 0xFF {
            return Ok(entries);
        }
        let (entry, size) = if first & 0x80 == 0 {
            (i64::from(first & 0x7f).to_string().into_bytes(), 1)
        } else if first & 0xC0 == 0x80 {
            let length = usize::from(first & 0x3f);
            (slice_at(blob, at + 1, length)?.to_vec(), 1 + length)
        } else if first & 0xE0 == 0xC0 {
            let raw = (i64::from(first & 0x1f) << 8) | i64::from(slice_at(blob, at + 1, 1)?[0]);
            let value = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
            (value.to_string().into_bytes(), 2)
        } else if first & 0xF0 == 0xE0 {
            let length =
                (usize::from(first & 0x0f) << 8) | usize::from(slice_at(blob, at + 1, 1)?[0]);
            (slice_at(blob, at + 2, length)?.to_vec(), 2 + length)
        } else {
            match first {
                0xF0 => {
                    let raw = slice_at(blob, at + 1, 4)?;
                    let length = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                    (slice_at(blob, at + 5, length)?.to_vec(), 5 + length)
                }
                0xF1..=0xF4 => {
                    let width = match first {
                        0xF1 => 2,
                        0xF2 => 3,
                        0xF3 => 4,
                        _ => 8,
                    };
                    let value = le_signed(slice_at(blob, at + 1, width)?);
                    (value.to_string().into_bytes(), 1 + width)
                }
                other => return Err(malformed(format!("listpack encoding {other:#x}"))),
            }
        };
        // Each entry ends with its own length, in 1 to 5 bytes.
        let back = match size {
            0..=127 => 1,
            128..=16_382 => 2,
            16_383..=2_097_150 => 3,
            2_097_151..=268_435_454 => 4,
            _ => 5,
        };
        at += size + back;
        entries.push(entry);
    }
}

/// The entries of one stream node: its master ID (16 bytes, big-endian milliseconds and
/// sequence) and its listpack (a master entry naming the common fields, then each entry's
/// flags, ID deltas and fields or values; deleted entries left out).
pub fn stream_node(master: &[u8; 16], node: &[u8]) -> Result<Vec<StreamEntry>> {
    let ms = u64::from_be_bytes(master[..8].try_into().unwrap_or_default());
    let seq = u64::from_be_bytes(master[8..].try_into().unwrap_or_default());
    let items = listpack(node)?;
    let mut at = 0;
    let mut next = || -> Result<&Vec<u8>> {
        let item = items
            .get(at)
            .ok_or_else(|| malformed("a stream node ends inside an entry"))?;
        at += 1;
        Ok(item)
    };
    let number = |item: &Vec<u8>| -> Result<i64> {
        std::str::from_utf8(item)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| malformed("a stream node holds a bad number"))
    };
    let count = number(next()?)? + number(next()?)?;
    let master_fields: Vec<Vec<u8>> = (0..number(next()?)?)
        .map(|_| next().cloned())
        .collect::<Result<_>>()?;
    next()?; // the master entry's terminator
    let mut entries = Vec::new();
    for _ in 0..count {
        let flags = number(next()?)?;
        let id = (
            ms.wrapping_add(number(next()?)? as u64),
            seq.wrapping_add(number(next()?)? as u64),
        );
        let fields = if flags & 2 != 0 {
            master_fields
                .iter()
                .map(|field| Ok((field.clone(), next()?.clone())))
                .collect::<Result<Vec<_>>>()?
        } else {
            (0..number(next()?)?)
                .map(|_| Ok((next()?.clone(), next()?.clone())))
                .collect::<Result<Vec<_>>>()?
        };
        next()?; // lp-count
        if flags & 1 == 0 {
            entries.push(StreamEntry { id, fields });
        }
    }
    Ok(entries)
}

/// The members of an intset, as decimal text.
pub fn intset(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let header = slice_at(blob, 0, 8)?;
    let width = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if ![2, 4, 8].contains(&width) {
        return Err(malformed(format!("intset width {width}")));
    }
    (0..count)
        .map(|i| {
            Ok(le_signed(slice_at(blob, 8 + i * width, width)?)
                .to_string()
                .into_bytes())
        })
        .collect()
}

fn pairs(entries: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if !entries.len().is_multiple_of(2) {
        return Err(malformed("a hash with a field but no value"));
    }
    let mut out = Vec::with_capacity(entries.len() / 2);
    let mut entries = entries.into_iter();
    while let (Some(field), Some(value)) = (entries.next(), entries.next()) {
        out.push((field, value));
    }
    Ok(out)
}

fn scored(entries: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, f64)>> {
    pairs(entries)?
        .into_iter()
        .map(|(member, score)| Ok((member, parse_double(&score)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzf_literals_and_back_references_decompress() {
        // "abcabcabc": a literal run of 3, then a back reference of length 6 at distance 3.
        let data = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&data, 9).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&data, 10).is_err());
        assert!(lzf_decompress(&[0x20, 5], 3).is_err());
    }

    #[test]
    fn ziplist_entries_of_every_encoding() {
        let mut blob = vec![0u8; 10];
        let entries: [&[u8]; 7] = [
            &[0, 0x03, b'a', b'b', b'c'], // 6-bit string
            &[3, 0xFE, 0xF9],             // int8 -7
            &[3, 0xC0, 0x39, 0x30],       // int16 12345
            &[4, 0xF0, 0xFF, 0xFF, 0x7F], // int24 8388607
            &[5, 0xD0, 0, 0, 0, 0x80],    // int32 min
            &[6, 0xF3],                   // immediate 2
            &[2, 0x40, 0x01, b'x'],       // 14-bit string "x"
        ];
        for entry in entries {
            blob.extend_from_slice(entry);
        }
        blob.push(0xFF);
        let values: Vec<String> = ziplist(&blob)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect();
        assert_eq!(
            values,
            ["abc", "-7", "12345", "8388607", "-2147483648", "2", "x"]
        );
        assert!(ziplist(&blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn listpack_entries_of_every_encoding() {
        let mut blob = vec![0u8; 6];
        let entries: [&[u8]; 5] = [
            &[0x05, 1],                         // uint7 5
            &[0x82, b'h', b'i', 3],             // 6-bit string "hi"
            &[0xDF, 0xFF, 2],                   // int13 -1
            &[0xF1, 0x00, 0x80, 3],             // int16 -32768
            &[0xF4, 1, 0, 0, 0, 0, 0, 0, 0, 9], // int64 1
        ];
        for entry in entries {
            blob.extend_from_slice(entry);
        }
        blob.push(0xFF);
        let values: Vec<String> = listpack(&blob)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect();
        assert_eq!(values, ["5", "hi", "-1", "-32768", "1"]);
    }

    #[test]
    fn intsets_of_each_width() {
        let mut blob = 2u32.to_le_bytes().to_vec();
        blob.extend(2u32.to_le_bytes());
        blob.extend((-3i16).to_le_bytes());
        blob.extend(7i16.to_le_bytes());
        assert_eq!(intset(&blob).unwrap(), [b"-3".to_vec(), b"7".to_vec()]);
        assert!(intset(&blob[..9]).is_err());
    }

    #[test]
    fn a_module_value_is_an_error_naming_the_key() {
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend([0xFE, 2, 7, 3, b'm', b'o', b'd']);
        let mut reader = RdbReader::new(&rdb[..]);
        assert_eq!(reader.next_event().unwrap(), Some(Event::Database(2)));
        let error = reader.next_event().unwrap_err().to_string();
        assert!(error.contains("\"mod\"") && error.contains("module") && error.contains("db 2"));
    }
}
