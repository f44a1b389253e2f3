//! The member a server makes host by itself (docs/protocol.md §6): a
//! member with a valid certificate, on its own signaling session and
//! webrtc-rs connections to every online member, which registers a room key
//! of its own once the server has made it host and sends commands signed
//! with it. Test-only.
//!
//! Include with `#[path = "support/usurper.rs"] mod usurper;` next to
//! `support/webrtc_peer.rs` as `webrtc_peer`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use watchparty_peer::channels;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::frame::{self, Header};
use watchparty_peer::ids::{Epoch, PositionMs, RoomId, RoomMs, Seq, UserId};
use watchparty_peer::message::Message;
use watchparty_peer::native::api_client::ApiClient;
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::signal_client::{SignalClient, SignalConfig, SignalEvent};
use watchparty_peer::signaling::{ClientMessage, Sdp, ServerMessage};

use super::webrtc_peer::{self, WEvent, WebrtcPeer};

/// Waits until every watchparty channel of `w` is open.
async fn wait_open(w: &mut WebrtcPeer) {
    let mut open = 0;
    tokio::time::timeout(STEP_WAIT, async {
        while open < channels::ALL.len() {
            if let WEvent::Open(_) = w.events.recv().await.expect("webrtc-rs events") {
                open += 1;
            }
        }
    })
    .await
    .expect("usurper channels open");
}

/// How long each step may take.
pub const STEP_WAIT: Duration = Duration::from_secs(30);

/// The member the server makes host: its signaling session (kept open, so
/// it stays a current member) and one webrtc-rs connection per honest peer.
pub struct Usurper {
    /// Its user id.
    pub me: UserId,
    /// The session key its member certificate carries.
    pub session_key: SigningKey,
    room: RoomId,
    signal: SignalClient,
    peers: BTreeMap<UserId, WebrtcPeer>,
    /// The UDP address its WebRTC connections use.
    bind: String,
}

impl Usurper {
    /// Joins the room's signaling at `url` as `api`'s user with a fresh
    /// session key (the server issues a valid member certificate) and
    /// offers to every online member; returns once every channel is open.
    pub async fn connect(api: &ApiClient, room: RoomId, url: String) -> Self {
        Self::connect_on(api, room, url, "127.0.0.1:0").await
    }

    /// [`Usurper::connect`] with its WebRTC on the UDP address `bind`
    /// (`ip:port`).
    pub async fn connect_on(api: &ApiClient, room: RoomId, url: String, bind: &str) -> Self {
        let session_key = new_signing_key().unwrap();
        let mut signal = SignalClient::spawn(
            SignalConfig {
                url,
                session_key: session_key.public_key(),
                tls: None,
                jitter_seed: 7,
            },
            api.clone(),
        );
        let (me, online) = Self::next(&mut signal, |m| match m {
            ServerMessage::Hello { you, members, .. } => Some((
                *you,
                members
                    .as_slice()
                    .iter()
                    .filter(|m| m.online)
                    .map(|m| m.certificate.claimed().user)
                    .filter(|u| u != you)
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        })
        .await;
        let mut pending = BTreeMap::new();
        for peer in online {
            let (w, offer) = webrtc_peer::webrtc_side_on(bind, None, None).await;
            signal
                .outgoing
                .send(ClientMessage::Offer {
                    to: peer,
                    sdp: Sdp::new(&offer).unwrap(),
                })
                .await
                .unwrap();
            pending.insert(peer, w);
        }
        let mut peers = BTreeMap::new();
        while !pending.is_empty() {
            let (from, sdp) = Self::next(&mut signal, |m| match m {
                ServerMessage::Answer { from, sdp } => Some((*from, sdp.as_str().to_owned())),
                _ => None,
            })
            .await;
            if let Some(w) = pending.remove(&from) {
                w.pc.set_remote_answer(sdp).await;
                peers.insert(from, w);
            }
        }
        for w in peers.values_mut() {
            wait_open(w).await;
        }
        Self {
            me,
            session_key,
            room,
            signal,
            peers,
            bind: bind.to_owned(),
        }
    }

    /// The first server message `f` picks.
    async fn next<T>(signal: &mut SignalClient, f: impl Fn(&ServerMessage) -> Option<T>) -> T {
        tokio::time::timeout(STEP_WAIT, async {
            loop {
                match signal.incoming.recv().await.expect("signaling") {
                    SignalEvent::Message(m) => {
                        if let Some(v) = f(&m) {
                            return v;
                        }
                    }
                    SignalEvent::Fatal(r) => panic!("usurper signaling: {r}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("server message")
    }

    /// Registers `key` as room key (the server accepts it: it made us
    /// host) and returns the epoch of the host certificate it issues.
    pub async fn register(&mut self, key: &SigningKey) -> Epoch {
        self.signal
            .outgoing
            .send(ClientMessage::RegisterHostKey {
                key: key.public_key(),
            })
            .await
            .unwrap();
        let me = self.me;
        Self::next(&mut self.signal, |m| match m {
            ServerMessage::HostChanged { certificate } if certificate.claimed().user == me => {
                Some(certificate.claimed().epoch)
            }
            _ => None,
        })
        .await
    }

    /// Sends `msgs`, signed with `key` in `epoch`, to every member it is
    /// connected to.
    pub async fn command(&self, key: &SigningKey, epoch: Epoch, msgs: &[Message]) {
        for (i, msg) in msgs.iter().enumerate() {
            let h = Header {
                room: self.room,
                epoch,
                seq: Seq::new(i as u64).unwrap(),
                issued_at: RoomMs(0),
            };
            let f = frame::encode(key, &h, msg).unwrap();
            for w in self.peers.values() {
                w.send(channels::CONTROL, &f).await;
            }
        }
    }

    /// Member frames signed with its own session key (epoch `epoch`, seqs
    /// from `first_seq`, issued at room time `room_ms`), each on its kind's
    /// channel, to every member it is connected to.
    pub async fn member_frames(
        &self,
        epoch: Epoch,
        first_seq: u64,
        room_ms: i64,
        msgs: &[Message],
    ) {
        for (i, msg) in msgs.iter().enumerate() {
            let h = Header {
                room: self.room,
                epoch,
                seq: Seq::new(first_seq + i as u64).unwrap(),
                issued_at: RoomMs(room_ms),
            };
            let f = frame::encode(&self.session_key, &h, msg).unwrap();
            for w in self.peers.values() {
                w.send(msg.kind().channel(), &f).await;
            }
        }
    }

    /// The control-channel frames that arrived from `from` so far (a
    /// hostile member recording the host's signed frames to replay them).
    pub fn recorded_control(&mut self, from: UserId) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(w) = self.peers.get_mut(&from) {
            while let Ok(ev) = w.events.try_recv() {
                if let WEvent::Message(id, data) = ev
                    && id == channels::CONTROL.id.get()
                {
                    out.push(data);
                }
            }
        }
        out
    }

    /// Answers the next WebRTC offer a member sends us (a joiner offers to
    /// every online member) and returns it once every channel is open.
    pub async fn answer_next_offer(&mut self) -> UserId {
        let (from, offer) = Self::next(&mut self.signal, |m| match m {
            ServerMessage::Offer { from, sdp } => Some((*from, sdp.as_str().to_owned())),
            _ => None,
        })
        .await;
        let (mut w, answer) = webrtc_peer::webrtc_side_on(&self.bind, Some(offer), None).await;
        self.signal
            .outgoing
            .send(ClientMessage::Answer {
                to: from,
                sdp: Sdp::new(&answer).unwrap(),
            })
            .await
            .unwrap();
        wait_open(&mut w).await;
        self.peers.insert(from, w);
        from
    }

    /// Sends `frames`, unchanged, on the control channel to `to`.
    pub async fn replay(&self, to: UserId, frames: &[Vec<u8>]) {
        let w = &self.peers[&to];
        for f in frames {
            w.send(channels::CONTROL, f).await;
        }
    }

    /// A `Pause` and a `Seek` (paused) to `position_ms`, signed with `key`
    /// in `epoch`, to every member it is connected to.
    pub async fn pause_and_seek(&self, key: &SigningKey, epoch: Epoch, position_ms: u64) {
        let position = PositionMs::new(position_ms).unwrap();
        let at = RoomMs(0);
        let msgs = [
            Message::Pause { position, at },
            Message::Seek {
                position,
                paused: true,
                at,
            },
        ];
        self.command(key, epoch, &msgs).await;
    }
}
