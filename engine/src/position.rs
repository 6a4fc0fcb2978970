//! Source positions: where in the source a batch came from. Typed and ordered, so a checkpoint
//! can be compared with another and never moves backward.

use serde::{Deserialize, Serialize};

/// Where in the source a [`crate::ChangeBatch`] came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Position {
    /// A row of a snapshot: the part it was read in and how many rows of that part had been
    /// read before this batch. Parts are numbered by the snapshot plan.
    Snapshot {
        /// Index of the part in the snapshot plan.
        part: u32,
        /// Rows of the part read before this batch.
        offset: u64,
    },
}
