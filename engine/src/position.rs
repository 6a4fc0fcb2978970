//! Source positions: where in the source a batch came from. Typed and ordered, so a checkpoint
//! can be compared with another and never moves backward.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where in the source a [`crate::ChangeBatch`] came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// A row of a snapshot: the part it was read in and how many rows of that part had been
    /// read before this batch. Parts are numbered by the snapshot plan.
    Snapshot {
        /// Index of the part in the snapshot plan.
        part: u32,
        /// Rows of the part read before this batch.
        offset: u64,
    },
    /// A place in a PostgreSQL server's write-ahead log. For a change it is the end of the
    /// commit record of the transaction that made it: every change of a transaction carries
    /// the same position, and a later transaction a larger one.
    Postgres {
        /// The log sequence number.
        lsn: u64,
    },
}

impl Position {
    /// Whether `self` and `other` are positions of the same kind of source, so that ordering
    /// them means something.
    pub fn comparable(&self, other: &Position) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A PostgreSQL LSN as the server prints it (`16/B374D848`).
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl Lsn {
    /// Parses `16/B374D848`; `None` when it is not an LSN.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        (high <= u32::MAX as u64 && low <= u32::MAX as u64).then_some(Lsn((high << 32) | low))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Snapshot { part, offset } => write!(f, "snapshot part {part} row {offset}"),
            Position::Postgres { lsn } => write!(f, "LSN {}", Lsn(*lsn)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_print_and_parse_like_postgres() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert!(Lsn::parse("16").is_none() && Lsn::parse("x/1").is_none());
        assert_eq!(
            Position::Postgres { lsn: 0x1_0000_0010 }.to_string(),
            "LSN 1/10"
        );
    }

    #[test]
    fn positions_of_one_source_order_by_progress() {
        let early = Position::Postgres { lsn: 10 };
        let late = Position::Postgres { lsn: 11 };
        assert!(early < late && early.comparable(&late));
        assert!(!early.comparable(&Position::Snapshot { part: 0, offset: 0 }));
    }
}
