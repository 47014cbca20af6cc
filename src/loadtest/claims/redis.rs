//! Redis outside the scripts: its memory use.

use crate::batch::{BatchError, RedisBatches};
use fred::interfaces::ClientLike;
use fred::types::InfoKind;

/// `used_memory` of the Redis, summed over a cluster's masters.
pub(super) async fn used_memory(redis_batches: &RedisBatches) -> Result<i64, BatchError> {
    let client = redis_batches.pool().next();
    let mut infos: Vec<String> = Vec::new();
    if client.is_clustered() {
        // A cluster client holds one connection per master.
        for node in client.active_connections() {
            let node = client.with_cluster_node(node);
            infos.push(node.info(Some(InfoKind::Memory)).await?);
        }
    } else {
        infos.push(client.info(Some(InfoKind::Memory)).await?);
    }
    Ok(infos
        .iter()
        .flat_map(|info| info.lines())
        .filter_map(|line| line.strip_prefix("used_memory:"))
        .filter_map(|bytes| bytes.trim().parse::<i64>().ok())
        .sum())
}
