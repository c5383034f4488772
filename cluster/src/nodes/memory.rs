//! Node registry of a single node.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{NodeRegistry, NodeStats};
use crate::error::StateResult;
use crate::lock::lock;

/// Node registry of a single node: it only ever knows itself.
#[derive(Debug, Default)]
pub struct MemoryNodes {
    nodes: Mutex<HashMap<String, NodeStats>>,
}

#[async_trait]
impl NodeRegistry for MemoryNodes {
    async fn publish(&self, stats: &NodeStats) -> StateResult<()> {
        lock(&self.nodes).insert(stats.server_id.clone(), stats.clone());
        Ok(())
    }

    async fn withdraw(&self, server_id: &str) -> StateResult<()> {
        lock(&self.nodes).remove(server_id);
        Ok(())
    }

    async fn live_nodes(&self) -> StateResult<Vec<NodeStats>> {
        let mut nodes: Vec<_> = lock(&self.nodes).values().cloned().collect();
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        Ok(nodes)
    }
}
