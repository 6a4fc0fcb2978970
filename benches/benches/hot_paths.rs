//! The hot paths below the pipeline, each alone: the coalescer folding change rows by key, the
//! binary COPY encoder and decoder (PostgreSQL sink and snapshot), the pgoutput decoder
//! (PostgreSQL change feed) and the RDB reader (Redis full copy). Throughput in rows (keys for
//! the RDB).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_engine::{ChangeBatch, Coalescer, Op, Position, TableId};

const ROWS: usize = 100_000;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Int32, true),
    ]))
}

fn rows(start: usize, end: usize) -> RecordBatch {
    let ids: Vec<i64> = (start as i64..end as i64).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("customer-{i}")).collect();
    let amounts: Vec<i32> = ids.iter().map(|i| (i % 1000) as i32).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(names)),
        Arc::new(Int32Array::from(amounts)),
    ];
    RecordBatch::try_new(schema(), columns).expect("a batch")
}

/// Change batches of `batch_size` rows over 10 000 keys: inserts, updates (before and after)
/// and deletes, as a busy table sends them.
fn changes(batch_size: usize) -> Vec<ChangeBatch> {
    let table = Arc::new(TableId::new("shop", "orders"));
    (0..ROWS)
        .step_by(batch_size)
        .map(|start| {
            let end = (start + batch_size).min(ROWS);
            let batch = rows(start, end);
            let key: Vec<i64> = (start..end).map(|i| (i % 10_000) as i64).collect();
            let mut columns = batch.columns().to_vec();
            columns[0] = Arc::new(Int64Array::from(key));
            let ops: Vec<u8> = (start..end)
                .map(|i| match i % 10 {
                    0..=3 => Op::Insert,
                    4 | 6 => Op::UpdateBefore,
                    5 | 7 => Op::UpdateAfter,
                    _ => Op::Delete,
                } as u8)
                .collect();
            let unchanged = vec![None; columns.len()];
            ChangeBatch::changes(
                Arc::clone(&table),
                schema(),
                columns,
                ops,
                unchanged,
                Position::Postgres { lsn: end as u64 },
                0,
            )
            .expect("a change batch")
        })
        .collect()
}

fn coalescer(c: &mut Criterion) {
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Elements(ROWS as u64));
    for batch_size in [64, 1024, 8192] {
        let batches = changes(batch_size);
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &batches,
            |b, batches| {
                b.iter(|| {
                    let mut coalescer =
                        Coalescer::new(Arc::new(TableId::new("shop", "orders")), schema(), vec![0])
                            .expect("a coalescer");
                    for batch in batches {
                        coalescer.push(batch).expect("push");
                    }
                    coalescer.finish().expect("finish")
                })
            },
        );
    }
    group.finish();
}

fn copy_codec(c: &mut Criterion) {
    let batch = rows(0, ROWS);
    let stream = ferry_postgres::bench::copy_encode(&batch).expect("encode");
    let decoded = ferry_postgres::bench::copy_decode(&stream, &batch, 8192).expect("decode");
    assert_eq!(decoded, ROWS, "the COPY stream decodes to every row");
    let mut group = c.benchmark_group("copy");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("encode", |b| {
        b.iter(|| ferry_postgres::bench::copy_encode(&batch).expect("encode"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| ferry_postgres::bench::copy_decode(&stream, &batch, 8192).expect("decode"))
    });
    group.finish();
}

fn pgoutput(c: &mut Criterion) {
    let messages = ferry_postgres::bench::pgoutput_messages(ROWS);
    let decoded = ferry_postgres::bench::pgoutput_decode(&messages, 8192).expect("decode");
    assert_eq!(decoded, ROWS, "every change decodes to one row");
    let mut group = c.benchmark_group("pgoutput_decode");
    group.throughput(Throughput::Elements(ROWS as u64));
    for batch_size in [64, 1024, 8192] {
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &messages,
            |b, messages| {
                b.iter(|| {
                    ferry_postgres::bench::pgoutput_decode(messages, batch_size).expect("decode")
                })
            },
        );
    }
    group.finish();
}

/// An RDB of `keys` string keys and a tenth as many sets of 16 members, plain-encoded.
fn rdb(keys: usize) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &[u8]) {
        assert!(text.len() < 64);
        out.push(text.len() as u8);
        out.extend_from_slice(text);
    }
    let mut out = b"REDIS0011".to_vec();
    out.extend([0xFE, 0]);
    for i in 0..keys {
        out.push(0);
        string(&mut out, format!("key:{i}").as_bytes());
        string(&mut out, format!("value-{i}-{}", "x".repeat(24)).as_bytes());
        if i % 10 == 0 {
            out.push(2);
            string(&mut out, format!("set:{i}").as_bytes());
            out.push(16);
            for m in 0..16 {
                string(&mut out, format!("member-{m}").as_bytes());
            }
        }
    }
    out.push(0xFF);
    out.extend([0; 8]);
    out
}

fn rdb_reader(c: &mut Criterion) {
    let keys = ROWS;
    let bytes = rdb(keys);
    let mut reader = ferry_redis::rdb::RdbReader::new(bytes.as_slice());
    let mut keys_read = 0;
    while let Some(event) = reader.next_event().expect("an event") {
        keys_read += usize::from(matches!(event, ferry_redis::rdb::Event::Key(_)));
    }
    assert_eq!(keys_read, keys + keys / 10, "every key is read");
    let mut group = c.benchmark_group("rdb");
    group.throughput(Throughput::Elements((keys + keys / 10) as u64));
    group.bench_function("read", |b| {
        b.iter(|| {
            let mut reader = ferry_redis::rdb::RdbReader::new(bytes.as_slice());
            let mut events = 0u64;
            while reader.next_event().expect("an event").is_some() {
                events += 1;
            }
            events
        })
    });
    group.finish();
}

criterion_group!(benches, coalescer, copy_codec, pgoutput, rdb_reader);
criterion_main!(benches);
