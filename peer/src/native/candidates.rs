//! Local host candidates: which addresses of this machine the transport
//! announces, and which of them an incoming datagram was addressed to.
//!
//! str0m gathers nothing itself. The native peer binds one UDP socket on the
//! wildcard address and announces that port on every non-loopback IPv4
//! interface address plus 127.0.0.1 (so two peers on one machine always find
//! each other). A wildcard socket does not report the destination address of a
//! datagram, but str0m needs it to match the datagram to a local candidate, so
//! [`HostAddrs::destination_for`] infers it from the source's subnet.
//!
//! IPv6 is not announced yet: the socket is IPv4-only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One local IPv4 address with its subnet prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    ip: Ipv4Addr,
    prefix_len: u8,
}

impl HostAddr {
    /// An address with its subnet prefix length (clamped to 32).
    #[must_use]
    pub fn new(ip: Ipv4Addr, prefix_len: u8) -> Self {
        Self {
            ip,
            prefix_len: prefix_len.min(32),
        }
    }

    /// The address.
    #[must_use]
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    fn contains(&self, other: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(self.ip) & mask == u32::from(other) & mask
    }
}

/// The set of local addresses a transport announces as host candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddrs(Vec<HostAddr>);

impl HostAddrs {
    /// Loopback only (`127.0.0.1/8`): for tests and single-machine use.
    #[must_use]
    pub fn loopback() -> Self {
        Self(vec![HostAddr::new(Ipv4Addr::LOCALHOST, 8)])
    }

    /// Exactly these addresses, in this order (duplicates removed).
    #[must_use]
    pub fn from_addrs(addrs: impl IntoIterator<Item = HostAddr>) -> Self {
        let mut out: Vec<HostAddr> = Vec::new();
        for a in addrs {
            if !out.iter().any(|o| o.ip == a.ip) {
                out.push(a);
            }
        }
        Self(out)
    }

    /// Every IPv4 address of every interface that is up, loopback excluded,
    /// followed by 127.0.0.1.
    ///
    /// # Errors
    /// When the operating system cannot list interfaces.
    pub fn gather() -> io::Result<Self> {
        let mut addrs = Vec::new();
        for iface in if_addrs::get_if_addrs()? {
            if iface.is_loopback() || !iface.is_oper_up() {
                continue;
            }
            if let if_addrs::IfAddr::V4(v4) = iface.addr
                && !v4.ip.is_unspecified()
                && !v4.ip.is_link_local()
            {
                addrs.push(HostAddr::new(v4.ip, v4.prefixlen));
            }
        }
        addrs.push(HostAddr::new(Ipv4Addr::LOCALHOST, 8));
        Ok(Self::from_addrs(addrs))
    }

    /// The addresses, in announcement order.
    #[must_use]
    pub fn addrs(&self) -> &[HostAddr] {
        &self.0
    }

    /// Host candidate socket addresses for a socket bound on `port`.
    #[must_use]
    pub fn candidates(&self, port: u16) -> Vec<SocketAddr> {
        self.0
            .iter()
            .map(|a| SocketAddr::new(IpAddr::V4(a.ip), port))
            .collect()
    }

    /// The local candidate a datagram from `source` most likely arrived on,
    /// for a wildcard-bound socket on `port`: a loopback source maps to
    /// 127.0.0.1, otherwise the first address whose subnet contains the
    /// source, otherwise the first non-loopback address. `None` for IPv6
    /// sources or an empty set.
    #[must_use]
    pub fn destination_for(&self, source: SocketAddr, port: u16) -> Option<SocketAddr> {
        let IpAddr::V4(src) = source.ip() else {
            return None;
        };
        let pick = |a: &HostAddr| SocketAddr::new(IpAddr::V4(a.ip), port);
        if src.is_loopback() {
            return self.0.iter().find(|a| a.ip.is_loopback()).map(pick);
        }
        self.0
            .iter()
            .find(|a| !a.ip.is_loopback() && a.contains(src))
            .or_else(|| self.0.iter().find(|a| !a.ip.is_loopback()))
            .map(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn gather_includes_loopback_last() {
        let addrs = HostAddrs::gather().unwrap();
        assert_eq!(addrs.addrs().last().unwrap().ip(), Ipv4Addr::LOCALHOST);
        assert!(
            addrs.addrs()[..addrs.addrs().len() - 1]
                .iter()
                .all(|a| !a.ip().is_loopback())
        );
    }

    #[test]
    fn destination_by_subnet() {
        let addrs = HostAddrs::from_addrs([
            HostAddr::new(Ipv4Addr::new(192, 0, 2, 7), 24),
            HostAddr::new(Ipv4Addr::new(198, 51, 100, 9), 24),
            HostAddr::new(Ipv4Addr::LOCALHOST, 8),
        ]);
        assert_eq!(
            addrs.destination_for(sa("198.51.100.200:1"), 5000),
            Some(sa("198.51.100.9:5000"))
        );
        assert_eq!(
            addrs.destination_for(sa("127.0.0.1:1"), 5000),
            Some(sa("127.0.0.1:5000"))
        );
        // Unknown subnet: first non-loopback address.
        assert_eq!(
            addrs.destination_for(sa("203.0.113.1:1"), 5000),
            Some(sa("192.0.2.7:5000"))
        );
        assert_eq!(addrs.destination_for(sa("[::1]:1"), 5000), None);
    }

    #[test]
    fn loopback_only_set_never_maps_remote_sources() {
        let addrs = HostAddrs::loopback();
        assert_eq!(addrs.destination_for(sa("192.0.2.1:1"), 9), None);
        assert_eq!(addrs.candidates(9), vec![sa("127.0.0.1:9")]);
    }

    #[test]
    fn prefix_zero_and_32() {
        assert!(HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 0).contains(Ipv4Addr::new(1, 2, 3, 4)));
        let h = HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 32);
        assert!(h.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!h.contains(Ipv4Addr::new(10, 0, 0, 2)));
    }
}
