//! A webrtc-rs 0.21 peer (an independently written WebRTC stack) with the
//! three pre-negotiated watchparty data channels, for interop and
//! hostile-member tests. Test-only.
//!
//! Include with `#[path = "support/webrtc_peer.rs"] mod webrtc_peer;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio::time::timeout;
use watchparty_peer::channels::{self, ChannelSpec};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription,
};

/// How long ICE gathering may take.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(15);
/// Events buffered from the webrtc-rs side before its channel tasks wait.
pub const EVENT_BUFFER: usize = 1024;
/// Bytes a webrtc-rs channel may hold unsent before `send` waits (keeps a
/// flooding test peer's own memory bounded; webrtc-rs is unbounded by
/// default).
pub const SEND_BUFFER_LIMIT: usize = 1 << 20;

/// What the webrtc-rs side reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WEvent {
    /// Channel `id` opened.
    Open(u16),
    /// A binary message on channel `id`.
    Message(u16, Vec<u8>),
}

/// A message that the channel tasks answer themselves (and don't report):
/// `(request, reply)`.
pub type AutoReply = Option<(&'static [u8], &'static [u8])>;

struct GatherHandler {
    gathered: mpsc::Sender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for GatherHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
}

/// Erases the builder's `impl PeerConnection` type.
#[async_trait::async_trait]
pub trait ClosablePc: Send + Sync {
    /// Closes the connection.
    async fn close(&self);
    /// Applies the remote answer to our offer.
    async fn set_remote_answer(&self, sdp: String);
    /// A negotiated channel on SCTP stream `id` that only this side has
    /// (no watchparty channel): a hostile member writing where nobody
    /// listens.
    async fn stray_channel(&self, id: u16) -> Arc<dyn DataChannel>;
}

#[async_trait::async_trait]
impl<T: PeerConnection> ClosablePc for T {
    async fn close(&self) {
        let _ = PeerConnection::close(self).await;
    }

    async fn set_remote_answer(&self, sdp: String) {
        self.set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
            .await
            .unwrap();
    }

    async fn stray_channel(&self, id: u16) -> Arc<dyn DataChannel> {
        let init = RTCDataChannelInit {
            negotiated: Some(id),
            ..Default::default()
        };
        self.create_data_channel("stray", Some(init)).await.unwrap()
    }
}

/// One webrtc-rs peer connection with the watchparty channels.
pub struct WebrtcPeer {
    /// The connection.
    pub pc: Box<dyn ClosablePc>,
    /// The channels by id.
    pub channels: HashMap<u16, Arc<dyn DataChannel>>,
    /// What happened on them.
    pub events: mpsc::Receiver<WEvent>,
}

impl WebrtcPeer {
    /// The channel of `spec`.
    pub fn dc(&self, spec: ChannelSpec) -> Arc<dyn DataChannel> {
        Arc::clone(&self.channels[&spec.id.get()])
    }

    /// Sends `data` on `spec`'s channel.
    pub async fn send(&self, spec: ChannelSpec, data: &[u8]) {
        self.dc(spec).send(BytesMut::from(data)).await.unwrap();
    }
}

fn init(spec: ChannelSpec) -> RTCDataChannelInit {
    RTCDataChannelInit {
        ordered: spec.delivery.ordered(),
        max_retransmits: spec.delivery.max_retransmits(),
        negotiated: Some(spec.id.get()),
        ..Default::default()
    }
}

/// Creates the three negotiated channels and a task per channel that
/// reports opens and messages (and answers `auto_reply` itself).
async fn open_channels(
    pc: &impl PeerConnection,
    tx: &mpsc::Sender<WEvent>,
    auto_reply: AutoReply,
) -> HashMap<u16, Arc<dyn DataChannel>> {
    let mut out = HashMap::new();
    for spec in channels::ALL {
        let dc = pc
            .create_data_channel(spec.label, Some(init(spec)))
            .await
            .unwrap();
        let id = spec.id.get();
        let (dc2, tx) = (Arc::clone(&dc), tx.clone());
        tokio::spawn(async move {
            while let Some(ev) = dc2.poll().await {
                match ev {
                    DataChannelEvent::OnOpen => {
                        let _ = tx.send(WEvent::Open(id)).await;
                    }
                    DataChannelEvent::OnMessage(m) => {
                        assert!(!m.is_string, "str0m side sends binary");
                        match auto_reply {
                            Some((req, reply)) if m.data[..] == *req => {
                                let _ = dc2.send(BytesMut::from(reply)).await;
                            }
                            _ => {
                                let _ = tx.send(WEvent::Message(id, m.data.to_vec())).await;
                            }
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
        out.insert(id, dc);
    }
    out
}

/// Runs the webrtc-rs side's SDP step on 127.0.0.1: with `remote_offer`
/// it answers, otherwise it offers. Returns the local SDP after ICE
/// gathering completed (webrtc-rs then lists its 127.0.0.1 candidate).
pub async fn webrtc_side(
    remote_offer: Option<String>,
    auto_reply: AutoReply,
) -> (WebrtcPeer, String) {
    webrtc_side_on("127.0.0.1:0", remote_offer, auto_reply).await
}

/// [`webrtc_side`] on the UDP address `bind` (`ip:port`; a wildcard
/// address would skip loopback, so it names one).
pub async fn webrtc_side_on(
    bind: &str,
    remote_offer: Option<String>,
    auto_reply: AutoReply,
) -> (WebrtcPeer, String) {
    let (gtx, mut grx) = mpsc::channel(1);
    let pc = PeerConnectionBuilder::new()
        .with_handler(Arc::new(GatherHandler { gathered: gtx }))
        .with_udp_addrs(vec![bind.to_owned()])
        .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
        .build()
        .await
        .unwrap();
    let (etx, erx) = mpsc::channel(EVENT_BUFFER);
    let channels = match remote_offer {
        Some(offer) => {
            pc.set_remote_description(RTCSessionDescription::offer(offer).unwrap())
                .await
                .unwrap();
            let channels = open_channels(&pc, &etx, auto_reply).await;
            let answer = pc.create_answer(None).await.unwrap();
            pc.set_local_description(answer).await.unwrap();
            channels
        }
        None => {
            let channels = open_channels(&pc, &etx, auto_reply).await;
            let offer = pc.create_offer(None).await.unwrap();
            pc.set_local_description(offer).await.unwrap();
            channels
        }
    };
    timeout(GATHER_TIMEOUT, grx.recv()).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    (
        WebrtcPeer {
            pc: Box::new(pc),
            channels,
            events: erx,
        },
        sdp,
    )
}
