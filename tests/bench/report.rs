//! `BENCHMARKS.md` from the results: machine, versions, one table with both stacks and their
//! ratio for every figure, charts, and per-step details with the CPU of every process group.

use std::fmt::Write as _;

use crate::Results;
use crate::procs::AdapterMode;
use crate::procs::Stack;
use crate::scenarios::{ConnRateRun, FanoutRun, IdleRun, ManyRoomsRun, Step};
use crate::shards::{self, ShardsRun};

/// Formats an optional number, or the reason it is missing.
fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format_thousands(x, decimals),
        _ => "—".into(),
    }
}

/// `1234567.8` -> `1,234,568` (0 decimals) or `1,234,567.80` (2).
pub fn format_thousands(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// gateway / Node, when both exist and Node is non-zero.
pub fn ratio(gateway: Option<f64>, node: Option<f64>) -> Option<f64> {
    match (gateway, node) {
        (Some(g), Some(n)) if n != 0.0 => Some(g / n),
        _ => None,
    }
}

fn ratio_text(gateway: Option<f64>, node: Option<f64>) -> String {
    ratio(gateway, node).map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
}

struct Row {
    /// Prefixes of the gateway and Node cells (`≥ ` when the figure is a lower bound).
    prefix: (&'static str, &'static str),
    figure: String,
    gateway: Option<f64>,
    node: Option<f64>,
    decimals: usize,
    gateway_note: Option<String>,
    node_note: Option<String>,
    target: String,
    met: String,
}

impl Row {
    /// A figure of both stacks, `notes` saying why one is missing; no target.
    fn figure(
        figure: String,
        (gateway, node): (Option<f64>, Option<f64>),
        decimals: usize,
        (gateway_note, node_note): (Option<String>, Option<String>),
    ) -> Self {
        Row {
            prefix: ("", ""),
            figure,
            gateway,
            node,
            decimals,
            gateway_note,
            node_note,
            target: String::new(),
            met: String::new(),
        }
    }

    /// The same row with the gateway's target and whether it is met.
    fn target(self, target: String, met: String) -> Self {
        Row {
            target,
            met,
            ..self
        }
    }
}

fn cell(v: Option<f64>, decimals: usize, note: &Option<String>) -> String {
    match (v, note) {
        (Some(_), _) => num(v, decimals),
        (None, Some(n)) => n.clone(),
        (None, None) => "—".into(),
    }
}

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "yes".into(),
        Some(false) => "**no**".into(),
        None => "not measured".into(),
    }
}

/// What the summary table needs of every scenario's run: its stack, and why it has no figures.
trait ScenarioRun {
    fn stack(&self) -> Stack;
    fn error(&self) -> Option<&String>;
    fn not_measured(&self) -> Option<&String> {
        None
    }
    /// Why the run has no figures (not measured, or failed), if it has none.
    fn missing(&self) -> Option<String> {
        self.not_measured()
            .cloned()
            .or_else(|| self.error().map(|e| format!("failed: {e}")))
    }
}

/// `impl ScenarioRun` for a run type with `stack` and `error` fields (and `not_measured`, when
/// named).
macro_rules! scenario_run {
    ($run:ty $(, $not_measured:ident)?) => {
        impl ScenarioRun for $run {
            fn stack(&self) -> Stack {
                self.stack
            }
            fn error(&self) -> Option<&String> {
                self.error.as_ref()
            }
            $(fn not_measured(&self) -> Option<&String> {
                self.$not_measured.as_ref()
            })?
        }
    };
}

scenario_run!(FanoutRun, not_measured);
scenario_run!(ManyRoomsRun, not_measured);
scenario_run!(ShardsRun, not_measured);
scenario_run!(IdleRun);
scenario_run!(ConnRateRun);

/// The gateway's and the Node.js stack's run among those `runs` that `keep` accepts.
fn by_stack<T: ScenarioRun>(runs: &[T], keep: impl Fn(&T) -> bool) -> (Option<&T>, Option<&T>) {
    let find = |stack| runs.iter().find(|r| r.stack() == stack && keep(r));
    (find(Stack::Gateway), find(Stack::Node))
}

/// The note beside a missing figure: "not run", or why the run has none (shortened).
fn why_missing<T: ScenarioRun>(run: Option<&T>) -> Option<String> {
    match run {
        None => Some("not run".into()),
        Some(r) => r.missing().map(short),
    }
}

fn fixed<F: Fn(&Step) -> Option<f64>>(run: Option<&FanoutRun>, f: F) -> Option<f64> {
    run.and_then(|r| r.fixed.as_ref()).and_then(f)
}

fn fanout_rows(results: &Results, topology: &str, rows: &mut Vec<Row>) {
    let (g, n) = by_stack(&results.fanout, |r| r.topology == topology);
    let gn = why_missing(g);
    let nn = why_missing(n);
    let label = if topology == "cluster" {
        "3 nodes + Redis"
    } else {
        "1 node"
    };
    let cfg = &results.config;
    let offered = cfg.fanout_clients as f64 * cfg.fanout_rate_per_room;
    let at = format!(
        "{label}, {} clients, {} msg/s per room ({} deliveries/s offered)",
        cfg.fanout_clients,
        cfg.fanout_rate_per_room,
        format_thousands(offered, 0)
    );
    let is_target_point =
        topology == "cluster" && cfg.fanout_clients == 3_000 && offered >= 300_000.0;
    let row = |figure: String, f: &dyn Fn(&Step) -> Option<f64>, decimals| {
        Row::figure(
            figure,
            (fixed(g, f), fixed(n, f)),
            decimals,
            (gn.clone(), nn.clone()),
        )
    };
    rows.push(row(
        format!("Fan-out: deliveries/s ({at})"),
        &|s| Some(s.deliveries_per_sec),
        0,
    ));
    let g_p99 = fixed(g, |s| s.p99_ms);
    let g_lost = fixed(g, |s| Some(s.lost as f64));
    let (p99_target, p99_met) = if topology == "cluster" {
        let met = match (g_p99, g_lost) {
            (Some(p), Some(l)) if is_target_point => verdict(Some(p < 50.0 && l == 0.0)),
            (Some(_), Some(_)) => "n/a (target is at 3,000 clients, 300k/s)".into(),
            _ => verdict(None),
        };
        ("gateway < 50 ms, nothing lost".into(), met)
    } else {
        (String::new(), String::new())
    };
    rows.push(row(
        format!("Fan-out: latency p50, ms ({label})"),
        &|s| s.p50_ms,
        1,
    ));
    rows.push(
        row(
            format!("Fan-out: latency p99, ms ({label})"),
            &|s| s.p99_ms,
            1,
        )
        .target(p99_target, p99_met),
    );
    rows.push(row(
        format!("Fan-out: latency p999, ms ({label})"),
        &|s| s.p999_ms,
        1,
    ));
    rows.push(row(
        format!("Fan-out: deliveries lost ({label})"),
        &|s| Some(s.lost as f64),
        0,
    ));
    let cpu_g = fixed(g, |s| s.server_cpu_secs_per_million);
    let cpu_n = fixed(n, |s| s.server_cpu_secs_per_million);
    let cpu_met = ratio(cpu_g, cpu_n).map(|r| r <= 0.25);
    rows.push(
        row(
            format!(
                "Fan-out: server CPU-seconds per million deliveries, servers + Redis ({label})"
            ),
            &|s| s.server_cpu_secs_per_million,
            2,
        )
        .target("ratio ≤ 0.25".into(), verdict(cpu_met)),
    );
    rows.push(Row {
        prefix: ("", ""),
        figure: format!(
            "Fan-out: connect phase, s ({} clients with `user online`, {label})",
            cfg.fanout_clients
        ),
        gateway: g.and_then(|r| r.connect_secs),
        node: n.and_then(|r| r.connect_secs),
        decimals: 1,
        gateway_note: gn.clone(),
        node_note: nn.clone(),
        target: String::new(),
        met: String::new(),
    });
    let sat_g = g.and_then(|r| r.max_sustained_deliveries_per_sec);
    let sat_n = n.and_then(|r| r.max_sustained_deliveries_per_sec);
    let bound = |run: Option<&FanoutRun>| match run {
        Some(r) if !r.saturated && !r.ramp.is_empty() => "≥ ",
        _ => "",
    };
    rows.push(Row {
        prefix: (bound(g), bound(n)),
        figure: format!(
            "Saturation: highest sustained deliveries/s, p99 < 100 ms and no loss ({label})"
        ),
        gateway: sat_g,
        node: sat_n,
        decimals: 0,
        gateway_note: gn.or_else(|| Some(ramp_note(g))),
        node_note: nn.or_else(|| Some(ramp_note(n))),
        target: if topology == "cluster" {
            "ratio ≥ 2".into()
        } else {
            String::new()
        },
        met: if topology == "cluster" {
            verdict(ratio(sat_g, sat_n).map(|r| r >= 2.0))
        } else {
            String::new()
        },
    });
}

fn ramp_note(run: Option<&FanoutRun>) -> String {
    match run {
        Some(r) if r.ramp.first().is_some_and(|s| !s.sustained) => {
            "first ramp step already unsustained".into()
        }
        _ => "—".into(),
    }
}

/// A table cell's note: "not measured" reasons are stated in full once, above the table.
fn short(reason: String) -> String {
    if reason.starts_with("not measured: gateway cluster mode not available") {
        return "not measured (no cluster mode in this build)".into();
    }
    if reason.starts_with("not measured: sharded mode not available") {
        return "not measured: sharded mode not available in this build".into();
    }
    if reason.len() > 160 {
        format!(
            "{}…",
            &reason[..reason
                .char_indices()
                .nth(157)
                .map_or(reason.len(), |(i, _)| i)]
        )
    } else {
        reason
    }
}

fn idle_rows(results: &Results, rows: &mut Vec<Row>) {
    let (g, n) = by_stack(&results.idle, |_| true);
    let per = |r: Option<&IdleRun>, count: usize| {
        r.and_then(|r| {
            r.bytes_per_connection()
                .into_iter()
                .find(|&(c, _)| c == count)
                .map(|(_, b)| b)
        })
    };
    let mut counts: Vec<usize> = results
        .config
        .idle_node
        .iter()
        .chain(&results.config.idle_gateway)
        .copied()
        .collect();
    counts.sort_unstable();
    counts.dedup();
    let skipped = |r: Option<&IdleRun>, count: usize| {
        r.and_then(|r| {
            r.skipped
                .iter()
                .find(|(c, _)| *c == count)
                .map(|(_, why)| why.clone())
        })
    };
    for count in counts {
        let gv = per(g, count);
        let nv = per(n, count);
        let g_note = skipped(g, count).or_else(|| why_missing(g));
        let n_note = skipped(n, count).or_else(|| why_missing(n));
        rows.push(Row {
            prefix: ("", ""),
            figure: format!(
                "Idle memory: RSS bytes per connection at {} connections (1 node)",
                format_thousands(count as f64, 0)
            ),
            gateway: gv,
            node: nv,
            decimals: 0,
            gateway_note: g_note.or_else(|| Some("not measured at this count".into())),
            node_note: n_note.or_else(|| Some("not measured at this count".into())),
            target: "ratio ≤ 0.5".into(),
            met: if nv.is_some() {
                verdict(ratio(gv, nv).map(|r| r <= 0.5))
            } else {
                String::new()
            },
        });
    }
    let held = |r: Option<&IdleRun>| r.filter(|r| r.error.is_none()).map(|r| r.held as f64);
    let g_held = held(g);
    let figure = "Idle connections held by one node at the end".into();
    let notes = (why_missing(g), why_missing(n));
    rows.push(Row::figure(figure, (g_held, held(n)), 0, notes).target(
        "gateway 100,000".into(),
        match g_held {
            _ if skipped(g, 100_000).is_some() => "not measured (open-file limit)".into(),
            Some(h) if results.config.idle_gateway.contains(&100_000) => {
                verdict(Some(h >= 100_000.0))
            }
            Some(_) => "n/a (quick sizes)".into(),
            None => verdict(None),
        },
    ));
}

fn conn_rows(results: &Results, rows: &mut Vec<Row>) {
    let (g, n) = by_stack(&results.conn_rate, |_| true);
    let note =
        |r: Option<&ConnRateRun>| why_missing(r).or_else(|| Some("no step sustained".into()));
    let bound = |r: Option<&ConnRateRun>| match r {
        Some(r) if r.steps.last().is_some_and(|s| s.sustained) => "≥ ",
        _ => "",
    };
    rows.push(Row {
        prefix: (bound(g), bound(n)),
        figure: "Connection rate with JWT auth: highest sustained connects/s (1 node, no errors)"
            .into(),
        gateway: g.and_then(|r| r.max_sustained_per_sec),
        node: n.and_then(|r| r.max_sustained_per_sec),
        decimals: 0,
        gateway_note: note(g),
        node_note: note(n),
        target: String::new(),
        met: String::new(),
    });
}

/// `N clients in M rooms`, thousands grouped.
fn clients_in_rooms(clients: usize, rooms: usize) -> String {
    format!(
        "{} clients in {} rooms",
        format_thousands(clients as f64, 0),
        format_thousands(rooms as f64, 0)
    )
}

fn rooms_rows(results: &Results, rows: &mut Vec<Row>) {
    let (g, n) = by_stack(&results.many_rooms, |_| true);
    let cfg = &results.config;
    let label = format!(
        "{}, 3 nodes, {} msg/s",
        clients_in_rooms(cfg.rooms_clients, cfg.rooms_count),
        cfg.rooms_msgs_per_sec
    );
    let step = |r: Option<&ManyRoomsRun>| r.and_then(|r| r.step.clone());
    let (gs, ns) = (step(g), step(n));
    let row = |figure: String, values, decimals| {
        Row::figure(figure, values, decimals, (why_missing(g), why_missing(n)))
    };
    rows.push(row(
        format!("Many rooms: Redis CPU-seconds during the step ({label})"),
        (
            gs.as_ref().map(|s| s.cpu.redis),
            ns.as_ref().map(|s| s.cpu.redis),
        ),
        2,
    ));
    let per_msg = |r: Option<&ManyRoomsRun>, node: usize| {
        r.and_then(|r| {
            let s = r.step.as_ref()?;
            let bytes = *r.redis_bytes_per_node.get(node)?;
            let background = r
                .redis_background_bytes_per_node
                .get(node)
                .copied()
                .unwrap_or(0);
            (s.published > 0).then(|| bytes.saturating_sub(background) as f64 / s.published as f64)
        })
    };
    let g_idle_node = per_msg(g, 2);
    let figure = format!(
        "Many rooms: bytes node 3 (users, no room members) received from Redis per room message, background subtracted ({label})"
    );
    rows.push(row(figure, (g_idle_node, per_msg(n, 2)), 1).target(
        "gateway ≈ 0 (< 1 byte per message)".into(),
        g_idle_node.map_or_else(|| verdict(None), |b| verdict(Some(b < 1.0))),
    ));
    let figure = format!(
        "Many rooms: bytes node 1 (holds half the rooms) received from Redis per room message, background subtracted ({label})"
    );
    rows.push(row(figure, (per_msg(g, 0), per_msg(n, 0)), 1));
    rows.push(row(
        format!("Many rooms: latency p99, ms ({label})"),
        (
            gs.as_ref().and_then(|s| s.p99_ms),
            ns.as_ref().and_then(|s| s.p99_ms),
        ),
        1,
    ));
    rows.push(row(
        format!("Many rooms: deliveries lost ({label})"),
        (
            gs.as_ref().map(|s| s.lost as f64),
            ns.as_ref().map(|s| s.lost as f64),
        ),
        0,
    ));
}

fn step_table(out: &mut String, steps: &[(&str, &Step)]) {
    out.push_str("| step | offered deliveries/s | delivered/s | published | lost | disc. | receivers short / silent | p50 ms | p99 ms | p999 ms | max ms | CPU % gen / servers / redis | server CPU-s per 1M | sustained |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|\n");
    for (name, s) in steps {
        let pct = |cpu: f64| {
            if s.wall_secs > 0.0 {
                cpu / s.wall_secs * 100.0
            } else {
                0.0
            }
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} | {} | {} |",
            num(Some(s.offered_deliveries_per_sec), 0),
            num(Some(s.deliveries_per_sec), 0),
            num(Some(s.published as f64), 0),
            num(Some(s.lost as f64), 0),
            s.disconnects,
            match (s.receivers_short, s.receivers_silent) {
                (Some(a), Some(b)) => format!("{a} / {b}"),
                _ => "—".into(),
            },
            num(s.p50_ms, 1),
            num(s.p99_ms, 1),
            num(s.p999_ms, 1),
            num(s.max_ms, 1),
            pct(s.cpu.generator),
            pct(s.cpu.servers),
            pct(s.cpu.redis),
            num(s.server_cpu_secs_per_million, 2),
            if s.sustained { "yes" } else { "no" }
        );
    }
}

/// The whole document.
pub fn render(results: &Results, charts_dir: &str) -> String {
    let cfg = &results.config;
    let mut out = String::new();
    out.push_str("# Benchmarks: the gateway against the Node.js stack it replaces\n\n");
    if cfg.mode == "quick" {
        let _ = writeln!(
            out,
            "> **Quick-mode figures (smoke sizes), not the issue's measurement.** Fan-out with {} clients, idle memory at {:?} (Node) / {:?} (gateway) connections, many rooms with {} clients in {} rooms, steps of {} s. Run `bash tests/bench/run.sh` (no `--quick`) for the full sizes (3,000 clients, 10k/50k/100k idle (50k and 100k need an open-file limit above them), 10k clients in 1,000 rooms).\n",
            cfg.fanout_clients,
            cfg.idle_node,
            cfg.idle_gateway,
            cfg.rooms_clients,
            cfg.rooms_count,
            cfg.step_secs
        );
    }
    let _ = writeln!(
        out,
        "Generated by `{}` on {} ({} mode, {:.0} s). Every figure below was measured in this one run, both stacks on the same machine with the same load generator and the same offered load; compare the ratios, not the absolute numbers (2 shared cores drift).\n",
        results.command, results.started_at, cfg.mode, results.duration_secs
    );
    out.push_str("## Machine and versions\n\n");
    let _ = writeln!(
        out,
        "- Machine: {}; open-file limit per process: {}",
        results.machine,
        crate::procs::open_files_limit().map_or_else(|| "unknown".into(), |l| l.to_string())
    );
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min) at start / end, other work on the machine included: {} / {}",
        results.load_average_start, results.load_average_end
    );
    for (k, v) in &results.versions {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(
        out,
        "- Gateway cluster mode (`--redis-url`): {}\n",
        match &results.gateway_cluster {
            Ok(()) => "available (a room message crossed two nodes in the probe)".to_owned(),
            Err(e) => format!("**not available in this build** — probe: {e}"),
        }
    );

    out.push_str("## Summary\n\nRatio = gateway ÷ Node.js (below 1 is better for CPU, latency and memory; above 1 is better for rates). `≥` marks a saturation or connection-rate figure where the ramp ended (most steps) before the stack saturated.\n\n");
    out.push_str(
        "| figure | gateway | Node.js | ratio | target | met |\n|---|---:|---:|---:|---|---|\n",
    );
    let mut rows = Vec::new();
    fanout_rows(results, "single", &mut rows);
    fanout_rows(results, "cluster", &mut rows);
    idle_rows(results, &mut rows);
    conn_rows(results, &mut rows);
    rooms_rows(results, &mut rows);
    shards_rows(results, &mut rows);
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {}{} | {}{} | {} | {} | {} |",
            r.figure,
            if r.gateway.is_some() { r.prefix.0 } else { "" },
            cell(r.gateway, r.decimals, &r.gateway_note),
            if r.node.is_some() { r.prefix.1 } else { "" },
            cell(r.node, r.decimals, &r.node_note),
            ratio_text(r.gateway, r.node),
            r.target,
            r.met
        );
    }
    let _ = writeln!(
        out,
        "\n## Charts\n\n![Latency against offered load]({charts_dir}/latency.png)\n\n![Memory against connections]({charts_dir}/memory.png)\n"
    );

    out.push_str("## Details\n\nCPU % is CPU time divided by the step's wall time (100 % = one core; the machine has 2). A generator near 100 % per worker thread would mean the generator, not the server, is the limit.\n\n");
    for run in &results.fanout {
        let _ = writeln!(
            out,
            "### Fan-out, {}, {} ({} node(s), {} clients in {} room(s))\n",
            run.stack.label(),
            run.topology,
            run.nodes,
            run.clients,
            run.rooms
        );
        if let Some(reason) = &run.not_measured {
            let _ = writeln!(out, "Not measured: {reason}\n");
            continue;
        }
        let _ = writeln!(
            out,
            "Connect phase {} s, create/join phase {} s ({} handshakes/joins in flight), connections closed by the server during setup: {}.\n",
            num(run.connect_secs, 1),
            num(run.join_secs, 1),
            results.config.setup_parallelism,
            run.setup_disconnects
                .map_or_else(|| "—".into(), |d| d.to_string())
        );
        let mut steps: Vec<(String, &Step)> = Vec::new();
        if let Some(s) = &run.fixed {
            steps.push((format!("fixed {} msg/s/room", s.rate_per_room), s));
        }
        for (i, s) in run.ramp.iter().enumerate() {
            steps.push((
                format!("ramp {} ({:.1} msg/s/room)", i + 1, s.rate_per_room),
                s,
            ));
        }
        let named: Vec<(&str, &Step)> = steps.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        if !named.is_empty() {
            step_table(&mut out, &named);
        }
        if let Some(e) = &run.error {
            let _ = writeln!(out, "\nFailed: {e}");
        }
        out.push('\n');
    }
    out.push_str("### Idle memory (1 node, no Redis)\n\n| stack | baseline RSS KiB | connections | RSS KiB | bytes per connection |\n|---|---:|---:|---:|---:|\n");
    for run in &results.idle {
        for (&(count, rss), (_, per)) in run.points.iter().zip(run.bytes_per_connection()) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                run.stack.label(),
                num(Some(run.baseline_kib as f64), 0),
                num(Some(count as f64), 0),
                num(Some(rss as f64), 0),
                num(Some(per), 0)
            );
        }
        for (count, why) in &run.skipped {
            let _ = writeln!(
                out,
                "| {} | | {} | {why} | |",
                run.stack.label(),
                num(Some(*count as f64), 0)
            );
        }
        failed_row(&mut out, run.stack, &run.error, 3);
    }
    let _ = writeln!(
        out,
        "\nCPU over the idle scenario (connecting included): {}\n",
        results
            .idle
            .iter()
            .map(|r| format!(
                "{}: generator {:.1} s, server {:.1} s",
                r.stack.label(),
                r.cpu.generator,
                r.cpu.servers
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    out.push_str("### Connection rate with JWT auth (1 node; each connection authenticates as its own user, waits for `welcome`, closes)\n\n| stack | offered/s | succeeded | failed | achieved/s | p50 ms | p99 ms | CPU s gen / server | first error |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for run in &results.conn_rate {
        for s in &run.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} | {} |",
                run.stack.label(),
                num(Some(s.offered_per_sec), 0),
                s.succeeded,
                s.failed,
                num(Some(s.achieved_per_sec), 0),
                num(s.p50_ms, 1),
                num(s.p99_ms, 1),
                s.cpu.generator,
                s.cpu.servers,
                s.first_error.clone().map(short).unwrap_or_default()
            );
        }
        failed_row(&mut out, run.stack, &run.error, 7);
    }
    out.push_str("\n### Many rooms (3 nodes + Redis; room r's members all on node 1 + r mod 2; node 3 holds users in no room; a random member sends to its room)\n\n");
    for run in &results.many_rooms {
        if let Some(reason) = &run.not_measured {
            let _ = writeln!(out, "- {}: not measured: {reason}", run.stack.label());
            continue;
        }
        if let Some(e) = &run.error {
            let _ = writeln!(out, "- {}: failed: {e}", run.stack.label());
        }
        if let Some(s) = &run.step {
            let _ = writeln!(
                out,
                "- {}: {} users on node 3; setup {} s; {} messages, {} deliveries, {} lost, p50 {} ms, p99 {} ms; CPU s generator {:.2}, servers {:.2}, Redis {:.2}; bytes received from Redis per node: {} (in the same time before the step, without room traffic: {})",
                run.stack.label(),
                run.observers,
                num(run.setup_secs, 1),
                s.published,
                s.delivered,
                s.lost,
                num(s.p50_ms, 1),
                num(s.p99_ms, 1),
                s.cpu.generator,
                s.cpu.servers,
                s.cpu.redis,
                list(&run.redis_bytes_per_node),
                list(&run.redis_background_bytes_per_node)
            );
        }
    }
    out.push_str(&crate::shards_report::details(results));
    out.push_str(METHOD);
    out
}

/// The Redis Cluster rows: each stack's sharded run against the targets of issue 15, and the
/// gateway's classic run beside it (Node's reference is its sharded adapter only).
fn shards_rows(results: &Results, rows: &mut Vec<Row>) {
    let (g, n) = by_stack(&results.shards, |r| r.mode == AdapterMode::Sharded);
    let (classic, _) = by_stack(&results.shards, |r| r.mode == AdapterMode::Classic);
    let cfg = &results.config;
    let label = format!(
        "{} on 2 of 3 nodes, 3 primaries, {} msg/s",
        clients_in_rooms(cfg.shards_clients, cfg.shards_rooms),
        cfg.shards_msgs_per_sec
    );
    let share = |r: Option<&ShardsRun>| {
        r.and_then(|r| shards::largest_share(&r.primaries))
            .map(|s| s * 100.0)
    };
    let notes = || (why_missing(g), why_missing(n));
    let gs = share(g);
    rows.push(
        Row::figure(
            format!("Shards, sharded mode: largest primary's share of the Redis CPU, % ({label})"),
            (gs, share(n)),
            0,
            notes(),
        )
        .target(
            format!("≤ {:.0} %", shards::MAX_PRIMARY_SHARE * 100.0),
            verdict(gs.map(|s| s <= shards::MAX_PRIMARY_SHARE * 100.0)),
        ),
    );
    let foreign = |r: Option<&ShardsRun>| {
        r.and_then(ShardsRun::worst_foreign_share)
            .map(|s| s * 100.0)
    };
    let gf = foreign(g);
    rows.push(
        Row::figure(
            format!(
                "Shards, sharded mode: what a node received from Redis for rooms it has no member of, as % of a member node's bytes per message, worst node, background subtracted ({label})"
            ),
            (gf, foreign(n)),
            2,
            notes(),
        )
        .target(
            format!("< {:.0} % (none)", shards::MAX_FOREIGN_SHARE * 100.0),
            verdict(gf.map(|s| s < shards::MAX_FOREIGN_SHARE * 100.0)),
        ),
    );
    rows.push(
        Row::figure(
            format!(
                "Shards, gateway classic mode: largest primary's share of the Redis CPU, % ({label}; Node.js column: its sharded adapter)"
            ),
            (share(classic), share(n)),
            0,
            (why_missing(classic), why_missing(n)),
        )
        .target(
            "reference (classic `PUBLISH` reaches every primary)".into(),
            String::new(),
        ),
    );
}

/// A table row saying the run failed and why, with `empty` cells after it.
fn failed_row(out: &mut String, stack: Stack, error: &Option<String>, empty: usize) {
    if let Some(e) = error {
        let cells = " |".repeat(empty);
        let _ = writeln!(
            out,
            "| {} | failed: {} |{cells}",
            stack.label(),
            short(e.clone())
        );
    }
}

fn list(bytes: &[u64]) -> String {
    bytes
        .iter()
        .map(|b| format_thousands(*b as f64, 0))
        .collect::<Vec<_>>()
        .join(", ")
}

const METHOD: &str = r#"
## Method

- **One command**: `bash tests/bench/run.sh [--quick]` builds the release gateway and the generator, installs the pinned npm packages of `tests/bench/node` (`npm ci`), raises `ulimit -n`, runs every scenario against both stacks, and writes this file, `docs/bench/results.json` (every raw figure) and the charts `docs/bench/latency.png` and `docs/bench/memory.png`.
- **Generator** (`tests/bench/*.rs`, binary `gateway-bench`): Rust, tokio, raw Engine.IO v4 / Socket.IO v5 over WebSocket; connections are spread over several 127.0.x.y source addresses (bound before connect). Every client authenticates with an HS256 JWT in `auth.token` and waits for `welcome`.
- **Node.js reference** (`tests/bench/node/server.js`): socket.io 4.8.4, @socket.io/redis-adapter 8.3.0 with the `redis` client in cluster mode, the same events as the gateway contract: JWT check (node:crypto HS256), `welcome`, `user online` to everyone on a user's first socket (quadratic on connect, kept in both stacks), `create room`/`join room` with a Map registry (per node, as in the original design; the generator creates each room on every node it uses), `room message` to the room except the sender, sanitised, with a 100-message history.
- **Gateway**: `target/release/gateway` with `--jwt-secret`, `--connection-rate-limit`, `--event-rate-limit`, `--event-rate-burst` and `--max-unjoined-rooms-per-user` (the rooms scenario creates every room as one user) set high, `RUST_LOG=warn`; `--worker-threads 1` for every node, one thread per process as each Node.js process has (on these 2 cores, shared with the generator, one thread spent less CPU per delivery than two); `--redis-url` for the 3-node cluster.
- **Latency**: each `room message` carries `b<step>.<seq>.<send time µs>` from the generator's single clock; receivers subtract it from the same clock. Losses: deliveries expected (every receiver of the room, sender excluded) minus deliveries counted after draining (until complete or no progress for 3 s).
- **Rooms**: the contract caps `maxUsers` at 1,000, so N fan-out receivers are split into ceil(N/999) equal rooms, each with the publisher; "msg/s per room" times N is the offered deliveries/s.
- **CPU**: utime + stime from `/proc/<pid>/stat` of the generator, the server nodes and Redis, sampled around each step (publishing + draining). "Server CPU per million deliveries" counts server nodes and Redis.
- **Idle memory**: one node, no Redis, all connections as one user (so no `user online` storm); RSS (`VmRSS`) minus the RSS before any connection, divided by the connections, after a settle pause.
- **Connection rate**: offered connects/s in steps; a step is sustained with no failed handshake and at least 90 % of the offered rate achieved; the ramp stops at the first failing step. Pending handshakes are capped (a quarter of the open-file limit, at most 4,096); connects that would exceed the cap count as failures ("server fell behind"), so the generator never runs out of descriptors in the server's place.
- **Many rooms**: rooms sit on nodes 1 and 2 (all members of a room on one node); node 3 holds users that joined no room, so everything it receives from Redis during the step is traffic of rooms it has no members of (plus the cluster's own background traffic). Nodes 1 and 2 also receive their own publishes back from Redis. Bytes each node received from Redis are read from the kernel (`ss -ti`, `bytes_received` of the node's sockets to the Redis port) before and after the step.
- **Shards**: a three-primary Redis Cluster (no replicas) started by the test kit's harness; room r's members on nodes 1 + r mod 3 and 1 + (r + 1) mod 3, so node 1 + (r + 2) mod 3 has none; the messages go in three phases, one group of rooms (r mod 3) at a time, so everything that node receives from Redis in its phase, minus the background of a quiet window as long as the three phases (at its average rate), is traffic of rooms it has no member of. Each primary's CPU, bytes and commands come from its `INFO` before and after the phases. The gateway runs without `--adapter-mode` (classic) and with `--adapter-mode sharded --adapter-subscriptions dynamic` when a probe shows the build has sharded mode; Node.js runs `createShardedAdapter` (`subscriptionMode: "dynamic"`) over node-redis `createCluster`.
- **Saturation**: the per-room rate rises by a fixed factor per step until p99 passes 100 ms, anything is lost or a receiver is disconnected. A step that misses only on latency is measured once more before the ramp stops (the machine is shared; both attempts are listed). Once it stops, one more step is measured halfway (geometric mean) between the last sustained rate and the first unsustained one, with the same second chance.
- **Setup**: fan-out and many-rooms clients connect and join with a bounded number of handshakes/joins in flight (listed with each run), because every connect and join is broadcast to the others.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(format_thousands(0.0, 0), "0");
        assert_eq!(format_thousands(999.0, 0), "999");
        assert_eq!(format_thousands(1_000.0, 0), "1,000");
        assert_eq!(format_thousands(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(format_thousands(-12_345.0, 0), "-12,345");
    }

    #[test]
    fn missing_figures_are_labelled_never_invented() {
        use crate::procs::CpuSample;
        use crate::scenarios::Config;
        let config = Config::full();
        let reason =
            "not measured: gateway cluster mode not available in this build (probe)".to_owned();
        let results = Results {
            command: "bash tests/bench/run.sh".into(),
            started_at: "now".into(),
            duration_secs: 1.0,
            machine: "test".into(),
            load_average_start: "0.1 0.1 0.1".into(),
            load_average_end: "0.1 0.1 0.1".into(),
            versions: vec![("socket.io".into(), "4.8.4".into())],
            gateway_cluster: Err("probe".into()),
            fanout: vec![FanoutRun::not_measured(
                Stack::Gateway,
                "cluster",
                3,
                config.fanout_clients,
                reason.clone(),
            )],
            idle: vec![IdleRun {
                stack: Stack::Gateway,
                baseline_kib: 1_000,
                points: vec![(10_000, 101_000)],
                held: 10_000,
                skipped: vec![(100_000, "not measured: open-file limit".into())],
                cpu: CpuSample::default(),
                error: None,
            }],
            conn_rate: Vec::new(),
            many_rooms: vec![ManyRoomsRun::not_measured(Stack::Gateway, &config, reason)],
            gateway_sharded: Err("`gateway serve --help` lists no --adapter-mode".into()),
            shards: vec![ShardsRun::not_measured(
                Stack::Gateway,
                AdapterMode::Sharded,
                &config,
                "not measured: sharded mode not available in this build (probe)".into(),
            )],
            config,
        };
        let md = render(&results, "docs/bench");
        assert!(md.contains("**not available in this build** — probe: probe"));
        assert!(md.contains("not measured (no cluster mode in this build)"));
        assert!(
            md.contains("| 10,240 |"),
            "bytes per connection at 10k: {md}"
        );
        assert!(md.contains("not measured: open-file limit"));
        assert!(md.contains("not measured (open-file limit)"));
        assert!(md.contains("![Latency against offered load](docs/bench/latency.png)"));
        assert!(!md.contains("Quick-mode figures"));
        assert!(md.contains("| not measured: sharded mode not available in this build |"));
        assert!(
            md.contains("sharded mode (`--adapter-mode sharded`): **not available in this build**")
        );
    }

    #[test]
    fn ratio_needs_both_figures() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(num(None, 0), "—");
        assert_eq!(num(Some(f64::NAN), 0), "—");
    }
}
