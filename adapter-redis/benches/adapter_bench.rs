//! Benchmark (not a test; `harness = false`, never run by `cargo test`):
//!
//! 1. CPU cost of encoding and decoding one broadcast in the Node wire formats (classic, and
//!    sharded as JSON and as msgpack);
//! 2. cross-node latency (one emit on node A until a socket on node B has it) and burst
//!    throughput, over a real redis-server started on a free port.
//!
//! Run: `cargo bench -p adapter-redis` (needs `redis-server` on PATH).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use adapter_redis::msgpack::Wire;
use adapter_redis::sharded_wire::Envelope;
use adapter_redis::wire::{self, Flags, Target};
use adapter_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use engineioxide_core::Packet as EioPacket;
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{Data, SocketRef};

type Adapter = RedisAdapter<Emitter>;

fn main() {
    codec();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(cross_node());
}

fn codec() {
    let data = Wire::Array(vec![
        Wire::Str("message".into()),
        Wire::map([
            ("room", Wire::Str("general".into())),
            (
                "text",
                Wire::Str("hello everyone, this is a chat message".into()),
            ),
            ("ts", Wire::Int(1_795_630_193_995)),
        ]),
    ]);
    let target = Target {
        rooms: vec!["general".into()],
        except: vec![],
    };
    let n = 200_000u32;
    let start = Instant::now();
    let mut checksum = 0usize;
    for _ in 0..n {
        checksum +=
            wire::encode_broadcast("0123456789abcdef", &data, "/", &target, Flags::default()).len();
    }
    let encode = start.elapsed() / n;
    let bytes = wire::encode_broadcast("0123456789abcdef", &data, "/", &target, Flags::default());
    let start = Instant::now();
    for _ in 0..n {
        checksum += wire::decode_broadcast(&bytes)
            .map(|m| m.target.rooms.len())
            .unwrap_or(0);
    }
    let decode = start.elapsed() / n;
    println!(
        "codec: broadcast encode {encode:?}/msg, decode {decode:?}/msg ({} bytes; checksum {checksum})",
        bytes.len()
    );
    sharded_codec(&data, &target, n);
}

/// The same broadcast in the sharded wire: JSON text (Node's choice without binary) and
/// msgpack (with a binary argument).
fn sharded_codec(data: &Wire, target: &Target, n: u32) {
    let mut with_binary = data.clone();
    if let Wire::Array(items) = &mut with_binary {
        items.push(Wire::Bin(vec![7u8; 32].into()));
    }
    for (label, data) in [("json", data), ("msgpack", &with_binary)] {
        let envelope = Envelope::broadcast(
            "0123456789abcdef",
            "/",
            data.clone(),
            target.clone(),
            Flags::default(),
        );
        let mut checksum = 0usize;
        let start = Instant::now();
        for _ in 0..n {
            checksum += envelope.encode().map(|b| b.len()).unwrap_or(0);
        }
        let encode = start.elapsed() / n;
        let bytes = envelope.encode().unwrap();
        let start = Instant::now();
        for _ in 0..n {
            checksum += Envelope::decode(&bytes)
                .map(|e| usize::from(e.message.request_id().is_none()))
                .unwrap_or(0);
        }
        let decode = start.elapsed() / n;
        println!(
            "codec: sharded {label} broadcast encode {encode:?}/msg, decode {decode:?}/msg ({} bytes; checksum {checksum})",
            bytes.len()
        );
    }
}

async fn server(url: &str) -> (SocketIo<Adapter>, RedisAdapterCtr) {
    let ctr = RedisAdapterCtr::connect(url, RedisAdapterConfig::default())
        .await
        .unwrap();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<Adapter>(ctr.clone())
        .build_svc();
    io.ns(
        "/",
        async |s: SocketRef<Adapter>, Data(room): Data<String>| {
            s.join(room);
        },
    )
    .await
    .unwrap();
    (io, ctr)
}

async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<EioPacket>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(EioPacket::Message(m))) if m.starts_with('2') => return,
            Ok(Some(_)) => continue,
            other => panic!("no event: {other:?}"),
        }
    }
}

async fn cross_node() {
    let redis = testkit::RedisServer::start().unwrap();
    let (a, _ctr_a) = server(&redis.url()).await;
    let (b, ctr_b) = server(&redis.url()).await;
    let (_tx, mut rx) = b.new_dummy_sock("/", "bench").await;
    ctr_b.sync_rooms("/").await;
    let payload = "hello everyone, this is a chat message";

    for _ in 0..200 {
        a.to("bench").emit("warmup", &payload).await.unwrap();
        next_event(&mut rx).await;
    }
    let rounds = 2000;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        a.to("bench").emit("m", &payload).await.unwrap();
        next_event(&mut rx).await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "cross-node latency (emit on A -> socket on B), {rounds} sequential: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );

    let burst = 20_000u32;
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut received = 0u32;
        let mut last = Instant::now();
        // Counts until the stream has been quiet for 1 s: losses are reported, not fatal.
        while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            if matches!(&packet, EioPacket::Message(m) if m.starts_with('2')) {
                received += 1;
                last = Instant::now();
            }
        }
        (received, last)
    });
    for _ in 0..burst {
        a.to("bench").emit("m", &payload).await.unwrap();
    }
    let sent = start.elapsed();
    let (received, last) = receiver.await.unwrap();
    let total = last.duration_since(start);
    println!(
        "burst: {burst} emits on A in {sent:?} ({:.0}/s); {received} received on B by {total:?} ({:.0}/s); \
         the rest was dropped by a bounded queue (publish queue or the socket's 128-packet buffer)",
        f64::from(burst) / sent.as_secs_f64(),
        f64::from(received) / total.as_secs_f64()
    );
    println!("adapter metrics on A: {:?}", _ctr_a.metrics());
    println!("adapter metrics on B: {:?}", ctr_b.metrics());

    // Cost of the periodic room-subscription check (socket.join does not notify adapters).
    let mut keep = Vec::new();
    for i in 0..3000 {
        keep.push(b.new_dummy_sock("/", format!("room-{}", i % 100)).await);
    }
    ctr_b.sync_rooms("/").await;
    let rounds = 200u32;
    let start = Instant::now();
    for _ in 0..rounds {
        ctr_b.sync_rooms("/").await;
    }
    let per_check = start.elapsed() / rounds;
    let interval = RedisAdapterConfig::default().room_sync_interval;
    println!(
        "room sync check with 3000 sockets in 100 rooms: {per_check:?} per check (every {interval:?}: {:.1}% of one core)",
        100.0 * per_check.as_secs_f64() / interval.as_secs_f64()
    );
}
