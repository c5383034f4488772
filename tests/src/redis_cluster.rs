//! A real Redis Cluster for tests: N primaries with M replicas each, started from Debian's
//! `redis-server` on ports the OS hands out, formed with `redis-cli --cluster create`, every
//! process killed by PID when the guard drops.
//!
//! Besides the `redis-cluster://` URL it offers the events a sharded deployment must survive: a
//! primary dying or hanging (its replica is promoted; a hung one can be resumed and rejoins as a
//! replica) and a slot moving to another primary (`CLUSTER SETSLOT` IMPORTING / MIGRATING,
//! `MIGRATE`, `SETSLOT NODE`), each returning only once every live node agrees on the new owner.
//!
//! Commands go over a small blocking RESP client of our own ([`RespConnection`]) so the harness
//! needs no Redis crate and no runtime. Its calls block for as long as the cluster takes to
//! settle (seconds for a failover): from an async test, move the cluster into
//! `tokio::task::spawn_blocking` for those calls rather than blocking a runtime thread.
//!
//! Over 600 lines on purpose: starting the cluster, failing a primary over, thawing it and
//! migrating a slot all drive the same processes and wait on the same agreement of the nodes, so
//! they stay together; the RESP client is apart, in `redis_cluster/resp.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{KillOnDrop, TestkitError, free_port, wait_for_port, which};

/// The number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16_384;

/// How long the cluster may take to agree after a formation, failover or migration.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command may take before the harness gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys moved per `MIGRATE` call.
const MIGRATE_BATCH: usize = 100;

/// What can go wrong running the cluster.
#[derive(Debug, thiserror::Error)]
pub enum RedisClusterError {
    /// A process could not be started, or a program is missing.
    #[error(transparent)]
    Process(#[from] TestkitError),
    /// Talking to a node failed.
    #[error("redis node on port {port}: {source}")]
    Io {
        /// The node's port.
        port: u16,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A node answered with an error reply.
    #[error("redis node on port {port} answered {command}: {message}")]
    Reply {
        /// The node's port.
        port: u16,
        /// The command sent (its first word).
        command: String,
        /// The error text.
        message: String,
    },
    /// A reply had a shape the harness does not expect.
    #[error("unexpected reply from port {port}: {detail}")]
    Protocol {
        /// The node's port.
        port: u16,
        /// What was wrong.
        detail: String,
    },
    /// `redis-cli --cluster create` failed.
    #[error("redis-cli --cluster create failed: {0}")]
    Create(String),
    /// The cluster did not reach the expected state in time.
    #[error("the cluster did not settle within {timeout:?}: {waiting_for}")]
    NotSettled {
        /// How long was waited.
        timeout: Duration,
        /// What was still missing.
        waiting_for: String,
    },
    /// A request the topology cannot satisfy (no replica to promote, unknown port, ...).
    #[error("{0}")]
    Topology(String),
}

/// How many nodes to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisClusterSpec {
    /// Primaries; the slots are split evenly between them. At least 3 (Redis requires it).
    pub primaries: usize,
    /// Replicas per primary; at least 1 for [`RedisCluster::kill_primary`].
    pub replicas_per_primary: usize,
}

impl Default for RedisClusterSpec {
    /// Three primaries with one replica each: the smallest cluster that survives a primary.
    fn default() -> Self {
        Self {
            primaries: 3,
            replicas_per_primary: 1,
        }
    }
}

/// A node's role as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Owns slots.
    Primary,
    /// Replicates the primary with this node id.
    Replica {
        /// The node id of its primary.
        primary_id: String,
    },
}

/// One live node, as reported by `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The client port.
    pub port: u16,
    /// The 40-hex node id.
    pub id: String,
    /// Primary or replica.
    pub role: Role,
    /// The slot ranges it owns (empty for a replica), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// Whether this node owns `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }

    /// Whether this node is a primary.
    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }
}

mod resp;

pub use resp::{Reply, RespConnection, key_slot};

/// One started `redis-server`.
#[derive(Debug)]
struct Started {
    port: u16,
    process: KillOnDrop,
    state: ServerState,
}

/// Whether a started server still takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Running,
    /// Stopped with SIGSTOP: its connections stay open but it answers nothing.
    Frozen,
    Dead,
}

/// A real Redis Cluster of `redis-server` processes, killed by PID on drop.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<Started>,
    dir: PathBuf,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.process.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_program(name: &str, package: &str) -> Result<PathBuf, RedisClusterError> {
    which(name).ok_or_else(|| {
        RedisClusterError::Process(TestkitError::Missing {
            program: name.into(),
            hint: format!(
                "install it with `apt-get install {package}` (or run `bash tests/run.sh`, which does)"
            ),
        })
    })
}

impl RedisCluster {
    /// Starts three primaries with one replica each.
    pub fn start() -> Result<Self, RedisClusterError> {
        Self::start_with(RedisClusterSpec::default())
    }

    /// Starts the cluster `spec` describes. A port the OS reported free can be taken by another
    /// process before the server binds it, so a failed formation is retried on fresh ports.
    pub fn start_with(spec: RedisClusterSpec) -> Result<Self, RedisClusterError> {
        if spec.primaries < 3 {
            return Err(RedisClusterError::Topology(format!(
                "a Redis Cluster needs at least 3 primaries, {} asked",
                spec.primaries
            )));
        }
        let server = redis_program("redis-server", "redis-server")?;
        let cli = redis_program("redis-cli", "redis-tools")?;
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(spec, &server, &cli) {
                Ok(cluster) => return Ok(cluster),
                Err(e @ RedisClusterError::Process(TestkitError::Missing { .. })) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisClusterError::Create("no attempt was made".into())))
    }

    fn try_start(
        spec: RedisClusterSpec,
        server: &Path,
        cli: &Path,
    ) -> Result<Self, RedisClusterError> {
        let total = spec.primaries * (1 + spec.replicas_per_primary);
        // A client port and a cluster bus port per node (the bus port defaults to port + 10000,
        // which may be taken or above 65535), all distinct: the OS may offer a port again once
        // the probe that found it is closed.
        let mut handed_out = std::collections::HashSet::new();
        let mut distinct_port = || loop {
            let port = free_port();
            if handed_out.insert(port) {
                return port;
            }
        };
        let ports: Vec<u16> = (0..total).map(|_| distinct_port()).collect();
        let bus_ports: Vec<u16> = (0..total).map(|_| distinct_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "testkit-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).map_err(|source| RedisClusterError::Io {
            port: ports[0],
            source,
        })?;
        let mut cluster = Self {
            servers: Vec::with_capacity(total),
            dir,
        };
        for (&port, &bus_port) in ports.iter().zip(&bus_ports) {
            let child = Command::new(server)
                .current_dir(&cluster.dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &bus_port.to_string()])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                // A dead primary is noticed after one second, and any replica may take over
                // however long its link has been down: failovers take seconds, not minutes.
                .args(["--cluster-node-timeout", "1000"])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| TestkitError::Spawn("redis-server".into(), e))?;
            cluster.servers.push(Started {
                port,
                process: KillOnDrop::new(format!("redis-server (cluster, port {port})"), child),
                state: ServerState::Running,
            });
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                "redis-server (cluster)",
                Duration::from_secs(10),
            )?;
        }
        // `--cluster create` splits the addresses into `primaries` primaries, each with
        // `replicas_per_primary` replicas, and spreads the slots evenly.
        let out = Command::new(cli)
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &spec.replicas_per_primary.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestkitError::Spawn("redis-cli".into(), e))?;
        if !out.status.success() {
            return Err(RedisClusterError::Create(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_until("every node sees the whole cluster, replicas synced", |c| {
            c.formed(total, spec)
        })?;
        Ok(cluster)
    }

    /// Every node reports `cluster_state:ok`, knows every node, agrees on the primaries, and
    /// every replica's link to its primary is up.
    fn formed(&self, total: usize, spec: RedisClusterSpec) -> Result<bool, RedisClusterError> {
        for port in self.live_ports() {
            let mut conn = RespConnection::connect(port)?;
            let info = conn.text(&["CLUSTER", "INFO"])?;
            let known = format!("cluster_known_nodes:{total}");
            if !info.contains("cluster_state:ok") || !info.lines().any(|l| l.trim() == known) {
                return Ok(false);
            }
            let nodes = parse_cluster_nodes(port, &conn.text(&["CLUSTER", "NODES"])?)?;
            if nodes.iter().filter(|n| n.is_primary()).count() != spec.primaries {
                return Ok(false);
            }
            let replication = conn.text(&["INFO", "replication"])?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The URL for fred / the gateway: every started node as a seed, so a client still finds
    /// the cluster when the first one is dead.
    pub fn url(&self) -> String {
        let mut ports = self.servers.iter().map(|s| s.port);
        let first = ports.next().unwrap_or(0);
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        if rest.is_empty() {
            format!("redis-cluster://127.0.0.1:{first}")
        } else {
            format!("redis-cluster://127.0.0.1:{first}?{}", rest.join("&"))
        }
    }

    /// The ports of every node started, dead ones included, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    /// The ports of the nodes not killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .filter(|s| s.state == ServerState::Running)
            .map(|s| s.port)
            .collect()
    }

    /// The PID of the `redis-server` on `port`.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.servers
            .iter()
            .find(|s| s.port == port && s.state != ServerState::Dead)
            .map(|s| s.process.pid())
    }

    /// A connection to the node on `port`.
    pub fn connect(&self, port: u16) -> Result<RespConnection, RedisClusterError> {
        RespConnection::connect(port)
    }

    /// The live nodes with their roles and slots, as the node on `port` sees them.
    pub fn nodes_seen_by(&self, port: u16) -> Result<Vec<ClusterNode>, RedisClusterError> {
        let text = RespConnection::connect(port)?.text(&["CLUSTER", "NODES"])?;
        parse_cluster_nodes(port, &text)
    }

    /// The live nodes with their roles and slots, as the first live node sees them.
    pub fn nodes(&self) -> Result<Vec<ClusterNode>, RedisClusterError> {
        let port = self
            .live_ports()
            .first()
            .copied()
            .ok_or_else(|| RedisClusterError::Topology("no live node".into()))?;
        self.nodes_seen_by(port)
    }

    /// The live primaries.
    pub fn primaries(&self) -> Result<Vec<ClusterNode>, RedisClusterError> {
        Ok(self
            .nodes()?
            .into_iter()
            .filter(|n| n.is_primary())
            .collect())
    }

    /// The primary that owns `slot`.
    pub fn slot_owner(&self, slot: u16) -> Result<ClusterNode, RedisClusterError> {
        self.nodes()?
            .into_iter()
            .find(|n| n.owns(slot))
            .ok_or_else(|| RedisClusterError::Topology(format!("no live node owns slot {slot}")))
    }

    /// The primary that owns `key`'s slot (a key or a sharded channel name).
    pub fn slot_owner_of(&self, key: &str) -> Result<ClusterNode, RedisClusterError> {
        self.slot_owner(key_slot(key.as_bytes()))
    }

    /// How many connections are subscribed to the shard channel `channel`, summed over the
    /// live primaries (`PUBSUB SHARDNUMSUB` answers for the node asked only).
    pub fn shard_subscribers(&self, channel: &str) -> Result<u64, RedisClusterError> {
        let mut total = 0;
        for primary in self.primaries()? {
            let reply = RespConnection::connect(primary.port)?.command(&[
                "PUBSUB",
                "SHARDNUMSUB",
                channel,
            ])?;
            match reply {
                Reply::Array(Some(items)) => match items.get(1) {
                    Some(Reply::Integer(n)) => total += u64::try_from(*n).unwrap_or(0),
                    other => {
                        return Err(RedisClusterError::Protocol {
                            port: primary.port,
                            detail: format!("SHARDNUMSUB count {other:?}"),
                        });
                    }
                },
                other => {
                    return Err(RedisClusterError::Protocol {
                        port: primary.port,
                        detail: format!("SHARDNUMSUB answered {other:?}"),
                    });
                }
            }
        }
        Ok(total)
    }

    /// CPU time, bytes and commands of every live primary so far, from `INFO`: what a
    /// benchmark compares between primaries (take one reading before and one after a run).
    pub fn primary_usage(&self) -> Result<Vec<NodeUsage>, RedisClusterError> {
        self.primaries()?
            .into_iter()
            .map(|primary| {
                let info = RespConnection::connect(primary.port)?.text(&["INFO", "all"])?;
                NodeUsage::parse(primary.port, &info)
            })
            .collect()
    }

    /// Kills the primary `primary` (SIGKILL, by PID) and waits until one of its replicas has
    /// been promoted and every live node reports `cluster_state:ok` with that node owning the
    /// dead primary's slots. Returns the promoted replica.
    pub fn kill_primary(
        &mut self,
        primary: &ClusterNode,
    ) -> Result<ClusterNode, RedisClusterError> {
        self.fail_primary(primary, ServerState::Dead)
    }

    /// Freezes the primary `primary` (SIGSTOP, by PID): unlike a crash, its clients' TCP
    /// connections stay open and simply stop answering, as with a hung host or a network
    /// partition. Waits for the promotion like [`Self::kill_primary`]; [`Self::thaw`] brings the
    /// node back.
    pub fn freeze_primary(
        &mut self,
        primary: &ClusterNode,
    ) -> Result<ClusterNode, RedisClusterError> {
        self.fail_primary(primary, ServerState::Frozen)
    }

    /// Resumes a node frozen by [`Self::freeze_primary`] (SIGCONT) and waits until it has
    /// rejoined as a replica of the primary that took its place, with its link up, and every
    /// node reports `cluster_state:ok` again.
    pub fn thaw(&mut self, port: u16) -> Result<ClusterNode, RedisClusterError> {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == port && s.state == ServerState::Frozen)
            .ok_or_else(|| RedisClusterError::Topology(format!("no frozen node on port {port}")))?;
        signal(server.process.pid(), "CONT")?;
        server.state = ServerState::Running;
        self.wait_until("the thawed node has rejoined as a replica", |c| {
            let Some(node) = c.nodes_seen_by(port)?.into_iter().find(|n| n.port == port) else {
                return Ok(false);
            };
            if node.is_primary() {
                return Ok(false);
            }
            let replication = RespConnection::connect(port)?.text(&["INFO", "replication"])?;
            if !replication.contains("master_link_status:up") {
                return Ok(false);
            }
            for live in c.live_ports() {
                if !RespConnection::connect(live)?
                    .text(&["CLUSTER", "INFO"])?
                    .contains("cluster_state:ok")
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        self.nodes_seen_by(port)?
            .into_iter()
            .find(|n| n.port == port)
            .ok_or_else(|| RedisClusterError::Topology(format!("node on port {port} vanished")))
    }

    fn fail_primary(
        &mut self,
        primary: &ClusterNode,
        how: ServerState,
    ) -> Result<ClusterNode, RedisClusterError> {
        let replicas: Vec<ClusterNode> = self
            .nodes()?
            .into_iter()
            .filter(
                |n| matches!(&n.role, Role::Replica { primary_id } if *primary_id == primary.id),
            )
            .collect();
        if replicas.is_empty() {
            return Err(RedisClusterError::Topology(format!(
                "primary on port {} has no replica to promote",
                primary.port
            )));
        }
        let Some(slot) = primary.slots.first().map(|&(lo, _)| lo) else {
            return Err(RedisClusterError::Topology(format!(
                "node on port {} owns no slot",
                primary.port
            )));
        };
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == primary.port && s.state == ServerState::Running)
            .ok_or_else(|| {
                RedisClusterError::Topology(format!("no live node on port {}", primary.port))
            })?;
        match how {
            ServerState::Frozen => signal(server.process.pid(), "STOP")?,
            _ => server.process.kill(),
        }
        server.state = how;
        let replica_ids: Vec<&str> = replicas.iter().map(|r| r.id.as_str()).collect();
        self.wait_until("a replica of the failed primary owns its slots", |c| {
            c.all_agree_on_owner(slot, |owner| replica_ids.contains(&owner.id.as_str()))
        })?;
        self.slot_owner(slot)
    }

    /// Moves `slot` (and its keys) to the primary `to`, the way `redis-cli --cluster reshard`
    /// does, and waits until every live node agrees. Returns the number of keys moved.
    pub fn migrate_slot(&self, slot: u16, to: &ClusterNode) -> Result<usize, RedisClusterError> {
        if slot >= SLOT_COUNT {
            return Err(RedisClusterError::Topology(format!("no slot {slot}")));
        }
        if !to.is_primary() {
            return Err(RedisClusterError::Topology(format!(
                "node on port {} is not a primary",
                to.port
            )));
        }
        let from = self.slot_owner(slot)?;
        if from.id == to.id {
            return Ok(0);
        }
        let slot_arg = slot.to_string();
        let mut source = RespConnection::connect(from.port)?;
        let mut target = RespConnection::connect(to.port)?;
        target.command(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from.id])?;
        source.command(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to.id])?;
        let batch = MIGRATE_BATCH.to_string();
        let target_port = to.port.to_string();
        let mut moved = 0;
        loop {
            let keys = match source.command(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, &batch])? {
                Reply::Array(Some(keys)) => keys,
                other => {
                    return Err(RedisClusterError::Protocol {
                        port: from.port,
                        detail: format!("GETKEYSINSLOT answered {other:?}"),
                    });
                }
            };
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<Vec<u8>> = [
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                "5000",
                "KEYS",
            ]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
            for key in &keys {
                match key {
                    Reply::Bulk(Some(k)) => args.push(k.clone()),
                    other => {
                        return Err(RedisClusterError::Protocol {
                            port: from.port,
                            detail: format!("GETKEYSINSLOT listed {other:?}"),
                        });
                    }
                }
            }
            source.command(&args)?;
            moved += keys.len();
        }
        // The target first, so the slot is never owned by nobody; then the source, then the
        // other primaries (replicas learn it from their primaries).
        target.command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to.id])?;
        source.command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to.id])?;
        for other in self.primaries()? {
            if other.id != from.id && other.id != to.id {
                RespConnection::connect(other.port)?
                    .command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to.id])?;
            }
        }
        self.wait_until("every node agrees on the slot's new owner", |c| {
            c.all_agree_on_owner(slot, |owner| owner.id == to.id)
        })?;
        Ok(moved)
    }

    /// Every live node reports `cluster_state:ok` and sees, as the owner of `slot`, a node
    /// `expected` accepts.
    fn all_agree_on_owner(
        &self,
        slot: u16,
        expected: impl Fn(&ClusterNode) -> bool,
    ) -> Result<bool, RedisClusterError> {
        for port in self.live_ports() {
            let mut conn = RespConnection::connect(port)?;
            if !conn
                .text(&["CLUSTER", "INFO"])?
                .contains("cluster_state:ok")
            {
                return Ok(false);
            }
            let nodes = parse_cluster_nodes(port, &conn.text(&["CLUSTER", "NODES"])?)?;
            match nodes.iter().find(|n| n.owns(slot)) {
                Some(owner) if expected(owner) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Polls `done` until it says yes. A node that briefly refuses a connection while the
    /// topology changes counts as "not yet"; the last such error is reported on timeout.
    fn wait_until(
        &self,
        what: &str,
        mut done: impl FnMut(&Self) -> Result<bool, RedisClusterError>,
    ) -> Result<(), RedisClusterError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut last_error = None;
        loop {
            match done(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() > deadline {
                let waiting_for = match last_error {
                    Some(e) => format!("{what} (last error: {e})"),
                    None => what.to_owned(),
                };
                return Err(RedisClusterError::NotSettled {
                    timeout: SETTLE_TIMEOUT,
                    waiting_for,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends a signal (`STOP`, `CONT`) to a process with the system's `kill` command (`unsafe` is
/// forbidden here, so no direct `kill(2)`).
fn signal(pid: u32, name: &str) -> Result<(), RedisClusterError> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| TestkitError::Spawn("kill".into(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(RedisClusterError::Topology(format!(
            "kill -{name} {pid} failed: {status}"
        )))
    }
}

/// What one node has consumed since it started, from its `INFO`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeUsage {
    /// The node's port.
    pub port: u16,
    /// User plus system CPU seconds of the server process.
    pub cpu_seconds: f64,
    /// Bytes read from clients and the cluster bus.
    pub net_input_bytes: u64,
    /// Bytes written to clients and the cluster bus.
    pub net_output_bytes: u64,
    /// Commands processed.
    pub commands: u64,
}

impl NodeUsage {
    /// Reads the fields out of an `INFO` text.
    pub fn parse(port: u16, info: &str) -> Result<Self, RedisClusterError> {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .ok_or_else(|| RedisClusterError::Protocol {
                    port,
                    detail: format!("INFO has no {name}"),
                })
        };
        let float = |name: &str| {
            field(name)?
                .parse::<f64>()
                .map_err(|_| RedisClusterError::Protocol {
                    port,
                    detail: format!("INFO {name} is not a number"),
                })
        };
        let integer = |name: &str| {
            field(name)?
                .parse::<u64>()
                .map_err(|_| RedisClusterError::Protocol {
                    port,
                    detail: format!("INFO {name} is not a count"),
                })
        };
        Ok(Self {
            port,
            cpu_seconds: float("used_cpu_user")? + float("used_cpu_sys")?,
            net_input_bytes: integer("total_net_input_bytes")?,
            net_output_bytes: integer("total_net_output_bytes")?,
            commands: integer("total_commands_processed")?,
        })
    }
}

/// Parses `CLUSTER NODES`, keeping the nodes not flagged as failed (or suspected failed).
///
/// Each line: `<id> <ip:port@bus> <flags> <primary id or -> <ping> <pong> <epoch> <link>
/// <slot>...`, where a slot is `n`, `lo-hi`, or a bracketed migration marker (ignored).
pub fn parse_cluster_nodes(port: u16, text: &str) -> Result<Vec<ClusterNode>, RedisClusterError> {
    let protocol = |detail: String| RedisClusterError::Protocol { port, detail };
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(protocol(format!("short CLUSTER NODES line {line:?}")));
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if flags
            .iter()
            .any(|f| matches!(*f, "fail" | "fail?" | "noaddr"))
        {
            continue;
        }
        let node_port = fields[1]
            .split(['@', ','])
            .next()
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(|| protocol(format!("bad address in {line:?}")))?;
        let role = if flags.contains(&"master") {
            Role::Primary
        } else if flags.contains(&"slave") {
            Role::Replica {
                primary_id: fields[3].to_owned(),
            }
        } else {
            // A node still handshaking has neither flag yet.
            continue;
        };
        let mut slots = Vec::new();
        for slot in fields[8..].iter().filter(|s| !s.starts_with('[')) {
            let (lo, hi) = slot.split_once('-').unwrap_or((slot, slot));
            let parse = |s: &str| {
                s.parse::<u16>()
                    .map_err(|_| protocol(format!("bad slot {slot:?}")))
            };
            slots.push((parse(lo)?, parse(hi)?));
        }
        nodes.push(ClusterNode {
            port: node_port,
            id: fields[0].to_owned(),
            role,
            slots,
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slot_matches_redis_for_plain_and_hash_tagged_keys() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn a_missing_program_names_the_package_to_install() {
        match redis_program("redis-server-not-installed-here", "redis-server") {
            Err(RedisClusterError::Process(TestkitError::Missing { program, hint })) => {
                assert_eq!(program, "redis-server-not-installed-here");
                assert!(hint.contains("apt-get install redis-server"), "{hint}");
            }
            other => panic!("expected a Missing error, got {other:?}"),
        }
    }

    #[test]
    fn info_fields_become_usage() -> Result<(), RedisClusterError> {
        let info = "# Stats\r\ntotal_commands_processed:42\r\ntotal_net_input_bytes:1000\r\n\
                    total_net_output_bytes:2000\r\n# CPU\r\nused_cpu_sys:0.5\r\n\
                    used_cpu_user:1.25\r\nused_cpu_sys_children:9\r\n";
        let usage = NodeUsage::parse(7000, info)?;
        assert_eq!(usage.commands, 42);
        assert_eq!(usage.net_input_bytes, 1000);
        assert_eq!(usage.net_output_bytes, 2000);
        assert!((usage.cpu_seconds - 1.75).abs() < 1e-9);
        assert!(matches!(
            NodeUsage::parse(7000, "used_cpu_user:1\r\n"),
            Err(RedisClusterError::Protocol { .. })
        ));
        Ok(())
    }

    #[test]
    fn cluster_nodes_lines_parse_into_roles_and_slots() -> Result<(), RedisClusterError> {
        let text = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:30002@40002 master - 0 1 2 connected 5461-10922 16000
c3 127.0.0.1:30003@40003 slave a1 0 1 1 connected
d4 127.0.0.1:30004@40004 master,fail - 0 1 3 disconnected
";
        let nodes = parse_cluster_nodes(30001, text)?;
        assert_eq!(nodes.len(), 3, "the failed node is left out");
        assert_eq!(nodes[0].slots, vec![(0, 5460)]);
        assert!(nodes[1].owns(16000) && nodes[1].owns(5461) && !nodes[1].owns(0));
        assert_eq!(
            nodes[2].role,
            Role::Replica {
                primary_id: "a1".into()
            }
        );
        assert_eq!(nodes[2].port, 30003);
        Ok(())
    }
}
