//! Command line and environment configuration.
//!
//! Long on purpose: each setting's flag, variable, default and check sit together, so one file
//! is the whole configuration surface (most of its length is the flags' own documentation).
//!
//! Every setting is a flag and an environment variable; the variable names are part of the
//! contract (docs/protocol.md, section "Configuration"): compose files, Kubernetes manifests and
//! operators use them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

/// Secret used in `--dev` mode only.
pub const DEV_SECRET: &str = "dev-secret-do-not-use-in-production";

/// The gateway's command line.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Horizontally scalable Socket.IO gateway"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
// Parsed once at start-up: the size of the node's settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway node (the default).
    Serve(ServeArgs),
    /// Print a JWT signed with the configured key.
    Token(TokenArgs),
    /// Exit 0 when the URL answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Print aggregate statistics of every live node of a cluster.
    ClusterStats(ClusterStatsArgs),
    /// Create a random HS256 secret file for JWT_SECRET_FILE unless it already exists.
    InitSecret(InitSecretArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Which wire of Node's `@socket.io/redis-adapter` cross-node traffic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AdapterModeArg {
    /// `createAdapter`: `PUBLISH`/`SUBSCRIBE`.
    #[default]
    Classic,
    /// `createShardedAdapter`: `SPUBLISH`/`SSUBSCRIBE` (Redis 7 or later).
    Sharded,
}

/// The longest join fence accepted: far beyond any subscription round trip, and short enough
/// that a fence always ends.
const MAX_JOIN_FENCE_MS: u64 = 600_000;

/// Which room channels a node subscribes to (`docs/sharded-adapter.md`, sections 3 and 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AdapterSubscriptionsArg {
    /// Sharded: every message on the namespace's main channel. Classic: one pattern over
    /// every room channel (as Node's classic adapter), so a Node peer's join-then-emit keeps
    /// its order.
    Static,
    /// Channels only of the rooms the node holds (Node's default `subscriptionMode`).
    #[default]
    Dynamic,
    /// Sharded: as `dynamic`, and `io.to(<Node socket id>)` on that id's channel. Refused in
    /// classic mode.
    DynamicPrivate,
}

/// JWT verification algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    #[default]
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256 and a public key.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256 and a public key.
    #[value(name = "ES256")]
    Es256,
}

/// Where the JWT verification key comes from.
#[derive(Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Dev mode: built-in dev secret and `GET /dev/token`. Never use in production.
    #[arg(long, env = "DEV_MODE", global = true)]
    pub dev: bool,
    /// HS256 secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 secret (used when JWT_SECRET is unset or empty).
    #[arg(long, env = "JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key for RS256/ES256 verification.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE", global = true)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Algorithm tokens must be signed with; any other is rejected.
    #[arg(
        long,
        env = "JWT_ALGORITHM",
        value_enum,
        default_value = "HS256",
        global = true
    )]
    pub jwt_algorithm: JwtAlgorithm,
}

/// Settings of a gateway node.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// JWT key settings (and `--dev`).
    #[command(flatten)]
    pub key: KeyArgs,
    /// Port to listen on (0: an ephemeral port).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// This node's id in the cluster (default: the host name).
    #[arg(long, env = "SERVER_ID")]
    pub server_id: Option<String>,
    /// Redis URL (`redis://`, `redis-sentinel://`, `redis-cluster://`); cluster mode when set.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Wire of cross-node Socket.IO traffic: `classic` or `sharded` (Redis 7 or later).
    #[arg(long, env = "ADAPTER_MODE", value_enum, default_value = "classic")]
    pub adapter_mode: AdapterModeArg,
    /// Room channels subscribed: `static`, `dynamic` or `dynamic-private` (Node's
    /// `subscriptionMode` in sharded mode; in classic mode `static` is one pattern over every
    /// room, `dynamic` per-room subscriptions).
    #[arg(
        long,
        env = "ADAPTER_SUBSCRIPTIONS",
        value_enum,
        default_value = "dynamic"
    )]
    pub adapter_subscriptions: AdapterSubscriptionsArg,
    /// Sharded `dynamic*` only: milliseconds after this node announces a join during which its
    /// broadcasts to the joined rooms use the main channel (0: no fence).
    #[arg(long, env = "ADAPTER_JOIN_FENCE_MS", default_value_t = 5000)]
    pub adapter_join_fence_ms: u64,
    /// CORS allow-list, comma separated.
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:3000"
    )]
    pub allowed_origins: Vec<String>,
    /// Addresses or CIDRs of proxies whose `X-Real-IP` / `X-Forwarded-For` is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,
    /// Connection attempts per client address per minute.
    #[arg(long, env = "CONNECTION_RATE_LIMIT", default_value_t = 50)]
    pub connection_rate_limit: u32,
    /// Engine.IO handshakes (new sessions) per client address per minute, checked before a
    /// session exists; twice `CONNECTION_RATE_LIMIT` when unset.
    #[arg(long, env = "HANDSHAKE_RATE_LIMIT")]
    pub handshake_rate_limit: Option<u32>,
    /// Sessions that have not joined a namespace yet, node-wide; handshakes past it get 503.
    #[arg(long, env = "MAX_PENDING_SESSIONS", default_value_t = 4096)]
    pub max_pending_sessions: usize,
    /// How long a session may take to join its first namespace before it is closed,
    /// milliseconds.
    #[arg(long, env = "CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,
    /// Events per second per socket (token bucket refill rate).
    #[arg(long, env = "EVENT_RATE_LIMIT", default_value_t = 20)]
    pub event_rate_limit: u32,
    /// Token bucket size per socket.
    #[arg(long, env = "EVENT_RATE_BURST", default_value_t = 40)]
    pub event_rate_burst: u32,
    /// Words replaced by `***` in message content, comma separated.
    #[arg(
        long,
        env = "BANNED_WORDS",
        value_delimiter = ',',
        default_value = "spam,abuse,inappropriate"
    )]
    pub banned_words: Vec<String>,
    /// Engine.IO ping interval, milliseconds.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout, milliseconds.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 60_000)]
    pub ping_timeout_ms: u64,
    /// Largest accepted message (`maxHttpBufferSize`), bytes.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: u64,
    /// Bytes a socket may have queued for sending before it is disconnected as a slow client
    /// (at least `MAX_PAYLOAD_BYTES`, so one largest frame always fits).
    #[arg(long, env = "SOCKET_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub socket_queue_bytes: u64,
    /// Threads that run the node's tasks; 0: one per CPU core. When several nodes share a
    /// machine, one thread per node spends the least CPU per message (fewer cross-thread
    /// wake-ups).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// TTL of this node's `cluster:stats:<serverId>` key, seconds.
    #[arg(long, env = "STATS_TTL_SECS", default_value_t = 60)]
    pub stats_ttl_secs: u64,
    /// TTL of this node's liveness key, milliseconds: peers declare a node dead once it lapses
    /// (rewritten every sixth of it, so five beats may be missed under load).
    #[arg(long, env = "LIVENESS_TTL_MS", default_value_t = 6000)]
    pub liveness_ttl_ms: u64,
    /// Time between the shutdown notice and closing sockets, seconds.
    #[arg(long, env = "DRAIN_SECS", default_value_t = 5)]
    pub drain_secs: u64,
    /// Longest a shutdown may take before the process exits anyway, seconds.
    #[arg(long, env = "GRACE_SECS", default_value_t = 30)]
    pub grace_secs: u64,
    /// Static files served for unknown routes (the demo page by default).
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Directory of the socket.io client bundle served at `/socket.io/socket.io.js`
    /// (default: the `socket.io-client` that `npm ci --prefix gateway/client-bundle` installs).
    #[arg(long, env = "CLIENT_BUNDLE_DIR")]
    pub client_bundle_dir: Option<PathBuf>,
    /// `GET /dev/token` with the configured HS256 secret, role `user` only (demo setups; the
    /// compose file turns it on behind a port bound to 127.0.0.1).
    #[arg(long, env = "DEV_TOKENS")]
    pub dev_tokens: bool,
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP endpoint for trace export (off when unset).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Accept Engine.IO v3 (socket.io-client 2.x) clients.
    #[arg(long, env = "ALLOW_EIO3")]
    pub allow_eio3: bool,
    /// Messages kept per room, per user pair and per namespace.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,
    /// Bounds on the state one client can create (rooms and games per socket, TTLs).
    #[command(flatten)]
    pub state_limits: crate::state_limits::StateLimits,
}

/// Settings of `gateway token`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Key settings; only HS256 secrets (or `--dev`) can sign.
    #[command(flatten)]
    pub key: KeyArgs,
    /// `userId` claim.
    #[arg(long)]
    pub user_id: String,
    /// `username` claim.
    #[arg(long)]
    pub username: String,
    /// `role` claim.
    #[arg(long, default_value = "user")]
    pub role: String,
    /// Lifetime of the token, seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires_in_secs: u64,
}

/// Settings of `gateway healthcheck`.
#[derive(Args, Debug, Clone)]
pub struct HealthcheckArgs {
    /// URL that must answer 200.
    #[arg(long, default_value = "http://127.0.0.1:3000/ready")]
    pub url: String,
}

/// Settings of `gateway init-secret`.
#[derive(Args, Debug, Clone)]
pub struct InitSecretArgs {
    /// The secret file to create (mode 0600); an existing file is left as it is.
    #[arg(long, env = "JWT_SECRET_FILE")]
    pub file: PathBuf,
}

/// Settings of `gateway cluster-stats`.
#[derive(Args, Debug, Clone)]
pub struct ClusterStatsArgs {
    /// Redis URL of the cluster.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR"))
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No way to verify tokens.
    #[error(
        "no JWT key configured: set JWT_SECRET (or --jwt-secret), or JWT_PUBLIC_KEY_FILE for RS256/ES256, or run with --dev for local development"
    )]
    NoKey,
    /// The public key file cannot be read.
    #[error("cannot read JWT_PUBLIC_KEY_FILE {path}: {source}")]
    KeyFile {
        /// The file named.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `--dev` signs with the public dev secret, so it refuses a real key next to it.
    #[error(
        "--dev uses the built-in, publicly known dev secret and cannot be combined with {0}: drop --dev (DEV_MODE), or unset {0}; to hand out user tokens signed with your secret on a demo, use DEV_TOKENS"
    )]
    DevWithKey(&'static str),
    /// The secret file cannot be read or is empty.
    #[error("cannot use JWT_SECRET_FILE {path}: {reason}")]
    SecretFile {
        /// The file named.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// HS256 needs a secret, RS256/ES256 a public key file.
    #[error("JWT_ALGORITHM {0:?} needs {1}")]
    KeyMismatch(JwtAlgorithm, &'static str),
    /// A setting is out of range.
    #[error("invalid setting {0}: {1}")]
    Invalid(&'static str, String),
}

/// The verification key material, resolved from [`KeyArgs`].
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// PEM public key for RS256/ES256.
    PublicPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("JwtKey::Secret(<redacted>)"),
            Self::PublicPem(_) => f.write_str("JwtKey::PublicPem(..)"),
        }
    }
}

impl KeyArgs {
    /// Resolves the key; a missing key is an error unless `--dev`.
    pub fn resolve(&self) -> Result<(JwtKey, JwtAlgorithm), ConfigError> {
        let secret = self.jwt_secret.as_deref().filter(|s| !s.is_empty());
        if self.dev {
            // Otherwise /dev/token would sign admin tokens with the production key.
            if secret.is_some() {
                return Err(ConfigError::DevWithKey("JWT_SECRET"));
            }
            if self.jwt_secret_file.is_some() {
                return Err(ConfigError::DevWithKey("JWT_SECRET_FILE"));
            }
            if self.jwt_public_key_file.is_some() {
                return Err(ConfigError::DevWithKey("JWT_PUBLIC_KEY_FILE"));
            }
        }
        match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                if let Some(secret) = secret {
                    Ok((
                        JwtKey::Secret(secret.as_bytes().to_vec()),
                        JwtAlgorithm::Hs256,
                    ))
                } else if let Some(path) = &self.jwt_secret_file {
                    Ok((JwtKey::Secret(read_secret_file(path)?), JwtAlgorithm::Hs256))
                } else if self.dev {
                    Ok((
                        JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()),
                        JwtAlgorithm::Hs256,
                    ))
                } else if self.jwt_public_key_file.is_some() {
                    Err(ConfigError::KeyMismatch(
                        JwtAlgorithm::Hs256,
                        "JWT_SECRET; set JWT_ALGORITHM=RS256 or ES256 to use JWT_PUBLIC_KEY_FILE",
                    ))
                } else {
                    Err(ConfigError::NoKey)
                }
            }
            alg @ (JwtAlgorithm::Rs256 | JwtAlgorithm::Es256) => {
                let path = self
                    .jwt_public_key_file
                    .as_ref()
                    .ok_or(ConfigError::KeyMismatch(alg, "JWT_PUBLIC_KEY_FILE"))?;
                let pem = std::fs::read(path).map_err(|source| ConfigError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                Ok((JwtKey::PublicPem(pem), alg))
            }
        }
    }
}

/// Shortest secret accepted from JWT_SECRET_FILE, bytes.
const MIN_SECRET_FILE_BYTES: usize = 16;

fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let bad = |reason: String| ConfigError::SecretFile {
        path: path.to_owned(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    // A trailing newline from `echo` or an editor is not part of the secret.
    let secret = raw.trim_ascii();
    if secret.len() < MIN_SECRET_FILE_BYTES {
        return Err(bad(format!(
            "the secret must be at least {MIN_SECRET_FILE_BYTES} bytes (`gateway init-secret --file {}` makes one)",
            path.display()
        )));
    }
    Ok(secret.to_vec())
}

/// Creates `path` holding a random 256-bit secret (64 hex digits), readable by its owner only,
/// unless it exists already. Several processes may race: exactly one file wins, and everyone
/// ends up reading it. Returns whether this call created it.
pub fn init_secret_file(path: &std::path::Path) -> std::io::Result<bool> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.exists() {
        return Ok(false);
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(hex.as_bytes())?;
    file.sync_all()?;
    drop(file);
    // A hard link never replaces an existing file: the first writer wins, atomically.
    let created = match std::fs::hard_link(&tmp, path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::remove_file(&tmp)?;
    Ok(created)
}

/// A node's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The raw settings.
    pub args: ServeArgs,
    /// This node's id.
    pub server_id: String,
    /// Verification key.
    pub jwt_key: JwtKey,
    /// Verification algorithm.
    pub jwt_algorithm: JwtAlgorithm,
    /// Static files root.
    pub static_dir: PathBuf,
    /// Directory of the socket.io client bundle.
    pub client_bundle_dir: PathBuf,
}

impl Config {
    /// Validates the settings of a node.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let (jwt_key, jwt_algorithm) = args.key.resolve()?;
        if args.event_rate_limit == 0 || args.event_rate_burst == 0 {
            return Err(ConfigError::Invalid(
                "EVENT_RATE_LIMIT / EVENT_RATE_BURST",
                "must be at least 1".into(),
            ));
        }
        if args.connection_rate_limit == 0 {
            return Err(ConfigError::Invalid(
                "CONNECTION_RATE_LIMIT",
                "must be at least 1".into(),
            ));
        }
        if args.handshake_rate_limit == Some(0) {
            return Err(ConfigError::Invalid(
                "HANDSHAKE_RATE_LIMIT",
                "must be at least 1".into(),
            ));
        }
        if args.max_pending_sessions == 0 {
            return Err(ConfigError::Invalid(
                "MAX_PENDING_SESSIONS",
                "must be at least 1".into(),
            ));
        }
        if args.adapter_mode == AdapterModeArg::Classic
            && args.adapter_subscriptions == AdapterSubscriptionsArg::DynamicPrivate
        {
            return Err(ConfigError::Invalid(
                "ADAPTER_SUBSCRIPTIONS",
                "`dynamic-private` exists in sharded mode only (ADAPTER_MODE=sharded); \
                 classic mode takes `dynamic` (per-room) or `static` (one pattern)"
                    .into(),
            ));
        }
        if args.adapter_join_fence_ms > MAX_JOIN_FENCE_MS {
            return Err(ConfigError::Invalid(
                "ADAPTER_JOIN_FENCE_MS",
                format!("must be at most {MAX_JOIN_FENCE_MS} (10 minutes)"),
            ));
        }
        if args.connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "CONNECT_TIMEOUT_MS",
                "must be at least 1".into(),
            ));
        }
        if args.max_payload_bytes == 0 {
            return Err(ConfigError::Invalid(
                "MAX_PAYLOAD_BYTES",
                "must be at least 1".into(),
            ));
        }
        if args.socket_queue_bytes < args.max_payload_bytes {
            return Err(ConfigError::Invalid(
                "SOCKET_QUEUE_BYTES",
                format!(
                    "must be at least MAX_PAYLOAD_BYTES ({})",
                    args.max_payload_bytes
                ),
            ));
        }
        if args.grace_secs == 0 || args.drain_secs >= args.grace_secs {
            return Err(ConfigError::Invalid(
                "DRAIN_SECS / GRACE_SECS",
                format!(
                    "the drain period ({} s) must be shorter than the grace period ({} s)",
                    args.drain_secs, args.grace_secs
                ),
            ));
        }
        if args.stats_ttl_secs < 3 {
            return Err(ConfigError::Invalid(
                "STATS_TTL_SECS",
                "must be at least 3 (the record is refreshed every third of it)".into(),
            ));
        }
        if args.liveness_ttl_ms < 600 {
            return Err(ConfigError::Invalid(
                "LIVENESS_TTL_MS",
                "must be at least 600 (the key is rewritten every sixth of it)".into(),
            ));
        }
        if let Some(bad) = args
            .allowed_origins
            .iter()
            .find(|o| o.trim().is_empty() || http::HeaderValue::from_str(o.trim()).is_err())
        {
            return Err(ConfigError::Invalid(
                "ALLOWED_ORIGINS",
                format!("`{bad}` is not a valid origin"),
            ));
        }
        let server_id = args
            .server_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| {
                hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "gateway".to_owned())
            });
        let static_dir = args
            .static_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")));
        let client_bundle_dir = args.client_bundle_dir.clone().unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/client-bundle/node_modules/socket.io-client/dist"
            ))
        });
        if args.dev_tokens && !matches!(jwt_key, JwtKey::Secret(_)) {
            return Err(ConfigError::Invalid(
                "DEV_TOKENS",
                "needs an HS256 secret (JWT_SECRET or JWT_SECRET_FILE) to sign with".into(),
            ));
        }
        Ok(Self {
            args,
            server_id,
            jwt_key,
            jwt_algorithm,
            static_dir,
            client_bundle_dir,
        })
    }

    /// Whether dev mode is on.
    pub fn dev(&self) -> bool {
        self.args.key.dev
    }

    /// Engine.IO ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.args.ping_interval_ms)
    }

    /// Engine.IO ping timeout.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.args.ping_timeout_ms)
    }

    /// Engine.IO handshakes per client address per minute. By default twice the connection
    /// budget: each connection attempt of a Socket.IO client takes one handshake, so a client
    /// over its budget is refused at the CONNECT with the contract's `Rate limit exceeded`
    /// before its handshakes get the bare HTTP 429 a client library cannot show.
    pub fn handshake_rate_limit(&self) -> u32 {
        self.args
            .handshake_rate_limit
            .unwrap_or_else(|| self.args.connection_rate_limit.saturating_mul(2))
    }

    /// How long a session may take to join its first namespace.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.args.connect_timeout_ms)
    }

    /// Drain period of a graceful shutdown.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.args.drain_secs)
    }

    /// Longest a graceful shutdown may take.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.args.grace_secs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = parse(&["--dev"]);
        let c = Config::from_args(cli.serve).unwrap();
        assert_eq!(c.args.port, 3000);
        assert_eq!(c.args.ping_interval_ms, 25_000);
        assert_eq!(c.args.ping_timeout_ms, 60_000);
        assert_eq!(c.args.max_payload_bytes, 1_000_000);
        assert_eq!(c.args.allowed_origins, ["http://localhost:3000"]);
        assert_eq!(c.args.banned_words, ["spam", "abuse", "inappropriate"]);
        assert_eq!((c.args.event_rate_limit, c.args.event_rate_burst), (20, 40));
        assert_eq!(c.args.connection_rate_limit, 50);
        assert_eq!(c.handshake_rate_limit(), 100, "twice CONNECTION_RATE_LIMIT");
        assert_eq!(c.args.max_pending_sessions, 4096);
        assert_eq!(c.connect_timeout(), Duration::from_secs(45));
        let own = parse(&["--dev", "--handshake-rate-limit", "7"]).serve;
        assert_eq!(Config::from_args(own).unwrap().handshake_rate_limit(), 7);
        for zero in [
            "--handshake-rate-limit",
            "--max-pending-sessions",
            "--connect-timeout-ms",
        ] {
            assert!(Config::from_args(parse(&["--dev", zero, "0"]).serve).is_err());
        }
        assert_eq!((c.args.drain_secs, c.args.grace_secs), (5, 30));
        assert_eq!(c.args.stats_ttl_secs, 60);
        assert_eq!(c.args.worker_threads, 0, "one per core");
        assert_eq!(
            parse(&["--dev", "--worker-threads", "1"])
                .serve
                .worker_threads,
            1
        );
        assert!(c.dev());
    }

    #[test]
    fn the_adapter_wire_is_classic_unless_sharded_is_asked() {
        let c = parse(&["--dev"]).serve;
        assert_eq!(c.adapter_mode, AdapterModeArg::Classic);
        assert_eq!(c.adapter_subscriptions, AdapterSubscriptionsArg::Dynamic);
        assert_eq!(c.adapter_join_fence_ms, 5000);
        let c = parse(&[
            "--dev",
            "--adapter-mode",
            "sharded",
            "--adapter-subscriptions",
            "dynamic-private",
        ])
        .serve;
        assert_eq!(c.adapter_mode, AdapterModeArg::Sharded);
        assert_eq!(
            c.adapter_subscriptions,
            AdapterSubscriptionsArg::DynamicPrivate
        );
        assert!(
            Cli::try_parse_from(["gateway", "--dev", "--adapter-mode", "shard"]).is_err(),
            "an unknown mode is refused"
        );
        assert!(Config::from_args(c).is_ok(), "every sharded mode is built");
        let c = parse(&["--dev", "--adapter-subscriptions", "dynamic-private"]).serve;
        let err = Config::from_args(c).unwrap_err();
        assert!(err.to_string().contains("ADAPTER_SUBSCRIPTIONS"), "{err}");
        assert!(err.to_string().contains("sharded mode only"), "{err}");
        let c = parse(&["--dev", "--adapter-subscriptions", "static"]).serve;
        assert!(
            Config::from_args(c).is_ok(),
            "classic pattern subscriptions"
        );
        let c = parse(&["--dev", "--adapter-join-fence-ms", "600001"]).serve;
        let err = Config::from_args(c).unwrap_err();
        assert!(err.to_string().contains("ADAPTER_JOIN_FENCE_MS"), "{err}");
    }

    #[test]
    fn no_key_without_dev_is_refused_with_a_clear_message() {
        let cli = parse(&[]);
        let err = Config::from_args(cli.serve).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn lists_and_proxies_parse() {
        let cli = parse(&[
            "serve",
            "--jwt-secret",
            "s",
            "--allowed-origins",
            "http://a,http://b",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(args.allowed_origins, ["http://a", "http://b"]);
        assert_eq!(args.trusted_proxies.len(), 2);
        assert!(args.trusted_proxies[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn drain_must_fit_in_the_grace_period() {
        let err = Config::from_args(parse(&["--dev", "--drain-secs", "30"]).serve).unwrap_err();
        assert!(err.to_string().contains("GRACE_SECS"), "{err}");
        assert!(Config::from_args(parse(&["--dev", "--grace-secs", "0"]).serve).is_err());
        let ok =
            Config::from_args(parse(&["--dev", "--drain-secs", "0", "--grace-secs", "1"]).serve);
        assert!(ok.is_ok());
    }

    #[test]
    fn the_socket_queue_budget_holds_at_least_one_largest_frame() {
        let c = Config::from_args(parse(&["--dev"]).serve).unwrap();
        assert_eq!(c.args.socket_queue_bytes, 4 << 20);
        let err = Config::from_args(
            parse(&[
                "--dev",
                "--max-payload-bytes",
                "2000",
                "--socket-queue-bytes",
                "1999",
            ])
            .serve,
        )
        .unwrap_err();
        assert!(err.to_string().contains("SOCKET_QUEUE_BYTES"), "{err}");
    }

    #[test]
    fn stats_ttl_and_origins_are_checked() {
        assert!(Config::from_args(parse(&["--dev", "--stats-ttl-secs", "2"]).serve).is_err());
        let err = Config::from_args(parse(&["--dev", "--allowed-origins", "http://a,"]).serve)
            .unwrap_err();
        assert!(err.to_string().contains("ALLOWED_ORIGINS"), "{err}");
    }

    #[test]
    fn dev_refuses_a_real_key_next_to_it() {
        for args in [
            &["--dev", "--jwt-secret", "production-secret"][..],
            &["--dev", "--jwt-secret-file", "/run/secret"][..],
            &[
                "--dev",
                "--jwt-public-key-file",
                "/k.pem",
                "--jwt-algorithm",
                "RS256",
            ][..],
        ] {
            let err = Config::from_args(parse(args).serve).unwrap_err();
            assert!(matches!(err, ConfigError::DevWithKey(_)), "{args:?}: {err}");
            assert!(err.to_string().contains("DEV_TOKENS"), "{err}");
        }
        // An empty JWT_SECRET (compose's `${JWT_SECRET:-}`) is no key.
        assert!(Config::from_args(parse(&["--dev", "--jwt-secret", ""]).serve).is_ok());
    }

    #[test]
    fn secret_file_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("secret-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwt");
        assert!(init_secret_file(&path).unwrap());
        let first = std::fs::read(&path).unwrap();
        assert!(
            !init_secret_file(&path).unwrap(),
            "an existing file is kept"
        );
        assert_eq!(std::fs::read(&path).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let p = path.to_str().unwrap();
        let c = Config::from_args(parse(&["--jwt-secret-file", p, "--dev-tokens"]).serve).unwrap();
        assert!(matches!(&c.jwt_key, JwtKey::Secret(s) if *s == first));
        // JWT_SECRET wins over the file.
        let c =
            Config::from_args(parse(&["--jwt-secret-file", p, "--jwt-secret", "x"]).serve).unwrap();
        assert!(matches!(&c.jwt_key, JwtKey::Secret(s) if s == b"x"));
        std::fs::write(&path, "short\n").unwrap();
        let err = Config::from_args(parse(&["--jwt-secret-file", p]).serve).unwrap_err();
        assert!(matches!(err, ConfigError::SecretFile { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_key_algorithms_need_a_key_file() {
        let cli = parse(&["--jwt-algorithm", "RS256", "--jwt-secret", "s"]);
        assert!(matches!(
            Config::from_args(cli.serve),
            Err(ConfigError::KeyMismatch(JwtAlgorithm::Rs256, _))
        ));
    }
}
