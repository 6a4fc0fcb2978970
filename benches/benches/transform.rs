//! The transform stage alone: a rule with a filter, a rename and computed columns applied to
//! batches of 100k generated rows, at batch sizes 64 … 65536 (throughput in rows).

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_engine::{ChangeBatch, Position, TableId, TableSchema, Transform};
use ferry_sql::{resolve_rules, Rule};
use ferry_transforms::Compiler;

const ROWS: usize = 100_000;

fn table() -> TableSchema {
    TableSchema {
        id: TableId::new("shop", "orders"),
        columns: Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("amount", DataType::Int64, false),
        ])),
        primary_key: vec![0],
        estimated_rows: None,
    }
}

fn batches(batch_size: usize) -> Vec<ChangeBatch> {
    let table = table();
    let id = Arc::new(table.id.clone());
    (0..ROWS)
        .step_by(batch_size)
        .map(|start| {
            let end = (start + batch_size).min(ROWS);
            let ids: Vec<i64> = (start as i64..end as i64).collect();
            let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
            let amounts: Vec<i64> = ids.iter().map(|i| i % 1000).collect();
            let rows = RecordBatch::try_new(
                Arc::clone(&table.columns),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                    Arc::new(Int64Array::from(amounts)),
                ],
            )
            .expect("valid batch");
            ChangeBatch::snapshot(
                Arc::clone(&id),
                rows,
                Position::Snapshot {
                    part: 0,
                    offset: start as u64,
                },
                0,
            )
        })
        .collect()
}

fn transform_throughput(c: &mut Criterion) {
    let table = table();
    let rule = Rule::parse(
        0,
        "INSERT INTO sales.big SELECT id, upper(name) AS full_name, amount * 2 AS doubled FROM shop.orders WHERE amount > 100",
    )
    .expect("rule parses");
    let resolved = resolve_rules(&[rule], std::slice::from_ref(&table)).expect("rule resolves");
    let transform = Compiler::new()
        .compile(&resolved[0], &table.columns, false)
        .expect("rule compiles");
    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    for batch_size in [64, 1024, 8192, 65536] {
        let input = batches(batch_size);
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &input,
            |b, input| {
                b.iter(|| {
                    let mut kept = 0;
                    for batch in input {
                        if let Some(out) = transform.apply(batch).expect("transform succeeds") {
                            kept += out.num_rows();
                        }
                    }
                    kept
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, transform_throughput);
criterion_main!(benches);
