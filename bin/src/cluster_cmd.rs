//! `ferrojob cluster status --store postgres://…`: the servers of a cluster and who holds
//! which partition, read straight from the database (so it works with every server down).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ferrojob::cluster::PARTITION_COUNT;
use ferrojob::server::pg::lease::{self, LeaseRow, ServerRow};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// The servers (live or not, their addresses and HTTP URL, when their heartbeat expires)
    /// and every partition's owner, epoch and lease expiry, by the database's clock.
    Status {
        /// The cluster's database (the servers' `--store`).
        #[arg(long, env = "FERROJOB_STORE")]
        store: String,
    },
}

/// Runs the command.
pub fn run(cmd: &ClusterCmd, json: bool) -> Result<()> {
    let ClusterCmd::Status { store } = cmd;
    let (servers, leases) = super::remote::runtime()?.block_on(async {
        let client = lease::connect(store)
            .await
            .context("connecting to the cluster's database")?;
        let servers = lease::all_servers(&client)
            .await
            .context("reading cluster_servers (has a server run on this database?)")?;
        let leases = lease::leases(&client).await.context("reading the leases")?;
        anyhow::Ok((servers, leases))
    })?;
    if json {
        println!("{}", status_json(&servers, &leases));
    } else {
        print!("{}", status_text(&servers, &leases));
    }
    Ok(())
}

fn status_json(servers: &[ServerRow], leases: &[LeaseRow]) -> serde_json::Value {
    json!({
        "servers": servers.iter().map(|s| json!({
            "id": s.id.as_str(),
            "live": s.expires_in_ms > 0,
            "addresses": s.addresses,
            "http_url": s.http_url,
            "expires_in_ms": s.expires_in_ms,
        })).collect::<Vec<_>>(),
        "partitions": leases.iter().map(|l| json!({
            "partition": l.partition.get(),
            "owner": l.owner.as_ref().map(|o| o.as_str()),
            "epoch": l.epoch.0,
            "live": l.is_live(),
            "expires_in_ms": l.expires_in_ms,
        })).collect::<Vec<_>>(),
        "partition_count": PARTITION_COUNT,
    })
}

fn status_text(servers: &[ServerRow], leases: &[LeaseRow]) -> String {
    let mut out = String::new();
    let live = servers.iter().filter(|s| s.expires_in_ms > 0).count();
    out.push_str(&format!("servers: {live} live of {}\n", servers.len()));
    for s in servers {
        let state = if s.expires_in_ms > 0 {
            format!("live, heartbeat expires in {} ms", s.expires_in_ms)
        } else {
            format!(
                "gone, heartbeat expired {} ms ago",
                s.expires_in_ms.saturating_neg()
            )
        };
        let http = s
            .http_url
            .as_deref()
            .map_or_else(|| "no HTTP URL".to_owned(), |u| format!("HTTP {u}"));
        out.push_str(&format!(
            "  {:<24} {state}  {}  {http}\n",
            s.id.as_str(),
            s.addresses.join(",")
        ));
    }
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut expired, mut released) = (0, 0);
    for l in leases {
        match (&l.owner, l.is_live()) {
            (Some(o), true) => *owned.entry(o.as_str()).or_default() += 1,
            (Some(_), false) => expired += 1,
            (None, _) => released += 1,
        }
    }
    let never = usize::from(PARTITION_COUNT).saturating_sub(leases.len());
    let by_owner: Vec<String> = owned.iter().map(|(o, n)| format!("{o}: {n}")).collect();
    out.push_str(&format!(
        "partitions: {PARTITION_COUNT} ({}; expired: {expired}, released: {released}, never granted: {never})\n",
        if by_owner.is_empty() {
            "none held".to_owned()
        } else {
            by_owner.join(", ")
        }
    ));
    out.push_str("  partition  owner                     epoch  lease\n");
    for l in leases {
        let lease = match (l.owner.is_some(), l.expires_in_ms) {
            (false, _) | (_, None) => "released".to_owned(),
            (true, Some(ms)) if ms > 0 => format!("expires in {ms} ms"),
            (true, Some(ms)) => format!("expired {} ms ago", ms.saturating_neg()),
        };
        out.push_str(&format!(
            "  {:<9}  {:<24}  {:>5}  {lease}\n",
            l.partition.get(),
            l.owner.as_ref().map_or("-", |o| o.as_str()),
            l.epoch.0
        ));
    }
    out
}
