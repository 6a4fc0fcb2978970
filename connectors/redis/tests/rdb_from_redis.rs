//! The RDB reader against what a real Redis writes: every type in each encoding Redis chooses
//! for small and large values, integers, compressed strings, expiries and two databases,
//! compared with the data written; large values arrive in bounded slices.

use std::collections::{BTreeMap, BTreeSet};

use ferry_redis::rdb::{Event, Kind, RdbReader, Values};
use ferry_testkit::RedisServer;

/// A key's value as a model, order-free where Redis's is.
#[derive(Debug, PartialEq)]
enum Model {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    SortedSet(BTreeMap<Vec<u8>, String>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// A key: its database and name.
type Key = (u64, Vec<u8>);

type Keys = BTreeMap<Key, (Model, Option<i64>)>;

fn b(text: impl AsRef<str>) -> Vec<u8> {
    text.as_ref().as_bytes().to_vec()
}

/// Writes the data set and returns what it should read back as.
fn populate(server: &RedisServer) -> Keys {
    let mut commands = String::new();
    let mut expected = Keys::new();
    let mut put = |db: u64, key: &str, model: Model, expire: Option<i64>| {
        expected.insert((db, b(key)), (model, expire));
    };
    commands.push_str("SET s:int 12345\nSET s:neg -7\nSET s:small \"hello world\"\n");
    put(0, "s:int", Model::String(b("12345")), None);
    put(0, "s:neg", Model::String(b("-7")), None);
    put(0, "s:small", Model::String(b("hello world")), None);
    let big = "ab".repeat(5000);
    commands.push_str(&format!("SET s:big {big}\n"));
    put(0, "s:big", Model::String(b(&big)), None);
    commands.push_str("SET s:ttl t\nPEXPIREAT s:ttl 4102444800000\n");
    put(0, "s:ttl", Model::String(b("t")), Some(4_102_444_800_000));

    commands.push_str("RPUSH l:small a b c 1 -2\n");
    put(
        0,
        "l:small",
        Model::List(vec![b("a"), b("b"), b("c"), b("1"), b("-2")]),
        None,
    );
    let items: Vec<String> = (0..3000).map(|i| format!("item-{i}")).collect();
    for chunk in items.chunks(500) {
        commands.push_str(&format!("RPUSH l:big {}\n", chunk.join(" ")));
    }
    put(0, "l:big", Model::List(items.iter().map(b).collect()), None);

    commands.push_str("SADD set:ints 1 2 3 -5 100000\nSADD set:small a b c\n");
    put(
        0,
        "set:ints",
        Model::Set(["1", "2", "3", "-5", "100000"].iter().map(b).collect()),
        None,
    );
    put(
        0,
        "set:small",
        Model::Set(["a", "b", "c"].iter().map(b).collect()),
        None,
    );
    let members: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    for chunk in members.chunks(500) {
        commands.push_str(&format!("SADD set:big {}\n", chunk.join(" ")));
    }
    put(
        0,
        "set:big",
        Model::Set(members.iter().map(b).collect()),
        None,
    );

    commands.push_str("ZADD z:small 1.5 a 2 b -3 c\n");
    put(
        0,
        "z:small",
        Model::SortedSet(
            [("a", "1.5"), ("b", "2"), ("c", "-3")]
                .iter()
                .map(|(m, s)| (b(m), s.to_string()))
                .collect(),
        ),
        None,
    );
    let mut zbig = BTreeMap::new();
    for chunk in (0..300).collect::<Vec<i32>>().chunks(100) {
        let pairs: Vec<String> = chunk
            .iter()
            .map(|i| format!("{} z{i}", f64::from(*i) * 0.5))
            .collect();
        commands.push_str(&format!("ZADD z:big {}\n", pairs.join(" ")));
        for i in chunk {
            zbig.insert(b(format!("z{i}")), (f64::from(*i) * 0.5).to_string());
        }
    }
    put(0, "z:big", Model::SortedSet(zbig), None);

    commands.push_str("HSET h:small f1 v1 f2 2\n");
    put(
        0,
        "h:small",
        Model::Hash(
            [(b("f1"), b("v1")), (b("f2"), b("2"))]
                .into_iter()
                .collect(),
        ),
        None,
    );
    let mut hbig = BTreeMap::new();
    for chunk in (0..1000).collect::<Vec<i32>>().chunks(250) {
        let pairs: Vec<String> = chunk.iter().map(|i| format!("field{i} value{i}")).collect();
        commands.push_str(&format!("HSET h:big {}\n", pairs.join(" ")));
        for i in chunk {
            hbig.insert(b(format!("field{i}")), b(format!("value{i}")));
        }
    }
    put(0, "h:big", Model::Hash(hbig), None);
    server.commands(0, &commands).unwrap();
    server.commands(3, "SET other x\n").unwrap();
    expected.insert((3, b("other")), (Model::String(b("x")), None));
    expected
}

/// Reads an RDB into the model, checking every slice's size against `slice`.
fn read(rdb: &[u8], slice: usize) -> (Keys, usize) {
    let mut reader = RdbReader::new(rdb).with_slice(slice);
    let mut keys = Keys::new();
    let mut current: Option<(Key, Model, Option<i64>)> = None;
    let mut slices = 0;
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::Key(start) => {
                let model = match start.kind {
                    Kind::String => Model::String(Vec::new()),
                    Kind::List => Model::List(Vec::new()),
                    Kind::Set => Model::Set(BTreeSet::new()),
                    Kind::SortedSet => Model::SortedSet(BTreeMap::new()),
                    Kind::Hash => Model::Hash(BTreeMap::new()),
                    // Streams have a test of their own (replica_link.rs).
                    Kind::Stream => panic!("no stream in this data set"),
                };
                current = Some(((start.db, start.key), model, start.expire_at_ms));
            }
            Event::Values(values) => {
                slices += 1;
                // Plain encodings come in slices of `slice` elements; compact ones (a
                // listpack, a quicklist node) whole, within the server's limits: 128 entries,
                // 8 KB per list node by default.
                let bytes = match &values {
                    Values::String(_) => 0,
                    other => other.payload_bytes(),
                };
                assert!(
                    values.len() <= slice.max(128) || bytes <= 8192,
                    "{} elements, {bytes} bytes in a slice",
                    values.len()
                );
                let (_, model, _) = current.as_mut().expect("values inside a key");
                match (model, values) {
                    (Model::String(s), Values::String(v)) => *s = v,
                    (Model::List(l), Values::Items(v)) => l.extend(v),
                    (Model::Set(s), Values::Items(v)) => s.extend(v),
                    (Model::SortedSet(z), Values::Scored(v)) => {
                        z.extend(v.into_iter().map(|(m, s)| (m, s.to_string())))
                    }
                    (Model::Hash(h), Values::Pairs(v)) => h.extend(v),
                    (model, values) => panic!("{values:?} in {model:?}"),
                }
            }
            Event::KeyEnd => {
                let (key, model, expire) = current.take().expect("a key to end");
                keys.insert(key, (model, expire));
            }
            Event::Aux { .. } | Event::Database(_) | Event::Function(_) => {}
        }
    }
    (keys, slices)
}

#[test]
fn every_type_and_encoding_redis_writes_reads_back_exactly() {
    let server = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let expected = populate(&server);
    server.cli(&["SAVE"]).unwrap();
    let rdb = std::fs::read(server.dir().join("dump.rdb")).unwrap();
    let (keys, slices) = read(&rdb, 100);
    assert_eq!(keys.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(keys.get(key), Some(want), "key {key:?}");
    }
    // The 1000-field hash, 2000-member set and 300-member sorted set came in slices of 100.
    assert!(slices >= 10 + 20 + 3, "{slices} slices");
    let (again, _) = read(&rdb, 1);
    assert_eq!(again, keys);
}
