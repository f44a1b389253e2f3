//! The WebRTC data channels every watchparty peer opens.
//!
//! All channels are *pre-negotiated* (`negotiated: true` with a fixed SCTP
//! stream id) on both sides, so no DCEP open handshake is needed and there is
//! no race over who creates a channel first. The browser driver (`wasm-peer`)
//! and the native driver (str0m) both build their channels from [`ALL`], so the
//! ids, labels and reliability settings cannot drift apart.

/// SCTP stream id of a pre-negotiated data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u16);

impl ChannelId {
    /// Wraps a raw SCTP stream id.
    #[must_use]
    pub const fn new(id: u16) -> Self {
        Self(id)
    }

    /// The raw SCTP stream id.
    #[must_use]
    pub const fn get(self) -> u16 {
        self.0
    }
}

/// How a channel delivers messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every message arrives, in the order it was sent.
    ReliableOrdered,
    /// Messages may arrive out of order and are never retransmitted
    /// (`ordered: false`, `maxRetransmits: 0`): a late sample is worthless.
    UnorderedNoRetransmit,
}

impl Delivery {
    /// Whether the channel is ordered.
    #[must_use]
    pub const fn ordered(self) -> bool {
        matches!(self, Self::ReliableOrdered)
    }

    /// The `maxRetransmits` setting, `None` for a fully reliable channel.
    #[must_use]
    pub const fn max_retransmits(self) -> Option<u16> {
        match self {
            Self::ReliableOrdered => None,
            Self::UnorderedNoRetransmit => Some(0),
        }
    }
}

/// A pre-negotiated data channel: id, label and delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSpec {
    /// SCTP stream id, identical on both peers.
    pub id: ChannelId,
    /// Human-readable label (informational; negotiated channels match by id).
    pub label: &'static str,
    /// Ordering and retransmission.
    pub delivery: Delivery,
}

/// Host-signed control commands and control requests.
pub const CONTROL: ChannelSpec = ChannelSpec {
    id: ChannelId::new(0),
    label: "control",
    delivery: Delivery::ReliableOrdered,
};

/// Chat messages.
pub const CHAT: ChannelSpec = ChannelSpec {
    id: ChannelId::new(1),
    label: "chat",
    delivery: Delivery::ReliableOrdered,
};

/// Clock-sync probes and replies.
pub const CLOCK: ChannelSpec = ChannelSpec {
    id: ChannelId::new(2),
    label: "clock",
    delivery: Delivery::UnorderedNoRetransmit,
};

/// Every channel a peer opens, in id order.
pub const ALL: [ChannelSpec; 3] = [CONTROL, CHAT, CLOCK];

/// Looks up the channel with stream id `id`, if it is one of ours.
#[must_use]
pub fn by_id(id: ChannelId) -> Option<ChannelSpec> {
    ALL.iter().copied().find(|spec| spec.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_in_order() {
        let ids: Vec<u16> = ALL.iter().map(|s| s.id.get()).collect();
        assert_eq!(ids, vec![0, 1, 2]);
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<&str> = ALL.iter().map(|s| s.label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ALL.len());
    }

    #[test]
    fn delivery_settings() {
        assert!(CONTROL.delivery.ordered());
        assert_eq!(CONTROL.delivery.max_retransmits(), None);
        assert!(CHAT.delivery.ordered());
        assert!(!CLOCK.delivery.ordered());
        assert_eq!(CLOCK.delivery.max_retransmits(), Some(0));
    }

    #[test]
    fn lookup_by_id() {
        assert_eq!(by_id(ChannelId::new(1)), Some(CHAT));
        assert_eq!(by_id(ChannelId::new(3)), None);
    }
}
