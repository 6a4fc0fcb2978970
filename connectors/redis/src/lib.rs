//! ferry-redis: Redis as a source and sink (issue #5). So far: [`rdb`], a streaming reader of
//! the RDB snapshot format a replica receives on a full sync — every key with its database,
//! type and expiry, its value in bounded slices so a key of millions of members is never held
//! whole.
#![warn(missing_docs)]

pub mod rdb;
