//! A raw Engine.IO v4 long-polling session over HTTP, for tests that look at the exact packets a
//! node sends (or stops sending) rather than at what a Socket.IO client library makes of them.
//!
//! Helpers panic with a message on anything unexpected: they only run inside tests.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Separates the packets of one long-polling body.
pub const SEPARATOR: char = '\u{1e}';

/// Longest [`Polling::until`] waits: a guard against a hang only.
const HANG: Duration = Duration::from_secs(20);

/// One long-polling session: opened with the handshake, then packets posted and polled.
#[derive(Debug, Clone)]
pub struct Polling {
    http: reqwest::Client,
    url: String,
    /// Packets received by [`Polling::until`] and not yet asked for, in order.
    unread: VecDeque<String>,
    /// The id of the next acknowledged event [`Polling::call`] sends.
    next_ack: u32,
}

impl Polling {
    /// Opens a session on the node at `base` (`http://host:port`), through `http`.
    pub async fn open(http: &reqwest::Client, base: &str) -> Self {
        let text = http
            .get(format!("{base}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the Engine.IO handshake request failed")
            .text()
            .await
            .expect("the Engine.IO handshake answer is not text");
        let open: serde_json::Value = text
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| panic!("not an Engine.IO OPEN packet: {text:?}"));
        let sid = open["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("no sid in the OPEN packet: {open}"));
        Self {
            http: http.clone(),
            url: format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}"),
            unread: VecDeque::new(),
            next_ack: 0,
        }
    }

    /// Opens a session and connects it to namespace `/` with `auth` (the CONNECT payload);
    /// the node must accept.
    pub async fn connect(http: &reqwest::Client, base: &str, auth: &serde_json::Value) -> Self {
        let mut session = Self::open(http, base).await;
        session.send(&format!("40{auth}")).await;
        session.until(|p| p.starts_with("40{"), "CONNECT ack").await;
        session
    }

    /// Posts `packets` in one body; the node must accept it.
    pub async fn post(&self, packets: &[String]) {
        let body = packets.join(&SEPARATOR.to_string());
        let res = self
            .http
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("POST to the polling session failed");
        assert!(
            res.status().is_success(),
            "POST {packets:?}: {}",
            res.status()
        );
    }

    /// Posts one packet.
    pub async fn send(&self, packet: &str) {
        self.post(&[packet.to_owned()]).await;
    }

    /// The packets of one poll, or `None` once the session is gone (the request fails or is
    /// refused). Pings are left in.
    pub async fn poll(&self) -> Option<Vec<String>> {
        let res = self.http.get(&self.url).send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        let text = res.text().await.ok()?;
        Some(text.split(SEPARATOR).map(str::to_owned).collect())
    }

    /// Returns the first packet, read or still to come, that matches `wanted`; the packets
    /// before it are dropped and pings are answered on the way.
    pub async fn until(&mut self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + HANG;
        let mut skipped = Vec::new();
        loop {
            while let Some(packet) = self.unread.pop_front() {
                if wanted(&packet) {
                    return packet;
                }
                skipped.push(packet);
            }
            assert!(Instant::now() < deadline, "no {what}; got {skipped:?}");
            let packets = self
                .poll_answering_pings()
                .await
                .unwrap_or_else(|| panic!("the session ended waiting for {what}: {skipped:?}"));
            self.unread.extend(packets);
        }
    }

    /// Emits `event` on `/` with an ack and returns the ack's first argument.
    pub async fn call(&mut self, event: &str, data: serde_json::Value) -> serde_json::Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!("42{id}{}", serde_json::json!([event, data])))
            .await;
        let prefix = format!("43{id}");
        let ack = self
            .until(|p| p.starts_with(&prefix), &format!("ack of {event}"))
            .await;
        let args: serde_json::Value = serde_json::from_str(&ack[prefix.len()..])
            .unwrap_or_else(|e| panic!("ack of {event} is not JSON ({e}): {ack}"));
        args[0].clone()
    }

    /// One poll with the node's pings answered and left out; `None` once the session is gone.
    pub async fn poll_answering_pings(&self) -> Option<Vec<String>> {
        let (pings, packets): (Vec<String>, Vec<String>) =
            self.poll().await?.into_iter().partition(|p| p == "2");
        if !pings.is_empty() {
            self.send("3").await;
        }
        Some(packets)
    }
}
