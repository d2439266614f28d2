//! The address ranges refused unless allowed ([`RestrictedRange`], see the parent module's
//! table), IPv4 carried in IPv6 judged as IPv4 ([`canonical`]), and [`IpNetwork`], the form
//! an allowed network takes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A kind of address refused unless allowed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestrictedRange {
    /// `0.0.0.0/8`, `::`: "this host" (Linux connects `0.0.0.0` to loopback).
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (cloud metadata services at `169.254.169.254`), `fe80::/10`.
    LinkLocal,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fc00::/7`, `fec0::/10`.
    Private,
    /// `100.64.0.0/10`, the carrier-grade NAT range.
    SharedAddressSpace,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` except the broadcast address.
    Reserved,
    /// `255.255.255.255`.
    Broadcast,
}

impl std::fmt::Display for RestrictedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestrictedRange::Unspecified => "unspecified",
            RestrictedRange::Loopback => "loopback",
            RestrictedRange::LinkLocal => "link-local",
            RestrictedRange::Private => "private",
            RestrictedRange::SharedAddressSpace => "shared address space (carrier-grade NAT)",
            RestrictedRange::Multicast => "multicast",
            RestrictedRange::Reserved => "reserved",
            RestrictedRange::Broadcast => "broadcast",
        })
    }
}

/// `ip` with an IPv4 address carried in IPv6 form (mapped, compatible, NAT64) as that IPv4
/// address; `::` and `::1` stay IPv6.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
    }
}

/// The IPv4 address an IPv6 one carries: `::ffff:a.b.c.d` (mapped), `::a.b.c.d` (the
/// deprecated compatible form; not `::` or `::1`), `64:ff9b::a.b.c.d` (NAT64's well-known
/// prefix).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if v6.is_unspecified() || v6.is_loopback() {
        return None;
    }
    let [a, b, c, d, e, f, _, _] = v6.segments();
    let [.., w, x, y, z] = v6.octets();
    let low = Ipv4Addr::new(w, x, y, z);
    match (a, b, c, d, e, f) {
        (0, 0, 0, 0, 0, 0) | (0x64, 0xff9b, 0, 0, 0, 0) => Some(low),
        _ => None,
    }
}

/// The restricted range `ip` is in, if any (IPv4 carried in IPv6 judged as IPv4).
pub fn restricted_range(ip: IpAddr) -> Option<RestrictedRange> {
    match canonical(ip) {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<RestrictedRange> {
    let [a, b, _, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => RestrictedRange::Unspecified,
        (127, _) => RestrictedRange::Loopback,
        (169, 254) => RestrictedRange::LinkLocal,
        (10, _) | (192, 168) => RestrictedRange::Private,
        (172, 16..=31) => RestrictedRange::Private,
        (100, 64..=127) => RestrictedRange::SharedAddressSpace,
        (224..=239, _) => RestrictedRange::Multicast,
        _ if ip.is_broadcast() => RestrictedRange::Broadcast,
        (240..=255, _) => RestrictedRange::Reserved,
        _ => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<RestrictedRange> {
    let [first, ..] = ip.segments();
    Some(if ip.is_unspecified() {
        RestrictedRange::Unspecified
    } else if ip.is_loopback() {
        RestrictedRange::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        RestrictedRange::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        RestrictedRange::Private
    } else if first & 0xff00 == 0xff00 {
        RestrictedRange::Multicast
    } else {
        return None;
    })
}

/// An IP network: an address and a prefix length, the bits past the prefix zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr`'s first `prefix` bits (at most 32 for IPv4, 128 for IPv6), or
    /// `None` when `prefix` is longer. An IPv4 address carried in IPv6 form becomes the IPv4
    /// network (`::ffff:10.0.0.0/104` is `10.0.0.0/8`).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let (addr, prefix) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            _ => (addr, prefix),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix)?)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix)?)),
        };
        Some(IpNetwork { addr, prefix })
    }

    /// Whether `ip` (IPv4 carried in IPv6 taken as IPv4) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(self.prefix).is_some_and(|m| u32::from(ip) & m == u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(self.prefix).is_some_and(|m| u128::from(ip) & m == u128::from(net))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> Option<u32> {
    match prefix {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - prefix)),
        _ => None,
    }
}

fn mask128(prefix: u8) -> Option<u128> {
    match prefix {
        0 => Some(0),
        1..=128 => Some(u128::MAX << (128 - prefix)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<RestrictedRange> {
        restricted_range(ip.parse().unwrap())
    }

    #[test]
    fn restricted_ranges_table() {
        use RestrictedRange::*;
        for (ip, want) in [
            // IPv4
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.2", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("192.169.0.1", None),
            ("11.0.0.1", None),
            // IPv6
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("2001:4860:4860::8888", None),
            ("2606:4700::1111", None),
            ("fe7f::1", None),
            // IPv4 carried in IPv6: judged as IPv4.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("64:ff9b::169.254.169.254", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
        ] {
            assert_eq!(range(ip), want, "{ip}");
        }
    }
}
