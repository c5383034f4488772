//! Prometheus metrics of one node, kept in a registry of its own (no global recorder), so several
//! gateways in one test process never mix their figures.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the gateway exposes on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sockets ever accepted (all namespaces).
    pub connections_total: Counter,
    /// Sockets open now (all namespaces).
    pub connections_active: Gauge,
    /// Events sent to clients.
    pub messages_sent: Counter,
    /// Events received from clients.
    pub messages_received: Counter,
    /// Events received per second over the last rate window.
    pub message_rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Rooms registered (main namespace).
    pub rooms_total: Gauge,
    /// Connections refused or failed (rate limit, ban, protocol errors).
    pub connection_errors: Counter,
    /// Events rejected (validation, rules, rate limit).
    pub message_errors: Counter,
    /// Handshakes refused for a missing or invalid token or role.
    pub auth_errors: Counter,
    /// Clients disconnected because their outgoing queue was full.
    pub slow_client_disconnects: Counter,
    /// Frames that could not be queued to a client.
    pub dropped_frames: Counter,
    /// Engine.IO sessions that have not joined a namespace yet.
    pub sessions_pending: Gauge,
    /// Engine.IO sessions that ended without joining a namespace (connect timeout, client gone,
    /// failed handshake).
    pub sessions_abandoned: Counter,
    /// Handshakes refused because the client address spent its budget (HTTP 429).
    pub handshakes_rate_limited: Counter,
    /// Handshakes refused because too many sessions were pending on the node (HTTP 503).
    pub handshakes_over_pending_cap: Counter,
    /// Events refused by a bound on client-created state (rooms or games per socket, room
    /// password attempts).
    pub state_limit_refusals: Counter,
    /// Clients disconnected because their outgoing queue went over its byte budget.
    pub queue_budget_disconnects: Counter,
    rate_window: Mutex<RateWindow>,
}

#[derive(Debug)]
struct RateWindow {
    at: Instant,
    received_then: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connections_total = Counter::default();
        let connections_active = Gauge::default();
        let messages_sent = Counter::default();
        let messages_received = Counter::default();
        let message_rate = Gauge::<f64, AtomicU64>::default();
        let rooms_total = Gauge::default();
        let connection_errors = Counter::default();
        let message_errors = Counter::default();
        let auth_errors = Counter::default();
        let slow_client_disconnects = Counter::default();
        let dropped_frames = Counter::default();
        let sessions_pending = Gauge::default();
        let sessions_abandoned = Counter::default();
        let handshakes_rate_limited = Counter::default();
        let handshakes_over_pending_cap = Counter::default();
        let state_limit_refusals = Counter::default();
        let queue_budget_disconnects = Counter::default();
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "socketio_connections",
            "Socket.IO connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "socketio_connections_active",
            "Socket.IO connections open now",
            connections_active.clone(),
        );
        registry.register(
            "socketio_messages_sent",
            "Events sent to clients",
            messages_sent.clone(),
        );
        registry.register(
            "socketio_messages_received",
            "Events received from clients",
            messages_received.clone(),
        );
        registry.register(
            "socketio_message_rate",
            "Events received per second, recent average",
            message_rate.clone(),
        );
        registry.register(
            "socketio_rooms_total",
            "Rooms registered",
            rooms_total.clone(),
        );
        registry.register(
            "socketio_connection_errors",
            "Connections refused or failed",
            connection_errors.clone(),
        );
        registry.register(
            "socketio_message_errors",
            "Events rejected",
            message_errors.clone(),
        );
        registry.register(
            "socketio_auth_errors",
            "Handshakes refused for authentication or authorisation",
            auth_errors.clone(),
        );
        registry.register(
            "socketio_slow_client_disconnects",
            "Clients disconnected because their outgoing queue was full",
            slow_client_disconnects.clone(),
        );
        registry.register(
            "socketio_dropped_frames",
            "Frames that could not be queued to a client",
            dropped_frames.clone(),
        );
        registry.register(
            "socketio_sessions_pending",
            "Engine.IO sessions that have not joined a namespace yet",
            sessions_pending.clone(),
        );
        registry.register(
            "socketio_sessions_abandoned",
            "Engine.IO sessions that ended without joining a namespace",
            sessions_abandoned.clone(),
        );
        registry.register(
            "socketio_handshakes_rate_limited",
            "Engine.IO handshakes refused: the client address spent its budget",
            handshakes_rate_limited.clone(),
        );
        registry.register(
            "socketio_handshakes_over_pending_cap",
            "Engine.IO handshakes refused: too many sessions pending on the node",
            handshakes_over_pending_cap.clone(),
        );
        registry.register(
            "socketio_state_limit_refusals",
            "Events refused by a bound on client-created state (rooms or games per socket, room password attempts)",
            state_limit_refusals.clone(),
        );
        registry.register(
            "socketio_queue_budget_disconnects",
            "Clients disconnected because their outgoing queue went over SOCKET_QUEUE_BYTES",
            queue_budget_disconnects.clone(),
        );
        Self {
            registry,
            connections_total,
            connections_active,
            messages_sent,
            messages_received,
            message_rate,
            rooms_total,
            connection_errors,
            message_errors,
            auth_errors,
            slow_client_disconnects,
            dropped_frames,
            sessions_pending,
            sessions_abandoned,
            handshakes_rate_limited,
            handshakes_over_pending_cap,
            state_limit_refusals,
            queue_budget_disconnects,
            rate_window: Mutex::new(RateWindow {
                at: Instant::now(),
                received_then: 0,
            }),
        }
    }

    /// Recomputes `socketio_message_rate` from the received counter since the last call.
    pub fn update_rate(&self) {
        let mut w = self.rate_window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(w.at).as_secs_f64();
        if elapsed >= 1.0 {
            let received = self.messages_received.get();
            self.message_rate
                .set((received - w.received_then) as f64 / elapsed);
            w.at = now;
            w.received_then = received;
        }
    }

    /// Adds figures kept elsewhere (the adapter's and the control bus's), read at each scrape.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The registry in OpenMetrics text format (which Prometheus also reads).
    pub fn render(&self) -> String {
        self.update_rate();
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A monotonic counter readable without the registry, for figures that go into node stats.
#[derive(Debug, Default)]
pub struct Tally(AtomicU64);

impl Tally {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_contract_names() {
        let m = Metrics::new();
        m.connections_total.inc();
        m.messages_received.inc();
        let text = m.render();
        for name in [
            "socketio_connections_total",
            "socketio_connections_active",
            "socketio_messages_sent_total",
            "socketio_messages_received_total",
            "socketio_message_rate",
            "socketio_rooms_total",
            "socketio_connection_errors_total",
            "socketio_message_errors_total",
            "socketio_auth_errors_total",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
