//! Benchmark (not a test): cost of encoding/decoding one broadcast, and cross-node latency
//! and throughput over a real redis-server.
//!
//! Run: `cargo bench -p adapter-redis` (needs `redis-server` on PATH).

fn main() {
    adapter_bench_impl::run();
}

mod adapter_bench_impl {
    use std::time::Instant;

    use adapter_redis::msgpack::Wire;
    use adapter_redis::wire::{self, Flags, Target};

    pub fn run() {
        codec();
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
        let mut total = 0usize;
        for _ in 0..n {
            total +=
                wire::encode_broadcast("0123456789abcdef", &data, "/", &target, Flags::default())
                    .len();
        }
        let enc = start.elapsed() / n;
        let bytes =
            wire::encode_broadcast("0123456789abcdef", &data, "/", &target, Flags::default());
        let start = Instant::now();
        for _ in 0..n {
            total += wire::decode_broadcast(&bytes)
                .map(|m| m.target.rooms.len())
                .unwrap_or(0);
        }
        let dec = start.elapsed() / n;
        println!(
            "broadcast encode: {enc:?}/msg, decode: {dec:?}/msg ({} bytes, checksum {total})",
            bytes.len()
        );
    }
}
