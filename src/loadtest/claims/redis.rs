//! Redis outside the scripts: its memory use, and deleting a run's keys.

use crate::batch::{BatchError, Batcher};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{InfoKind, Key};
use futures::{Stream, TryStreamExt};
use std::collections::BTreeMap;

/// `used_memory` of the Redis, summed over a cluster's masters.
pub(super) async fn used_memory(batcher: &Batcher) -> Result<i64, BatchError> {
    let client = batcher.pool().next();
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

/// SCANs for every key under `prefix` (on every master of a cluster) and UNLINKs
/// them, one call per hash slot, since a cluster refuses a call across slots.
pub(super) async fn delete_keys(batcher: &Batcher, prefix: &str) -> Result<(), BatchError> {
    let client = batcher.pool().next();
    let pattern = format!("{prefix}*");
    let keys = if client.is_clustered() {
        collect(client.scan_cluster_buffered(pattern, Some(1000), None)).await?
    } else {
        collect(client.scan_buffered(pattern, Some(1000), None)).await?
    };
    let mut by_slot: BTreeMap<u16, Vec<Key>> = BTreeMap::new();
    for key in keys {
        by_slot.entry(key.cluster_hash()).or_default().push(key);
    }
    for keys in by_slot.into_values() {
        for chunk in keys.chunks(1000) {
            client.unlink::<(), _>(chunk.to_vec()).await?;
        }
    }
    Ok(())
}

async fn collect(
    keys: impl Stream<Item = Result<Key, fred::error::Error>>,
) -> Result<Vec<Key>, BatchError> {
    Ok(keys.try_collect().await?)
}
