//! The gateway binary: parses the command line, installs logging, and runs a node until a signal.

use std::process::ExitCode;

use clap::Parser;
use gateway::config::{Cli, Command, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(_) => {
            eprintln!("not implemented yet");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: gateway::config::ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind((config.args.host, config.args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "gateway: cannot listen on {}:{}: {e}",
                config.args.host, config.args.port
            );
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match gateway::run(listener, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
