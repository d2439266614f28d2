//! `ferrojob bench forward`: what one forwarded request costs against a direct one.
//!
//! Starts two servers of a cluster in this process (as `ferrojob-server --store URL --cluster`
//! would run, see [`super::cluster::start_member`]) sharing the database `--store`, waits
//! until the partitions settle, creates an app that the first server owns with one API job,
//! then sends `--requests` rounds of `GET /v1/apps/{app}/jobs/{id}`, one at a time on
//! kept-alive connections: in each round one request to the owner (direct) and one to the
//! other server (forwarded to the owner), in turns so that both see the same machine.
//! Prints p50/p99 of both and their ratio; the extra time is one more HTTP hop on
//! loopback plus the forwarding server's token check. The database should be a fresh one.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::CreateApp;
use ferrojob::client::Client;
use ferrojob::cluster::ServerId;
use ferrojob::time_expression::TimeExpressionType;

use super::cluster::{spread_apps, start_member, wait_settled, TOKEN};

/// `ferrojob bench forward` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardArgs {
    /// The PostgreSQL database the two servers share (`postgres://…`; a fresh one).
    #[arg(long)]
    store: String,
    /// Rounds of one direct and one forwarded request.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Runs the bench (see the module docs).
pub async fn forward(args: &ForwardArgs) -> Result<()> {
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let dir = tempfile::tempdir()?;
    let ids: Vec<ServerId> = (0..2)
        .map(|i| ServerId::new(&format!("fwd-{stamp}-{i}")))
        .collect::<Result<_, _>>()?;
    let mut servers = Vec::new();
    for id in &ids {
        let data = dir.path().join(id.as_str());
        servers.push(start_member(&args.store, id.as_str(), &data, 4000, false).await?);
    }
    let clients: Vec<Client> = servers
        .iter()
        .map(|s| Client::new(&format!("http://{}", s.http_addr()), TOKEN))
        .collect::<Result<_, _>>()?;
    let members: Vec<(&Client, &ServerId)> = clients.iter().zip(&ids).collect();
    wait_settled(&members, Duration::from_secs(60)).await?;
    let (app, owner) = spread_apps(&ids, 1)?
        .into_iter()
        .next()
        .context("no app name")?;
    let (direct, other) = (&clients[owner], &clients[1 - owner]);
    direct
        .create_app(&CreateApp {
            name: app.clone(),
            secret: "bench-forward-secret".into(),
        })
        .await?;
    let body = ferrojob::api::JobBody::new("forward", TimeExpressionType::Api, "", "noop");
    let started = Instant::now();
    let job = loop {
        match direct.create_job(&app, &body).await {
            Ok(c) => break c.id,
            Err(e) if started.elapsed() > Duration::from_secs(60) => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // Warm both paths: the client's connections and the forwarding server's pool.
    for _ in 0..50 {
        direct.get_job(&app, job).await?;
        other.get_job(&app, job).await?;
    }
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        let t = Instant::now();
        direct.get_job(&app, job).await?;
        d.push(t.elapsed());
        let t = Instant::now();
        other.get_job(&app, job).await?;
        f.push(t.elapsed());
    }
    d.sort_unstable();
    f.sort_unstable();
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    let (d50, d99, f50, f99) = (
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&f, 0.5),
        percentile(&f, 0.99),
    );
    println!(
        "GET job, {} rounds: direct p50 {:.0} µs p99 {:.0} µs; forwarded p50 {:.0} µs p99 {:.0} µs; \
         forwarded ÷ direct: p50 {:.2}×, p99 {:.2}×",
        args.requests,
        us(d50),
        us(d99),
        us(f50),
        us(f99),
        us(f50) / us(d50).max(1.0),
        us(f99) / us(d99).max(1.0),
    );
    for s in servers {
        s.shutdown().await;
    }
    Ok(())
}
