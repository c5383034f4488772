//! A Node.js peer (`tests/node/peer.js`, `sharded-peer.js`) driven over stdin/stdout: one
//! JSON command per line in, one JSON object per line out.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{Value as Json, json};
use testkit::KillOnDrop;
use tokio::sync::mpsc;

/// How long the peer may stay silent.
pub const WAIT: Duration = Duration::from_secs(8);

/// A Node.js peer script of `tests/node` driven by its line protocol.
pub struct NodePeer {
    pub per_client: HashMap<String, VecDeque<Json>>,
    _process: KillOnDrop,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Json>,
    results: HashMap<u64, Json>,
    next_id: u64,
    sids: HashMap<String, String>,
}

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

impl NodePeer {
    /// Starts `node <script> <args...>` in `tests/node` and waits for its `ready` line.
    pub async fn start(script: &str, args: &[String]) -> Self {
        let node = testkit::which("node").unwrap_or_else(|| {
            panic!("`node` is not installed: install Node.js 20 (apt-get install nodejs)")
        });
        assert!(
            node_dir()
                .join("node_modules/@socket.io/redis-adapter")
                .is_dir(),
            "Node packages missing: run `npm ci --prefix adapter-redis/tests/node`"
        );
        let mut child = Command::new(node)
            .arg(script)
            .args(args)
            .current_dir(node_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel(4096);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Json = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"type": "log", "line": line}));
                if tx.blocking_send(value).is_err() {
                    break;
                }
            }
        });
        let mut peer = Self {
            _process: KillOnDrop::new(format!("node {script}"), child),
            stdin,
            lines,
            per_client: HashMap::new(),
            results: HashMap::new(),
            next_id: 0,
            sids: HashMap::new(),
        };
        loop {
            let msg = peer.recv().await;
            match msg["type"].as_str() {
                Some("ready") => {
                    peer.sids = serde_json::from_value(msg["sids"].clone()).unwrap();
                    break;
                }
                Some("fatal") => panic!("node peer failed: {}", msg["error"]),
                _ => peer.file(msg),
            }
        }
        peer
    }

    async fn recv(&mut self) -> Json {
        match tokio::time::timeout(WAIT, self.lines.recv()).await {
            Ok(Some(v)) => v,
            other => panic!("node peer silent for {WAIT:?}: {other:?}"),
        }
    }

    fn file(&mut self, msg: Json) {
        match msg["type"].as_str() {
            Some("event") | Some("disconnect") => {
                let client = msg["client"].as_str().unwrap_or_default().to_owned();
                self.per_client.entry(client).or_default().push_back(msg);
            }
            Some("result") => {
                self.results.insert(msg["id"].as_u64().unwrap(), msg);
            }
            Some("fatal") => panic!("node peer failed: {}", msg["error"]),
            _ => eprintln!("node peer: {msg}"),
        }
    }

    pub fn sid(&self, client: &str) -> String {
        self.sids[client].clone()
    }

    pub async fn cmd(&mut self, cmd: &str, args: Json) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = args;
        msg["cmd"] = json!(cmd);
        msg["id"] = json!(id);
        writeln!(self.stdin, "{msg}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            if let Some(result) = self.results.remove(&id) {
                assert!(
                    result.get("error").is_none(),
                    "node command {cmd} failed: {result}"
                );
                return result["value"].clone();
            }
            let msg = self.recv().await;
            self.file(msg);
        }
    }

    /// The next event or disconnect of `client`.
    pub async fn next_for(&mut self, client: &str) -> Json {
        loop {
            if let Some(msg) = self
                .per_client
                .get_mut(client)
                .and_then(VecDeque::pop_front)
            {
                return msg;
            }
            let msg = self.recv().await;
            self.file(msg);
        }
    }

    pub async fn expect(&mut self, client: &str, name: &str) -> Json {
        let msg = self.next_for(client).await;
        assert_eq!(msg["name"], json!(name), "{client} got {msg}");
        msg["args"].clone()
    }
}
