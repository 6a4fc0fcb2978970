//! Rules over keys: which keys and commands move, and into which database.
//!
//! The job's rules see every key of the full copy, and every key a streamed command touches,
//! as a row — `db`, `key`, `type`, `command` — and a [`Selector`] answers, row by row, the
//! target databases it goes to (none: it stays behind). ferry's selector evaluates the
//! rules' SQL with DataFusion over Arrow batches of such rows; this module knows Redis: which
//! arguments of a command are keys ([`CommandTable`], read from the source's own `COMMAND`),
//! and what the target must run so that it holds exactly the selected keys ([`plan`]):
//!
//! - a command whose keys all go to the same databases runs there, once per database;
//! - a command whose keys part ways is split when they are independent (`DEL`, `UNLINK`,
//!   `TOUCH`, `MSET`: each part goes where its keys go); a `RENAME` or `MOVE` out of the
//!   selection deletes the key it took away; a command that would bring a value the target
//!   never had into the selection (`RENAME` into it, `SUNIONSTORE` from unselected keys) is
//!   refused, naming the command and the fix;
//! - a command that replaces a key whatever its type (`SET`, `SUNIONSTORE`) with a type the
//!   rules leave out deletes the key where they held it;
//! - `FLUSHDB` empties the databases its database goes to (refused when another source
//!   database writes into one of them too), `FLUSHALL` every database the rules write;
//!   `SWAPDB` cannot be followed under rules and is refused;
//! - a command without keys or database (`PUBLISH`, `FUNCTION LOAD`) runs once, unless every
//!   rule's WHERE is false for it.
//!
//! A row is dropped only when a rule's condition is false for it: NULL — a column the row does
//! not have, as `command` in the full copy (the key is copied whole), `type` for a command
//! that works on any type (`DEL`, `EXPIRE`, `RENAME`), `key` for `FLUSHDB` — lets it through.
//! So `WHERE type = 'hash'` copies hashes and follows hash commands, and still follows the
//! `DEL` or `EXPIRE` of a hash.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redis_protocol::resp2::types::OwnedFrame;

use crate::error::RedisError;
use crate::sink::RedisWriter;

/// A key or command as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRow<'a> {
    /// The source database.
    pub db: u64,
    /// The key (`None` for a command without one, as `FLUSHDB`).
    pub key: Option<&'a [u8]>,
    /// The key's type as Redis names it (`string`, `list`, `set`, `zset`, `hash`, `stream`);
    /// `None` for a command that works on any type.
    pub kind: Option<&'static str>,
    /// The command, upper case (`None` in the full copy).
    pub command: Option<&'a str>,
}

/// Where rows go: the rules compiled.
pub trait Selector: Send + Sync + std::fmt::Debug {
    /// For each row, the target databases it goes to, ascending and distinct (empty: it does
    /// not move). Fails when a rule cannot be evaluated on these rows.
    fn route(&self, rows: &[KeyRow<'_>]) -> Result<Vec<Vec<u64>>, String>;

    /// The source databases some rule reads, ascending.
    fn source_dbs(&self) -> Vec<u64>;

    /// The target databases some rule writes, ascending.
    fn target_dbs(&self) -> Vec<u64>;

    /// The source databases some rule writes into `target`, ascending.
    fn sources_into(&self, target: u64) -> Vec<u64>;
}

/// A job's rules as a migration applies them: the selector, and the source's commands.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Where keys go.
    pub selector: Arc<dyn Selector>,
    /// Where the source's commands keep their keys.
    pub commands: Arc<CommandTable>,
}

/// A command the target runs: its database and arguments.
pub type Planned = (u64, Vec<Vec<u8>>);

/// Where a command keeps its keys, as the source's `COMMAND` says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeySpec {
    /// Argument index of the first key (0: none), the last (negative: from the end), step.
    first: i64,
    last: i64,
    step: i64,
    /// Keys are found by parsing the arguments (`ZUNIONSTORE`'s numkeys, `SORT … STORE`).
    movable: bool,
    /// The data type its ACL categories name, when exactly one.
    kind: Option<&'static str>,
    /// A container (`XGROUP`, `OBJECT`): what it does depends on its subcommand.
    container: bool,
}

/// The source's commands and where their keys are, read once per connection with `COMMAND`
/// (so commands are known as the source's version defines them, subcommands included).
#[derive(Clone, Debug, Default)]
pub struct CommandTable {
    specs: HashMap<String, KeySpec>,
}

fn text(frame: &OwnedFrame) -> Option<&[u8]> {
    match frame {
        OwnedFrame::BulkString(bytes) | OwnedFrame::SimpleString(bytes) => Some(bytes),
        _ => None,
    }
}

fn texts(frame: Option<&OwnedFrame>) -> Vec<&[u8]> {
    match frame {
        Some(OwnedFrame::Array(items)) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// The data type an ACL category stands for.
fn category_kind(category: &[u8]) -> Option<&'static str> {
    Some(match category {
        b"@string" | b"@bitmap" | b"@hyperloglog" => "string",
        b"@list" => "list",
        b"@set" => "set",
        b"@sortedset" | b"@geo" => "zset",
        b"@hash" => "hash",
        b"@stream" => "stream",
        _ => return None,
    })
}

impl CommandTable {
    /// Reads the table from `source`.
    pub async fn fetch(source: &mut RedisWriter) -> Result<CommandTable, RedisError> {
        let reply = source.request(&[b"COMMAND"]).await?;
        Ok(CommandTable::from_reply(&reply))
    }

    /// The table a `COMMAND` reply describes.
    pub fn from_reply(reply: &OwnedFrame) -> CommandTable {
        let mut table = CommandTable::default();
        if let OwnedFrame::Array(commands) = reply {
            for command in commands {
                table.add(command);
            }
        }
        table
    }

    fn add(&mut self, command: &OwnedFrame) {
        let OwnedFrame::Array(parts) = command else {
            return;
        };
        let integer = |i: usize| match parts.get(i) {
            Some(OwnedFrame::Integer(n)) => *n,
            _ => 0,
        };
        let Some(name) = parts.first().and_then(text) else {
            return;
        };
        let kinds: Vec<&'static str> = texts(parts.get(6))
            .into_iter()
            .filter_map(category_kind)
            .collect();
        let kind = match kinds.as_slice() {
            [one, rest @ ..] if rest.iter().all(|k| k == one) => Some(*one),
            _ => None,
        };
        let spec = KeySpec {
            first: integer(3),
            last: integer(4),
            step: integer(5),
            movable: texts(parts.get(2)).contains(&b"movablekeys".as_slice()),
            kind,
            container: matches!(parts.get(9), Some(OwnedFrame::Array(subs)) if !subs.is_empty()),
        };
        self.specs
            .insert(String::from_utf8_lossy(name).to_lowercase(), spec);
        if let Some(OwnedFrame::Array(subcommands)) = parts.get(9) {
            for subcommand in subcommands {
                self.add(subcommand);
            }
        }
    }

    /// The spec of `args`' command, `name` in lower case: its subcommand's when it has them
    /// (`None` for a subcommand the table does not list).
    fn spec(&self, name: &str, args: &[Vec<u8>]) -> Option<&KeySpec> {
        let spec = self.specs.get(name)?;
        if !spec.container {
            return Some(spec);
        }
        let sub = String::from_utf8_lossy(args.get(1)?).to_lowercase();
        self.specs.get(&format!("{name}|{sub}"))
    }

    /// Whether the table knows any command (the source answered `COMMAND`).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// How a command's keys decide what the target runs.
#[derive(Debug)]
enum Shape {
    /// Keys that move together: the command runs where they all go.
    Together(Vec<usize>),
    /// Keys each with `width` arguments that may be split (`DEL`: 1, `MSET`: 2).
    Independent { keys: Vec<usize>, width: usize },
    /// `RENAME` / `RENAMENX source destination`.
    Rename,
    /// `MOVE key db`: the same key in two databases.
    Move { to: u64 },
    /// `COPY source destination [DB n] [REPLACE]`.
    Copy { to: Option<(usize, u64)> },
    /// `FLUSHDB`.
    FlushDb,
    /// `FLUSHALL`.
    FlushAll,
    /// A command without keys and without a database (`PUBLISH`, `FUNCTION LOAD`): runs once,
    /// unless every rule's WHERE is false for it.
    Keyless,
}

/// A command the rules cannot follow.
fn refused(args: &[Vec<u8>], why: &str) -> String {
    let shown: Vec<String> = args
        .iter()
        .take(6)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    format!(
        "the source ran `{}{}`: {why}",
        shown.join(" "),
        if args.len() > 6 { " …" } else { "" }
    )
}

fn number(arg: Option<&Vec<u8>>) -> Option<u64> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

impl CommandTable {
    /// The shape of one command (`name` in lower case): where its keys are and how they
    /// decide.
    fn shape(&self, name: &str, args: &[Vec<u8>]) -> Result<Shape, String> {
        let from = |first: usize, step: usize| (first..args.len()).step_by(step).collect();
        Ok(match name {
            "flushdb" => Shape::FlushDb,
            "flushall" => Shape::FlushAll,
            "swapdb" => {
                return Err(refused(
                    args,
                    "SWAPDB cannot be followed under rules (the databases' keys would need moving one by one); run the job without rules, or stop it, swap the target's databases the same way and run it again",
                ))
            }
            "rename" | "renamenx" if args.len() == 3 => Shape::Rename,
            "move" if args.len() == 3 => Shape::Move {
                to: number(args.get(2)).ok_or_else(|| refused(args, "no database number"))?,
            },
            "copy" if args.len() >= 3 => {
                let at = args
                    .iter()
                    .skip(3)
                    .position(|a| a.eq_ignore_ascii_case(b"db"))
                    .map(|i| i + 3);
                let to = match at {
                    Some(at) => Some((
                        at,
                        number(args.get(at + 1))
                            .ok_or_else(|| refused(args, "no database number after DB"))?,
                    )),
                    None => None,
                };
                Shape::Copy { to }
            }
            "del" | "unlink" | "touch" => Shape::Independent {
                keys: from(1, 1),
                width: 1,
            },
            "mset" | "msetnx" => Shape::Independent {
                keys: from(1, 2),
                width: 2,
            },
            // destination numkeys key [key …] [WEIGHTS …] [AGGREGATE …]
            "zunionstore" | "zinterstore" | "zdiffstore" => {
                let count = number(args.get(2)).unwrap_or(0) as usize;
                let mut keys = vec![1];
                keys.extend((3..args.len()).take(count));
                Shape::Together(keys)
            }
            // key [… STORE destination]; GEORADIUS key … [STORE | STOREDIST destination]
            "sort" | "georadius" | "georadiusbymember" => {
                let mut keys = vec![1];
                let store = |a: &Vec<u8>| {
                    a.eq_ignore_ascii_case(b"store")
                        || (name != "sort" && a.eq_ignore_ascii_case(b"storedist"))
                };
                // The last one: an earlier STORE may be the key or a pattern.
                if let Some(at) = (2..args.len()).rev().find(|&i| store(&args[i])) {
                    if at + 1 < args.len() {
                        keys.push(at + 1);
                    }
                }
                Shape::Together(keys)
            }
            // A channel, not a key: not bound to a database either.
            "publish" | "spublish" => Shape::Keyless,
            _ => match self.spec(name, args) {
                Some(spec) if spec.movable => {
                    return Err(refused(
                        args,
                        "ferry does not know where this command keeps its keys, so it cannot apply rules to it; run the job without rules",
                    ))
                }
                Some(spec) if spec.first > 0 => {
                    let last = if spec.last < 0 {
                        args.len() as i64 + spec.last
                    } else {
                        spec.last.min(args.len() as i64 - 1)
                    };
                    let step = spec.step.max(1) as usize;
                    Shape::Together(
                        (spec.first as usize..=last.max(0) as usize)
                            .step_by(step)
                            .filter(|&i| i < args.len())
                            .collect(),
                    )
                }
                Some(_) => Shape::Keyless,
                None => {
                    return Err(refused(
                        args,
                        "the source's COMMAND table does not list this command, so ferry cannot tell its keys; run the job without rules",
                    ))
                }
            },
        })
    }

    /// The type a command (`name` in lower case) works on, when one.
    fn kind(&self, name: &str, args: &[Vec<u8>]) -> Option<&'static str> {
        match name {
            "zunionstore" | "zinterstore" | "zdiffstore" => Some("zset"),
            "mset" | "msetnx" => Some("string"),
            _ => self.spec(name, args).and_then(|spec| spec.kind),
        }
    }
}

/// What the target runs for `commands` (each with the source database it ran in): per
/// command, in order, the commands for the target. Commands without a key (`SELECT`,
/// `MULTI`, `PING`) are the caller's; every command given here is planned.
pub fn plan(
    selector: &dyn Selector,
    table: &CommandTable,
    commands: &[(u64, &[Vec<u8>])],
) -> Result<Vec<Vec<Planned>>, String> {
    let mut shapes = Vec::with_capacity(commands.len());
    // Each command's name as the rules see it (upper case) and as the table files it (lower),
    // and the type it works on.
    let mut names = Vec::with_capacity(commands.len());
    let mut kinds = Vec::with_capacity(commands.len());
    // Rows of every command, and where each command's rows start.
    let mut starts = Vec::with_capacity(commands.len() + 1);
    let mut rows: Vec<KeyRow<'_>> = Vec::new();
    for &(_, args) in commands {
        let name = args
            .first()
            .ok_or_else(|| "an empty command in the stream".to_string())?;
        let name = String::from_utf8_lossy(name);
        names.push((name.to_uppercase(), name.to_lowercase()));
    }
    let source_dbs = selector.source_dbs();
    for (i, &(db, args)) in commands.iter().enumerate() {
        let (upper, lower) = &names[i];
        let shape = table.shape(lower, args)?;
        starts.push(rows.len());
        let command = Some(upper.as_str());
        let kind = table.kind(lower, args);
        kinds.push(kind);
        let key_row = |at: usize, db: u64| KeyRow {
            db,
            key: Some(args[at].as_slice()),
            kind,
            command,
        };
        match &shape {
            Shape::Together(keys) | Shape::Independent { keys, .. } => {
                rows.extend(keys.iter().map(|&at| key_row(at, db)));
            }
            Shape::Rename => rows.extend([key_row(1, db), key_row(2, db)]),
            Shape::Move { to } => rows.extend([key_row(1, db), key_row(1, *to)]),
            Shape::Copy { to } => {
                rows.extend([key_row(1, db), key_row(2, to.map_or(db, |(_, n)| n))]);
            }
            Shape::FlushDb => rows.push(KeyRow {
                db,
                key: None,
                kind: None,
                command,
            }),
            // Not bound to the database the stream is in: every rule has its say.
            Shape::FlushAll | Shape::Keyless => rows.extend(source_dbs.iter().map(|&db| KeyRow {
                db,
                key: None,
                kind: None,
                command,
            })),
        }
        shapes.push(shape);
    }
    starts.push(rows.len());
    // A command of one type that may replace a key of any other (`SET` over a hash): each
    // such key once more as of no type, to find where the rules held the key it replaces.
    let mut replaced = Vec::new();
    for (i, &(db, args)) in commands.iter().enumerate() {
        let Some(kind) = kinds[i] else {
            continue;
        };
        let (upper, lower) = &names[i];
        for at in overwritten(lower, &shapes[i], args) {
            let key = Some(args[at].as_slice());
            let command = Some(upper.as_str());
            replaced.push((i, at, rows.len()));
            rows.push(KeyRow {
                db,
                key,
                kind: Some(kind),
                command,
            });
            rows.push(KeyRow {
                db,
                key,
                kind: None,
                command,
            });
        }
    }
    let routes = selector.route(&rows)?;
    let mut plans = Vec::with_capacity(commands.len());
    for (i, (shape, &(db, args))) in shapes.into_iter().zip(commands).enumerate() {
        let own = &routes[starts[i]..starts[i + 1]];
        if let Shape::FlushDb = shape {
            for &target in own.iter().flatten() {
                let others: Vec<u64> = selector
                    .sources_into(target)
                    .into_iter()
                    .filter(|&source| source != db)
                    .collect();
                if !others.is_empty() {
                    return Err(refused(
                        args,
                        &format!("target database {target} also holds keys of source database(s) {others:?}, which emptying it would lose; give each source database its own target database, or leave FLUSHDB out (WHERE command <> 'FLUSHDB')"),
                    ));
                }
            }
        }
        let mut plan = combine(shape, args, own)?;
        for &(_, at, row) in replaced.iter().filter(|(command, ..)| *command == i) {
            let (typed, untyped) = (&routes[row], &routes[row + 1]);
            // The key now holds a type the rules leave out: where they held it, it goes.
            for &target in untyped.iter().filter(|t| !typed.contains(t)) {
                plan.push((target, vec![b"DEL".to_vec(), args[at].clone()]));
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// The keys a command (`name` in lower case) may replace whatever type they held, by
/// argument index.
fn overwritten(name: &str, shape: &Shape, args: &[Vec<u8>]) -> Vec<usize> {
    match (name, shape) {
        ("set" | "setex" | "psetex", _) => vec![1],
        ("mset" | "msetnx", Shape::Independent { keys, .. }) => keys.clone(),
        (
            "sunionstore" | "sinterstore" | "sdiffstore" | "zunionstore" | "zinterstore"
            | "zdiffstore" | "zrangestore" | "geosearchstore",
            _,
        ) => vec![1],
        ("bitop", _) if args.len() > 2 => vec![2],
        ("sort" | "georadius" | "georadiusbymember", Shape::Together(keys)) => {
            keys.get(1).copied().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// The one database a key goes to, when it goes to at most one.
fn single(args: &[Vec<u8>], route: &[u64]) -> Result<Option<u64>, String> {
    match route {
        [] => Ok(None),
        [db] => Ok(Some(*db)),
        _ => Err(refused(
            args,
            "the key goes to several databases by several rules, and this command cannot be followed in more than one; give the key one rule",
        )),
    }
}

/// What the target runs for one command, from its rows' routes.
fn combine(shape: Shape, args: &[Vec<u8>], routes: &[Vec<u64>]) -> Result<Vec<Planned>, String> {
    let everywhere = |dbs: &[u64], args: &[Vec<u8>]| -> Vec<Planned> {
        dbs.iter().map(|&db| (db, args.to_vec())).collect()
    };
    let all_alike = routes.windows(2).all(|pair| pair[0] == pair[1]);
    Ok(match shape {
        Shape::Together(_) | Shape::FlushDb if all_alike => {
            everywhere(routes.first().map_or(&[][..], Vec::as_slice), args)
        }
        Shape::Together(_) | Shape::FlushDb => {
            return Err(refused(
                args,
                "its keys go different ways under the rules (some selected, some not, or into different databases), so the target cannot run it; widen the rule so all of them are selected together",
            ))
        }
        Shape::Independent { keys, width } => {
            if all_alike {
                everywhere(routes.first().map_or(&[][..], Vec::as_slice), args)
            } else {
                // Each part goes where its keys go, as a command of the same kind.
                let name = if args[0].eq_ignore_ascii_case(b"msetnx") {
                    b"MSET".to_vec()
                } else {
                    args[0].clone()
                };
                let mut parts: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
                for (&at, route) in keys.iter().zip(routes) {
                    for &db in route {
                        let part = parts.entry(db).or_insert_with(|| vec![name.clone()]);
                        part.extend(args[at..(at + width).min(args.len())].iter().cloned());
                    }
                }
                parts.into_iter().collect()
            }
        }
        Shape::Rename => {
            let (from, to) = (&routes[0], &routes[1]);
            if args[1] == args[2] {
                return Ok(Vec::new());
            }
            if let Some(db) = to.iter().find(|db| !from.contains(db)) {
                return Err(refused(
                    args,
                    &format!("the new name is selected (into database {db}) but the old one is not, so the target never had the value; widen the rule so both names are selected"),
                ));
            }
            let mut out = Vec::new();
            for &db in from {
                let (source, destination) = (&args[1], &args[2]);
                if to.contains(&db) {
                    // RENAME fails when the target lacks the source key (a type the rules
                    // left out): emptying the destination first and copying keeps both ends
                    // right either way.
                    out.push((db, vec![b"DEL".to_vec(), destination.clone()]));
                    out.push((
                        db,
                        vec![b"COPY".to_vec(), source.clone(), destination.clone()],
                    ));
                }
                out.push((db, vec![b"DEL".to_vec(), source.clone()]));
            }
            out
        }
        Shape::Move { .. } => {
            let (from, to) = (single(args, &routes[0])?, single(args, &routes[1])?);
            match (from, to) {
                (None, None) => Vec::new(),
                (Some(a), Some(b)) if a == b => Vec::new(),
                (Some(a), Some(b)) => vec![(
                    a,
                    vec![b"MOVE".to_vec(), args[1].clone(), b.to_string().into_bytes()],
                )],
                (Some(a), None) => vec![(a, vec![b"DEL".to_vec(), args[1].clone()])],
                (None, Some(b)) => {
                    return Err(refused(
                        args,
                        &format!("the key moves into a database the rules select (target {b}) from one they do not, so the target never had its value; widen the rule"),
                    ))
                }
            }
        }
        Shape::Copy { to: option } => {
            let (from, to) = (single(args, &routes[0])?, single(args, &routes[1])?);
            match (from, to) {
                (_, None) => Vec::new(),
                (Some(a), Some(b)) => {
                    let mut copy: Vec<Vec<u8>> = match option {
                        Some((at, _)) => [&args[..at], &args[at + 2..]].concat(),
                        None => args.to_vec(),
                    };
                    if a != b {
                        copy.push(b"DB".to_vec());
                        copy.push(b.to_string().into_bytes());
                    }
                    vec![(a, copy)]
                }
                (None, Some(b)) => {
                    return Err(refused(
                        args,
                        &format!("the copy lands in a key the rules select (target database {b}) from one they do not, so the target never had its value; widen the rule"),
                    ))
                }
            }
        }
        Shape::FlushAll => {
            let mut dbs: Vec<u64> = routes.iter().flatten().copied().collect();
            dbs.sort_unstable();
            dbs.dedup();
            let mut flush = args.to_vec();
            flush[0] = b"FLUSHDB".to_vec();
            everywhere(&dbs, &flush)
        }
        Shape::Keyless => match routes.iter().flatten().min() {
            Some(&db) => vec![(db, args.to_vec())],
            None => Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// db 0 keys `user:*` → db 3; db 1 everything → db 1 and db 2; NULL passes.
    #[derive(Debug)]
    struct Two;

    impl Selector for Two {
        fn route(&self, rows: &[KeyRow<'_>]) -> Result<Vec<Vec<u64>>, String> {
            Ok(rows
                .iter()
                .map(|row| match row.db {
                    0 if row.key.is_none_or(|k| k.starts_with(b"user:")) => vec![3],
                    1 => vec![1, 2],
                    4 => vec![3],
                    _ => vec![],
                })
                .collect())
        }
        fn source_dbs(&self) -> Vec<u64> {
            vec![0, 1, 4]
        }
        fn target_dbs(&self) -> Vec<u64> {
            vec![1, 2, 3]
        }
        fn sources_into(&self, target: u64) -> Vec<u64> {
            match target {
                1 | 2 => vec![1],
                3 => vec![0, 4],
                _ => vec![],
            }
        }
    }

    fn frame(name: &str, first: i64, last: i64, step: i64, flags: &[&str]) -> OwnedFrame {
        let category = if name.starts_with('h') {
            "@hash"
        } else {
            "@string"
        };
        let strings = |items: &[&str]| {
            OwnedFrame::Array(
                items
                    .iter()
                    .map(|s| OwnedFrame::SimpleString(s.as_bytes().to_vec()))
                    .collect(),
            )
        };
        OwnedFrame::Array(vec![
            OwnedFrame::BulkString(name.as_bytes().to_vec()),
            OwnedFrame::Integer(-2),
            strings(flags),
            OwnedFrame::Integer(first),
            OwnedFrame::Integer(last),
            OwnedFrame::Integer(step),
            strings(&["@write", category]),
            strings(&[]),
            strings(&[]),
            strings(&[]),
        ])
    }

    fn table() -> CommandTable {
        CommandTable::from_reply(&OwnedFrame::Array(vec![
            frame("set", 1, 1, 1, &["write"]),
            frame("hset", 1, 1, 1, &["write"]),
            frame("sunionstore", 1, -1, 1, &["write"]),
            frame("publish", 0, 0, 0, &["pubsub"]),
            frame("eval", 0, 0, 0, &["movablekeys"]),
        ]))
    }

    fn args(text: &str) -> Vec<Vec<u8>> {
        text.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn run(db: u64, text: &str) -> Result<Vec<(u64, String)>, String> {
        let args = args(text);
        let plans = plan(&Two, &table(), &[(db, &args)])?;
        Ok(plans[0]
            .iter()
            .map(|(db, args)| {
                let words: Vec<String> = args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                (*db, words.join(" "))
            })
            .collect())
    }

    fn ok(db: u64, text: &str) -> Vec<(u64, String)> {
        run(db, text).unwrap()
    }

    fn one(db: u64, text: &str) -> (u64, String) {
        (db, text.to_string())
    }

    #[test]
    fn commands_go_where_their_keys_go() {
        assert_eq!(ok(0, "set user:1 a"), [one(3, "set user:1 a")]);
        assert_eq!(ok(0, "set order:1 a"), []);
        assert_eq!(
            ok(1, "set x a"),
            [one(1, "set x a"), one(2, "set x a")],
            "a key two rules select goes to both"
        );
        assert_eq!(ok(5, "set x a"), []);
        assert_eq!(
            ok(0, "sunionstore user:a user:b user:c"),
            [one(3, "sunionstore user:a user:b user:c")]
        );
        let error = run(0, "sunionstore user:a order:b").unwrap_err();
        assert!(error.contains("widen the rule"), "{error}");
        assert!(run(0, "eval x 0").unwrap_err().contains("without rules"));
        assert!(run(0, "nosuch x").unwrap_err().contains("COMMAND table"));
    }

    #[test]
    fn independent_keys_are_split() {
        assert_eq!(
            ok(0, "del user:1 order:1 user:2"),
            [one(3, "del user:1 user:2")]
        );
        assert_eq!(
            ok(0, "msetnx user:1 a order:1 b"),
            [one(3, "MSET user:1 a")]
        );
        assert_eq!(ok(0, "del user:1 user:2"), [one(3, "del user:1 user:2")]);
    }

    #[test]
    fn renames_moves_and_copies_keep_the_selection() {
        assert_eq!(
            ok(0, "rename user:1 user:2"),
            [
                one(3, "DEL user:2"),
                one(3, "COPY user:1 user:2"),
                one(3, "DEL user:1")
            ]
        );
        assert_eq!(ok(0, "rename user:1 order:1"), [one(3, "DEL user:1")]);
        assert_eq!(ok(0, "rename order:1 order:2"), []);
        assert!(run(0, "rename order:1 user:1").is_err());
        assert_eq!(ok(0, "move user:1 5"), [one(3, "DEL user:1")]);
        assert!(run(0, "move user:1 1").is_err(), "db 1 fans out to two");
        assert_eq!(ok(5, "copy a b"), []);
        assert_eq!(
            ok(0, "copy user:1 user:2 REPLACE"),
            [one(3, "copy user:1 user:2 REPLACE")]
        );
        assert!(run(5, "move user:1 0").is_err());
        assert_eq!(ok(5, "move x 0"), []);
    }

    /// db 0, hashes only; NULL passes.
    #[derive(Debug)]
    struct Hashes;

    impl Selector for Hashes {
        fn route(&self, rows: &[KeyRow<'_>]) -> Result<Vec<Vec<u64>>, String> {
            Ok(rows
                .iter()
                .map(|row| match (row.db, row.kind) {
                    (0, None | Some("hash")) => vec![0],
                    _ => vec![],
                })
                .collect())
        }
        fn source_dbs(&self) -> Vec<u64> {
            vec![0]
        }
        fn target_dbs(&self) -> Vec<u64> {
            vec![0]
        }
        fn sources_into(&self, _: u64) -> Vec<u64> {
            vec![0]
        }
    }

    #[test]
    fn a_key_replaced_by_a_type_the_rules_leave_out_goes() {
        let run = |text: &str| {
            let args = args(text);
            plan(&Hashes, &table(), &[(0, &args)]).unwrap().remove(0)
        };
        let words = |plan: Vec<Planned>| -> Vec<(u64, Vec<u8>)> {
            plan.into_iter()
                .map(|(db, args)| (db, args.concat()))
                .collect()
        };
        assert_eq!(words(run("set h x")), [(0, b"DELh".to_vec())]);
        assert_eq!(words(run("hset h f v")), [(0, b"hsethfv".to_vec())]);
        // (The test table files every command but HSET under strings.)
        assert_eq!(words(run("sunionstore h a")), [(0, b"DELh".to_vec())]);
        assert_eq!(
            words(run("mset a 1 b 2")),
            [(0, b"DELa".to_vec()), (0, b"DELb".to_vec())]
        );
    }

    #[test]
    fn flushes_and_keyless_commands() {
        assert_eq!(ok(1, "flushdb"), [one(1, "flushdb"), one(2, "flushdb")]);
        let error = run(0, "flushdb").unwrap_err();
        assert!(
            error.contains("also holds keys of source database(s) [4]"),
            "{error}"
        );
        assert_eq!(ok(5, "flushdb"), []);
        assert_eq!(
            ok(5, "flushall ASYNC"),
            [
                one(1, "FLUSHDB ASYNC"),
                one(2, "FLUSHDB ASYNC"),
                one(3, "FLUSHDB ASYNC")
            ]
        );
        assert_eq!(ok(0, "publish ch m"), [one(1, "publish ch m")]);
        assert_eq!(
            ok(5, "publish ch m"),
            [one(1, "publish ch m")],
            "not bound to the stream's database"
        );
        assert!(run(0, "swapdb 0 1").unwrap_err().contains("SWAPDB"));
    }
}
