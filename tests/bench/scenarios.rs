//! The benchmark scenarios. Each starts its own servers, drives them from this process and
//! returns what it measured; a scenario that cannot run returns its reason instead of figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use serde_json::json;

use crate::client::{self, Client, Target};
use crate::hist::{Histogram, MAX_STEPS, Recorder};
use crate::procs::{self, CpuSample, Deployment, Launcher, Stack};
use crate::proto::{self, Claims, Tag};

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Loopback source addresses the generator spreads connections over.
    pub source_addresses: usize,
    /// Idle-memory checkpoints (connections held) for the Node.js node.
    pub idle_node: Vec<usize>,
    /// Idle-memory checkpoints for the gateway node.
    pub idle_gateway: Vec<usize>,
    /// Handshakes and joins in flight while the fan-out and many-rooms clients are set up.
    /// Every connect and join is broadcast to the others (`user online`, `user joined`), so this
    /// bounds how many such frames pile up per socket at once.
    pub setup_parallelism: usize,
    /// Wait before reading RSS at a checkpoint.
    pub idle_settle_secs: f64,
    /// Offered connection rates (connects/s), tried in order until one fails.
    pub conn_rates: Vec<f64>,
    /// Duration of one connection-rate step.
    pub conn_step_secs: f64,
    /// Receivers in the fan-out scenarios.
    pub fanout_clients: usize,
    /// Room messages per second per room at the fixed fan-out point.
    pub fanout_rate_per_room: f64,
    /// Duration of one publishing step.
    pub step_secs: f64,
    /// First rate (per room) of the saturation ramp.
    pub ramp_start_per_room: f64,
    /// Factor between ramp steps.
    pub ramp_factor: f64,
    /// Most ramp steps.
    pub ramp_max_steps: usize,
    /// Clients in the many-rooms scenario.
    pub rooms_clients: usize,
    /// Rooms in the many-rooms scenario.
    pub rooms_count: usize,
    /// Room messages per second (all rooms together) in the many-rooms scenario.
    pub rooms_msgs_per_sec: f64,
    /// Duration of the many-rooms publishing.
    pub rooms_secs: f64,
    /// Clients in the Redis Cluster scenario (`shards`).
    pub shards_clients: usize,
    /// Rooms in the `shards` scenario (each on two of the three nodes).
    pub shards_rooms: usize,
    /// Room messages per second (all rooms together) in the `shards` scenario.
    pub shards_msgs_per_sec: f64,
    /// Duration of each of the `shards` scenario's three publishing phases.
    pub shards_phase_secs: f64,
}

impl Config {
    /// Small sizes for a smoke run of a few minutes.
    pub fn quick() -> Self {
        Self {
            mode: "quick",
            source_addresses: 32,
            setup_parallelism: 32,
            idle_node: vec![1_000, 3_000],
            idle_gateway: vec![1_000, 3_000],
            idle_settle_secs: 2.0,
            conn_rates: vec![200.0, 400.0, 800.0, 1_600.0, 3_200.0],
            conn_step_secs: 2.0,
            fanout_clients: 300,
            fanout_rate_per_room: 100.0,
            step_secs: 3.0,
            ramp_start_per_room: 50.0,
            ramp_factor: 2.0,
            ramp_max_steps: 6,
            rooms_clients: 1_000,
            rooms_count: 100,
            rooms_msgs_per_sec: 200.0,
            rooms_secs: 4.0,
            shards_clients: 300,
            shards_rooms: 30,
            shards_msgs_per_sec: 200.0,
            shards_phase_secs: 3.0,
        }
    }

    /// The sizes of the issue: 3,000 clients, 10k/50k/100k idle, 10k clients in 1,000 rooms.
    pub fn full() -> Self {
        Self {
            mode: "full",
            source_addresses: 64,
            setup_parallelism: 32,
            idle_node: vec![10_000, 50_000],
            idle_gateway: vec![10_000, 50_000, 100_000],
            idle_settle_secs: 5.0,
            // Steps of about 1.25x above 1,000/s, so that the ratio is not an artifact of doubling.
            conn_rates: vec![
                250.0, 500.0, 1_000.0, 1_250.0, 1_600.0, 2_000.0, 2_500.0, 3_200.0, 4_000.0,
                5_000.0, 6_400.0, 8_000.0, 10_000.0,
            ],
            conn_step_secs: 5.0,
            fanout_clients: 3_000,
            fanout_rate_per_room: 100.0,
            step_secs: 8.0,
            ramp_start_per_room: 12.5,
            ramp_factor: 1.41,
            ramp_max_steps: 10,
            rooms_clients: 10_000,
            rooms_count: 1_000,
            rooms_msgs_per_sec: 1_000.0,
            rooms_secs: 15.0,
            shards_clients: 10_000,
            shards_rooms: 1_000,
            shards_msgs_per_sec: 1_000.0,
            shards_phase_secs: 5.0,
        }
    }
}

/// Everything a scenario needs.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Starts servers.
    pub launcher: Launcher,
    /// Sizes.
    pub config: Config,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const ROOM_CAPACITY: usize = 1_000;

impl Bench {
    pub(crate) fn token(&self, user_id: &str) -> Arc<str> {
        let exp = chrono::Utc::now().timestamp() as u64 + 24 * 3600;
        proto::mint_jwt(
            self.launcher.secret.as_bytes(),
            &Claims {
                user_id,
                username: user_id,
                exp,
            },
        )
        .into()
    }

    pub(crate) fn target(&self, server: SocketAddr, index: usize, token: Arc<str>) -> Target {
        Target {
            server,
            source: client::source_address(index, self.config.source_addresses),
            token,
        }
    }

    /// Opens `targets` with at most `parallel` handshakes in flight; the clients in order, or
    /// the first error with how many had connected.
    pub(crate) async fn open_all(
        &self,
        targets: Vec<Target>,
        recorder: &Arc<Recorder>,
        parallel: usize,
    ) -> Result<Vec<Client>> {
        let total = targets.len();
        let results: Vec<_> = stream::iter(targets.into_iter().enumerate().map(|(id, t)| {
            let recorder = recorder.clone();
            async move { Client::open(&t, recorder, CONNECT_TIMEOUT, id).await }
        }))
        .buffered(parallel)
        .collect()
        .await;
        let mut clients = Vec::with_capacity(total);
        for (i, r) in results.into_iter().enumerate() {
            clients.push(r.with_context(|| format!("connection {i} of {total}"))?);
        }
        Ok(clients)
    }
}

pub(crate) fn cfg_parallel(bench: &Bench) -> usize {
    bench.config.setup_parallelism.max(1)
}

/// One publishing step of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Room messages per second per room.
    pub rate_per_room: f64,
    /// Room messages per second offered (all rooms).
    pub offered_msgs_per_sec: f64,
    /// Deliveries per second offered (messages x receivers).
    pub offered_deliveries_per_sec: f64,
    /// Room messages sent.
    pub published: u64,
    /// Deliveries expected (every receiver of the message's room).
    pub expected: u64,
    /// Deliveries counted.
    pub delivered: u64,
    /// Expected minus delivered, after draining.
    pub lost: u64,
    /// Delivered per second, from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    /// Publish-to-receive latency percentiles, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
    /// Receivers that lost their connection during the step.
    pub disconnects: u64,
    /// `error` events received (rejected publishes).
    pub rejections: u64,
    /// Receivers that got fewer than all messages of their room (fan-out only).
    pub receivers_short: Option<u64>,
    /// Receivers that got none of their room's messages (fan-out only).
    pub receivers_silent: Option<u64>,
    /// Messages sent per room index.
    #[serde(skip)]
    pub sent_per_room: Vec<u64>,
    /// CPU seconds used during the step (publishing and draining).
    pub cpu: CpuSample,
    /// Seconds from the first send to the last delivery (or the end of draining).
    pub wall_secs: f64,
    /// Server CPU (nodes + Redis) in seconds per million deliveries.
    pub server_cpu_secs_per_million: Option<f64>,
    /// p99 under 100 ms, nothing lost, nobody disconnected.
    pub sustained: bool,
    /// 1, or 2 when this rate is measured again after a first attempt missed only on latency.
    pub attempt: u32,
}

/// The fan-out scenario on one deployment: a fixed-rate step, then a saturation ramp.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutRun {
    /// Which stack.
    pub stack: Stack,
    /// `single` (1 node, no Redis) or `cluster` (3 nodes + Redis).
    pub topology: &'static str,
    /// Server nodes.
    pub nodes: usize,
    /// Receiving clients.
    pub clients: usize,
    /// Rooms the receivers are spread over (room capacity is 1,000 in the contract).
    pub rooms: usize,
    /// Why it was not measured, when it was not.
    pub not_measured: Option<String>,
    /// Seconds to connect every client (JWT, `welcome`, `user online` storm).
    pub connect_secs: Option<f64>,
    /// Seconds for every client to create/join its room.
    pub join_secs: Option<f64>,
    /// Connections the server closed during connect and join.
    pub setup_disconnects: Option<u64>,
    /// The step at the configured rate.
    pub fixed: Option<Step>,
    /// The saturation ramp, in order; stops at the first step that is not sustained, then
    /// measures once between that step and the last sustained one.
    pub ramp: Vec<Step>,
    /// Highest deliveries/s of a sustained ramp step.
    pub max_sustained_deliveries_per_sec: Option<f64>,
    /// Whether the ramp reached a step that was not sustained (otherwise it ran out of steps
    /// and the highest sustained rate is only a lower bound).
    pub saturated: bool,
    /// What went wrong mid-run, if anything.
    pub error: Option<String>,
}

impl FanoutRun {
    fn empty(stack: Stack, topology: &'static str, nodes: usize, clients: usize) -> Self {
        Self {
            stack,
            topology,
            nodes,
            clients,
            rooms: clients.div_ceil(ROOM_CAPACITY - 1),
            not_measured: None,
            connect_secs: None,
            join_secs: None,
            setup_disconnects: None,
            fixed: None,
            ramp: Vec::new(),
            max_sustained_deliveries_per_sec: None,
            saturated: false,
            error: None,
        }
    }

    /// A run that could not happen, with the reason.
    pub fn not_measured(
        stack: Stack,
        topology: &'static str,
        nodes: usize,
        clients: usize,
        reason: String,
    ) -> Self {
        Self {
            not_measured: Some(reason),
            ..Self::empty(stack, topology, nodes, clients)
        }
    }
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

/// Waits until `expected` deliveries of `step` arrived, or they stop arriving for `stall`.
async fn drain(recorder: &Recorder, step: usize, expected: u64, stall: Duration) {
    let mut last = recorder.delivered_in(step);
    let mut last_progress = Instant::now();
    let hard_deadline = Instant::now() + Duration::from_secs(60);
    while recorder.delivered_in(step) < expected && Instant::now() < hard_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = recorder.delivered_in(step);
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall {
            break;
        }
    }
}

/// Sends room messages: message `k` goes to `rooms[pick(k)]` through `senders[pick(k)]`.
pub(crate) struct Publishing<'a> {
    pub(crate) recorder: &'a Arc<Recorder>,
    pub(crate) deployment: &'a Deployment,
    pub(crate) step: usize,
    pub(crate) msgs_per_sec: f64,
    pub(crate) secs: f64,
    pub(crate) receivers_per_message: u64,
    pub(crate) rooms: usize,
}

/// Room members `per_room` to a room, room by room: client `i` is in room `i / per_room`.
pub(crate) struct Members<'a> {
    pub(crate) clients: &'a [Client],
    pub(crate) room_ids: &'a [String],
    pub(crate) per_room: usize,
}

impl Members<'_> {
    /// A step that publishes into these rooms: each message reaches the other members of its
    /// room.
    pub(crate) fn publishing<'a>(
        &self,
        recorder: &'a Arc<Recorder>,
        deployment: &'a Deployment,
        (step, msgs_per_sec, secs): (usize, f64, f64),
    ) -> Publishing<'a> {
        Publishing {
            recorder,
            deployment,
            step,
            msgs_per_sec,
            secs,
            receivers_per_message: (self.per_room - 1) as u64,
            rooms: self.room_ids.len(),
        }
    }

    /// What [`Publishing::run`] sends next: from a random member of `room`.
    pub(crate) fn sender(&self, room: usize, rng: &mut SplitMix64) -> (Client, usize, String) {
        let member = room * self.per_room + rng.below(self.per_room);
        (
            self.clients[member].clone(),
            room,
            self.room_ids[room].clone(),
        )
    }
}

/// Every client joins room `room_of(i)`, `parallel` at a time; a refusal fails the run.
pub(crate) async fn join_rooms(
    clients: &[Client],
    parallel: usize,
    room_of: impl Fn(usize) -> String,
) -> Result<()> {
    let joins: Vec<_> = stream::iter(clients.iter().enumerate().map(|(i, c)| {
        let room = room_of(i);
        async move {
            c.request("join room", json!({ "roomId": room }), REQUEST_TIMEOUT)
                .await
        }
    }))
    .buffer_unordered(parallel)
    .collect()
    .await;
    for ack in joins {
        let ack = ack.context("a client's join room")?;
        if ack["success"] != true {
            bail!("join room: {ack}");
        }
    }
    Ok(())
}

impl Publishing<'_> {
    pub(crate) async fn run<F>(self, mut next: F) -> Result<Step>
    where
        F: FnMut(u64) -> (Client, usize, String),
    {
        if self.step >= MAX_STEPS {
            bail!("too many steps");
        }
        let recorder = self.recorder;
        let cpu0 = self.deployment.cpu();
        let disconnects0 = recorder.disconnects.load(Ordering::Relaxed);
        let rejections0 = recorder.rejections.load(Ordering::Relaxed);
        let start = Instant::now();
        let start_us = recorder.now_us();
        let total = (self.msgs_per_sec * self.secs).round() as u64;
        let mut sent = 0u64;
        let mut sent_per_room = vec![0u64; self.rooms];
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * self.msgs_per_sec) as u64).min(total);
            while sent < due {
                let (sender, room_index, room) = next(sent);
                if let Some(n) = sent_per_room.get_mut(room_index) {
                    *n += 1;
                }
                let tag = Tag {
                    step: self.step as u32,
                    seq: sent,
                    sent_us: recorder.now_us(),
                };
                sender
                    .send(proto::room_message_frame(&room, tag))
                    .await
                    .map_err(|e| anyhow!("sending a room message: {e} (the sender's connection was closed by the server)"))?;
                sent += 1;
            }
        }
        let expected = sent * self.receivers_per_message;
        drain(recorder, self.step, expected, Duration::from_secs(3)).await;
        let cpu = self.deployment.cpu() - cpu0;
        let delivered = recorder.delivered_in(self.step);
        let last_us = recorder.last_delivery_us.load(Ordering::Relaxed);
        let wall_secs = (last_us.saturating_sub(start_us) as f64 / 1e6)
            .max(start.elapsed().as_secs_f64().min(self.secs));
        let latency: Histogram = recorder.latency_in(self.step);
        let p99 = ms(latency.quantile(0.99));
        let lost = expected.saturating_sub(delivered);
        let disconnects = recorder.disconnects.load(Ordering::Relaxed) - disconnects0;
        let server_cpu = cpu.servers + cpu.redis;
        Ok(Step {
            rate_per_room: 0.0,
            offered_msgs_per_sec: self.msgs_per_sec,
            offered_deliveries_per_sec: self.msgs_per_sec * self.receivers_per_message as f64,
            published: sent,
            expected,
            delivered,
            lost,
            deliveries_per_sec: if wall_secs > 0.0 {
                delivered as f64 / wall_secs
            } else {
                0.0
            },
            p50_ms: ms(latency.quantile(0.5)),
            p99_ms: p99,
            p999_ms: ms(latency.quantile(0.999)),
            max_ms: ms(latency.max()),
            disconnects,
            rejections: recorder.rejections.load(Ordering::Relaxed) - rejections0,
            receivers_short: None,
            receivers_silent: None,
            sent_per_room,
            cpu,
            wall_secs,
            server_cpu_secs_per_million: (delivered > 0)
                .then(|| server_cpu / delivered as f64 * 1e6),
            sustained: lost == 0 && disconnects == 0 && p99.is_some_and(|p| p < 100.0),
            attempt: 1,
        })
    }
}

/// Connects `clients` receivers over the deployment's nodes, puts them in rooms of at most
/// 999 receivers plus the publisher, and returns (publisher, rooms, receivers per room).
async fn fanout_setup(
    bench: &Bench,
    deployment: &Deployment,
    recorder: &Arc<Recorder>,
    run: &mut FanoutRun,
) -> Result<(Client, Vec<String>, Vec<Client>)> {
    let nodes = deployment.servers.len();
    let rooms: Vec<String> = (0..run.rooms).map(|r| format!("fanout-{r}")).collect();
    let started = Instant::now();
    let mut targets = Vec::with_capacity(run.clients);
    for i in 0..run.clients {
        let user = format!("u{i}");
        targets.push(bench.target(deployment.servers[i % nodes].addr, i, bench.token(&user)));
    }
    let receivers = bench
        .open_all(targets, recorder, cfg_parallel(bench))
        .await?;
    let publisher_target = bench.target(
        deployment.servers[0].addr,
        run.clients,
        bench.token("publisher"),
    );
    let publisher = Client::open(
        &publisher_target,
        recorder.clone(),
        CONNECT_TIMEOUT,
        run.clients,
    )
    .await
    .context("publisher")?;
    run.connect_secs = Some(started.elapsed().as_secs_f64());

    let started = Instant::now();
    // The Node.js registry is per node (as in the original design), so each room is created on
    // every node; the gateway's registry is cluster-wide and answers "Room already exists".
    // Receiver `node` is the first one connected to that node (receiver i is on node i mod n).
    for (node, creator) in receivers.iter().enumerate().take(nodes) {
        for room in &rooms {
            let ack = creator
                .request(
                    "create room",
                    json!({ "roomId": room, "roomName": room, "maxUsers": ROOM_CAPACITY }),
                    REQUEST_TIMEOUT,
                )
                .await
                .with_context(|| format!("create room {room} on node {node}"))?;
            let exists = ack["error"].as_str() == Some("Room already exists");
            if ack["success"] != true && !exists {
                bail!("create room {room} on node {node}: {ack}");
            }
        }
    }
    join_rooms(&receivers, cfg_parallel(bench), |i| {
        rooms[i % rooms.len()].clone()
    })
    .await?;
    for room in &rooms {
        let ack = publisher
            .request("join room", json!({ "roomId": room }), REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("the publisher's join room {room}"))?;
        if ack["success"] != true {
            bail!("publisher join room {room}: {ack}");
        }
    }
    run.join_secs = Some(started.elapsed().as_secs_f64());
    run.setup_disconnects = Some(recorder.disconnects.load(Ordering::Relaxed));
    Ok((publisher, rooms, receivers))
}

/// Fan-out to `clients` receivers: one step at the configured rate, then the saturation ramp.
pub async fn fanout(bench: &Bench, stack: Stack, cluster: bool) -> FanoutRun {
    let nodes = if cluster { 3 } else { 1 };
    let topology = if cluster { "cluster" } else { "single" };
    let mut run = FanoutRun::empty(stack, topology, nodes, bench.config.fanout_clients);
    if let Err(e) = fanout_inner(bench, stack, cluster, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run
}

async fn fanout_inner(
    bench: &Bench,
    stack: Stack,
    cluster: bool,
    run: &mut FanoutRun,
) -> Result<()> {
    let cfg = &bench.config;
    let deployment = bench.launcher.deploy(stack, run.nodes, cluster)?;
    let recorder = Arc::new(Recorder::with_clients(run.clients));
    eprintln!(
        "[fanout {} {}] connecting {} clients",
        stack.label(),
        run.topology,
        run.clients
    );
    let (publisher, rooms, _receivers) = fanout_setup(bench, &deployment, &recorder, run).await?;
    eprintln!(
        "[fanout {} {}] connected in {:.1}s, joined in {:.1}s",
        stack.label(),
        run.topology,
        run.connect_secs.unwrap_or(0.0),
        run.join_secs.unwrap_or(0.0)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let room_count = rooms.len();
    let receivers_per_room = (run.clients / room_count) as u64;
    if !run.clients.is_multiple_of(room_count) {
        bail!("clients must divide evenly over {room_count} rooms");
    }
    let step_at = |step: usize, rate_per_room: f64| {
        let publisher = publisher.clone();
        let rooms = rooms.clone();
        let recorder = recorder.clone();
        let deployment = &deployment;
        async move {
            let publishing = Publishing {
                recorder: &recorder,
                deployment,
                step,
                msgs_per_sec: rate_per_room * room_count as f64,
                secs: cfg.step_secs,
                receivers_per_message: receivers_per_room,
                rooms: room_count,
            };
            let before = recorder.per_client();
            let mut s = publishing
                .run(|k| {
                    let r = k as usize % rooms.len();
                    (publisher.clone(), r, rooms[r].clone())
                })
                .await?;
            let after = recorder.per_client();
            let (mut short, mut silent) = (0, 0);
            for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                let got = a - b;
                let want = s.sent_per_room.get(i % room_count).copied().unwrap_or(0);
                short += u64::from(got < want);
                silent += u64::from(got == 0 && want > 0);
            }
            s.receivers_short = Some(short);
            s.receivers_silent = Some(silent);
            s.sustained &= short == 0;
            s.rate_per_room = rate_per_room;
            Ok::<Step, anyhow::Error>(s)
        }
    };
    let fixed = step_at(0, cfg.fanout_rate_per_room).await?;
    log_step(stack, run.topology, &fixed);
    run.fixed = Some(fixed);
    let mut rate = cfg.ramp_start_per_room;
    let mut rates_done = 0;
    let mut step_index = 1;
    let mut attempt = 1;
    let mut last_sustained_rate: Option<f64> = None;
    let mut refining = false;
    while rates_done < cfg.ramp_max_steps && step_index < MAX_STEPS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut step = step_at(step_index, rate).await?;
        step_index += 1;
        step.attempt = attempt;
        log_step(stack, run.topology, &step);
        let sustained = step.sustained;
        // On a shared machine a neighbour's burst can push one step's p99 over the line: a
        // step that lost nothing is tried once more before the ramp stops (both are reported).
        let retry = !sustained && attempt == 1 && step.lost == 0 && step.disconnects == 0;
        if sustained {
            run.max_sustained_deliveries_per_sec = Some(
                run.max_sustained_deliveries_per_sec
                    .unwrap_or(0.0)
                    .max(step.deliveries_per_sec),
            );
        }
        run.ramp.push(step);
        if retry {
            attempt = 2;
            continue;
        }
        attempt = 1;
        if refining {
            break;
        }
        if !sustained {
            run.saturated = true;
            // One more step halfway (geometric mean) between the last sustained rate and this
            // one halves the ramp's granularity where it matters, at the cost of one step.
            let Some(ok) = last_sustained_rate else { break };
            rate = (ok * rate).sqrt();
            refining = true;
            continue;
        }
        last_sustained_rate = Some(rate);
        rates_done += 1;
        rate *= cfg.ramp_factor;
    }
    Ok(())
}

fn log_step(stack: Stack, topology: &str, s: &Step) {
    eprintln!(
        "[fanout {} {topology}] offered {:.0} deliveries/s: got {:.0}/s, p50 {:?} ms, p99 {:?} ms, lost {}, disconnects {}, receivers short {:?} silent {:?}, cpu gen {:.2}s servers {:.2}s redis {:.2}s",
        stack.label(),
        s.offered_deliveries_per_sec,
        s.deliveries_per_sec,
        s.p50_ms,
        s.p99_ms,
        s.lost,
        s.disconnects,
        s.receivers_short,
        s.receivers_silent,
        s.cpu.generator,
        s.cpu.servers,
        s.cpu.redis
    );
}

/// RSS of one node holding idle connections.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRun {
    /// Which stack.
    pub stack: Stack,
    /// RSS with no connection, KiB.
    pub baseline_kib: u64,
    /// (connections, RSS KiB) at each checkpoint.
    pub points: Vec<(usize, u64)>,
    /// Connections still open at the end.
    pub held: usize,
    /// Checkpoints that could not be measured, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// CPU of the generator and the node over the whole scenario.
    pub cpu: CpuSample,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl IdleRun {
    /// (RSS - baseline) / connections at each checkpoint, in bytes.
    pub fn bytes_per_connection(&self) -> Vec<(usize, f64)> {
        self.points
            .iter()
            .map(|&(n, rss)| {
                (
                    n,
                    (rss.saturating_sub(self.baseline_kib)) as f64 * 1024.0 / n as f64,
                )
            })
            .collect()
    }
}

/// Idle connections on one node (no Redis), all as one user so that the connect phase carries
/// no `user online` storm; RSS at each checkpoint.
pub async fn idle(bench: &Bench, stack: Stack) -> IdleRun {
    let mut run = IdleRun {
        stack,
        baseline_kib: 0,
        points: Vec::new(),
        held: 0,
        skipped: Vec::new(),
        cpu: CpuSample::default(),
        error: None,
    };
    if let Err(e) = idle_inner(bench, stack, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run
}

async fn idle_inner(bench: &Bench, stack: Stack, run: &mut IdleRun) -> Result<()> {
    let mut checkpoints = match stack {
        Stack::Gateway => bench.config.idle_gateway.clone(),
        Stack::Node => bench.config.idle_node.clone(),
    };
    // The generator and the node each hold one descriptor per connection, under the limit
    // run.sh could set (a hard limit it cannot raise without CAP_SYS_RESOURCE).
    if let Some(limit) = procs::open_files_limit() {
        let usable = limit.saturating_sub(1_000) as usize;
        run.skipped = checkpoints
            .iter()
            .filter(|&&c| c > usable)
            .map(|&c| {
                (
                    c,
                    format!(
                        "not measured: needs {c} open files per process, the open-file limit here is {limit} (hard limit; raising it needs CAP_SYS_RESOURCE)"
                    ),
                )
            })
            .collect();
        checkpoints.retain(|&c| c <= usable);
    }
    let deployment = bench.launcher.deploy(stack, 1, false)?;
    let server = &deployment.servers[0];
    let cpu0 = deployment.cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.baseline_kib = procs::rss_kib(server.pid());
    let recorder = Arc::new(Recorder::default());
    let token = bench.token("idle-user");
    let mut clients: Vec<Client> = Vec::new();
    let settle = Duration::from_secs_f64(bench.config.idle_settle_secs);
    for &checkpoint in &checkpoints {
        let from = clients.len();
        let targets = (from..checkpoint)
            .map(|i| bench.target(server.addr, i, token.clone()))
            .collect();
        let started = Instant::now();
        let opened = bench.open_all(targets, &recorder, 500).await?;
        clients.extend(opened);
        tokio::time::sleep(settle).await;
        let rss = procs::rss_kib(server.pid());
        eprintln!(
            "[idle {}] {checkpoint} connections (+{} in {:.1}s): RSS {rss} KiB",
            stack.label(),
            checkpoint - from,
            started.elapsed().as_secs_f64()
        );
        run.points.push((checkpoint, rss));
    }
    let lost = recorder.disconnects.load(Ordering::Relaxed) as usize;
    run.held = clients.len().saturating_sub(lost);
    run.cpu = deployment.cpu() - cpu0;
    Ok(())
}

/// One offered connection rate.
#[derive(Debug, Clone, Serialize)]
pub struct ConnStep {
    /// Connects per second offered.
    pub offered_per_sec: f64,
    /// Handshakes that reached `welcome`.
    pub succeeded: u64,
    /// Handshakes that failed or timed out, plus connects not attempted because too many
    /// handshakes were still pending (the server fell behind).
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Succeeded per second, from the first attempt to the last completion.
    pub achieved_per_sec: f64,
    /// Time to `welcome`, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// CPU during the step.
    pub cpu: CpuSample,
    /// No failure and at least 90 % of the offered rate achieved.
    pub sustained: bool,
}

/// Connection rate with JWT auth against one node.
#[derive(Debug, Clone, Serialize)]
pub struct ConnRateRun {
    /// Which stack.
    pub stack: Stack,
    /// The steps in order; stops after the first that is not sustained.
    pub steps: Vec<ConnStep>,
    /// Highest sustained achieved rate.
    pub max_sustained_per_sec: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Connects per second with JWT auth until errors appear. Each connection opens, authenticates
/// as its own user, waits for `welcome`, and closes.
pub async fn conn_rate(bench: &Bench, stack: Stack) -> ConnRateRun {
    let mut run = ConnRateRun {
        stack,
        steps: Vec::new(),
        max_sustained_per_sec: None,
        error: None,
    };
    if let Err(e) = conn_rate_inner(bench, stack, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run
}

async fn conn_rate_inner(bench: &Bench, stack: Stack, run: &mut ConnRateRun) -> Result<()> {
    let deployment = bench.launcher.deploy(stack, 1, false)?;
    let server = deployment.servers[0].addr;
    let mut index = 0usize;
    // Handshakes pending at once, kept well under the open-file limit: a server that falls
    // this far behind has failed the step, and the generator must not fail in its place.
    let max_pending = procs::open_files_limit()
        .map_or(4_096, |l| (l / 4) as usize)
        .clamp(64, 4_096);
    for &rate in &bench.config.conn_rates {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = deployment.cpu();
        let total = (rate * bench.config.conn_step_secs).round() as usize;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut launched = 0usize;
        let mut not_launched = 0u64;
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while launched < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
            while launched < due {
                launched += 1;
                if pending.load(Ordering::Relaxed) >= max_pending {
                    not_launched += 1;
                    continue;
                }
                let target = bench.target(server, index, bench.token(&format!("c{index}")));
                index += 1;
                pending.fetch_add(1, Ordering::Relaxed);
                let pending = pending.clone();
                tasks.spawn(async move {
                    let t = Instant::now();
                    let result = match client::handshake(&target, Duration::from_secs(10)).await {
                        Ok(mut ws) => {
                            let took = t.elapsed();
                            let _ = ws.close(None).await;
                            Ok(took)
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    pending.fetch_sub(1, Ordering::Relaxed);
                    result
                });
            }
        }
        let mut latencies = Vec::new();
        let mut failed = not_launched;
        let mut first_error = (not_launched > 0).then(|| {
            format!("server fell behind: {not_launched} connects not attempted while {max_pending} handshakes were pending")
        });
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(took)) => latencies.push(took.as_micros() as u64),
                Ok(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let succeeded = latencies.len() as u64;
        let hist = Histogram::from_values(latencies);
        let achieved = succeeded as f64 / elapsed;
        let step = ConnStep {
            offered_per_sec: rate,
            succeeded,
            failed,
            first_error,
            achieved_per_sec: achieved,
            p50_ms: ms(hist.quantile(0.5)),
            p99_ms: ms(hist.quantile(0.99)),
            cpu: deployment.cpu() - cpu0,
            sustained: failed == 0 && achieved >= 0.9 * rate,
        };
        eprintln!(
            "[connrate {}] offered {rate}/s: {succeeded} ok, {failed} failed, {achieved:.0}/s, p99 {:?} ms",
            stack.label(),
            step.p99_ms
        );
        let sustained = step.sustained;
        if sustained {
            run.max_sustained_per_sec =
                Some(run.max_sustained_per_sec.unwrap_or(0.0).max(achieved));
        }
        run.steps.push(step);
        if !sustained {
            break;
        }
    }
    Ok(())
}

/// Many small rooms over 3 nodes and Redis.
#[derive(Debug, Clone, Serialize)]
pub struct ManyRoomsRun {
    /// Which stack.
    pub stack: Stack,
    /// Clients.
    pub clients: usize,
    /// Rooms.
    pub rooms: usize,
    /// Why it was not measured, when it was not.
    pub not_measured: Option<String>,
    /// Seconds to connect and join.
    pub setup_secs: Option<f64>,
    /// The publishing step.
    pub step: Option<Step>,
    /// Bytes each node received from Redis during the step, in node order. Nodes 1 and 2 hold
    /// the rooms (room r on node 1 + r mod 2); node 3 only users in no room.
    pub redis_bytes_per_node: Vec<u64>,
    /// Bytes each node received from Redis during an equally long quiet window just before.
    pub redis_background_bytes_per_node: Vec<u64>,
    /// Users connected to node 3, members of no room.
    pub observers: usize,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl ManyRoomsRun {
    /// A run that could not happen, with the reason.
    pub fn not_measured(stack: Stack, config: &Config, reason: String) -> Self {
        Self {
            stack,
            clients: config.rooms_clients,
            rooms: config.rooms_count,
            not_measured: Some(reason),
            setup_secs: None,
            step: None,
            redis_bytes_per_node: Vec::new(),
            redis_background_bytes_per_node: Vec::new(),
            observers: (config.rooms_clients / 10).max(10),
            error: None,
        }
    }
}

/// A small deterministic generator (SplitMix64) so every run picks the same rooms and senders.
#[derive(Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// `rooms_clients` clients in `rooms_count` rooms; every room's members sit on one node (room r
/// on node 1 + r mod 2), and node 3 holds users in no room at all, so it has members of none of
/// the rooms. Random members send to their room; Redis CPU and the bytes each node receives
/// from Redis are measured (node 3's should be none of the room traffic).
pub async fn many_rooms(bench: &Bench, stack: Stack) -> ManyRoomsRun {
    let mut run = ManyRoomsRun::not_measured(stack, &bench.config, String::new());
    run.not_measured = None;
    if let Err(e) = many_rooms_inner(bench, stack, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run
}

async fn many_rooms_inner(bench: &Bench, stack: Stack, run: &mut ManyRoomsRun) -> Result<()> {
    let cfg = &bench.config;
    let deployment = bench.launcher.deploy(stack, 3, true)?;
    // Rooms live on nodes 1 and 2; node 3 holds connected users that are in no room.
    let room_nodes = 2;
    let per_room = cfg.rooms_clients / cfg.rooms_count;
    if per_room < 2 {
        bail!("need at least 2 clients per room");
    }
    let recorder = Arc::new(Recorder::default());
    let token = bench.token("rooms-user");
    let started = Instant::now();
    let targets = (0..cfg.rooms_count * per_room)
        .map(|i| {
            let room = i / per_room;
            bench.target(deployment.servers[room % room_nodes].addr, i, token.clone())
        })
        .collect();
    let observer_targets = (0..run.observers)
        .map(|i| {
            bench.target(
                deployment.servers[room_nodes].addr,
                cfg.rooms_clients + i,
                token.clone(),
            )
        })
        .collect();
    eprintln!(
        "[rooms {}] connecting {} clients",
        stack.label(),
        cfg.rooms_clients
    );
    let clients = bench
        .open_all(targets, &recorder, cfg_parallel(bench))
        .await?;
    let _observers = bench
        .open_all(observer_targets, &recorder, cfg_parallel(bench))
        .await
        .context("the users on node 3")?;
    let room_ids: Vec<String> = (0..cfg.rooms_count).map(|r| format!("room-{r}")).collect();
    for (r, room) in room_ids.iter().enumerate() {
        let ack = clients[r * per_room]
            .request(
                "create room",
                json!({ "roomId": room, "roomName": room, "maxUsers": per_room }),
                REQUEST_TIMEOUT,
            )
            .await?;
        if ack["success"] != true {
            bail!("create room {room}: {ack}");
        }
    }
    let members = Members {
        clients: &clients,
        room_ids: &room_ids,
        per_room,
    };
    join_rooms(&clients, cfg_parallel(bench), |i| {
        room_ids[i / per_room].clone()
    })
    .await?;
    run.setup_secs = Some(started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let redis_port = deployment
        .redis
        .as_ref()
        .map(|r| r.port())
        .context("no redis")?;
    let pids = deployment.server_pids();
    // The same length of time with no room traffic: what the cluster itself exchanges.
    let quiet_start = procs::bytes_received_from(redis_port)?;
    tokio::time::sleep(Duration::from_secs_f64(cfg.rooms_secs)).await;
    let before = procs::bytes_received_from(redis_port)?;
    run.redis_background_bytes_per_node = per_pid_delta(&pids, &quiet_start, &before);
    let mut rng = SplitMix64(0x5eed);
    let step = members
        .publishing(
            &recorder,
            &deployment,
            (0, cfg.rooms_msgs_per_sec, cfg.rooms_secs),
        )
        .run(|_| {
            let room = rng.below(cfg.rooms_count);
            members.sender(room, &mut rng)
        })
        .await?;
    let after = procs::bytes_received_from(redis_port)?;
    run.redis_bytes_per_node = per_pid_delta(&pids, &before, &after);
    eprintln!(
        "[rooms {}] {} messages, lost {}, p99 {:?} ms, redis cpu {:.2}s, bytes from redis per node {:?}",
        stack.label(),
        step.published,
        step.lost,
        step.p99_ms,
        step.cpu.redis,
        run.redis_bytes_per_node
    );
    run.step = Some(step);
    Ok(())
}

pub(crate) fn per_pid_delta(
    pids: &[u32],
    before: &std::collections::HashMap<u32, u64>,
    after: &std::collections::HashMap<u32, u64>,
) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            let a = after.get(pid).copied().unwrap_or(0);
            a.saturating_sub(before.get(pid).copied().unwrap_or(0))
        })
        .collect()
}

/// Whether gateway nodes given `--redis-url` form a cluster: a room created and joined on node 1
/// is joinable on node 2, and a room message sent on node 1 reaches a member on node 2.
pub async fn probe_gateway_cluster(bench: &Bench) -> Result<(), String> {
    let deployment = bench
        .launcher
        .deploy(Stack::Gateway, 2, true)
        .map_err(|e| format!("two gateway nodes with --redis-url did not start: {e:#}"))?;
    probe_cross_node(bench, &deployment).await
}

/// Whether the first two nodes of `deployment` share rooms: a room created and joined on node 1
/// is joinable on node 2, and a room message sent on node 1 reaches a member on node 2.
pub(crate) async fn probe_cross_node(bench: &Bench, deployment: &Deployment) -> Result<(), String> {
    let recorder = Arc::new(Recorder::default());
    let open = |node: usize, user: &str| {
        let target = bench.target(deployment.servers[node].addr, node, bench.token(user));
        let recorder = recorder.clone();
        async move { Client::open(&target, recorder, Duration::from_secs(10), node).await }
    };
    let a = open(0, "probe-a")
        .await
        .map_err(|e| format!("node 1: {e}"))?;
    let b = open(1, "probe-b")
        .await
        .map_err(|e| format!("node 2: {e}"))?;
    let t = Duration::from_secs(10);
    let created = a
        .request(
            "create room",
            json!({ "roomId": "probe", "roomName": "probe" }),
            t,
        )
        .await
        .map_err(|e| e.to_string())?;
    let joined_a = a
        .request("join room", json!({ "roomId": "probe" }), t)
        .await
        .map_err(|e| e.to_string())?;
    if created["success"] != true || joined_a["success"] != true {
        return Err(format!(
            "create/join on node 1 failed: {created} {joined_a}"
        ));
    }
    let joined_b = b
        .request("join room", json!({ "roomId": "probe" }), t)
        .await
        .map_err(|e| e.to_string())?;
    if joined_b["success"] != true {
        return Err(format!(
            "a room created on node 1 cannot be joined on node 2 (ack {joined_b})"
        ));
    }
    let tag = Tag {
        step: 0,
        seq: 0,
        sent_us: recorder.now_us(),
    };
    a.send(proto::room_message_frame("probe", tag))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if recorder.delivered_in(0) >= 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("a room message sent on node 1 did not reach the member on node 2 within 5 s".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut a = SplitMix64(1);
        let mut b = SplitMix64(1);
        let xs: Vec<usize> = (0..1000).map(|_| a.below(7)).collect();
        let ys: Vec<usize> = (0..1000).map(|_| b.below(7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 7));
        assert!((0..7).all(|v| xs.contains(&v)));
    }

    #[test]
    fn idle_bytes_per_connection_subtract_the_baseline() {
        let run = IdleRun {
            stack: Stack::Gateway,
            baseline_kib: 10_000,
            points: vec![(1_000, 20_000)],
            held: 1_000,
            skipped: Vec::new(),
            cpu: CpuSample::default(),
            error: None,
        };
        assert_eq!(run.bytes_per_connection(), vec![(1_000, 10_240.0)]);
    }

    #[test]
    fn quick_fanout_rooms_divide_the_clients_evenly() {
        for cfg in [Config::quick(), Config::full()] {
            let rooms = cfg.fanout_clients.div_ceil(ROOM_CAPACITY - 1);
            assert_eq!(cfg.fanout_clients % rooms, 0, "{}", cfg.mode);
            assert!(cfg.fanout_clients / rooms < ROOM_CAPACITY);
            assert_eq!(cfg.rooms_clients % cfg.rooms_count, 0);
            assert_eq!(cfg.shards_clients % cfg.shards_rooms, 0);
            assert!(cfg.shards_rooms >= 3, "one room per group at least");
        }
    }
}
