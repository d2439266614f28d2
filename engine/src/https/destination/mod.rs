//! Where the worker's `http` processor and the server's alarm webhooks may send requests.
//!
//! A job's URL is chosen by whoever may create or run the job, and the request leaves from
//! the worker's network position: without a check, `http://169.254.169.254/` reads the
//! cloud's instance metadata (credentials), `http://127.0.0.1:…/` reaches services bound to
//! the worker's loopback, and `http://10.…/` the private network behind it. An alarm
//! channel's URL is chosen by an app's admin and posted to from the server's position, which
//! every app shares. So both refuse these ranges unless the operator allows them
//! ([`DestinationPolicy`]: the worker's `--http-allow`, the server's `--alarm-allow`):
//!
//! | range | IPv4 | IPv6 |
//! |---|---|---|
//! | [`RestrictedRange::Unspecified`] | `0.0.0.0/8` | `::` |
//! | [`RestrictedRange::Loopback`] | `127.0.0.0/8` | `::1` |
//! | [`RestrictedRange::LinkLocal`] | `169.254.0.0/16` (cloud metadata services) | `fe80::/10` |
//! | [`RestrictedRange::Private`] | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` | `fc00::/7` (unique local), `fec0::/10` (site local) |
//! | [`RestrictedRange::SharedAddressSpace`] | `100.64.0.0/10` (carrier-grade NAT) | – |
//! | [`RestrictedRange::Multicast`] | `224.0.0.0/4` | `ff00::/8` |
//! | [`RestrictedRange::Reserved`] | `240.0.0.0/4` | – |
//! | [`RestrictedRange::Broadcast`] | `255.255.255.255` | – |
//!
//! An IPv6 address that carries an IPv4 one (`::ffff:127.0.0.1` mapped, `::127.0.0.1`
//! compatible, `64:ff9b::7f00:1` NAT64) is judged by the IPv4 address.
//!
//! What is checked is the address the connection goes to, never the name in the URL alone:
//! - a host name is resolved by `CheckedResolver`, which hands the client only the
//!   addresses that pass, so the connection goes to an address that was checked (a name
//!   that resolves to a public address first and to `127.0.0.1` on the connect cannot slip
//!   through: there is only one resolution);
//! - an IP address in the URL is never resolved, so [`DestinationPolicy::check_url`] checks it
//!   before the request;
//! - every redirect hop is checked the same way ([`check_redirect`]), and an `https://` chain
//!   never continues over `http://`;
//! - proxies from the environment are not used (a proxy would make the connection for us).

use std::net::IpAddr;
use std::sync::Arc;

mod range;

pub use range::{canonical, restricted_range, IpNetwork, RestrictedRange};

/// Redirects one request follows at most.
pub const MAX_REDIRECTS: usize = 5;

/// Addresses of one host name kept from a DNS answer at most.
pub(crate) const MAX_RESOLVED: usize = 32;

/// One exception to the refused ranges (`ferrojob-worker --http-allow`,
/// `WorkerConfig::http_allow`). Public addresses need none: they are always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowedDestination {
    /// Any address in this network (`10.0.0.0/8`; a bare address is its own network,
    /// `127.0.0.1` = `127.0.0.1/32`), whatever name or URL led to it.
    Network(IpNetwork),
    /// This host name exactly (lowercase, no trailing dot; subdomains are other names):
    /// whatever addresses it resolves to. Trusts the DNS for that name.
    Host(String),
}

impl std::fmt::Display for AllowedDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedDestination::Network(n) => n.fmt(f),
            AllowedDestination::Host(h) => f.write_str(h),
        }
    }
}

/// A `--http-allow` value that is neither a network nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a network (10.0.0.0/8, 127.0.0.1, fd00::/8) or a host name (metrics.internal)"
)]
pub struct BadAllowedDestination(pub String);

impl std::str::FromStr for AllowedDestination {
    type Err = BadAllowedDestination;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadAllowedDestination(s.to_string());
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let bare = addr.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let prefix = match prefix {
                Some(p) => p.parse::<u8>().map_err(|_| bad())?,
                None if ip.is_ipv4() => 32,
                None => 128,
            };
            return IpNetwork::new(ip, prefix)
                .map(AllowedDestination::Network)
                .ok_or_else(bad);
        }
        let host = normalize_host(text);
        let valid = prefix.is_none()
            && !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Ok(AllowedDestination::Host(host))
        } else {
            Err(bad())
        }
    }
}

/// A host name as compared: lowercase, without the trailing dot of a fully qualified name.
fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Why a connection somewhere was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DestinationRefused {
    /// The host name that resolved to `ip`; `None` when the URL named `ip` itself.
    pub host: Option<String>,
    /// The refused address.
    pub ip: IpAddr,
    /// Its range.
    pub range: RestrictedRange,
    /// Who may allow it, and how: `the worker with --http-allow`.
    pub allowed_by: &'static str,
}

impl std::fmt::Display for DestinationRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "destination {host} ({})", self.ip)?,
            None => write!(f, "destination {}", self.ip)?,
        }
        write!(
            f,
            " is {}; refused (start {} to permit it)",
            self.range, self.allowed_by
        )
    }
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectRefused {
    /// The next hop's address is refused.
    #[error("redirect to {to}: {refused}")]
    Destination {
        /// The next hop's URL.
        to: String,
        /// Why.
        refused: DestinationRefused,
    },
    /// The chain was on `https://` and the next hop is `http://`.
    #[error("redirect from https:// to {to} refused (no downgrade to plain http)")]
    Downgrade {
        /// The next hop's URL.
        to: String,
    },
    /// The next hop is not `http://` or `https://`.
    #[error("redirect to {to}: not an http:// or https:// URL")]
    Scheme {
        /// The next hop's URL.
        to: String,
    },
    /// [`MAX_REDIRECTS`] were followed already.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// Which destinations a client may connect to: public addresses, and restricted
/// ones only when an [`AllowedDestination`] permits them. The default allows none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    allow: Vec<AllowedDestination>,
    /// Named in refusals: who may allow more, and how.
    allowed_by: &'static str,
}

impl Default for DestinationPolicy {
    fn default() -> DestinationPolicy {
        DestinationPolicy::new([])
    }
}

impl DestinationPolicy {
    /// The `http` processor's: the default refusals, with these exceptions (the worker's
    /// `--http-allow`).
    pub fn new(allow: impl IntoIterator<Item = AllowedDestination>) -> DestinationPolicy {
        DestinationPolicy {
            allow: allow.into_iter().collect(),
            allowed_by: "the worker with --http-allow",
        }
    }

    /// The alarm webhooks': the default refusals, with these exceptions (the server's
    /// `--alarm-allow`).
    pub fn for_alarms(allow: impl IntoIterator<Item = AllowedDestination>) -> DestinationPolicy {
        DestinationPolicy {
            allow: allow.into_iter().collect(),
            allowed_by: "the server with --alarm-allow",
        }
    }

    /// The exceptions.
    pub fn allowed(&self) -> &[AllowedDestination] {
        &self.allow
    }

    /// Whether a connection to `ip` may be made; `host` is the name that resolved to it
    /// (`None` for an address in the URL).
    pub fn check(&self, host: Option<&str>, ip: IpAddr) -> Result<(), DestinationRefused> {
        let Some(range) = restricted_range(ip) else {
            return Ok(());
        };
        let host = host.map(normalize_host);
        let allowed = self.allow.iter().any(|a| match a {
            AllowedDestination::Network(n) => n.contains(ip),
            AllowedDestination::Host(h) => host.as_deref() == Some(h.as_str()),
        });
        if allowed {
            Ok(())
        } else {
            Err(DestinationRefused {
                host,
                ip,
                range,
                allowed_by: self.allowed_by,
            })
        }
    }

    /// Checks the host of `url` when it is an IP address (a client connects to such a host
    /// without resolving it, so `CheckedResolver` never sees it); a host name passes here
    /// and is checked when it is resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), DestinationRefused> {
        match url_ip(url) {
            Some(ip) => self.check(None, ip),
            None => Ok(()),
        }
    }
}

/// The host of `url` when it is an IP address (the URL parser has already turned every
/// IPv4 spelling, `2130706433` or `0x7f.1`, into the dotted one).
fn url_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether the client may follow a redirect to `next`, after requesting `previous` (the
/// first URL included).
pub fn check_redirect(
    policy: &DestinationPolicy,
    previous: &[reqwest::Url],
    next: &reqwest::Url,
) -> Result<(), RedirectRefused> {
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany);
    }
    let to = next.as_str().to_owned();
    match next.scheme() {
        "https" => {}
        "http" if previous.iter().any(|u| u.scheme() == "https") => {
            return Err(RedirectRefused::Downgrade { to })
        }
        "http" => {}
        _ => return Err(RedirectRefused::Scheme { to }),
    }
    policy
        .check_url(next)
        .map_err(|refused| RedirectRefused::Destination { to, refused })
}

/// The redirect policy of the `http` processor's client: [`check_redirect`] on every hop.
#[cfg(feature = "worker")]
pub(crate) fn redirect_policy(policy: Arc<DestinationPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match check_redirect(&policy, attempt.previous(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// The checked clients' DNS resolver: the system's (`getaddrinfo` through
/// [`tokio::net::lookup_host`]), and then only the addresses the policy allows. A name with
/// none left fails with the first refusal.
#[derive(Debug, Clone)]
pub(crate) struct CheckedResolver {
    policy: Arc<DestinationPolicy>,
}

impl CheckedResolver {
    pub(crate) fn new(policy: Arc<DestinationPolicy>) -> CheckedResolver {
        CheckedResolver { policy }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut kept = Vec::new();
            let mut first_refusal = None;
            for addr in resolved.take(MAX_RESOLVED) {
                match policy.check(Some(&host), addr.ip()) {
                    Ok(()) => kept.push(addr),
                    Err(refused) => {
                        tracing::debug!(%refused, "a resolved address refused");
                        first_refusal.get_or_insert(refused);
                    }
                }
            }
            match (kept.is_empty(), first_refusal) {
                (true, Some(refused)) => {
                    Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The refusal in `error`'s chain of sources, if the request failed for one.
pub(crate) fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<DestinationRefused>() {
            return Some(r.to_string());
        }
        if let Some(r) = e.downcast_ref::<RedirectRefused>() {
            return Some(r.to_string());
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_destinations_parse() {
        let net = |a: &str, p| {
            AllowedDestination::Network(IpNetwork::new(a.parse().unwrap(), p).unwrap())
        };
        for (text, want) in [
            ("10.0.0.0/8", Ok(net("10.0.0.0", 8))),
            ("10.1.2.3/8", Ok(net("10.0.0.0", 8))),
            (" 127.0.0.1 ", Ok(net("127.0.0.1", 32))),
            ("::1", Ok(net("::1", 128))),
            ("[::1]", Ok(net("::1", 128))),
            ("fd00::/8", Ok(net("fd00::", 8))),
            ("::ffff:10.0.0.0/104", Ok(net("10.0.0.0", 8))),
            ("0.0.0.0/0", Ok(net("0.0.0.0", 0))),
            (
                "Metrics.Internal.",
                Ok(AllowedDestination::Host("metrics.internal".into())),
            ),
            (
                "localhost",
                Ok(AllowedDestination::Host("localhost".into())),
            ),
            ("10.0.0.0/33", Err(())),
            ("::/129", Err(())),
            ("10.0.0.0/x", Err(())),
            ("host/8", Err(())),
            ("", Err(())),
            ("a..b", Err(())),
            ("http://x", Err(())),
        ] {
            let got = text.parse::<AllowedDestination>().map_err(|_| ());
            assert_eq!(got, want, "{text:?}");
        }
        assert_eq!(net("10.0.0.0", 8).to_string(), "10.0.0.0/8");
        let err = "a b".parse::<AllowedDestination>().unwrap_err();
        assert!(err.to_string().contains("not a network"), "{err}");
    }

    #[test]
    fn the_policy_refuses_restricted_addresses_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let default = DestinationPolicy::default();
        assert_eq!(default.check(None, ip("8.8.8.8")), Ok(()));
        let err = default.check(None, ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "destination 127.0.0.1 is loopback; refused (start the worker with --http-allow to permit it)"
        );
        let err = default
            .check(Some("Metadata.Google.Internal."), ip("169.254.169.254"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "destination metadata.google.internal (169.254.169.254) is link-local; refused (start the worker with --http-allow to permit it)"
        );

        let allow =
            |items: &[&str]| DestinationPolicy::new(items.iter().map(|s| s.parse().unwrap()));
        let p = allow(&["127.0.0.1/32", "10.0.0.0/8", "svc.internal"]);
        assert_eq!(p.check(None, ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(None, ip("::ffff:127.0.0.1")), Ok(()));
        assert!(p.check(None, ip("127.0.0.2")).is_err());
        assert!(p.check(None, ip("::1")).is_err());
        assert_eq!(p.check(Some("x"), ip("10.9.8.7")), Ok(()));
        assert!(p.check(None, ip("169.254.169.254")).is_err());
        // A host entry covers that name only, not the address by another route.
        assert_eq!(p.check(Some("SVC.internal"), ip("192.168.0.5")), Ok(()));
        assert!(p.check(Some("other.internal"), ip("192.168.0.5")).is_err());
        assert!(p.check(None, ip("192.168.0.5")).is_err());
        // Everything, for a worker on a trusted network.
        let all = allow(&["0.0.0.0/0", "::/0"]);
        for s in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(all.check(None, ip(s)), Ok(()), "{s}");
        }
    }

    #[test]
    fn redirects_are_checked_hop_by_hop() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let p = DestinationPolicy::new(["127.0.0.1".parse().unwrap()]);
        let from_http = [url("http://example.com/")];
        let from_https = [url("https://example.com/")];
        assert_eq!(
            check_redirect(&p, &from_http, &url("http://example.org/")),
            Ok(())
        );
        assert_eq!(
            check_redirect(&p, &from_https, &url("https://127.0.0.1:8443/")),
            Ok(())
        );
        let refused = check_redirect(&p, &from_http, &url("http://127.0.0.2/")).unwrap_err();
        assert!(
            refused.to_string().starts_with(
                "redirect to http://127.0.0.2/: destination 127.0.0.2 is loopback; refused"
            ),
            "{refused}"
        );
        // Every IPv4 spelling is the dotted one by the time the URL is parsed.
        for odd in [
            "http://2130706434/",
            "http://0x7f.0.0.2/",
            "http://[::ffff:7f00:2]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0/",
        ] {
            assert!(
                matches!(
                    check_redirect(&p, &from_http, &url(odd)),
                    Err(RedirectRefused::Destination { .. })
                ),
                "{odd}"
            );
        }
        assert!(matches!(
            check_redirect(&p, &from_https, &url("http://example.org/")),
            Err(RedirectRefused::Downgrade { .. })
        ));
        assert!(matches!(
            check_redirect(&p, &from_http, &url("ftp://example.org/")),
            Err(RedirectRefused::Scheme { .. })
        ));
        let chain: Vec<_> = (0..MAX_REDIRECTS)
            .map(|i| url(&format!("http://h{i}.example/")))
            .collect();
        assert_eq!(
            check_redirect(&p, &chain, &url("http://example.org/")),
            Ok(())
        );
        let longer: Vec<_> = (0..=MAX_REDIRECTS)
            .map(|i| url(&format!("http://h{i}.example/")))
            .collect();
        assert_eq!(
            check_redirect(&p, &longer, &url("http://example.org/")),
            Err(RedirectRefused::TooMany)
        );
    }
}
