//! The client address used for per-IP limits.
//!
//! `X-Forwarded-For` is honoured **only** when the TCP peer is a configured
//! trusted proxy; then the right-most address that is not itself a trusted
//! proxy is the client. Anything else (no header, unparsable entries, an
//! untrusted peer) falls back to the TCP peer address, so a client cannot pick
//! a fresh rate-limit bucket by rotating the header.

use std::net::IpAddr;

use serde::Deserialize;

/// Most `X-Forwarded-For` entries examined.
pub const MAX_FORWARDED_HOPS: usize = 16;

/// Resolves the client IP from the peer address and `X-Forwarded-For` values.
pub fn resolve(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = unmap(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(unmap(ip)) => continue,
            Ok(ip) => return unmap(ip),
            Err(_) => return peer,
        }
    }
    peer
}

/// An IP network (`addr/prefix`), used for the trusted-proxy list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses are unmapped first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Turns `::ffff:a.b.c.d` into `a.b.c.d`.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address in {s:?}"))?;
        let addr = unmap(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Extractor: the client IP of this request (the extractor itself is in
/// [`crate::api::extract`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_header() {
        let trusted = vec!["10.0.0.1".parse().unwrap()];
        assert_eq!(
            resolve(ip("127.0.0.5"), &["1.2.3.4"], &trusted),
            ip("127.0.0.5")
        );
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("127.0.0.1"), &["6.6.6.6, 1.2.3.4, 10.0.0.7"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(resolve(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
        assert_eq!(
            resolve(ip("127.0.0.1"), &["garbage"], &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &["::ffff:9.9.9.9"], &trusted),
            ip("9.9.9.9")
        );
        // More than MAX_FORWARDED_HOPS trusted hops: stop looking, use the peer.
        let long = vec!["10.0.0.9"; MAX_FORWARDED_HOPS + 1].join(",");
        let long = format!("1.2.3.4,{long}");
        assert_eq!(
            resolve(ip("127.0.0.1"), &[long.as_str()], &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ip_nets() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
        let v6: IpNet = "::1/128".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }
}
