//! Client addresses in canonical form, so one address is one bucket however it is spelled.
//!
//! Counting failures per address only works if an attacker (or a careless producer) cannot make
//! one address look like many. [`Addr::parse`] accepts, for the same address:
//!
//! - surrounding whitespace (`" 10.0.0.9 "`);
//! - every spelling `std::net` parses: IPv6 in upper or lower case, with or without leading
//!   zeros in its groups or `::` compression (`2001:DB8::1`, `2001:0db8:0000::1`);
//! - an IPv4-mapped IPv6 address (`::ffff:10.0.0.9`), which *is* the IPv4 address;
//! - dotted-quad IPv4 with leading zeros (`010.0.0.9`), which `std` refuses. Each part is
//!   read as **decimal**: C's `inet_aton` would read `010` as octal 8, but a person (or an
//!   attacker hoping to dodge a counter) writing `010.0.0.9` means `10.0.0.9`, and a log reader
//!   sees it that way. Other legacy forms (hex parts, fewer than four parts, one 32-bit
//!   number) are not addresses here;
//! - a port, or brackets around IPv6 (`10.0.0.9:5123`, `[2001:db8::1]:443`): producers that
//!   copy a socket address would otherwise put every connection in a bucket of its own.
//!
//! Anything else is [`Addr::Other`]: a bucket of its own, keyed by the trimmed text, never
//! merged with a real address and never dropped (dropping it would let garbage in the `ip`
//! field switch address counting off).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A client address, canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addr<'a> {
    /// A real address; IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
    /// Not an address: the trimmed text, its own bucket.
    Other(&'a str),
}

/// The network an address belongs to for spraying detection: a /24 for IPv4, a /64 for IPv6
/// (the smallest block a provider hands out to one customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Prefix {
    /// The first three octets.
    V4([u8; 3]),
    /// The upper 64 bits.
    V6(u64),
}

impl<'a> Addr<'a> {
    /// Reads `raw` as a client address; `None` if it is empty or only whitespace.
    pub(crate) fn parse(raw: &'a str) -> Option<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return None;
        }
        Some(match parse_ip(s).or_else(|| parse_with_port(s)) {
            Some(ip) => Addr::Ip(canonical(ip)),
            None => Addr::Other(s),
        })
    }

    /// The network for spraying detection; `None` for [`Addr::Other`].
    pub(crate) fn prefix(&self) -> Option<Prefix> {
        match self {
            Addr::Ip(IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                Some(Prefix::V4([a, b, c]))
            }
            Addr::Ip(IpAddr::V6(v6)) => {
                let bits = u128::from(*v6) >> 64;
                Some(Prefix::V6(u64::try_from(bits).unwrap_or(u64::MAX)))
            }
            Addr::Other(_) => None,
        }
    }
}

impl fmt::Display for Addr<'_> {
    /// The canonical spelling (`10.0.0.9`, `2001:db8::1`), or the trimmed text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Ip(ip) => fmt::Display::fmt(ip, f),
            Addr::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Prefix {
    /// CIDR notation: `10.0.0.0/24`, `2001:db8::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4([a, b, c]) => write!(f, "{}/24", Ipv4Addr::new(*a, *b, *c, 0)),
            Prefix::V6(top) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*top) << 64)),
        }
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What `std` parses, then dotted-quad IPv4 with leading zeros.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| legacy_v4(s).map(IpAddr::V4))
}

/// `a.b.c.d` with each part decimal digits only, leading zeros allowed, at most 255.
fn legacy_v4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        *octet = decimal_octet(parts.next()?)?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

fn decimal_octet(part: &str) -> Option<u8> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        // Also refuses the `+` that integer parsing would accept.
        return None;
    }
    let digits = part.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 3 {
        return None;
    }
    digits.parse::<u8>().ok()
}

/// `host:port` and `[v6]` / `[v6]:port`, the host read as by [`parse_ip`].
fn parse_with_port(s: &str) -> Option<IpAddr> {
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return if port_ok {
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    // Unbracketed, only IPv4 can carry a port (`::1:80` is an IPv6 address, not a port).
    let (host, port) = s.split_once(':')?;
    if is_port(port) {
        legacy_v4(host).map(IpAddr::V4)
    } else {
        None
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u16>().is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Addr::parse(s).unwrap().to_string()
    }

    #[test]
    fn spellings_of_one_address_are_one_address() {
        for s in [
            "10.0.0.9",
            "010.0.0.9",
            "010.000.00.09",
            "0000000000010.0.0.9",
            " 10.0.0.9 ",
            "\t10.0.0.9\n",
            "::ffff:10.0.0.9",
            "::FFFF:10.0.0.9",
            "::ffff:a00:9",
            "0:0:0:0:0:ffff:0a00:0009",
            "10.0.0.9:5123",
            "010.0.0.9:80",
            "[::ffff:10.0.0.9]:443",
        ] {
            assert_eq!(canon(s), "10.0.0.9", "{s:?}");
            assert!(
                matches!(Addr::parse(s), Some(Addr::Ip(IpAddr::V4(_)))),
                "{s:?}"
            );
        }
        for s in [
            "2001:db8::1",
            "2001:DB8::1",
            "2001:0db8:0000::1",
            "2001:0DB8:0000:0000:0000:0000:0000:0001",
            " 2001:db8::1 ",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
        ] {
            assert_eq!(canon(s), "2001:db8::1", "{s:?}");
        }
    }

    #[test]
    fn what_is_not_an_address_is_its_own_bucket() {
        assert_eq!(Addr::parse(""), None);
        assert_eq!(Addr::parse("   "), None);
        for s in [
            "256.0.0.1",
            "10.0.0",
            "10.0.0.9.1",
            "+10.0.0.9",
            "10.0.0.-9",
            "0x0a.0.0.9",
            "167772169",
            "10.0.0.9:99999",
            "10.0.0.9:",
            "[10.0.0.9]",
            "[2001:db8::1]x",
            "fe80::1%eth0",
            "localhost",
        ] {
            assert_eq!(Addr::parse(s), Some(Addr::Other(s.trim())), "{s:?}");
            assert_eq!(Addr::parse(s).unwrap().prefix(), None);
        }
        assert_eq!(Addr::parse(" junk "), Some(Addr::Other("junk")));
        // `::1:80` is an IPv6 address, not `::1` with a port.
        assert_eq!(canon("::1:80"), "::1:80");
    }

    #[test]
    fn prefixes_are_slash_24_and_slash_64() {
        let p = |s: &str| Addr::parse(s).unwrap().prefix().unwrap();
        assert_eq!(p("10.0.0.1"), p("10.0.0.254"));
        assert_ne!(p("10.0.0.1"), p("10.0.1.1"));
        assert_eq!(p("10.0.0.1").to_string(), "10.0.0.0/24");
        assert_eq!(p("::ffff:10.0.0.1"), p("10.0.0.7"));
        assert_eq!(p("2001:db8:0:1::1"), p("2001:db8:0:1:ffff::9"));
        assert_ne!(p("2001:db8:0:1::1"), p("2001:db8:0:2::1"));
        assert_eq!(p("2001:DB8:0:1::1").to_string(), "2001:db8:0:1::/64");
    }
}
