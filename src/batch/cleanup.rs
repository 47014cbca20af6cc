//! Deleting every key under a prefix: what a load test, a benchmark or a test run
//! leaves in a Redis it shares with others. SCAN + UNLINK, never FLUSHDB.

use super::BatchError;
use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::Key;
use futures::{Stream, TryStreamExt};
use std::collections::BTreeMap;

/// SCANs for every key under `prefix` (on every master of a cluster) and UNLINKs
/// them, one call per hash slot, since a cluster refuses a call across slots.
pub async fn delete_keys(client: &Client, prefix: &str) -> Result<(), BatchError> {
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

/// [`delete_keys`] on a connection of its own to `redis_url`, closed after: for a
/// test or a benchmark that ends after its app's connections are gone.
pub async fn delete_keys_at(redis_url: &str, prefix: &str) -> Result<(), BatchError> {
    let config = fred::types::config::Config::from_url(redis_url)?;
    let client = fred::types::Builder::from_config(config).build()?;
    client.init().await?;
    let deleted = delete_keys(&client, prefix).await;
    client.quit().await?;
    deleted
}

async fn collect(
    keys: impl Stream<Item = Result<Key, fred::error::Error>>,
) -> Result<Vec<Key>, BatchError> {
    Ok(keys.try_collect().await?)
}
