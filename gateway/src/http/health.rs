//! `GET /health` and `GET /ready`, and the runtime lag sampler behind the health figures.
//!
//! Health is about this process: `unhealthy` (503) only for conditions a restart would cure
//! (memory nearly exhausted, the runtime stalled for seconds). An unreachable state backend
//! (Redis) is only a `warning` on `/health`, so an orchestrator's liveness probe never restarts
//! every pod during a Redis outage; `/ready` takes such a node out of the load balancer instead.

use crate::sockets::tasks::Tasks;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::HttpState;
use crate::app::{App, Lifecycle};
use crate::node_stats;

/// Share of the memory limit from which `/health` warns.
pub const MEMORY_WARNING_RATIO: f64 = 0.85;
/// Share of the memory limit from which the node is unhealthy.
pub const MEMORY_UNHEALTHY_RATIO: f64 = 0.95;
/// Runtime lag from which `/health` warns, milliseconds.
pub const LAG_WARNING_MS: u64 = 200;
/// Runtime lag from which the node is unhealthy, milliseconds.
pub const LAG_UNHEALTHY_MS: u64 = 5_000;
/// Longest wait for the state backend in a health or readiness probe.
pub const BACKEND_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Period of the runtime lag sampler.
pub const LAG_SAMPLE_PERIOD: Duration = Duration::from_millis(500);

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Nothing to report.
    Healthy,
    /// Degraded but serving.
    Warning,
    /// Should be restarted.
    Unhealthy,
}

/// What the health rules look at.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthInputs {
    /// Resident memory, bytes, when known.
    pub rss_bytes: Option<u64>,
    /// Memory limit of the process (cgroup), bytes, when there is one.
    pub memory_limit_bytes: Option<u64>,
    /// Latest runtime scheduling delay, milliseconds.
    pub runtime_lag_ms: u64,
    /// `Err(reason)` when the state backend did not answer.
    pub state_backend: Result<(), String>,
    /// Lifecycle stage.
    pub lifecycle: Lifecycle,
}

/// Applies the health rules: the worst finding wins; every finding is listed in `issues`.
pub fn evaluate(inputs: &HealthInputs) -> (HealthStatus, Vec<String>) {
    let mut status = HealthStatus::Healthy;
    let mut issues = Vec::new();
    let mut report = |level: HealthStatus, issue: String| {
        status = status.max(level);
        issues.push(issue);
    };
    if let (Some(rss), Some(limit)) = (inputs.rss_bytes, inputs.memory_limit_bytes)
        && limit > 0
    {
        let ratio = rss as f64 / limit as f64;
        let pct = (ratio * 100.0).round();
        if ratio >= MEMORY_UNHEALTHY_RATIO {
            report(
                HealthStatus::Unhealthy,
                format!("memory usage at {pct}% of the limit"),
            );
        } else if ratio >= MEMORY_WARNING_RATIO {
            report(
                HealthStatus::Warning,
                format!("memory usage at {pct}% of the limit"),
            );
        }
    }
    if inputs.runtime_lag_ms >= LAG_UNHEALTHY_MS {
        report(
            HealthStatus::Unhealthy,
            format!("runtime stalled for {} ms", inputs.runtime_lag_ms),
        );
    } else if inputs.runtime_lag_ms >= LAG_WARNING_MS {
        report(
            HealthStatus::Warning,
            format!("high runtime lag: {} ms", inputs.runtime_lag_ms),
        );
    }
    if let Err(reason) = &inputs.state_backend {
        report(
            HealthStatus::Warning,
            format!("state backend unreachable: {reason}"),
        );
    }
    if inputs.lifecycle == Lifecycle::Draining {
        report(HealthStatus::Warning, "node is shutting down".to_owned());
    }
    (status, issues)
}

/// The memory limit of this process's cgroup (v2, then v1), if any.
pub fn memory_limit_bytes() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    parse_memory_limit(v2.or_else(v1).as_deref()?)
}

fn parse_memory_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a huge page-aligned number.
    (limit < (1 << 60)).then_some(limit)
}

/// Asks the state backend for something cheap, within [`BACKEND_PROBE_TIMEOUT`]: the room
/// count (one `ZCARD` on Redis; listing the live nodes would walk the keyspace on every probe).
pub async fn probe_state_backend(app: &App) -> Result<(), String> {
    match tokio::time::timeout(BACKEND_PROBE_TIMEOUT, app.backends.rooms.count()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            BACKEND_PROBE_TIMEOUT.as_millis()
        )),
    }
}

fn lifecycle_name(stage: Lifecycle) -> &'static str {
    match stage {
        Lifecycle::Starting => "starting",
        Lifecycle::Ready => "ready",
        Lifecycle::Draining => "draining",
    }
}

/// `GET /health`.
pub async fn health(State(state): State<HttpState>) -> Response {
    let app = &state.app;
    let stats = node_stats::local_stats(app, &state.io);
    let inputs = HealthInputs {
        rss_bytes: (stats.load.rss_bytes > 0).then_some(stats.load.rss_bytes),
        memory_limit_bytes: memory_limit_bytes(),
        runtime_lag_ms: app.runtime_lag_ms.load(Ordering::Relaxed),
        state_backend: probe_state_backend(app).await,
        lifecycle: app.lifecycle(),
    };
    let (status, issues) = evaluate(&inputs);
    let body = json!({
        "status": status,
        "issues": issues,
        "serverId": app.server_id,
        "metrics": {
            "lifecycle": lifecycle_name(inputs.lifecycle),
            "uptimeSecs": stats.uptime_secs,
            "connections": stats.load.total_connections,
            "rooms": stats.load.rooms,
            "messagesIn": stats.load.messages_in,
            "messagesOut": stats.load.messages_out,
            "rssBytes": stats.load.rss_bytes,
            "memoryLimitBytes": inputs.memory_limit_bytes,
            "runtimeLagMs": inputs.runtime_lag_ms,
            "stateBackend": if inputs.state_backend.is_ok() { "ok" } else { "unreachable" },
        },
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let code = if status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// `GET /ready`: 200 only when the node is `Ready` and, in cluster mode, its state backend
/// answers.
pub async fn ready(State(state): State<HttpState>) -> Response {
    let app = &state.app;
    let stage = app.lifecycle();
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": lifecycle_name(stage), "ready": false, "reason": reason, "serverId": app.server_id })),
        )
            .into_response()
    };
    if stage != Lifecycle::Ready {
        return unavailable(format!("node is {}", lifecycle_name(stage)));
    }
    if !app.link.is_connected() {
        return unavailable("Redis connection lost".to_owned());
    }
    if app.config.args.redis_url.is_some()
        && let Err(reason) = probe_state_backend(app).await
    {
        return unavailable(format!("state backend unreachable: {reason}"));
    }
    (
        StatusCode::OK,
        Json(json!({ "status": "ready", "ready": true, "serverId": app.server_id })),
    )
        .into_response()
}

/// Samples how late the runtime wakes a timer, and keeps the latest figure in
/// [`App::runtime_lag_ms`].
#[derive(Debug)]
pub struct LagMonitor;

impl LagMonitor {
    /// Starts the sampler, tracked by `tasks`; it stops when they are cancelled, or when the
    /// handle is aborted.
    pub fn spawn(app: Arc<App>, tasks: &Tasks) -> JoinHandle<()> {
        let cancelled = tasks.cancelled();
        tasks.spawn(async move {
            loop {
                let before = Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(LAG_SAMPLE_PERIOD) => {}
                    () = cancelled.cancelled() => return,
                }
                let lag = before.elapsed().saturating_sub(LAG_SAMPLE_PERIOD);
                app.runtime_lag_ms.store(
                    u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fine() -> HealthInputs {
        HealthInputs {
            rss_bytes: Some(100),
            memory_limit_bytes: Some(1000),
            runtime_lag_ms: 3,
            state_backend: Ok(()),
            lifecycle: Lifecycle::Ready,
        }
    }

    #[test]
    fn a_quiet_node_is_healthy() {
        assert_eq!(evaluate(&fine()), (HealthStatus::Healthy, vec![]));
        let no_limit = HealthInputs {
            memory_limit_bytes: None,
            rss_bytes: Some(u64::MAX / 2),
            ..fine()
        };
        assert_eq!(evaluate(&no_limit).0, HealthStatus::Healthy);
    }

    #[test]
    fn memory_thresholds() {
        let warn = HealthInputs {
            rss_bytes: Some(900),
            ..fine()
        };
        let (status, issues) = evaluate(&warn);
        assert_eq!(status, HealthStatus::Warning);
        assert!(issues[0].contains("90%"), "{issues:?}");
        let bad = HealthInputs {
            rss_bytes: Some(960),
            ..fine()
        };
        assert_eq!(evaluate(&bad).0, HealthStatus::Unhealthy);
    }

    #[test]
    fn runtime_lag_thresholds() {
        let warn = HealthInputs {
            runtime_lag_ms: LAG_WARNING_MS,
            ..fine()
        };
        assert_eq!(evaluate(&warn).0, HealthStatus::Warning);
        let bad = HealthInputs {
            runtime_lag_ms: LAG_UNHEALTHY_MS,
            ..fine()
        };
        assert_eq!(evaluate(&bad).0, HealthStatus::Unhealthy);
    }

    #[test]
    fn an_unreachable_backend_is_never_unhealthy() {
        let down = HealthInputs {
            state_backend: Err("connection refused".into()),
            ..fine()
        };
        let (status, issues) = evaluate(&down);
        assert_eq!(status, HealthStatus::Warning);
        assert!(issues[0].contains("connection refused"));
    }

    #[test]
    fn the_worst_finding_wins_and_all_are_listed() {
        let many = HealthInputs {
            rss_bytes: Some(990),
            runtime_lag_ms: LAG_WARNING_MS,
            state_backend: Err("down".into()),
            lifecycle: Lifecycle::Draining,
            ..fine()
        };
        let (status, issues) = evaluate(&many);
        assert_eq!(status, HealthStatus::Unhealthy);
        assert_eq!(issues.len(), 4, "{issues:?}");
    }

    #[test]
    fn cgroup_limits_parse() {
        assert_eq!(parse_memory_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712"), None);
    }
}
