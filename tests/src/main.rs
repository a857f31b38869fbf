//! `meshcert-host`: runs meshcert's Spin app locally the way `spin up` does, and starts the fake
//! Kubernetes API server used by the tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use meshcert_host::{App, AppConfig};

#[derive(Parser)]
#[command(name = "meshcert-host", version, about = "A Spin-compatible local runner for meshcert's components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Loads the app and serves its HTTP and cron triggers until Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Runs the fake Kubernetes API server; `meshcert-host fake-kube --help` lists its options.
    #[command(disable_help_flag = true)]
    FakeKube {
        /// Arguments for the fake Kubernetes API server.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest to run.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,

    /// Sets an application variable, overriding SPIN_VARIABLE_<NAME> and the manifest default
    /// (repeatable).
    #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_variable)]
    variables: Vec<(String, String)>,

    /// The address the HTTP listener binds to.
    #[arg(long = "listen", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// The directory for the default key-value store [default: .spin beside the manifest].
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,

    /// A runtime config file that configures key-value stores and outbound TLS ([[client_tls]]).
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("meshcert_host=info,meshcert_fake_kube=info,warn"));
    // Colour only on a terminal, so that logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => run_async(up(args)),
        Command::FakeKube { args } => run_async(meshcert_fake_kube::run_cli(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_async(future: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?
        .block_on(future)
}

async fn up(args: UpArgs) -> Result<()> {
    let mut config = AppConfig::new(&args.from);
    config.state_dir = args.state_dir;
    config.runtime_config = args.runtime_config_file;
    config.variables = args.variables.into_iter().collect();
    let app = App::load(config)?;

    let server = app.serve(args.listen).await?;
    let _cron = app.start_cron();

    println!("Serving {}", server.url());
    println!("Available Routes:");
    for (component, path, wildcard) in app.routes() {
        let path = if path.is_empty() { String::new() } else { path };
        let suffix = if wildcard { " (wildcard)" } else { "" };
        println!("  {component}: {}{path}{suffix}", server.url());
    }
    for (component, expression) in app.cron_triggers() {
        println!("  {component}: cron \"{expression}\"");
    }

    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("failed to listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("failed to listen for Ctrl-C")?;
    Ok(())
}
