//! Source positions: where in the source a batch came from. Typed and ordered, so a checkpoint
//! can be compared with another and never moves backward.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where in the source a [`crate::ChangeBatch`] came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// A place in a MySQL/MariaDB server's binary log. For a change it is the end of the
    /// transaction's commit event (where the next transaction begins), with the GTID state
    /// reached there, so a feed can resume by file and offset or, where the file is gone
    /// from the server, by GTID.
    Mysql {
        /// The binlog file (`mysql-bin.000012`).
        file: String,
        /// The offset in it.
        offset: u64,
        /// The GTID state after the transaction (MariaDB `0-1-4711`, one per replication
        /// domain, comma separated), when the server has GTIDs.
        gtid: Option<String>,
    },
    /// A place in a Redis server's replication stream: the replication id followed and the
    /// offset of the last byte applied, with the database the stream's commands go to there.
    Redis {
        /// The replication id.
        replid: String,
        /// The offset of the last byte applied.
        offset: u64,
        /// The database selected at that offset.
        db: u64,
    },
}

impl Position {
    /// Orders kinds of position, then positions of one kind by progress.
    fn sort_key(&self) -> (u8, u64, &str, u64, &str) {
        match self {
            Position::Snapshot { part, offset } => (0, u64::from(*part), "", *offset, ""),
            Position::Postgres { lsn } => (1, 0, "", *lsn, ""),
            Position::Mysql { file, offset, gtid } => (
                2,
                binlog_file_number(file),
                file.as_str(),
                *offset,
                gtid.as_deref().unwrap_or_default(),
            ),
            Position::Redis { replid, offset, .. } => (3, 0, replid.as_str(), *offset, ""),
        }
    }
}

/// The sequence number of a binlog file (`mysql-bin.000012` → 12): files sort by it, also
/// once the number outgrows its six digits.
pub fn binlog_file_number(file: &str) -> u64 {
    file.rsplit_once('.')
        .and_then(|(_, number)| number.parse().ok())
        .unwrap_or(0)
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Position) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Position) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
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
            Position::Mysql { file, offset, gtid } => {
                write!(f, "binlog {file}:{offset}")?;
                match gtid {
                    Some(gtid) if !gtid.is_empty() => write!(f, " (GTID {gtid})"),
                    _ => Ok(()),
                }
            }
            Position::Redis { replid, offset, .. } => write!(f, "offset {offset} of {replid}"),
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
    fn redis_points_print_as_the_services_do_and_order_by_offset() {
        let at = |offset| Position::Redis {
            replid: "8f3a".into(),
            offset,
            db: 0,
        };
        assert_eq!(at(7).to_string(), "offset 7 of 8f3a");
        assert!(at(7) < at(8));
        assert!(at(7).comparable(&at(8)));
        assert!(!at(7).comparable(&Position::Postgres { lsn: 7 }));
    }

    #[test]
    fn positions_of_one_source_order_by_progress() {
        let early = Position::Postgres { lsn: 10 };
        let late = Position::Postgres { lsn: 11 };
        assert!(early < late && early.comparable(&late));
        assert!(!early.comparable(&Position::Snapshot { part: 0, offset: 0 }));
    }

    #[test]
    fn binlog_positions_order_by_file_number_then_offset() {
        let at = |file: &str, offset| Position::Mysql {
            file: file.into(),
            offset,
            gtid: None,
        };
        assert!(at("bin.000009", 900) < at("bin.000010", 4));
        assert!(at("bin.999999", 900) < at("bin.1000000", 4));
        assert!(at("bin.000010", 4) < at("bin.000010", 5));
        let with_gtid = Position::Mysql {
            file: "bin.000010".into(),
            offset: 5,
            gtid: Some("0-1-7".into()),
        };
        assert_eq!(with_gtid.to_string(), "binlog bin.000010:5 (GTID 0-1-7)");
        let json = serde_json::to_string(&with_gtid).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), with_gtid);
    }
}
