//! The `loyalty-ledger` command line: `serve` (the default) and `wal dump`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use loyalty_ledger::config::{Config, DEFAULT_DATA_DIR, DEFAULT_LISTEN_ADDR};
use loyalty_ledger::http;

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
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
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
    };
    actix_web::rt::System::new().block_on(http::run(config))
}
