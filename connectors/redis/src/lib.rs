//! ferry-redis: Redis as a source and sink (issue #5). So far: [`replica`], the replication
//! link (ferry as a replica of the source: full or partial resync, the RDB, then the command
//! stream with its offset), and [`rdb`], a streaming reader of the RDB snapshot — every key
//! with its database, type and expiry, its value in bounded slices so a key of millions of
//! members is never held whole.
#![warn(missing_docs)]

pub mod rdb;
pub mod replica;
