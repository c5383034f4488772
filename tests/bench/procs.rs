//! The servers under test (gateway nodes, Node.js nodes, Redis) as child processes killed on
//! drop, and what /proc and `ss` tell about them: CPU time, RSS, bytes received from Redis.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::redis_cluster::RedisCluster;
use testkit::{KillOnDrop, RedisServer};

/// Which implementation a server process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// The Rust gateway.
    Gateway,
    /// socket.io + @socket.io/redis-adapter.
    Node,
}

impl Stack {
    /// Display name.
    pub fn label(self) -> &'static str {
        match self {
            Stack::Gateway => "gateway",
            Stack::Node => "Node.js",
        }
    }

    /// Short name, as serialised and as `--stacks` takes it: `gateway`, `node`.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Gateway => "gateway",
            Stack::Node => "node",
        }
    }
}

/// Which wire the nodes' Redis adapter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterMode {
    /// `PUBLISH`/`SUBSCRIBE` (the gateway's default; Node's `createAdapter`).
    Classic,
    /// `SPUBLISH`/`SSUBSCRIBE` (the gateway's `--adapter-mode sharded`; Node's
    /// `createShardedAdapter`, subscription mode `dynamic`).
    Sharded,
}

impl AdapterMode {
    /// `classic` or `sharded`.
    pub fn name(self) -> &'static str {
        match self {
            AdapterMode::Classic => "classic",
            AdapterMode::Sharded => "sharded",
        }
    }
}

/// Paths and secrets needed to start servers.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The release gateway binary.
    pub gateway_bin: PathBuf,
    /// `tests/bench/node` (with `node_modules` installed).
    pub node_dir: PathBuf,
    /// HS256 secret shared by servers and generator.
    pub secret: String,
    /// Where server stderr goes.
    pub log_dir: PathBuf,
}

/// One running server node.
#[derive(Debug)]
pub struct Server {
    process: KillOnDrop,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// A set of nodes of one stack, with the Redis they share (cluster) or none (single node).
#[derive(Debug)]
pub struct Deployment {
    /// The nodes.
    pub servers: Vec<Server>,
    /// Redis, when clustered over one redis-server.
    pub redis: Option<RedisServer>,
    /// The Redis Cluster, when clustered over one (the `shards` scenario).
    pub redis_cluster: Option<RedisCluster>,
}

impl Deployment {
    /// PIDs of the server nodes.
    pub fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(Server::pid).collect()
    }

    /// CPU seconds used so far by the nodes, Redis and this generator.
    pub fn cpu(&self) -> CpuSample {
        CpuSample {
            generator: cpu_seconds(std::process::id()),
            servers: self.server_pids().into_iter().map(cpu_seconds).sum(),
            redis: self.redis.as_ref().map_or(0.0, |r| cpu_seconds(r.pid()))
                + self.redis_cluster.as_ref().map_or(0.0, |c| {
                    c.ports()
                        .into_iter()
                        .filter_map(|port| c.pid(port))
                        .map(cpu_seconds)
                        .sum()
                }),
        }
    }
}

/// CPU seconds (user + system) of the three process groups.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuSample {
    /// The load generator (this process).
    pub generator: f64,
    /// The server nodes.
    pub servers: f64,
    /// Redis.
    pub redis: f64,
}

impl std::ops::Sub for CpuSample {
    type Output = CpuSample;
    fn sub(self, o: CpuSample) -> CpuSample {
        CpuSample {
            generator: self.generator - o.generator,
            servers: self.servers - o.servers,
            redis: self.redis - o.redis,
        }
    }
}

impl Launcher {
    /// Starts `nodes` servers of `stack`; with `cluster` they share a new redis-server.
    pub fn deploy(&self, stack: Stack, nodes: usize, cluster: bool) -> Result<Deployment> {
        let redis = if cluster {
            Some(RedisServer::start().context("starting redis-server")?)
        } else {
            None
        };
        let redis_url = redis.as_ref().map(RedisServer::url);
        let mut servers = Vec::new();
        for i in 0..nodes {
            let id = format!("{}-{}", stack.name(), i + 1);
            servers.push(self.start(stack, &id, redis_url.as_deref(), AdapterMode::Classic)?);
        }
        Ok(Deployment {
            servers,
            redis,
            redis_cluster: None,
        })
    }

    /// Starts `nodes` servers of `stack` on the Redis Cluster `cluster` (its `redis-cluster://`
    /// URL), their adapter in `mode`.
    pub fn deploy_on_cluster(
        &self,
        stack: Stack,
        nodes: usize,
        cluster: RedisCluster,
        mode: AdapterMode,
    ) -> Result<Deployment> {
        let url = cluster.url();
        let mut servers = Vec::new();
        for i in 0..nodes {
            let id = format!("{}-{}-{}", stack.name(), mode.name(), i + 1);
            servers.push(self.start(stack, &id, Some(&url), mode)?);
        }
        Ok(Deployment {
            servers,
            redis: None,
            redis_cluster: Some(cluster),
        })
    }

    fn start(
        &self,
        stack: Stack,
        server_id: &str,
        redis_url: Option<&str>,
        mode: AdapterMode,
    ) -> Result<Server> {
        std::fs::create_dir_all(&self.log_dir)?;
        let log = std::fs::File::create(self.log_dir.join(format!("{server_id}.log")))?;
        let mut cmd = match stack {
            Stack::Gateway => {
                let mut c = Command::new(&self.gateway_bin);
                c.args(["serve", "--port", "0", "--host", "127.0.0.1"])
                    .args(["--server-id", server_id, "--jwt-secret", &self.secret])
                    .args(["--connection-rate-limit", "100000000"])
                    .args(["--event-rate-limit", "100000000"])
                    .args(["--event-rate-burst", "100000000"])
                    // The rooms scenario creates every room as one user before anyone joins.
                    .args(["--max-unjoined-rooms-per-user", "100000000"])
                    .env("RUST_LOG", "warn")
                    .env("LOG_FORMAT", "text");
                if let Some(url) = redis_url {
                    c.args(["--redis-url", url]);
                }
                // Classic is the default: no flag, so builds without `--adapter-mode` still run.
                // Sharded: room channels only where members are held, as Node's reference
                // (`subscriptionMode: "dynamic"`); explicit, so a change of default cannot
                // change what is measured.
                if mode == AdapterMode::Sharded {
                    c.args(["--adapter-mode", "sharded"]);
                    c.args(["--adapter-subscriptions", "dynamic"]);
                }
                // One thread per process, as a Node.js process has. On these 2 cores, shared with
                // the generator, a single node with one thread also spent 17 % less CPU per
                // delivery and had a lower p99 at 300k deliveries/s than with two.
                c.args(["--worker-threads", "1"]);
                c
            }
            Stack::Node => {
                let mut c = Command::new("node");
                c.arg("--max-old-space-size=8192")
                    .arg(self.node_dir.join("server.js"))
                    .env("PORT", "0")
                    .env("HOST", "127.0.0.1")
                    .env("SERVER_ID", server_id)
                    .env("JWT_SECRET", &self.secret)
                    .env("NODE_ENV", "production");
                if let Some(url) = redis_url {
                    c.env("REDIS_URL", url);
                }
                c.env("ADAPTER_MODE", mode.name());
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {server_id}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let process = KillOnDrop::new(server_id, child);
        let addr = read_listening_line(stdout, Duration::from_secs(30)).with_context(|| {
            format!(
                "{server_id} did not print `listening on` (see its log in {})",
                self.log_dir.display()
            )
        })?;
        Ok(Server { process, addr })
    }
}

/// Waits for `listening on http://<ip>:<port>` on a child's stdout; keeps draining it after.
fn read_listening_line(stdout: std::process::ChildStdout, timeout: Duration) -> Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut sent = false;
        while let Some(Ok(line)) = lines.next() {
            if !sent && let Some(addr) = parse_listening_line(&line) {
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(addr) => Ok(addr),
        Err(_) => bail!("no `listening on` line within {timeout:?}"),
    }
}

/// Parses the start-up line both server kinds print.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("listening on http://")?
        .trim_end_matches('/')
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of `pid` in seconds (0 when the process is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat_cpu_ticks(&s))
        .map_or(0.0, |ticks| ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; the command name may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in KiB (0 when the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_vm_rss_kib(&s))
        .unwrap_or(0)
}

/// `VmRSS:` of a /proc/<pid>/status text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes each process has received on its TCP connections to `redis_port` (from `ss -tinp`).
pub fn bytes_received_from(redis_port: u16) -> Result<HashMap<u32, u64>> {
    let out = Command::new("ss")
        .args(["-tinpH", "state", "established"])
        .arg(format!("dport = :{redis_port}"))
        .output()
        .context("running ss (install iproute2)")?;
    Ok(parse_ss_bytes_received(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Bytes each process has received on its TCP connections to any of `ports` (a Redis
/// Cluster's nodes), from `ss -tinp`.
pub fn bytes_received_from_any(ports: &[u16]) -> Result<HashMap<u32, u64>> {
    if ports.is_empty() {
        return Ok(HashMap::new());
    }
    let out = Command::new("ss")
        .args(["-tinpH", "state", "established"])
        .arg(dport_filter(ports))
        .output()
        .context("running ss (install iproute2)")?;
    Ok(parse_ss_bytes_received(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// The `ss` filter matching a destination port among `ports`.
pub fn dport_filter(ports: &[u16]) -> String {
    let alternatives: Vec<String> = ports.iter().map(|p| format!("dport = :{p}")).collect();
    format!("( {} )", alternatives.join(" or "))
}

/// Sums `bytes_received:` per `pid=` over `ss -tinpH` output (one socket line, then its info).
pub fn parse_ss_bytes_received(text: &str) -> HashMap<u32, u64> {
    let mut per_pid = HashMap::new();
    let mut current: Option<u32> = None;
    for line in text.lines() {
        if let Some(i) = line.find("pid=") {
            current = line[i + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok());
        }
        if let Some(i) = line.find("bytes_received:") {
            let n: u64 = line[i + 15..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if let Some(pid) = current {
                *per_pid.entry(pid).or_insert(0) += n;
            }
        }
    }
    per_pid
}

/// The soft limit on open files of this process (servers inherit it), from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft `Max open files` of a /proc/<pid>/limits text.
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The machine: CPU model, core count, memory, kernel.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// First line of `program args` output, or "not found".
pub fn tool_version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "not found".into())
}

/// The version of an npm package installed in `node_dir`.
pub fn npm_package_version(node_dir: &Path, package: &str) -> String {
    std::fs::read_to_string(
        node_dir
            .join("node_modules")
            .join(package)
            .join("package.json"),
    )
    .ok()
    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    .and_then(|v| v["version"].as_str().map(str::to_owned))
    .unwrap_or_else(|| "not installed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "1234 (tokio (rt) w) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 50";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn open_files_soft_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax processes             unlimited            unlimited            processes\nMax open files            20000                40000                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
        assert_eq!(
            parse_open_files_limit("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn listening_line_gives_the_address() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:4567\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 4567)))
        );
        assert_eq!(parse_listening_line("starting"), None);
    }

    #[test]
    fn dport_filter_names_every_port() {
        assert_eq!(dport_filter(&[7000]), "( dport = :7000 )");
        assert_eq!(
            dport_filter(&[7000, 7001]),
            "( dport = :7000 or dport = :7001 )"
        );
    }

    #[test]
    fn ss_bytes_received_are_summed_per_pid() {
        let text = "0 0 127.0.0.1:50000 127.0.0.1:6379 users:((\"node\",pid=41,fd=20))\n\t cubic wscale:7,7 bytes_sent:10 bytes_acked:10 bytes_received:1500 segs_out:3\n0 0 127.0.0.1:50001 127.0.0.1:6379 users:((\"node\",pid=41,fd=21))\n\t cubic bytes_received:500 segs_out:3\n0 0 127.0.0.1:50002 127.0.0.1:6379 users:((\"gateway\",pid=7,fd=9))\n\t cubic bytes_received:42\n";
        let m = parse_ss_bytes_received(text);
        assert_eq!(m.get(&41), Some(&2000));
        assert_eq!(m.get(&7), Some(&42));
        assert_eq!(m.len(), 2);
    }
}
