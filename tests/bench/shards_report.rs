//! The `shards` scenario's part of `BENCHMARKS.md`: per run, each primary's CPU and bytes, and
//! what each node received for rooms it has no member of.

use std::fmt::Write as _;

use crate::Results;
use crate::report::format_thousands;
use crate::shards::{self, NODES, ShardsRun};

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format_thousands(x, decimals),
        _ => "—".into(),
    }
}

/// The details section (empty when the scenario did not run).
pub fn details(results: &Results) -> String {
    let mut out = String::new();
    if results.shards.is_empty() {
        return out;
    }
    let cfg = &results.config;
    let _ = writeln!(
        out,
        "### Redis Cluster shards (3 nodes, 3 primaries without replicas; {} clients in {} rooms of {}; room r's members on nodes 1 + r mod 3 and 1 + (r + 1) mod 3; {} msg/s in three phases of {} s, one group of rooms (r mod 3) each; a random member sends to its room)\n",
        format_thousands(cfg.shards_clients as f64, 0),
        format_thousands(cfg.shards_rooms as f64, 0),
        cfg.shards_clients / cfg.shards_rooms.max(1),
        cfg.shards_msgs_per_sec,
        cfg.shards_phase_secs
    );
    let _ = writeln!(
        out,
        "- Gateway sharded mode (`--adapter-mode sharded`): {}\n",
        match &results.gateway_sharded {
            Ok(()) =>
                "available (a room message crossed two nodes on a Redis Cluster in the probe)"
                    .to_owned(),
            Err(e) => format!("**not available in this build** — probe: {e}"),
        }
    );
    for run in &results.shards {
        run_details(&mut out, run);
    }
    out
}

fn run_details(out: &mut String, run: &ShardsRun) {
    let _ = writeln!(out, "#### {}\n", run.label());
    if let Some(reason) = &run.not_measured {
        let _ = writeln!(out, "{reason}\n");
        return;
    }
    if let Some(e) = &run.error {
        let _ = writeln!(out, "Failed: {e}\n");
    }
    if run.phases.is_empty() {
        return;
    }
    let (published, expected, delivered, lost) = run.totals();
    let cpu = run.cpu();
    let above = run.redis_cpu_above_background();
    let _ = writeln!(
        out,
        "Setup {} s; {} messages, {} of {} deliveries, {} lost; CPU s over the phases: generator {:.2}, nodes {:.2}, Redis {:.2} ({} above the quiet window's background); Redis CPU above background per message {} µs; node CPU per delivery {} µs.\n",
        opt(run.setup_secs, 1),
        published,
        delivered,
        expected,
        lost,
        cpu.generator,
        cpu.servers,
        cpu.redis,
        opt(above, 2),
        opt(
            above
                .filter(|_| published > 0)
                .map(|a| a / published as f64 * 1e6),
            1
        ),
        opt(
            (delivered > 0).then(|| cpu.servers / delivered as f64 * 1e6),
            1
        ),
    );
    out.push_str("| primary (port) | CPU s | share of Redis CPU | bytes in | bytes out | commands |\n|---|---:|---:|---:|---:|---:|\n");
    for p in &run.primaries {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} % | {} | {} | {} |",
            p.port,
            p.cpu_secs,
            p.cpu_share * 100.0,
            format_thousands(p.bytes_in as f64, 0),
            format_thousands(p.bytes_out as f64, 0),
            format_thousands(p.commands as f64, 0)
        );
    }
    let share = shards::largest_share(&run.primaries);
    let _ = writeln!(
        out,
        "\nLargest primary's share: {} % (target in sharded mode: ≤ {:.0} %).\n",
        opt(share.map(|s| s * 100.0), 0),
        shards::MAX_PRIMARY_SHARE * 100.0
    );
    out.push_str("| phase (group) | messages | lost | p50 ms | p99 ms | bytes from Redis per node (1, 2, 3) | node with no member |\n|---|---:|---:|---:|---:|---|---:|\n");
    for p in &run.phases {
        let bytes: Vec<String> = p
            .bytes_per_node
            .iter()
            .map(|b| format_thousands(*b as f64, 0))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            p.group,
            p.step.published,
            p.step.lost,
            opt(p.step.p50_ms, 1),
            opt(p.step.p99_ms, 1),
            bytes.join(", "),
            p.absent_node + 1
        );
    }
    let foreign = run.foreign_bytes_per_message();
    let _ = writeln!(
        out,
        "\nBytes per room message each node received for rooms it has no member of (its phase, minus {} s of background scaled to the phase: {}): {}; a member node received {} bytes per message; worst share {} % (target: < {:.0} %, none).\n",
        format_thousands(run.background_secs, 1),
        run.background_bytes_per_node
            .iter()
            .map(|b| format_thousands(*b as f64, 0))
            .collect::<Vec<_>>()
            .join(", "),
        (0..NODES)
            .map(|n| format!(
                "node {} {}",
                n + 1,
                opt(foreign.get(n).copied().flatten(), 1)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        opt(run.member_bytes_per_message(), 1),
        opt(run.worst_foreign_share().map(|s| s * 100.0), 2),
        shards::MAX_FOREIGN_SHARE * 100.0
    );
}
