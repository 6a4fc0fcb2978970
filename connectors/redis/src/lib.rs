//! ferry-redis: Redis as a source and sink (issue #5). So far: [`replica`], the replication
//! link (ferry as a replica of the source: full or partial resync, the RDB, then the command
//! stream with its offset), and [`rdb`], a streaming reader of the RDB snapshot — every key
//! with its database, type and expiry, its value in bounded slices so a key of millions of
//! members is never held whole; [`sink`], pipelined writes to a target; [`copy`], a source
//! moved into a target: the RDB as native commands, then the command stream replayed;
//! [`migrate`], the whole online migration with its resume modes; [`check`], warnings about
//! settings that can spoil a migration; [`verify`], a key-by-key comparison of target and
//! source; [`rules`], which keys and commands a job's rules select and where they go.
#![warn(missing_docs)]

pub mod check;
pub mod copy;
pub mod migrate;
pub mod rdb;
pub mod replica;
pub mod rules;
pub mod sink;
pub mod status;
pub mod verify;
