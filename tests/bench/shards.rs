//! The Redis Cluster scenario (`shards`): three nodes on a three-primary Redis Cluster, many
//! small rooms, each room's members on two of the three nodes, a fixed rate of room messages.
//! It answers the two questions of issue 15: does any primary carry most of the Redis work, and
//! does a node receive traffic of rooms it has no member of.
//!
//! Rooms fall in three groups (room r in group r mod 3); group g's members sit on nodes g and
//! g + 1, so node g + 2 holds no member of any of its rooms. The messages are sent in three
//! phases, one group at a time, so everything node g + 2 receives from Redis during phase g is
//! traffic of rooms it has no member of, plus the cluster's background (measured in a quiet
//! window as long as the three phases, before them, and subtracted at its average rate: the
//! gateway's own periodic exchanges come in bursts of about a kilobyte every few seconds, so a
//! window as short as one phase may catch one burst or none).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use serde_json::json;
use testkit::redis_cluster::{NodeUsage, RedisCluster, RedisClusterSpec};

use crate::hist::Recorder;
use crate::procs::{self, AdapterMode, CpuSample, Deployment, Stack};
use crate::scenarios::{
    self, Bench, Config, Members, REQUEST_TIMEOUT, SplitMix64, Step, cfg_parallel,
};

/// Gateway nodes (and Node.js nodes) in the scenario.
pub const NODES: usize = 3;
/// Room groups: one per node, the node that holds none of the group's members.
pub const GROUPS: usize = 3;
/// The target of issue 15: in sharded mode no primary carries more than this share of the
/// Redis CPU of the run.
pub const MAX_PRIMARY_SHARE: f64 = 0.5;
/// What a node receives for rooms it has no member of, as a share of what a member node receives
/// per message, under which it counts as receiving none of their traffic: receiving even one
/// message in a hundred would pass it. It is relative because the gateway's own periodic
/// exchanges (about 1.2 KB every few seconds) leave a few hundred bytes of noise per phase after
/// the background is subtracted, which is a byte or two per message at `--quick` sizes.
pub const MAX_FOREIGN_SHARE: f64 = 0.01;

/// The two nodes holding room `room`'s members: members with an even index on the first, odd on
/// the second.
pub fn room_nodes(room: usize) -> [usize; 2] {
    [room % NODES, (room + 1) % NODES]
}

/// The node holding member `member` of room `room`.
pub fn member_node(room: usize, member: usize) -> usize {
    room_nodes(room)[member % 2]
}

/// The node that holds no member of any room of `group`.
pub fn absent_node(group: usize) -> usize {
    (group + 2) % NODES
}

/// The rooms of `group` among `rooms` rooms.
pub fn rooms_of_group(rooms: usize, group: usize) -> Vec<usize> {
    (group..rooms).step_by(GROUPS).collect()
}

/// What one primary did during the publishing phases.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrimaryLoad {
    /// Its port.
    pub port: u16,
    /// CPU seconds (user + system, from `INFO`).
    pub cpu_secs: f64,
    /// Its share of the CPU of all primaries (0 to 1).
    pub cpu_share: f64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Commands processed.
    pub commands: u64,
}

/// Each primary's usage between two readings (matched by port), with its share of the CPU.
pub fn primary_loads(before: &[NodeUsage], after: &[NodeUsage]) -> Vec<PrimaryLoad> {
    let mut loads: Vec<PrimaryLoad> = after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.port == a.port)?;
            Some(PrimaryLoad {
                port: a.port,
                cpu_secs: (a.cpu_seconds - b.cpu_seconds).max(0.0),
                cpu_share: 0.0,
                bytes_in: a.net_input_bytes.saturating_sub(b.net_input_bytes),
                bytes_out: a.net_output_bytes.saturating_sub(b.net_output_bytes),
                commands: a.commands.saturating_sub(b.commands),
            })
        })
        .collect();
    let total: f64 = loads.iter().map(|l| l.cpu_secs).sum();
    if total > 0.0 {
        for l in &mut loads {
            l.cpu_share = l.cpu_secs / total;
        }
    }
    loads.sort_by_key(|l| l.port);
    loads
}

/// The largest primary's share of the Redis CPU, when any CPU was measured.
pub fn largest_share(loads: &[PrimaryLoad]) -> Option<f64> {
    if loads.iter().all(|l| l.cpu_secs <= 0.0) {
        return None;
    }
    loads.iter().map(|l| l.cpu_share).reduce(f64::max)
}

/// One publishing phase: messages to the rooms of one group only.
#[derive(Debug, Clone, Serialize)]
pub struct ShardsPhase {
    /// The group published to.
    pub group: usize,
    /// The node (0-based) with no member of the group's rooms.
    pub absent_node: usize,
    /// Deliveries, losses, latency and CPU of the phase.
    pub step: Step,
    /// Seconds between the byte readings around the phase.
    pub secs: f64,
    /// Bytes each node received from Redis during the phase, in node order.
    pub bytes_per_node: Vec<u64>,
}

/// The scenario on one stack in one adapter mode.
#[derive(Debug, Clone, Serialize)]
pub struct ShardsRun {
    /// Which stack.
    pub stack: Stack,
    /// Which adapter wire.
    pub mode: AdapterMode,
    /// Clients (room members).
    pub clients: usize,
    /// Rooms.
    pub rooms: usize,
    /// Room messages per second offered in each phase.
    pub msgs_per_sec: f64,
    /// Why it was not measured, when it was not.
    pub not_measured: Option<String>,
    /// Seconds to connect, create and join.
    pub setup_secs: Option<f64>,
    /// Bytes each node received from Redis in a quiet window before the phases.
    pub background_bytes_per_node: Vec<u64>,
    /// That window's length in seconds.
    pub background_secs: f64,
    /// The three phases, in order.
    pub phases: Vec<ShardsPhase>,
    /// Each primary over the three phases.
    pub primaries: Vec<PrimaryLoad>,
    /// Each primary over the quiet window (no room traffic: the nodes' own background).
    pub background_primaries: Vec<PrimaryLoad>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl ShardsRun {
    /// A run with no figures yet.
    pub fn empty(stack: Stack, mode: AdapterMode, config: &Config) -> Self {
        Self {
            stack,
            mode,
            clients: config.shards_clients,
            rooms: config.shards_rooms,
            msgs_per_sec: config.shards_msgs_per_sec,
            not_measured: None,
            setup_secs: None,
            background_bytes_per_node: Vec::new(),
            background_secs: 0.0,
            phases: Vec::new(),
            primaries: Vec::new(),
            background_primaries: Vec::new(),
            error: None,
        }
    }

    /// A run that could not happen, with the reason.
    pub fn not_measured(stack: Stack, mode: AdapterMode, config: &Config, reason: String) -> Self {
        Self {
            not_measured: Some(reason),
            ..Self::empty(stack, mode, config)
        }
    }

    /// `gateway classic`, `Node.js sharded`, ...
    pub fn label(&self) -> String {
        format!("{} {}", self.stack.label(), self.mode.name())
    }

    /// Messages, expected and delivered deliveries, and losses over the phases.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.phases.iter().fold((0, 0, 0, 0), |(p, e, d, l), ph| {
            (
                p + ph.step.published,
                e + ph.step.expected,
                d + ph.step.delivered,
                l + ph.step.lost,
            )
        })
    }

    /// CPU of the generator, the nodes and Redis over the phases.
    pub fn cpu(&self) -> CpuSample {
        self.phases.iter().fold(CpuSample::default(), |acc, ph| {
            let c = ph.step.cpu;
            CpuSample {
                generator: acc.generator + c.generator,
                servers: acc.servers + c.servers,
                redis: acc.redis + c.redis,
            }
        })
    }

    /// Per node: bytes received from Redis, above the background, per room message, during the
    /// phase of the group it holds no member of (None where not measured).
    pub fn foreign_bytes_per_message(&self) -> Vec<Option<f64>> {
        (0..NODES)
            .map(|node| {
                let phase = self.phases.iter().find(|p| p.absent_node == node)?;
                let received = *phase.bytes_per_node.get(node)?;
                let background = scaled_background(
                    self.background_bytes_per_node.get(node).copied()?,
                    self.background_secs,
                    phase.secs,
                );
                (phase.step.published > 0)
                    .then(|| (received as f64 - background).max(0.0) / phase.step.published as f64)
            })
            .collect()
    }

    /// Redis CPU seconds of the phases above the quiet window's, scaled to the phases' length.
    pub fn redis_cpu_above_background(&self) -> Option<f64> {
        if self.primaries.is_empty() || self.phases.is_empty() {
            return None;
        }
        let phases_secs: f64 = self.phases.iter().map(|p| p.secs).sum();
        let busy: f64 = self.primaries.iter().map(|p| p.cpu_secs).sum();
        let quiet: f64 = self.background_primaries.iter().map(|p| p.cpu_secs).sum();
        let background = if self.background_secs > 0.0 {
            quiet * phases_secs / self.background_secs
        } else {
            0.0
        };
        Some((busy - background).max(0.0))
    }

    /// What a node with members of a phase's rooms received from Redis per message of the phase,
    /// above the background, averaged over the phases and their member nodes.
    pub fn member_bytes_per_message(&self) -> Option<f64> {
        let mut per_message = Vec::new();
        for phase in &self.phases {
            if phase.step.published == 0 {
                continue;
            }
            for (node, &bytes) in phase.bytes_per_node.iter().enumerate() {
                if node == phase.absent_node {
                    continue;
                }
                let background = scaled_background(
                    self.background_bytes_per_node.get(node).copied()?,
                    self.background_secs,
                    phase.secs,
                );
                per_message
                    .push((bytes as f64 - background).max(0.0) / phase.step.published as f64);
            }
        }
        (!per_message.is_empty())
            .then(|| per_message.iter().sum::<f64>() / per_message.len() as f64)
    }

    /// The worst node's foreign bytes per message as a share of a member node's (0 to 1).
    pub fn worst_foreign_share(&self) -> Option<f64> {
        let member = self.member_bytes_per_message()?;
        let foreign = self.worst_foreign_bytes_per_message()?;
        (member > 0.0).then(|| foreign / member)
    }

    /// The worst node's figure of [`Self::foreign_bytes_per_message`].
    pub fn worst_foreign_bytes_per_message(&self) -> Option<f64> {
        let all: Vec<Option<f64>> = self.foreign_bytes_per_message();
        if all.iter().any(Option::is_none) {
            return None;
        }
        all.into_iter().flatten().reduce(f64::max)
    }
}

/// `bytes` received in a quiet window of `quiet_secs`, scaled to a window of `secs`.
pub fn scaled_background(bytes: u64, quiet_secs: f64, secs: f64) -> f64 {
    if quiet_secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 * secs / quiet_secs
}

/// Whether the gateway accepts `--adapter-mode sharded` and two such nodes on a three-primary
/// cluster share a room; the reason when not.
pub async fn probe_sharded(bench: &Bench) -> Result<(), String> {
    let help = std::process::Command::new(&bench.launcher.gateway_bin)
        .args(["serve", "--help"])
        .output()
        .map_err(|e| format!("running `gateway serve --help`: {e}"))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--adapter-mode") {
        return Err("`gateway serve --help` lists no --adapter-mode".into());
    }
    let cluster = start_cluster()
        .await
        .map_err(|e| format!("starting the Redis Cluster: {e:#}"))?;
    let deployment = bench
        .launcher
        .deploy_on_cluster(Stack::Gateway, 2, cluster, AdapterMode::Sharded)
        .map_err(|e| format!("two gateway nodes with --adapter-mode sharded: {e:#}"))?;
    scenarios::probe_cross_node(bench, &deployment).await
}

/// Three primaries, no replica (nothing fails over in this scenario).
async fn start_cluster() -> Result<RedisCluster> {
    tokio::task::spawn_blocking(|| {
        RedisCluster::start_with(RedisClusterSpec {
            primaries: 3,
            replicas_per_primary: 0,
        })
    })
    .await?
    .context("redis-server in cluster mode")
}

/// Runs the scenario on `stack` in `mode`.
pub async fn shards(bench: &Bench, stack: Stack, mode: AdapterMode) -> ShardsRun {
    let mut run = ShardsRun::empty(stack, mode, &bench.config);
    if let Err(e) = shards_inner(bench, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run
}

fn usage(deployment: &Deployment) -> Result<Vec<NodeUsage>> {
    let cluster = deployment.redis_cluster.as_ref().context("no cluster")?;
    tokio::task::block_in_place(|| cluster.primary_usage()).context("INFO of the primaries")
}

async fn shards_inner(bench: &Bench, run: &mut ShardsRun) -> Result<()> {
    let cfg = &bench.config;
    let per_room = cfg.shards_clients / cfg.shards_rooms;
    if per_room < 2 || cfg.shards_rooms < GROUPS {
        bail!("need at least 2 clients per room and {GROUPS} rooms");
    }
    let label = run.label();
    let cluster = start_cluster().await?;
    let ports = cluster.ports();
    let deployment = bench
        .launcher
        .deploy_on_cluster(run.stack, NODES, cluster, run.mode)?;
    let recorder = Arc::new(Recorder::default());
    // One user for every client: no `user online` storm, which is not what this measures.
    let token = bench.token("shards-user");
    let started = Instant::now();
    let targets = (0..cfg.shards_rooms * per_room)
        .map(|i| {
            let node = member_node(i / per_room, i % per_room);
            bench.target(deployment.servers[node].addr, i, token.clone())
        })
        .collect();
    eprintln!("[shards {label}] connecting {} clients", cfg.shards_clients);
    let clients = bench
        .open_all(targets, &recorder, cfg_parallel(bench))
        .await?;
    let room_ids: Vec<String> = (0..cfg.shards_rooms)
        .map(|r| format!("shard-{r}"))
        .collect();
    // Node's registry is per node: each room is created on both of its nodes (through its
    // members 0 and 1); the gateway's is cluster-wide and answers "Room already exists".
    let creates: Vec<_> = stream::iter((0..cfg.shards_rooms).flat_map(|r| {
        let room_ids = &room_ids;
        let clients = &clients;
        (0..2).map(move |m| async move {
            let ack = clients[r * per_room + m]
                .request(
                    "create room",
                    json!({ "roomId": room_ids[r], "roomName": room_ids[r], "maxUsers": per_room }),
                    REQUEST_TIMEOUT,
                )
                .await?;
            let exists = ack["error"].as_str() == Some("Room already exists");
            if ack["success"] != true && !exists {
                bail!("create room {}: {ack}", room_ids[r]);
            }
            Ok(())
        })
    }))
    .buffer_unordered(cfg_parallel(bench))
    .collect()
    .await;
    creates.into_iter().collect::<Result<Vec<()>>>()?;
    let members = Members {
        clients: &clients,
        room_ids: &room_ids,
        per_room,
    };
    scenarios::join_rooms(&clients, cfg_parallel(bench), |i| {
        room_ids[i / per_room].clone()
    })
    .await?;
    run.setup_secs = Some(started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids = deployment.server_pids();
    let quiet = Instant::now();
    let quiet_usage = usage(&deployment)?;
    let quiet_start = procs::bytes_received_from_any(&ports)?;
    tokio::time::sleep(Duration::from_secs_f64(
        cfg.shards_phase_secs * GROUPS as f64,
    ))
    .await;
    let quiet_end = procs::bytes_received_from_any(&ports)?;
    let usage_before = usage(&deployment)?;
    run.background_secs = quiet.elapsed().as_secs_f64();
    run.background_bytes_per_node = scenarios::per_pid_delta(&pids, &quiet_start, &quiet_end);
    run.background_primaries = primary_loads(&quiet_usage, &usage_before);
    let mut rng = SplitMix64(0x5eed_0015);
    for group in 0..GROUPS {
        let rooms = rooms_of_group(cfg.shards_rooms, group);
        let before = procs::bytes_received_from_any(&ports)?;
        let phase_start = Instant::now();
        let step = members
            .publishing(
                &recorder,
                &deployment,
                (group, cfg.shards_msgs_per_sec, cfg.shards_phase_secs),
            )
            .run(|_| {
                let room = rooms[rng.below(rooms.len())];
                members.sender(room, &mut rng)
            })
            .await?;
        let after = procs::bytes_received_from_any(&ports)?;
        let phase = ShardsPhase {
            group,
            absent_node: absent_node(group),
            secs: phase_start.elapsed().as_secs_f64(),
            bytes_per_node: scenarios::per_pid_delta(&pids, &before, &after),
            step,
        };
        eprintln!(
            "[shards {label}] group {group}: {} messages, lost {}, p99 {:?} ms, bytes from redis per node {:?} (node {} holds no member)",
            phase.step.published,
            phase.step.lost,
            phase.step.p99_ms,
            phase.bytes_per_node,
            phase.absent_node + 1
        );
        run.phases.push(phase);
    }
    run.primaries = primary_loads(&usage_before, &usage(&deployment)?);
    eprintln!(
        "[shards {label}] primaries (port, CPU s, share): {:?}",
        run.primaries
            .iter()
            .map(|p| (p.port, p.cpu_secs, p.cpu_share))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(port: u16, cpu: f64, bytes_in: u64, bytes_out: u64, commands: u64) -> NodeUsage {
        NodeUsage {
            port,
            cpu_seconds: cpu,
            net_input_bytes: bytes_in,
            net_output_bytes: bytes_out,
            commands,
        }
    }

    #[test]
    fn every_room_misses_exactly_one_node_and_every_node_misses_one_group() {
        for room in 0..30 {
            let [a, b] = room_nodes(room);
            let absent = absent_node(room % GROUPS);
            assert!(a != b && a != absent && b != absent, "room {room}");
            let members: Vec<usize> = (0..10).map(|m| member_node(room, m)).collect();
            assert!(!members.contains(&absent));
            assert_eq!(members.iter().filter(|&&n| n == a).count(), 5);
        }
        let absent: Vec<usize> = (0..GROUPS).map(absent_node).collect();
        assert_eq!(absent, vec![2, 0, 1]);
    }

    #[test]
    fn groups_partition_the_rooms() {
        let mut all: Vec<usize> = (0..GROUPS).flat_map(|g| rooms_of_group(10, g)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(rooms_of_group(10, 1), vec![1, 4, 7]);
    }

    #[test]
    fn primary_loads_are_deltas_with_cpu_shares() {
        let before = [usage(7002, 1.0, 10, 20, 5), usage(7001, 2.0, 0, 0, 0)];
        let after = [
            usage(7001, 5.0, 100, 300, 50),
            usage(7002, 2.0, 110, 20, 6),
            usage(7003, 9.0, 1, 1, 1),
        ];
        let loads = primary_loads(&before, &after);
        assert_eq!(
            loads.len(),
            2,
            "a primary without a first reading is left out"
        );
        assert_eq!(loads[0].port, 7001);
        assert!((loads[0].cpu_secs - 3.0).abs() < 1e-9);
        assert!((loads[0].cpu_share - 0.75).abs() < 1e-9);
        assert!((loads[1].cpu_share - 0.25).abs() < 1e-9);
        assert_eq!((loads[1].bytes_in, loads[1].bytes_out), (100, 0));
        assert_eq!(loads[1].commands, 1);
        assert_eq!(largest_share(&loads), Some(0.75));
        let idle = primary_loads(&before, &before);
        assert_eq!(largest_share(&idle), None, "no CPU measured, no share");
    }

    fn phase(group: usize, published: u64, secs: f64, bytes: Vec<u64>) -> ShardsPhase {
        let step = Step {
            rate_per_room: 0.0,
            offered_msgs_per_sec: 0.0,
            offered_deliveries_per_sec: 0.0,
            published,
            expected: published * 9,
            delivered: published * 9,
            lost: 0,
            deliveries_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            max_ms: None,
            disconnects: 0,
            rejections: 0,
            receivers_short: None,
            receivers_silent: None,
            sent_per_room: Vec::new(),
            cpu: CpuSample::default(),
            wall_secs: secs,
            server_cpu_secs_per_million: None,
            sustained: true,
            attempt: 1,
        };
        ShardsPhase {
            group,
            absent_node: absent_node(group),
            step,
            secs,
            bytes_per_node: bytes,
        }
    }

    #[test]
    fn foreign_bytes_are_the_absent_nodes_bytes_above_the_background() {
        let mut run = ShardsRun::empty(Stack::Gateway, AdapterMode::Sharded, &Config::quick());
        run.background_secs = 2.0;
        run.background_bytes_per_node = vec![200, 400, 0];
        // Node 3 (index 2) is absent in group 0, node 1 in group 1, node 2 in group 2.
        run.phases = vec![
            phase(0, 100, 4.0, vec![90_000, 90_000, 0]),
            phase(1, 100, 2.0, vec![200, 50_000, 50_000]),
            phase(2, 100, 1.0, vec![50_000, 20_200, 50_000]),
        ];
        let got = run.foreign_bytes_per_message();
        // Node 1: 200 received, 200 background over 2 s: none. Node 2: 20,200 - 200 over 1 s.
        // Node 3: 0 received, 0 background.
        assert_eq!(got, vec![Some(0.0), Some(200.0), Some(0.0)]);
        assert_eq!(run.worst_foreign_bytes_per_message(), Some(200.0));
        // Members: group 0 nodes 1, 2 (90,000 - 400 and - 800 over 100); group 1 nodes 2, 3
        // (50,000 - 400 and - 0); group 2 nodes 1, 3 (50,000 - 100 and - 0).
        let member = run.member_bytes_per_message().unwrap_or(0.0);
        let want = (896.0 + 892.0 + 496.0 + 500.0 + 499.0 + 500.0) / 6.0;
        assert!((member - want).abs() < 1e-9, "{member} {want}");
        let share = run.worst_foreign_share().unwrap_or(0.0);
        assert!((share - 200.0 / want).abs() < 1e-9);
        run.phases.pop();
        assert_eq!(run.foreign_bytes_per_message()[1], None);
        assert_eq!(run.worst_foreign_bytes_per_message(), None);
        let (published, expected, delivered, lost) = run.totals();
        assert_eq!((published, expected, delivered, lost), (200, 1800, 1800, 0));
    }

    #[test]
    fn redis_cpu_above_background_scales_the_quiet_window() {
        let load = |cpu_secs| PrimaryLoad {
            port: 1,
            cpu_secs,
            cpu_share: 0.0,
            bytes_in: 0,
            bytes_out: 0,
            commands: 0,
        };
        let mut run = ShardsRun::empty(Stack::Node, AdapterMode::Sharded, &Config::quick());
        assert_eq!(run.redis_cpu_above_background(), None);
        run.phases = vec![
            phase(0, 10, 2.0, vec![0, 0, 0]),
            phase(1, 10, 2.0, vec![0, 0, 0]),
        ];
        run.primaries = vec![load(0.5), load(0.3)];
        run.background_primaries = vec![load(0.05), load(0.05)];
        run.background_secs = 2.0;
        // 0.8 s busy minus 0.1 s per 2 s of quiet over 4 s of phases.
        let above = run.redis_cpu_above_background().unwrap_or(-1.0);
        assert!((above - 0.6).abs() < 1e-9, "{above}");
    }

    #[test]
    fn background_scales_with_the_window() {
        assert!((scaled_background(1_000, 2.0, 3.0) - 1_500.0).abs() < 1e-9);
        assert_eq!(scaled_background(1_000, 0.0, 3.0), 0.0);
    }
}
