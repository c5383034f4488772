//! A raw Engine.IO v4 long-polling session over HTTP, for tests that look at the exact packets a
//! node sends (or stops sending) rather than at what a Socket.IO client library makes of them.
//!
//! Helpers panic with a message on anything unexpected: they only run inside tests.

/// Separates the packets of one long-polling body.
pub const SEPARATOR: char = '\u{1e}';

/// One long-polling session: opened with the handshake, then packets posted and polled.
#[derive(Debug, Clone)]
pub struct Polling {
    http: reqwest::Client,
    url: String,
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
        }
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
