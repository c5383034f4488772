//! The gateway binary: parses the command line, installs logging, and runs a node until SIGTERM
//! or SIGINT; also mints tokens and probes health for operators.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use gateway::auth::{Identity, TokenVerifier};
use gateway::config::{
    Cli, ClusterStatsArgs, Command, Config, HealthcheckArgs, InitSecretArgs, ServeArgs, TokenArgs,
};
use gateway::telemetry::Telemetry;

/// Exit code for a configuration or usage error.
const EXIT_CONFIG: i32 = 2;

fn main() {
    let cli = Cli::parse();
    let worker_threads = match &cli.command {
        None => cli.serve.worker_threads,
        Some(Command::Serve(args)) => args.worker_threads,
        Some(_) => 1,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    let runtime = builder.enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Token(args)) => token(&args),
            Some(Command::Healthcheck(args)) => healthcheck(&args).await,
            Some(Command::ClusterStats(args)) => cluster_stats(&args).await,
            Some(Command::InitSecret(args)) => init_secret(&args),
        }
    });
    let _ = std::io::stdout().flush();
    // Exit here rather than by dropping the runtime, which would wait for any blocking task
    // still running; the node has already shut down gracefully (or given up after its grace).
    std::process::exit(code);
}

async fn serve(args: ServeArgs) -> i32 {
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return EXIT_CONFIG;
        }
    };
    let telemetry = match Telemetry::install(
        config.args.log_format,
        config.args.otel_exporter_otlp_endpoint.as_deref(),
        "gateway",
        &config.server_id,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gateway: {e}");
            return EXIT_CONFIG;
        }
    };
    let signalled = match termination_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: cannot install signal handlers: {e}");
            telemetry.shutdown();
            return 1;
        }
    };
    let addr = (config.args.host, config.args.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gateway: cannot listen on {}:{}: {e}", addr.0, addr.1);
            telemetry.shutdown();
            return 1;
        }
    };
    // The one stdout line of the start-up contract, printed once `/ready` answers 200.
    let announce = |addr: std::net::SocketAddr| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    };
    let code = match gateway::run_announcing(listener, config, signalled, announce).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "gateway stopped with an error");
            eprintln!("gateway: {e}");
            1
        }
    };
    telemetry.shutdown();
    code
}

/// A future completing on the first SIGTERM or SIGINT (Ctrl-C). The handlers are installed
/// here, before the node announces itself, so a signal sent right after the `listening on` line
/// is never lost to the default action (terminating without a graceful shutdown).
#[cfg(unix)]
fn termination_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// A future completing on Ctrl-C.
#[cfg(not(unix))]
fn termination_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
        } else {
            std::future::pending::<()>().await;
        }
    })
}

/// `gateway init-secret --file PATH`: says whether it created the file, never prints the secret.
fn init_secret(args: &InitSecretArgs) -> i32 {
    match gateway::config::init_secret_file(&args.file) {
        Ok(true) => {
            eprintln!("gateway init-secret: created {}", args.file.display());
            0
        }
        Ok(false) => {
            eprintln!(
                "gateway init-secret: {} exists, kept as it is",
                args.file.display()
            );
            0
        }
        Err(e) => {
            eprintln!(
                "gateway init-secret: cannot create {}: {e}",
                args.file.display()
            );
            1
        }
    }
}

fn token(args: &TokenArgs) -> i32 {
    let minted = args
        .key
        .resolve()
        .map_err(|e| e.to_string())
        .and_then(|(key, alg)| TokenVerifier::new(&key, alg).map_err(|e| e.to_string()))
        .and_then(|verifier| {
            let identity = Identity {
                user_id: args.user_id.clone(),
                username: args.username.clone(),
                role: args.role.clone(),
            };
            verifier
                .mint(&identity, args.expires_in_secs)
                .map_err(|e| e.to_string())
        });
    match minted {
        Ok(jwt) => {
            println!("{jwt}");
            0
        }
        Err(e) => {
            eprintln!("gateway token: {e}");
            EXIT_CONFIG
        }
    }
}

async fn healthcheck(args: &HealthcheckArgs) -> i32 {
    // A probe of this container's own port must never go through an HTTP proxy from the env.
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway healthcheck: {e}");
            return 1;
        }
    };
    match client.get(&args.url).send().await {
        Ok(res) if res.status() == reqwest::StatusCode::OK => 0,
        Ok(res) => {
            eprintln!(
                "gateway healthcheck: {} answered {}",
                args.url,
                res.status()
            );
            1
        }
        Err(e) => {
            eprintln!("gateway healthcheck: {}: {e}", args.url);
            1
        }
    }
}

/// Longest `cluster-stats` waits for Redis.
const CLUSTER_STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// `gateway cluster-stats`: every live node's record and the totals, as a table or JSON.
async fn cluster_stats(args: &ClusterStatsArgs) -> i32 {
    match cluster::redis::fetch_cluster_stats(&args.redis_url, CLUSTER_STATS_TIMEOUT).await {
        Ok(stats) if args.json => {
            println!("{}", stats.to_json_pretty());
            0
        }
        Ok(stats) => {
            print!("{}", stats.render_table());
            0
        }
        Err(e) => {
            eprintln!("gateway cluster-stats: {e}");
            1
        }
    }
}
