//! The `dcs-operator` binary: parse the command line, set up logging, dispatch.
#![forbid(unsafe_code)]

use clap::Parser;
use dcs_operator::cli::{Cli, Command, LogFormat};

fn init_logging(args: &dcs_operator::cli::LoggingArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.logging);
    match cli.command {
        Command::Query(args) => {
            let code = dcs_operator::query::run(
                &args,
                |name| std::env::var(name).ok(),
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            std::process::exit(code);
        }
        Command::Run(args) => dcs_operator::run::run(args).await,
        Command::Crd => {
            print!("{}", dcs_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Simulate(args) => dcs_operator::simulate::run(args).await,
    }
}
