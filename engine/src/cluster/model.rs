//! Model test of ownership: several [`Ownership`] machines against a simulated database with
//! its own clock, on virtual time, from one seed.
//!
//! The database is the `leases` table's rules (`server::pg::lease`): acquire when free or
//! expired by the database's clock, epoch + 1 on every grant, renew only by the owner at its
//! epoch before expiry, release by the owner. The world around it is hostile while faults
//! last: every server's clock runs at its own rate (up to ±5 % off the database's) and
//! offset, messages are delayed, lost, or answered with an error, servers pause for up to
//! three leases (their clocks keep running, their messages wait), one joins late and one may
//! crash. Membership views reach each server on its own schedule, so views disagree for a
//! while.
//!
//! Checked after every step:
//! - whenever a machine may act for a partition, the database shows that machine as the
//!   partition's unexpired owner at the same epoch (the deadline rule), hence at most one
//!   machine acts for a partition at any instant;
//! - epochs acted with never go back per partition, and a different machine acts only with a
//!   greater epoch;
//!
//! and at the end, after faults stopped and the views settled: every partition is acted for
//! by exactly its preferred owner among the live servers.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// Microseconds of database time.
type DbUs = i64;

const STEP: DbUs = 5_000;
const LEASE_MS: u64 = 1_000;

fn config() -> OwnershipConfig {
    OwnershipConfig {
        lease: Duration::from_millis(LEASE_MS),
        safety_margin: Duration::from_millis(200),
        renew_every: Duration::from_millis(300),
        retry_every: Duration::from_millis(100),
        request_timeout: Duration::from_millis(200),
    }
}

/// SplitMix64: the simulation's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug)]
struct LeaseRow {
    owner: Option<usize>,
    epoch: u64,
    expires: DbUs,
}

struct Server {
    machine: Ownership,
    /// Local clock = offset + t + t * drift_ppm / 1e6.
    offset: i64,
    drift_ppm: i64,
    started: bool,
    crashed: bool,
    paused_until: DbUs,
    /// Messages that arrived while paused, in arrival order.
    inbox: Vec<Input>,
    next_view: DbUs,
}

impl Server {
    fn local(&self, t: DbUs) -> MonoUs {
        MonoUs(self.offset + t + t * self.drift_ppm / 1_000_000)
    }
    fn running(&self, t: DbUs) -> bool {
        self.started && !self.crashed && t >= self.paused_until
    }
}

enum Msg {
    ToDb { from: usize, command: Command },
    ToServer { to: usize, input: Input },
}

struct World {
    rng: Rng,
    t: DbUs,
    servers: Vec<Server>,
    leases: Vec<LeaseRow>,
    /// In-flight messages by (delivery time, sequence).
    wire: BTreeMap<(DbUs, u64), Msg>,
    seq: u64,
    faults: bool,
    /// Per partition: the greatest epoch acted with, and by whom.
    acted: Vec<Option<(Epoch, usize)>>,
    stats: Stats,
}

/// What happened in a run, to show that the faults were exercised.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    grants: u64,
    /// Grants to a server other than the previous owner of a partition that was acted for.
    takeovers: u64,
    /// Pauses longer than a lease.
    long_pauses: u64,
    lost_messages: u64,
    drains: u64,
    /// Renews refused: the lease had expired (after a pause, or lost renews).
    lost_leases: u64,
}

/// How a run is set up.
#[derive(Clone, Copy, Debug)]
struct Params {
    seed: u64,
    servers: usize,
    fault_ms: i64,
    calm_ms: i64,
    /// Largest clock rate difference, parts per million.
    max_drift_ppm: i64,
}

impl World {
    fn new(p: Params, config: OwnershipConfig) -> World {
        let mut rng = Rng(p.seed);
        let servers = (0..p.servers)
            .map(|i| {
                let machine =
                    Ownership::new(ServerId::new(&format!("s{i}")).unwrap(), config).unwrap();
                let drift = i64::try_from(rng.below(2 * p.max_drift_ppm as u64 + 1)).unwrap()
                    - p.max_drift_ppm;
                Server {
                    machine,
                    offset: i64::try_from(rng.below(1 << 40)).unwrap(),
                    drift_ppm: drift,
                    // The last server joins late.
                    started: i + 1 < p.servers,
                    crashed: false,
                    paused_until: 0,
                    inbox: Vec::new(),
                    next_view: 0,
                }
            })
            .collect();
        World {
            rng,
            t: 0,
            servers,
            leases: vec![
                LeaseRow {
                    owner: None,
                    epoch: 0,
                    expires: 0,
                };
                usize::from(PARTITION_COUNT)
            ],
            wire: BTreeMap::new(),
            seq: 0,
            faults: true,
            acted: vec![None; usize::from(PARTITION_COUNT)],
            stats: Stats::default(),
        }
    }

    fn send(&mut self, msg: Msg) {
        if self.faults && self.rng.chance(8) {
            self.stats.lost_messages += 1;
            return;
        }
        let delay = DbUs::try_from(self.rng.below(40_000)).unwrap();
        self.seq += 1;
        self.wire.insert((self.t + delay, self.seq), msg);
    }

    /// The servers a heartbeat table would list now: started, not crashed, not paused for
    /// longer than half a lease.
    fn live(&self) -> Vec<ServerId> {
        let half = i64::try_from(LEASE_MS).unwrap() * 500;
        self.servers
            .iter()
            .filter(|s| s.started && !s.crashed && self.t + half >= s.paused_until)
            .map(|s| s.machine.me().clone())
            .collect()
    }

    fn db(&mut self, from: usize, command: Command) -> Option<Input> {
        if self.faults && self.rng.chance(3) {
            return command.failed();
        }
        let now = self.t;
        let lease_us = |d: Duration| DbUs::try_from(d.as_micros()).unwrap();
        match command {
            Command::TryAcquire {
                request,
                partition,
                lease,
            } => {
                let row = &mut self.leases[partition.index()];
                if row.owner.is_none() || row.expires <= now {
                    let previous = self.acted[partition.index()].map(|(_, by)| by);
                    if previous.is_some_and(|by| by != from) {
                        self.stats.takeovers += 1;
                    }
                    row.owner = Some(from);
                    row.epoch += 1;
                    row.expires = now + lease_us(lease);
                    self.stats.grants += 1;
                    Some(Input::Acquired {
                        request,
                        partition,
                        epoch: Epoch(row.epoch),
                    })
                } else {
                    let owner = row.owner.map(|o| self.servers[o].machine.me().clone());
                    Some(Input::AcquireRefused {
                        request,
                        partition,
                        owner,
                        epoch: Epoch(row.epoch),
                    })
                }
            }
            Command::Renew {
                request,
                partition,
                epoch,
                lease,
            } => {
                let row = &mut self.leases[partition.index()];
                if row.owner == Some(from) && row.epoch == epoch.0 && row.expires > now {
                    row.expires = now + lease_us(lease);
                    Some(Input::Renewed { request, partition })
                } else {
                    Some(Input::RenewRefused { request, partition })
                }
            }
            Command::Release { partition, epoch } => {
                let row = &mut self.leases[partition.index()];
                if row.owner == Some(from) && row.epoch == epoch.0 {
                    row.owner = None;
                }
                None
            }
        }
    }

    /// Gives `input` to server `i` (or its inbox while it is paused), then sends what it
    /// asks for.
    fn deliver(&mut self, i: usize, input: Input) -> Result<(), String> {
        let t = self.t;
        let s = &mut self.servers[i];
        if !s.started || s.crashed {
            return Ok(());
        }
        if !s.running(t) {
            s.inbox.push(input);
            return Ok(());
        }
        let now = s.local(t);
        s.machine.handle(now, input);
        self.drain_outputs(i)
    }

    fn drain_outputs(&mut self, i: usize) -> Result<(), String> {
        while let Some(c) = self.servers[i].machine.poll_command() {
            self.send(Msg::ToDb {
                from: i,
                command: c,
            });
        }
        while let Some(e) = self.servers[i].machine.poll_event() {
            match e {
                Event::Drain { partition } => {
                    // The server stops at once and confirms after a while.
                    self.stats.drains += 1;
                    self.send(Msg::ToServer {
                        to: i,
                        input: Input::Stopped { partition },
                    });
                }
                Event::Acting { .. } | Event::Stop { .. } => {}
            }
        }
        self.check()
    }

    /// The safety invariants at this instant.
    fn check(&mut self) -> Result<(), String> {
        let t = self.t;
        for p in PartitionId::all() {
            let mut actor = None;
            for (i, s) in self.servers.iter().enumerate() {
                if !s.started || s.crashed {
                    continue;
                }
                let Some(epoch) = s.machine.may_act(p, s.local(t)) else {
                    continue;
                };
                let row = &self.leases[p.index()];
                if row.owner != Some(i) || row.epoch != epoch.0 || row.expires <= t {
                    return Err(format!(
                        "t={t}: s{i} acts for {p} at {epoch}, the database has {row:?}"
                    ));
                }
                if let Some(other) = actor.replace(i) {
                    return Err(format!("t={t}: s{other} and s{i} both act for {p}"));
                }
                let last = &mut self.acted[p.index()];
                match *last {
                    Some((e, _)) if epoch < e => {
                        return Err(format!("t={t}: s{i} acts for {p} at {epoch} after {e}"))
                    }
                    Some((e, by)) if epoch == e && by != i => {
                        return Err(format!("t={t}: s{i} and s{by} both acted at {epoch}"))
                    }
                    _ => *last = Some((epoch, i)),
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, p: Params) -> Result<(), String> {
        let t = self.t;
        // Faults: pauses, the late join, a crash.
        if self.faults {
            for i in 0..self.servers.len() {
                if self.rng.chance(1) && self.rng.chance(10) {
                    let pause = DbUs::try_from(self.rng.below(3 * LEASE_MS * 1000)).unwrap();
                    if pause > DbUs::try_from(LEASE_MS * 1000).unwrap() {
                        self.stats.long_pauses += 1;
                    }
                    self.servers[i].paused_until = self.servers[i].paused_until.max(t) + pause;
                }
            }
            if t == p.fault_ms * 300 {
                if let Some(s) = self.servers.last_mut() {
                    s.started = true;
                }
            }
            if t == p.fault_ms * 600 && p.seed.is_multiple_of(3) {
                self.servers[0].crashed = true;
            }
        }
        // Messages due.
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > t {
                break;
            }
            match entry.remove() {
                Msg::ToDb { from, command } => {
                    if let Some(answer) = self.db(from, command) {
                        self.send(Msg::ToServer {
                            to: from,
                            input: answer,
                        });
                    }
                }
                Msg::ToServer { to, input } => self.deliver(to, input)?,
            }
        }
        // Servers: inboxes after a pause, views, timers.
        for i in 0..self.servers.len() {
            if !self.servers[i].running(t) {
                continue;
            }
            for input in std::mem::take(&mut self.servers[i].inbox) {
                self.deliver(i, input)?;
            }
            if t >= self.servers[i].next_view {
                let live = self.live();
                self.servers[i].next_view = t + 250_000;
                self.deliver(i, Input::Membership(live))?;
            }
            let now = self.servers[i].local(t);
            if self.servers[i]
                .machine
                .poll_timeout()
                .is_some_and(|at| at <= now)
            {
                self.servers[i].machine.handle_timeout(now);
                self.drain_outputs(i)?;
            }
        }
        self.check()
    }
}

/// Runs one seed: faults, then calm; the error describes the first broken invariant.
fn run(p: Params, config: OwnershipConfig) -> Result<World, String> {
    let mut w = World::new(p, config);
    let fault_end = p.fault_ms * 1000;
    let end = fault_end + p.calm_ms * 1000;
    while w.t <= end {
        if w.t >= fault_end && w.faults {
            w.faults = false;
            for s in &mut w.servers {
                s.paused_until = s.paused_until.min(w.t);
            }
        }
        w.step(p)?;
        w.t += STEP;
    }
    Ok(w)
}

/// Liveness: every partition acted for by its preferred owner alone.
fn settled(w: &World) -> Result<(), String> {
    let live = w.live();
    for p in PartitionId::all() {
        let want = preferred_owner(p, &live).ok_or("no live server")?;
        let actors: Vec<&ServerId> = w
            .servers
            .iter()
            .filter(|s| s.started && !s.crashed)
            .filter(|s| s.machine.may_act(p, s.local(w.t)).is_some())
            .map(|s| s.machine.me())
            .collect();
        if actors != [want] {
            return Err(format!("{p}: acted for by {actors:?}, {want} preferred"));
        }
    }
    Ok(())
}

fn params(seed: u64, servers: usize) -> Params {
    Params {
        seed,
        servers,
        fault_ms: 20_000,
        calm_ms: 8_000,
        max_drift_ppm: 50_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn one_actor_per_partition_and_liveness(seed in any::<u64>(), servers in 2usize..6) {
        let p = params(seed, servers);
        let w = run(p, config()).map_err(|e| TestCaseError::fail(format!("{p:?}: {e}")))?;
        settled(&w).map_err(|e| TestCaseError::fail(format!("{p:?}: {e}")))?;
        prop_assert!(w.stats.grants >= u64::from(PARTITION_COUNT));
    }
}

/// The model is not vacuous: over a few fixed seeds, every kind of fault happened, and
/// partitions changed hands.
#[test]
fn faults_are_exercised() {
    let mut total = Stats::default();
    for seed in 0..6 {
        let w = run(params(seed, 4), config()).unwrap();
        settled(&w).unwrap();
        let s = w.stats;
        total.lost_leases += w.servers.iter().map(|s| s.machine.lost()).sum::<u64>();
        total.grants += s.grants;
        total.takeovers += s.takeovers;
        total.long_pauses += s.long_pauses;
        total.lost_messages += s.lost_messages;
        total.drains += s.drains;
    }
    eprintln!("{total:?}");
    assert!(total.takeovers > 0 && total.long_pauses > 0 && total.lost_messages > 0);
    assert!(total.drains > 0 && total.lost_leases > 0);
}

/// The checker is not blind: without a safety margin, and with clocks far slower than the
/// database's, some seed lets two servers act at once (or one act on an expired lease).
#[test]
fn without_a_margin_the_invariant_breaks() {
    let unsafe_config = OwnershipConfig {
        safety_margin: Duration::ZERO,
        ..config()
    };
    let broken = (0..40u64).find(|&seed| {
        let p = Params {
            max_drift_ppm: 300_000,
            ..params(seed, 3)
        };
        match run(p, unsafe_config) {
            Ok(_) => false,
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                true
            }
        }
    });
    assert!(broken.is_some(), "no seed broke the unsafe configuration");
}
