//! `ferry-bench`: ferry's benchmark runners. Each starts its own local servers, measures
//! ferry (the `ferry` binary beside this one) beside the engines' own tools on the same data,
//! prints a table and writes it under `--out`.

mod binlog;
mod cdc;
mod load;
mod mysql;
mod redis;
mod serve;
mod sql;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of ferry against the engines' own tools, on local servers.
#[derive(Parser)]
#[command(name = "ferry-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// PostgreSQL → PostgreSQL (and files) load across batch sizes, beside psql COPY pipes.
    Load(load::BenchArgs),
    /// Change-apply benchmark: a pgbench write load applied by ferry at several batch sizes,
    /// beside pg_recvlogical decoding the same WAL.
    Cdc(cdc::BenchCdcArgs),
    /// Full migration out of MariaDB (into MariaDB and PostgreSQL) across batch sizes, beside
    /// mariadb-dump | mariadb.
    Mysql(mysql::BenchMysqlArgs),
    /// Binlog-apply benchmark: a MariaDB write load applied by ferry into MariaDB and
    /// PostgreSQL at several batch sizes, beside mariadb-binlog decoding the same binlog.
    Binlog(binlog::BenchBinlogArgs),
    /// Redis full sync: ferry's Redis connector beside redis-cli --pipe, and the bandwidth
    /// limit's accuracy.
    Redis(redis::BenchRedisArgs),
    /// Memory of one `ferry serve` holding many PostgreSQL CDC jobs: idle, caught up, after
    /// a write load; the per-job overhead.
    Serve(serve::BenchServeArgs),
    /// The SQL control plane's query rate (pgbench against `ferry serve --pg`), beside the
    /// same queries on PostgreSQL.
    Sql(sql::BenchSqlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry-bench: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    // The runners that wait on processes block; the Redis one drives the connector itself.
    let result = match cli.command {
        Command::Load(args) => load::run(args),
        Command::Cdc(args) => cdc::run(args),
        Command::Mysql(args) => mysql::run(args),
        Command::Binlog(args) => binlog::run(args),
        Command::Redis(args) => runtime.block_on(redis::run(args)),
        Command::Serve(args) => serve::run(args),
        Command::Sql(args) => sql::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e}");
            ExitCode::from(3)
        }
    }
}
