//! Cluster-wide statistics: every live node's record and the totals, for `GET /cluster/stats`,
//! the admin `get stats` event and `gateway cluster-stats`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::StateResult;
use crate::stats::{Load, NodeRegistry, NodeStats};

/// Sums over every live node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTotals {
    /// Live nodes.
    pub nodes: u64,
    /// Sums of the nodes' loads.
    #[serde(flatten)]
    pub load: Load,
}

/// `{ nodes: [...], totals: {...} }`, the body of `GET /cluster/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStats {
    /// One record per live node, sorted by `serverId`.
    pub nodes: Vec<NodeStats>,
    /// Sums over `nodes`.
    pub totals: ClusterTotals,
}

/// Reads every live node's record from the registry and adds them up.
pub async fn cluster_stats(registry: &dyn NodeRegistry) -> StateResult<ClusterStats> {
    Ok(ClusterStats::from_nodes(registry.live_nodes().await?))
}

impl ClusterStats {
    /// Totals over the given records.
    pub fn from_nodes(mut nodes: Vec<NodeStats>) -> Self {
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        let mut t = ClusterTotals {
            nodes: nodes.len() as u64,
            ..ClusterTotals::default()
        };
        for n in &nodes {
            t.load.add(&n.load);
        }
        Self { nodes, totals: t }
    }

    /// Pretty JSON, for `gateway cluster-stats --json`.
    pub fn to_json_pretty(&self) -> String {
        // Serialising these plain records cannot fail (string keys, no maps with other keys).
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A table for people, one line per node and a totals line.
    pub fn render_table(&self) -> String {
        let header = [
            "SERVER",
            "HOSTNAME",
            "VERSION",
            "UPTIME",
            "MAIN",
            "CHAT",
            "GAME",
            "ADMIN",
            "TOTAL",
            "ROOMS",
            "MSG IN",
            "MSG OUT",
            "RSS MB",
            "LAST SEEN",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
        // Who the row is about, its load, and when the node was last seen.
        let row = |who: [String; 4], load: &Load, seen: String| -> Vec<String> {
            let c = &load.connections;
            let mut row = who.to_vec();
            row.extend([
                c.main.to_string(),
                c.chat.to_string(),
                c.game.to_string(),
                c.admin.to_string(),
                load.total_connections.to_string(),
                load.rooms.to_string(),
                load.messages_in.to_string(),
                load.messages_out.to_string(),
                megabytes(load.rss_bytes),
                seen,
            ]);
            row
        };
        for n in &self.nodes {
            let who = [
                n.server_id.clone(),
                n.hostname.clone(),
                n.version.clone(),
                human_duration(n.uptime_secs),
            ];
            rows.push(row(
                who,
                &n.load,
                n.last_seen.format("%H:%M:%S").to_string(),
            ));
        }
        let t = &self.totals;
        let who = [
            format!("TOTAL ({} nodes)", t.nodes),
            String::new(),
            String::new(),
            String::new(),
        ];
        rows.push(row(who, &t.load, String::new()));
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        out
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::memory::MemoryNodes;
    use crate::stats::NamespaceConnections;
    use crate::test_support::node_stats;

    fn node(id: &str, main: u64, chat: u64) -> NodeStats {
        let connections = NamespaceConnections {
            main,
            chat,
            game: 1,
            admin: 0,
        };
        node_stats(id, connections)
    }

    #[tokio::test]
    async fn totals_add_up_over_the_registry() {
        let reg = MemoryNodes::default();
        reg.publish(&node("b", 3, 1)).await.unwrap();
        reg.publish(&node("a", 2, 0)).await.unwrap();
        let stats = cluster_stats(&reg).await.unwrap();
        assert_eq!(stats.nodes.len(), 2);
        assert_eq!(stats.nodes[0].server_id, "a");
        let t = &stats.totals;
        assert_eq!(t.nodes, 2);
        let t = &t.load;
        assert_eq!(t.connections.main, 5);
        assert_eq!(t.connections.chat, 1);
        assert_eq!(t.connections.game, 2);
        assert_eq!(t.total_connections, 8);
        assert_eq!((t.rooms, t.messages_in, t.messages_out), (4, 20, 40));
        assert_eq!(t.rss_bytes, 20 * 1024 * 1024);
    }

    #[test]
    fn json_and_table_renderings() {
        let stats = ClusterStats::from_nodes(vec![node("n1", 4, 0), node("node-two", 1, 1)]);
        let v: serde_json::Value = serde_json::from_str(&stats.to_json_pretty()).unwrap();
        assert_eq!(v["nodes"][0]["serverId"], "n1");
        assert_eq!(v["totals"]["totalConnections"], 8);
        assert_eq!(v["totals"]["connections"]["main"], 5);
        let table = stats.render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("SERVER"));
        assert!(lines[1].starts_with("n1 "));
        assert!(lines[1].contains("1h2m"));
        assert!(lines[2].starts_with("node-two"));
        assert!(lines[3].starts_with("TOTAL (2 nodes)"));
        assert!(lines[3].contains("20.0"));
        let col = lines[0].find("HOSTNAME").unwrap();
        assert_eq!(&lines[1][col..col + 7], "host-n1", "columns line up");
        assert!(
            ClusterStats::from_nodes(vec![])
                .render_table()
                .contains("TOTAL (0 nodes)")
        );
    }
}
