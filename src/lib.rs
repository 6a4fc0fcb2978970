//! ferry: the job runner behind the `ferry` command.
//!
//! [`plan`] turns a job file into a checked plan — source catalog read, rules parsed and
//! resolved, filters pushed down where the source can run them, transforms compiled, target
//! tables derived — without writing anything. [`run`] executes it: schema migration, then a
//! consistent full snapshot through the pipeline. [`report`] shows progress and the summary.

pub mod bench;
pub mod bench_binlog;
pub mod bench_cdc;
pub mod bench_mysql;
pub mod bench_redis;
pub mod demo;
pub mod plan;
pub mod redis_job;
pub mod redis_rules;
pub mod report;
pub mod run;
pub mod verify;

pub use plan::{plan, JobError, Plan};
pub use run::{run, RunSummary};
