//! ferry-testkit: the test harness — the local servers of `ferry-local` (PostgreSQL, MariaDB,
//! Redis in temp dirs on free loopback ports, stopped when dropped, also when a test panics)
//! and the helpers tests share ([`cli`]: running the `ferry` binary, waiting on conditions
//! with deadlines, dice for fuzzing; [`serve`]: a `ferry serve` process and an HTTP client;
//! [`browser`]: headless Chromium; [`tls`]: certificates made at test time for the servers'
//! TLS).
#![warn(missing_docs)]

pub mod browser;
pub mod cli;
pub mod serve;
pub mod tls;

pub use ferry_local::*;
