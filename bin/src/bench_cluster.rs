//! What the cluster benches share: servers of a cluster started in this process, apps named
//! so that their partitions are owned by different servers, and waiting until every
//! partition sits with its rendezvous owner.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::client::Client;
use ferrojob::cluster::{partition_of, preferred_owner, PartitionId, ServerId};
use ferrojob::launch::{launch, RunningServer};
use ferrojob_bin::server_config::{FileConfig, ServerArgs};

/// The admin token of the servers the cluster benches start.
pub(super) const TOKEN: &str = "bench-admin-token-0123456789";

/// A loopback address with a port free now (bound, read, released): a server of a cluster
/// announces the addresses it was given, so port 0 will not do.
pub(super) fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("finding a free port")
}

/// Starts, in this process, the server `id` of the cluster sharing the PostgreSQL database
/// at `url`, configured as `ferrojob-server --store URL --cluster --server-id ID --lease-ms
/// LEASE` would be, with `data_dir` holding its admin token, every instance kept and the
/// OpenAPI unthrottled (the bench's load must not be rate limited). `per_write` commits every
/// write in a transaction of its own (the baseline).
pub(super) async fn start_member(
    url: &str,
    id: &str,
    data_dir: &Path,
    lease_ms: u64,
    per_write: bool,
) -> Result<RunningServer> {
    let args = ServerArgs {
        data_dir: Some(data_dir.to_path_buf()),
        http: Some(free_port()?),
        listen: Some(free_port()?),
        store: Some(url.to_owned()),
        cluster: true,
        server_id: Some(id.to_owned()),
        lease_ms: Some(lease_ms),
        admin_token: Some(TOKEN.to_owned()),
        api_rate_per_sec: Some(0),
        http_connections_per_min: Some(0),
        ..ServerArgs::default()
    };
    let mut config = args.merge(FileConfig::default())?;
    if let ferrojob::server::StoreChoice::Postgres { options, .. } = &mut config.core.store {
        if per_write {
            options.max_batch_writes = 1;
        }
    }
    // Keep every instance: the bench reads them all back.
    config.core.keep_finished_runs = usize::MAX;
    launch(config)
        .await
        .with_context(|| format!("starting cluster server {id}"))
}

/// `count` app names (`bench-app-K`) whose partitions' preferred owners among `servers` take
/// turns: the i-th name's partition prefers `servers[i % servers.len()]`. Each answer is
/// `(name, index of its preferred owner)`.
pub(super) fn spread_apps(servers: &[ServerId], count: usize) -> Result<Vec<(String, usize)>> {
    spread_apps_named(servers, count, "bench-app")
}

/// [`spread_apps`] with names `{prefix}-K`.
pub(super) fn spread_apps_named(
    servers: &[ServerId],
    count: usize,
    prefix: &str,
) -> Result<Vec<(String, usize)>> {
    if servers.is_empty() {
        bail!("no servers to spread apps over");
    }
    let mut out = Vec::with_capacity(count);
    let mut k = 0u64;
    while out.len() < count {
        let want = out.len() % servers.len();
        // A partition prefers each server with probability 1/n: a few tries per app.
        let found = (0..10_000).find_map(|_| {
            let name = format!("{prefix}-{k}");
            k += 1;
            let owner = preferred_owner(partition_of(&name), servers)?;
            (servers.get(want) == Some(owner)).then_some(name)
        });
        match found {
            Some(name) => out.push((name, want)),
            None => bail!("no app name found whose partition prefers server {want}"),
        }
    }
    Ok(out)
}

/// The index in `servers` of the server that should act for `app` now.
pub(super) fn owner_of(app: &str, servers: &[ServerId]) -> Option<usize> {
    let owner = preferred_owner(partition_of(app), servers)?;
    servers.iter().position(|s| s == owner)
}

/// The partitions a server says it acts for (`ferrojob_cluster_partitions_owned`).
async fn owned(client: &Client) -> Option<u64> {
    let text = client.metrics().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ferrojob_cluster_partitions_owned "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits up to `timeout` until every server of `servers` (its API client and id) acts for
/// exactly the partitions that rendezvous among them gives it.
pub(super) async fn wait_settled(
    servers: &[(&Client, &ServerId)],
    timeout: Duration,
) -> Result<()> {
    let ids: Vec<ServerId> = servers.iter().map(|(_, id)| (*id).clone()).collect();
    let started = Instant::now();
    loop {
        let mut settled = true;
        for (client, id) in servers {
            let share = PartitionId::all()
                .filter(|p| preferred_owner(*p, &ids) == Some(*id))
                .count() as u64;
            if owned(client).await != Some(share) {
                settled = false;
                break;
            }
        }
        if settled {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("the partitions did not settle on their owners within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_spread_over_their_preferred_owners_in_turn() {
        let servers: Vec<ServerId> = ["a", "b", "c"]
            .iter()
            .map(|s| ServerId::new(s).unwrap())
            .collect();
        let apps = spread_apps(&servers, 6).unwrap();
        assert_eq!(apps.len(), 6);
        for (i, (name, owner)) in apps.iter().enumerate() {
            assert_eq!(*owner, i % 3);
            assert_eq!(owner_of(name, &servers), Some(*owner));
        }
        assert!(spread_apps(&[], 1).is_err());
        assert_eq!(owner_of("x", &[]), None);
    }
}
