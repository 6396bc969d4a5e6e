//! `virgad`: the per-host daemon. `virgad [--config FILE]` serves the OpenStack API until
//! SIGTERM or SIGINT; `virgad bootstrap ...` prepares a new cloud like `keystone-manage
//! bootstrap`. See docs/api.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use api::Config;
use clap::{Parser, Subcommand};
use orchestrator::identity::BootstrapSpec;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "virgad",
    about = "Virga daemon: the OpenStack-compatible API of one host"
)]
struct Cli {
    /// TOML configuration file (every key can also be set as VIRGA_<SECTION>_<KEY>).
    #[arg(long, short, global = true, env = "VIRGA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create the admin user and project, the roles, the region and the service catalog.
    Bootstrap(BootstrapArgs),
}

#[derive(clap::Args)]
struct BootstrapArgs {
    /// Password of the admin user (set again if the user exists).
    #[arg(long, env = "OS_BOOTSTRAP_PASSWORD")]
    bootstrap_password: String,
    /// Name of the admin user.
    #[arg(long, default_value = "admin")]
    bootstrap_username: String,
    /// Name of the admin project.
    #[arg(long, default_value = "admin")]
    bootstrap_project_name: String,
    /// Region of the catalog endpoints.
    #[arg(long, default_value = "RegionOne")]
    bootstrap_region_id: String,
    /// Base URL in the catalog (default: the config's public URL).
    #[arg(long)]
    bootstrap_public_url: Option<String>,
    /// Service types to put in the catalog.
    #[arg(long, value_delimiter = ',', default_value = "identity,image,compute")]
    services: Vec<String>,
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing requests in flight"),
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(cli.config.as_deref())?;
    init_logs(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
            let state = api::open_state(config).await?;
            let cfg = state.config();
            if cfg.compute.enabled {
                let compute = orchestrator::daemon::start_compute(
                    state.store().clone(),
                    state.images().clone(),
                    cfg.agent_config(),
                    cfg.compute_config(),
                )
                .await?;
                state.set_compute(compute);
            } else {
                tracing::info!("compute role disabled");
            }
            api::serve(state, listener, shutdown_signal()).await?;
        }
        Command::Bootstrap(b) => {
            let spec = BootstrapSpec {
                admin_user: b.bootstrap_username,
                admin_password: b.bootstrap_password,
                admin_project: b.bootstrap_project_name,
                region: b.bootstrap_region_id,
                public_url: b
                    .bootstrap_public_url
                    .unwrap_or_else(|| config.public_url()),
                services: b.services,
            };
            let report = api::bootstrap(config, &spec).await?;
            tracing::info!(user = %report.user_id, project = %report.project_id, "bootstrapped");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virgad: {e}");
            ExitCode::FAILURE
        }
    }
}
