//! `gateway-bench`: the benchmark of the gateway against the Node.js stack it replaces
//! (socket.io + @socket.io/redis-adapter). Runs every scenario against both stacks in one
//! process and writes `BENCHMARKS.md` plus `results.json`; `tests/bench/run.sh` is the entry.

mod client;
mod hist;
mod procs;
mod proto;
mod report;
mod scenarios;
mod shards;
mod shards_report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use procs::{AdapterMode, Launcher, Stack};
use scenarios::{Bench, Config, ConnRateRun, FanoutRun, IdleRun, ManyRoomsRun};
use shards::ShardsRun;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Benchmark the gateway against the Node.js socket.io stack")]
struct Args {
    /// Small sizes: a smoke run of a few minutes.
    #[arg(long)]
    quick: bool,
    /// The release gateway binary.
    #[arg(long, default_value = "target/release/gateway")]
    gateway_bin: PathBuf,
    /// The Node.js reference server directory (with node_modules installed).
    #[arg(long, default_value = "tests/bench/node")]
    node_dir: PathBuf,
    /// Where BENCHMARKS.md goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Where results.json goes (the charts are drawn next to it).
    #[arg(long, default_value = "docs/bench")]
    out_dir: PathBuf,
    /// The charts' directory as linked from the markdown file.
    #[arg(long, default_value = "docs/bench")]
    charts_link: String,
    /// Scenarios to run (comma separated): idle, connrate, single, cluster, rooms, shards.
    #[arg(
        long,
        default_value = "idle,connrate,single,cluster,rooms,shards",
        value_delimiter = ','
    )]
    only: Vec<String>,
    /// Stacks to measure (comma separated): gateway, node.
    #[arg(long, default_value = "gateway,node", value_delimiter = ',')]
    stacks: Vec<String>,
    /// Overrides the mode's fan-out receivers (for profiling one size).
    #[arg(long)]
    fanout_clients: Option<usize>,
    /// Overrides the mode's number of saturation ramp steps (0: the fixed point only).
    #[arg(long)]
    ramp_max_steps: Option<usize>,
    /// The command line to print in BENCHMARKS.md.
    #[arg(long, default_value = "bash tests/bench/run.sh")]
    command: String,
    /// Extra `name=value` version lines (from run.sh: rustc, gateway commit).
    #[arg(long = "version-line")]
    version_lines: Vec<String>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// How it was started.
    pub command: String,
    /// UTC start time.
    pub started_at: String,
    /// Seconds the run took.
    pub duration_secs: f64,
    /// CPU, cores, memory, kernel.
    pub machine: String,
    /// /proc/loadavg's first three fields when the run started.
    pub load_average_start: String,
    /// The same when it ended.
    pub load_average_end: String,
    /// (component, version).
    pub versions: Vec<(String, String)>,
    /// Sizes.
    pub config: Config,
    /// Ok when gateway nodes with `--redis-url` form a cluster, else why not.
    pub gateway_cluster: Result<(), String>,
    /// Fan-out and saturation runs.
    pub fanout: Vec<FanoutRun>,
    /// Idle memory runs.
    pub idle: Vec<IdleRun>,
    /// Connection rate runs.
    pub conn_rate: Vec<ConnRateRun>,
    /// Many-rooms runs.
    pub many_rooms: Vec<ManyRoomsRun>,
    /// Ok when the gateway accepts `--adapter-mode sharded` and two such nodes share a room
    /// on a Redis Cluster, else why not (probed only when `shards` runs).
    pub gateway_sharded: Result<(), String>,
    /// Redis Cluster runs (`shards`): gateway classic and sharded, Node.js sharded.
    pub shards: Vec<ShardsRun>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn write_outputs(args: &Args, results: &Results) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(args.out_dir.join("results.json"), json)?;
    std::fs::write(&args.markdown, report::render(results, &args.charts_link))
        .with_context(|| format!("writing {}", args.markdown.display()))?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let mut config = if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(clients) = args.fanout_clients {
        config.fanout_clients = clients;
    }
    if let Some(steps) = args.ramp_max_steps {
        config.ramp_max_steps = steps;
    }
    if !args.gateway_bin.is_file() {
        anyhow::bail!(
            "{} not found: build it with `cargo build --release -p gateway`",
            args.gateway_bin.display()
        );
    }
    let launcher = Launcher {
        gateway_bin: args.gateway_bin.clone(),
        node_dir: args.node_dir.clone(),
        secret: "benchmark-secret-not-for-production".into(),
        log_dir: std::env::temp_dir().join("gateway-bench-logs"),
    };
    let mut versions: Vec<(String, String)> = vec![
        (
            "Node.js".into(),
            procs::tool_version("node", &["--version"]),
        ),
        (
            "socket.io".into(),
            procs::npm_package_version(&args.node_dir, "socket.io"),
        ),
        (
            "@socket.io/redis-adapter".into(),
            procs::npm_package_version(&args.node_dir, "@socket.io/redis-adapter"),
        ),
        (
            "redis (npm)".into(),
            procs::npm_package_version(&args.node_dir, "redis"),
        ),
        (
            "redis-server".into(),
            procs::tool_version("redis-server", &["--version"]),
        ),
    ];
    for line in &args.version_lines {
        if let Some((k, v)) = line.split_once('=') {
            versions.push((k.to_owned(), v.to_owned()));
        }
    }
    let bench = Bench {
        launcher,
        config: config.clone(),
    };
    let wants = |name: &str| args.only.iter().any(|o| o == name);
    let mut results = Results {
        command: args.command.clone(),
        started_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        duration_secs: 0.0,
        machine: procs::machine_description(),
        load_average_start: load_average(),
        load_average_end: String::new(),
        versions,
        config,
        gateway_cluster: Err("not probed".into()),
        fanout: Vec::new(),
        idle: Vec::new(),
        conn_rate: Vec::new(),
        many_rooms: Vec::new(),
        gateway_sharded: Err("not probed".into()),
        shards: Vec::new(),
    };
    let save = |results: &mut Results| {
        results.duration_secs = started.elapsed().as_secs_f64();
        results.load_average_end = load_average();
        if let Err(e) = write_outputs(&args, results) {
            eprintln!("writing the results failed: {e:#}");
        }
    };

    results.gateway_cluster = scenarios::probe_gateway_cluster(&bench).await;
    eprintln!(
        "[probe] gateway cluster mode: {:?}",
        results.gateway_cluster
    );
    let cluster_reason =
        results.gateway_cluster.as_ref().err().map(|e| {
            format!("not measured: gateway cluster mode not available in this build ({e})")
        });

    let stacks: Vec<Stack> = [Stack::Gateway, Stack::Node]
        .into_iter()
        .filter(|stack| {
            args.stacks
                .iter()
                .any(|s| s.eq_ignore_ascii_case(stack.name()))
        })
        .collect();
    let measured = |stack: Stack| stacks.contains(&stack);

    if wants("idle") {
        for &stack in &stacks {
            let run = scenarios::idle(&bench, stack).await;
            results.idle.push(run);
            save(&mut results);
        }
    }
    if wants("connrate") {
        for &stack in &stacks {
            let run = scenarios::conn_rate(&bench, stack).await;
            results.conn_rate.push(run);
            save(&mut results);
        }
    }
    if wants("single") {
        for &stack in &stacks {
            let run = scenarios::fanout(&bench, stack, false).await;
            results.fanout.push(run);
            save(&mut results);
        }
    }
    if wants("cluster") && measured(Stack::Gateway) {
        let run = match &cluster_reason {
            Some(reason) => FanoutRun::not_measured(
                Stack::Gateway,
                "cluster",
                3,
                bench.config.fanout_clients,
                reason.clone(),
            ),
            None => scenarios::fanout(&bench, Stack::Gateway, true).await,
        };
        results.fanout.push(run);
        save(&mut results);
    }
    if wants("cluster") && measured(Stack::Node) {
        let run = scenarios::fanout(&bench, Stack::Node, true).await;
        results.fanout.push(run);
        save(&mut results);
    }
    if wants("rooms") && measured(Stack::Gateway) {
        let run = match &cluster_reason {
            Some(reason) => {
                ManyRoomsRun::not_measured(Stack::Gateway, &bench.config, reason.clone())
            }
            None => scenarios::many_rooms(&bench, Stack::Gateway).await,
        };
        results.many_rooms.push(run);
        save(&mut results);
    }
    if wants("rooms") && measured(Stack::Node) {
        let run = scenarios::many_rooms(&bench, Stack::Node).await;
        results.many_rooms.push(run);
        save(&mut results);
    }
    if wants("shards") && measured(Stack::Gateway) {
        let classic = shards::shards(&bench, Stack::Gateway, AdapterMode::Classic).await;
        results.shards.push(classic);
        save(&mut results);
        results.gateway_sharded = shards::probe_sharded(&bench).await;
        eprintln!(
            "[probe] gateway sharded mode: {:?}",
            results.gateway_sharded
        );
        let sharded = match &results.gateway_sharded {
            Ok(()) => shards::shards(&bench, Stack::Gateway, AdapterMode::Sharded).await,
            Err(e) => ShardsRun::not_measured(
                Stack::Gateway,
                AdapterMode::Sharded,
                &bench.config,
                format!("not measured: sharded mode not available in this build ({e})"),
            ),
        };
        results.shards.push(sharded);
        save(&mut results);
    }
    if wants("shards") && measured(Stack::Node) {
        let run = shards::shards(&bench, Stack::Node, AdapterMode::Sharded).await;
        results.shards.push(run);
        save(&mut results);
    }
    save(&mut results);
    eprintln!(
        "wrote {} and {}/results.json in {:.0} s",
        args.markdown.display(),
        args.out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
