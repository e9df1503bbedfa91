//! The `grenier` binary: parses the command line and runs a node or a client command.

use std::process::ExitCode;

use clap::Parser;
use grenier::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runs_node = matches!(cli.command, Command::Server | Command::Dev(_));
    let default_filter = if runs_node {
        "grenier=info"
    } else {
        "grenier=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res: anyhow::Result<()> = rt.block_on(async {
        match &cli.command {
            Command::Server => {
                let config = cli::load_config(&cli.config)?;
                let node = grenier::server::Node::start(config).await?;
                node.run_until_signal().await;
                Ok(())
            }
            Command::Dev(args) => cli::dev::run(args).await,
            _ => cli::run_client(&cli).await,
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
