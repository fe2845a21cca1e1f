//! The `loyalty-ledger` command line: `serve` (the default), the offline
//! operator commands `snapshot`, `restore`, `verify`, `history` (see `ops`) and `wal dump`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use loyalty_ledger::config::{
    event_retention_seconds_from_env, snapshot_wal_bytes_from_env, wal_segment_bytes_from_env, Config,
    DEFAULT_DATA_DIR, DEFAULT_LISTEN_ADDR,
};
use loyalty_ledger::{http, ops};

#[derive(Parser)]
#[command(name = "loyalty-ledger", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve(ServeArgs),
    /// Snapshot a stopped server's data directory (replay, write, compact).
    Snapshot(DataArgs),
    /// Make a data directory start from a snapshot file.
    Restore {
        /// The snapshot file (`DATA/snapshots/<lsn>.snap` of some server).
        snapshot_file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Replace the directory's wal/ and snapshots/ if it has data (secret_key stays).
        #[arg(long)]
        force: bool,
    },
    /// Check every checksum, replay everything and check the ledger invariants
    /// (exit status 1 with a report when anything fails).
    Verify(DataArgs),
    /// What a stopped server's history holds (its LSN, responses, size), or
    /// the response it remembers for one idempotency key.
    History {
        #[command(flatten)]
        data: DataArgs,
        /// Print the response remembered for this key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Inspect the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print every record, one line each.
    Dump(DataArgs),
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data directory.
    #[arg(long, env = "LEDGER_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Data directory (WAL, secret key).
    #[arg(long, env = "LEDGER_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "LEDGER_LISTEN", default_value = DEFAULT_LISTEN_ADDR)]
    listen: SocketAddr,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "LEDGER_WORKERS", default_value_t = 0)]
    workers: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http::server::init_logging();
    // The data directory's files are private, the storage engine's among them.
    loyalty_ledger::storage::private::private_umask();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Snapshot(args)) => ops::snapshot::run(&args.data),
        Some(Command::Restore { snapshot_file, data, force }) => ops::restore::run(&snapshot_file, &data.data, force),
        Some(Command::Verify(args)) => match ops::verify::run(&args.data) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some(Command::History { data, idempotency_key }) => ops::history::run(&data.data, idempotency_key.as_deref()),
        Some(Command::Wal { command: WalCommand::Dump(args) }) => loyalty_ledger::wal::dump::dump(&args.data),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loyalty-ledger: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        data_dir: args.data,
        listen: args.listen,
        secret_key: std::env::var("LEDGER_SECRET_KEY").ok(),
        workers: args.workers,
        test_clock_offset_seconds: match std::env::var("LEDGER_TEST_CLOCK") {
            Ok(v) => {
                Some(v.trim().parse().map_err(|_| anyhow::anyhow!("LEDGER_TEST_CLOCK must be an integer (seconds)"))?)
            }
            Err(_) => None,
        },
        wal_segment_bytes: wal_segment_bytes_from_env().map_err(anyhow::Error::msg)?,
        snapshot_wal_bytes: snapshot_wal_bytes_from_env().map_err(anyhow::Error::msg)?,
        event_retention_seconds: event_retention_seconds_from_env().map_err(anyhow::Error::msg)?,
        test_faults: match std::env::var("LEDGER_FAULTS").as_deref() {
            Ok("1") => true,
            Ok("" | "0") | Err(_) => false,
            Ok(_) => anyhow::bail!("LEDGER_FAULTS must be 1 (or 0, or unset)"),
        },
        webhook_net: loyalty_ledger::webhooks::NetPolicy::from_env().map_err(anyhow::Error::msg)?,
        webhook_ca_file: std::env::var_os("LEDGER_WEBHOOK_CA_FILE").filter(|v| !v.is_empty()).map(Into::into),
    };
    actix_web::rt::System::new().block_on(http::run(config))
}
