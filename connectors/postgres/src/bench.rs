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
