//! Entry points for ferry's benchmarks (`benches/`): the binary COPY codec driven from outside
//! the crate. Not an API; the connector uses the same code through its sink and snapshot.

use arrow::record_batch::RecordBatch;
use bytes::BytesMut;

use crate::decode::CopyDecoder;
use crate::encode::{CopyEncoder, TargetColumn};
use crate::error::PgError;
use crate::types::PgType;

fn types(batch: &RecordBatch) -> Vec<PgType> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| PgType::for_arrow_field(f).map_or(PgType::Text, |(ty, _)| ty))
        .collect()
}

/// `batch` as a binary COPY stream (header, rows, trailer), each column as the type ferry
/// creates for its Arrow type.
pub fn copy_encode(batch: &RecordBatch) -> Result<BytesMut, PgError> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(types(batch))
        .map(|(field, ty)| TargetColumn {
            name: field.name().clone(),
            ty,
        })
        .collect();
    let mut out = BytesMut::new();
    CopyEncoder::header(&mut out);
    CopyEncoder::new("bench".into(), columns).encode(batch, &mut out)?;
    CopyEncoder::trailer(&mut out);
    Ok(out)
}

/// Decodes a binary COPY stream of rows shaped like `like` into batches of `batch_size`;
/// returns the rows decoded.
pub fn copy_decode(stream: &[u8], like: &RecordBatch, batch_size: usize) -> Result<usize, PgError> {
    let mut decoder = CopyDecoder::new("bench".into(), like.schema(), &types(like), batch_size);
    let mut ready = Vec::new();
    // In the chunks a socket hands over.
    for chunk in stream.chunks(64 * 1024) {
        decoder.feed(chunk, &mut ready)?;
    }
    let last = decoder.finish()?;
    Ok(ready.iter().map(|(b, _)| b.num_rows()).sum::<usize>()
        + last.map_or(0, |(b, _)| b.num_rows()))
}

/// pgoutput messages of one transaction on `shop.orders (id int8, name text, amount int4)`:
/// its Relation, then `rows` changes (inserts, and every fourth an update of the row before
/// it), values in binary as ferry asks for them.
pub fn pgoutput_messages(rows: usize) -> Vec<Vec<u8>> {
    use bytes::BufMut;
    let mut relation = BytesMut::new();
    relation.put_u8(b'R');
    relation.put_u32(7);
    relation.put_slice(b"shop\0orders\0");
    relation.put_u8(b'd');
    relation.put_i16(3);
    for (flags, name, oid) in [(1u8, "id", 20u32), (0, "name", 25), (0, "amount", 23)] {
        relation.put_u8(flags);
        relation.put_slice(name.as_bytes());
        relation.put_u8(0);
        relation.put_u32(oid);
        relation.put_i32(-1);
    }
    let mut messages = vec![relation.to_vec()];
    for i in 0..rows {
        let mut out = BytesMut::new();
        let id = if i % 4 == 3 { i - 1 } else { i } as i64;
        out.put_u8(if i % 4 == 3 { b'U' } else { b'I' });
        out.put_u32(7);
        out.put_u8(b'N');
        out.put_i16(3);
        let name = format!("customer-{i}");
        out.put_u8(b'b');
        out.put_i32(8);
        out.put_i64(id);
        out.put_u8(b'b');
        out.put_i32(name.len() as i32);
        out.put_slice(name.as_bytes());
        out.put_u8(b'b');
        out.put_i32(4);
        out.put_i32((i % 1000) as i32);
        messages.push(out.to_vec());
    }
    messages
}

/// Decodes `messages` (from [`pgoutput_messages`]) into change batches of `batch_size` rows
/// as the replication feed does; returns the rows decoded.
pub fn pgoutput_decode(messages: &[Vec<u8>], batch_size: usize) -> Result<usize, PgError> {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use ferry_engine::{ChangeEvent, TableId};

    use crate::pgoutput::{ChangeDecoder, StreamTable};

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Int32, true),
    ]));
    let mut decoder = ChangeDecoder::new(
        vec![StreamTable {
            id: Arc::new(TableId::new("shop", "orders")),
            schema,
            types: vec![PgType::Int8, PgType::Text, PgType::Int4],
        }],
        batch_size,
    );
    let mut events = Vec::new();
    decoder.begin(1);
    for message in messages {
        decoder.message(message, &mut events)?;
    }
    decoder.commit(&mut events)?;
    Ok(events
        .iter()
        .map(|event| match event {
            ChangeEvent::Rows(batch) => batch.num_rows(),
            _ => 0,
        })
        .sum())
}
