//! ICE candidate types and the explanation of a link that could not be
//! established, shared by both drivers (the words shown to people live
//! here once).
//!
//! A link counts as failed when it is not up within [`LINK_FAILURE_TIMEOUT`]
//! (the native transport's connect deadline) or ICE gives up on it. The
//! driver then builds a [`LinkFailure`] from what it knows — the candidate
//! types it offered, the ones the member announced, whether the server
//! offered a TURN relay and whether that relay worked — and shows
//! [`LinkFailure::explain`].

use std::time::Duration;

/// How long a link may take to come up before it counts as failed and is
/// explained ([`LinkFailure`]); the native transport's connect deadline.
pub const LINK_FAILURE_TIMEOUT: Duration = Duration::from_secs(30);

/// The type of an ICE candidate (`typ` in its SDP line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// The address a STUN server saw (after NAT).
    ServerReflexive,
    /// Learnt from a connectivity check.
    PeerReflexive,
    /// An address on a TURN server.
    Relayed,
}

impl CandidateType {
    /// The ICE name: `host`, `srflx`, `prflx`, `relay`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::Relayed => "relay",
        }
    }

    /// The type named in a `candidate:` line (`… typ relay …`).
    #[must_use]
    pub fn of_line(line: &str) -> Option<Self> {
        let mut words = line.split_ascii_whitespace();
        words.by_ref().find(|w| *w == "typ")?;
        match words.next()? {
            "host" => Some(CandidateType::Host),
            "srflx" => Some(CandidateType::ServerReflexive),
            "prflx" => Some(CandidateType::PeerReflexive),
            "relay" => Some(CandidateType::Relayed),
            _ => None,
        }
    }

    /// Plain words for a list of types, e.g. "direct addresses and
    /// addresses seen by the STUN server".
    fn describe(types: &[CandidateType]) -> String {
        let mut words: Vec<&str> = Vec::new();
        for t in [
            CandidateType::Host,
            CandidateType::ServerReflexive,
            CandidateType::PeerReflexive,
            CandidateType::Relayed,
        ] {
            if types.contains(&t) {
                words.push(match t {
                    CandidateType::Host => "its own network addresses (host)",
                    CandidateType::ServerReflexive => {
                        "its public address as a STUN server saw it (srflx)"
                    }
                    CandidateType::PeerReflexive => "addresses learnt while trying (prflx)",
                    CandidateType::Relayed => "a TURN relay (relay)",
                });
            }
        }
        if words.is_empty() {
            "no addresses at all".to_owned()
        } else {
            words.join(", ")
        }
    }
}

/// What was tried for a link that did not come up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFailure {
    /// The member, as people know it (display name, else "member N").
    pub member: String,
    /// Candidate types we offered.
    pub local: Vec<CandidateType>,
    /// Candidate types the member announced.
    pub remote: Vec<CandidateType>,
    /// The server's ICE list had a TURN server.
    pub turn_offered: bool,
    /// Why our TURN allocation failed, in plain words, if it did.
    pub relay_problem: Option<String>,
}

impl LinkFailure {
    /// The explanation shown to people: which member, what was tried, what
    /// to do.
    #[must_use]
    pub fn explain(&self) -> String {
        let tried = format!(
            "Could not connect to {} within {} s. This side tried {}; {} offered {}.",
            self.member,
            LINK_FAILURE_TIMEOUT.as_secs(),
            CandidateType::describe(&self.local),
            self.member,
            CandidateType::describe(&self.remote),
        );
        let advice = if !self.turn_offered {
            "No direct path works between your two networks (their routers do not allow it), \
             and the server offers no TURN relay; ask the host to configure one \
             (see \"TURN\" in the operations guide)."
                .to_owned()
        } else if let Some(problem) = &self.relay_problem {
            format!(
                "The server offers a TURN relay, but it did not work here: {problem}. \
                 Ask the host to check the TURN server."
            )
        } else if !self.remote.contains(&CandidateType::Relayed)
            && !self.local.contains(&CandidateType::Relayed)
        {
            "The server offers a TURN relay, but neither side got an address on it; \
             ask the host to check that the TURN server is reachable."
                .to_owned()
        } else {
            "Even the TURN relay did not carry the connection; ask the host to check \
             that the TURN server's relay ports are reachable."
                .to_owned()
        };
        format!("{tried} {advice}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_lines() {
        assert_eq!(
            CandidateType::of_line("candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host"),
            Some(CandidateType::Host)
        );
        assert_eq!(
            CandidateType::of_line(
                "a=candidate:2 1 udp 16777215 203.0.113.1 50000 typ relay raddr 0.0.0.0 rport 0"
            ),
            Some(CandidateType::Relayed)
        );
        assert_eq!(CandidateType::of_line("candidate:1 1 udp 1 h 1 typ"), None);
        assert_eq!(CandidateType::of_line("garbage"), None);
    }

    #[test]
    fn no_turn_says_to_ask_the_host_for_one() {
        let f = LinkFailure {
            member: "bob".into(),
            local: vec![CandidateType::Host, CandidateType::ServerReflexive],
            remote: vec![CandidateType::Host],
            turn_offered: false,
            relay_problem: None,
        };
        let text = f.explain();
        assert!(
            text.contains("Could not connect to bob within 30 s"),
            "{text}"
        );
        assert!(
            text.contains("(host)") && text.contains("(srflx)"),
            "{text}"
        );
        assert!(
            text.contains("the server offers no TURN relay; ask the host to configure one"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_relay_is_named() {
        let f = LinkFailure {
            member: "member 7".into(),
            local: vec![CandidateType::Host],
            remote: vec![],
            turn_offered: true,
            relay_problem: Some("the TURN server did not answer".into()),
        };
        let text = f.explain();
        assert!(
            text.contains("member 7 offered no addresses at all"),
            "{text}"
        );
        assert!(text.contains("the TURN server did not answer"), "{text}");
    }
}
