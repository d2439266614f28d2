//! The servers a worker may connect to, and the order it tries them in: a pure rotation that
//! the session feeds the outcome of each attempt and that answers where to go next and how
//! soon ([`Retry`]).
//!
//! ```text
//!   round: try each address once, each failure moving on at once
//!          (a refusal that names the owner goes to the owner next)
//!   round over (as many failures as addresses):
//!          a server answered "not served here"  → Retry::Handoff (short backoff)
//!          otherwise (unreachable, other errors) → Retry::Backoff
//! ```
//!
//! A connection that lasted at least [`STABLE_CONNECTION`] starts a fresh round when it
//! ends; a shorter one counts as a failed attempt of the current round, so a server that
//! accepts and drops a worker at once cannot make it spin. A refusal that names the server
//! that refused (it is the owner to be, not acting yet) ends the round at once and keeps
//! that server: the worker comes back to it after the short backoff.

use std::net::SocketAddr;

use super::core::Retry;
use crate::time_expression::EpochMs;

/// A connection that lasted at least this long (milliseconds) was a working one: when it
/// ends, the worker starts a fresh round over the servers.
pub(crate) const STABLE_CONNECTION: EpochMs = 1000;

/// How an attempt to connect ended, as far as the rotation cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered that it does not serve the app; `owner` is the server it named
    /// (the owner's worker address, when it knows one).
    NotServed { owner: Option<String> },
    /// Anything else: unreachable, refused handshake, timeout.
    Other,
}

/// The servers a worker may connect to: the configured one first, the cluster's others in
/// turn (see the module docs).
#[derive(Debug)]
pub(crate) struct Servers {
    all: Vec<SocketAddr>,
    at: usize,
    /// Failed attempts in the current round.
    failed: usize,
    /// Whether a server of the current round answered that another one serves the app.
    not_served: bool,
    /// When the current connection came up.
    connected_at: Option<EpochMs>,
}

impl Servers {
    pub(crate) fn new(first: SocketAddr, others: &[SocketAddr]) -> Servers {
        let mut all = vec![first];
        for s in others {
            if !all.contains(s) {
                all.push(*s);
            }
        }
        Servers {
            all,
            at: 0,
            failed: 0,
            not_served: false,
            connected_at: None,
        }
    }

    /// The address to try now.
    pub(crate) fn current(&self) -> SocketAddr {
        self.all
            .get(self.at)
            .or_else(|| self.all.first())
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The connection to [`current`](Self::current) came up at `now`.
    pub(crate) fn connected(&mut self, now: EpochMs) {
        self.connected_at = Some(now);
    }

    /// The connection ended at `now`: the next attempt goes to the next server.
    pub(crate) fn lost(&mut self, now: EpochMs) -> Retry {
        let lasted = self
            .connected_at
            .take()
            .is_some_and(|t| now.saturating_sub(t) >= STABLE_CONNECTION);
        if lasted {
            self.failed = 0;
            self.not_served = false;
        }
        self.fail(None)
    }

    /// An attempt to connect to [`current`](Self::current) failed.
    pub(crate) fn failed(&mut self, failure: Failure) -> Retry {
        self.connected_at = None;
        match failure {
            Failure::NotServed { owner } => {
                self.not_served = true;
                let named = owner.as_deref().and_then(|o| self.position(o));
                if named == Some(self.at) {
                    // The server named itself: it is about to serve the app.
                    self.failed = 0;
                    self.not_served = false;
                    return Retry::Handoff;
                }
                self.fail(named)
            }
            Failure::Other => self.fail(None),
        }
    }

    /// Counts a failure and moves to `to` (else the next address in turn).
    fn fail(&mut self, to: Option<usize>) -> Retry {
        self.failed = self.failed.saturating_add(1);
        let n = self.all.len().max(1);
        self.at = to.unwrap_or((self.at + 1) % n);
        if self.failed < n {
            return Retry::Now;
        }
        self.failed = 0;
        if std::mem::take(&mut self.not_served) {
            Retry::Handoff
        } else {
            Retry::Backoff
        }
    }

    /// The index of the address a refusal named: the same address, or, for an owner that
    /// announced an unspecified host (`0.0.0.0:port`), the only address with that port.
    fn position(&self, owner: &str) -> Option<usize> {
        let owner: SocketAddr = owner.parse().ok()?;
        if let Some(i) = self.all.iter().position(|s| *s == owner) {
            return Some(i);
        }
        if !owner.ip().is_unspecified() {
            return None;
        }
        let mut same_port = self
            .all
            .iter()
            .enumerate()
            .filter(|(_, s)| s.port() == owner.port());
        match (same_port.next(), same_port.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn refused(owner: Option<&str>) -> Failure {
        Failure::NotServed {
            owner: owner.map(str::to_owned),
        }
    }

    #[test]
    fn a_worker_tries_the_owner_a_server_names_else_the_next_server_in_turn() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let mut s = Servers::new(a, &[b, c, a]);
        assert_eq!(s.current(), a);
        assert_eq!(s.failed(refused(Some("127.0.0.1:3"))), Retry::Now);
        assert_eq!(s.current(), c);
        // An owner that is not one of the addresses (a server id that is a name): in turn.
        assert_eq!(s.failed(refused(Some("server-7"))), Retry::Now);
        assert_eq!(s.current(), a);
        // A single server: always that one.
        let mut one = Servers::new(a, &[]);
        assert_eq!(one.failed(Failure::Other), Retry::Backoff);
        assert_eq!(one.current(), a);
    }

    #[test]
    fn a_round_goes_on_at_once_and_backs_off_only_when_every_address_failed() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let mut s = Servers::new(a, &[b, c]);
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Backoff);
        assert_eq!(s.current(), a, "the next round starts where the last ended");
        // A round in which a server said another one serves the app: the short backoff.
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(refused(None)), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Handoff);
        // ... and the round after it starts afresh.
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Backoff);
    }

    #[test]
    fn refusals_that_name_each_other_still_end_the_round() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let mut s = Servers::new(a, &[b, c]);
        // a names b, b names a, a names b: three attempts, then the backoff.
        assert_eq!(s.failed(refused(Some("127.0.0.1:2"))), Retry::Now);
        assert_eq!(s.current(), b);
        assert_eq!(s.failed(refused(Some("127.0.0.1:1"))), Retry::Now);
        assert_eq!(s.current(), a);
        assert_eq!(s.failed(refused(Some("127.0.0.1:2"))), Retry::Handoff);
        assert_eq!(s.current(), b);
    }

    #[test]
    fn a_server_that_names_itself_is_tried_again_after_the_short_backoff() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let mut s = Servers::new(a, &[b, c]);
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.current(), b);
        assert_eq!(s.failed(refused(Some("127.0.0.1:2"))), Retry::Handoff);
        assert_eq!(s.current(), b);
        // A fresh round from there.
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Now);
        assert_eq!(s.failed(Failure::Other), Retry::Backoff);
    }

    #[test]
    fn losing_a_working_connection_moves_on_at_once_but_a_flapping_one_backs_off() {
        let (a, b) = (addr(1), addr(2));
        let mut s = Servers::new(a, &[b]);
        s.connected(0);
        assert_eq!(s.lost(STABLE_CONNECTION), Retry::Now);
        assert_eq!(s.current(), b);
        // b accepts and drops the worker at once, twice: the second ends the round.
        s.connected(2000);
        assert_eq!(s.lost(2001), Retry::Backoff);
        assert_eq!(s.current(), a);
        // A single server that was lost after working: the backoff, as before.
        let mut one = Servers::new(a, &[]);
        one.connected(0);
        assert_eq!(one.lost(60_000), Retry::Backoff);
    }

    #[test]
    fn an_owner_announced_on_an_unspecified_host_is_matched_by_its_port() {
        let (a, b) = (addr(1), SocketAddr::from(([10, 0, 0, 2], 2)));
        let mut s = Servers::new(a, &[b]);
        assert_eq!(s.failed(refused(Some("0.0.0.0:2"))), Retry::Now);
        assert_eq!(s.current(), b);
        // Two addresses with that port: not guessed, in turn.
        let c = SocketAddr::from(([10, 0, 0, 3], 2));
        let mut s = Servers::new(a, &[b, c]);
        assert_eq!(s.failed(refused(Some("0.0.0.0:2"))), Retry::Now);
        assert_eq!(s.current(), b);
        assert_eq!(s.failed(refused(Some("0.0.0.0:2"))), Retry::Now);
        assert_eq!(s.current(), c);
    }
}
