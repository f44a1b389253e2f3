//! One WebRTC connection to a member: an [`RtcPeerConnection`] with the
//! pre-negotiated channels of [`channels::ALL`], whose browser events are
//! turned into driver [`Input`]s tagged with the connection's generation
//! (reports of a replaced connection are ignored by the driver).
//!
//! [`RtcPeerConnection`]: web_sys::RtcPeerConnection

use std::rc::{Rc, Weak};

use wasm_bindgen_futures::spawn_local;
use watchparty_peer::channels::{self, ChannelId};
use watchparty_peer::ids::UserId;
use watchparty_peer::message::Fingerprint;

use super::{Input, Shared, deliver};
use crate::error::RtcError;
use crate::rtc::{ConnectionState, DataChannel, IceServer, PeerConnection};

/// A connection and its channels.
#[derive(Debug)]
pub(super) struct Conn {
    pub conn_gen: u64,
    pub pc: Rc<PeerConnection>,
    channels: Vec<Rc<DataChannel>>,
    /// Our DTLS fingerprint (from our local description).
    pub local_fp: Option<Fingerprint>,
    /// The peer's DTLS fingerprint (from the remote description we applied).
    pub remote_fp: Option<Fingerprint>,
    pub state: ConnectionState,
}

impl Conn {
    /// A new connection to `peer`; its events go to the driver behind `weak`.
    pub fn new(
        peer: UserId,
        conn_gen: u64,
        ice: &[IceServer],
        weak: &Weak<Shared>,
    ) -> Result<Self, RtcError> {
        let pc = Rc::new(PeerConnection::with_ice_servers(ice)?);
        {
            let weak = weak.clone();
            pc.on_ice_candidate(move |candidate| {
                deliver(
                    &weak,
                    Input::LocalIce {
                        peer,
                        conn_gen,
                        candidate,
                    },
                );
            });
        }
        {
            let weak = weak.clone();
            pc.on_connection_state(move |state| {
                deliver(
                    &weak,
                    Input::ConnState {
                        peer,
                        conn_gen,
                        state,
                    },
                );
            });
        }
        let mut list = Vec::with_capacity(channels::ALL.len());
        for spec in channels::ALL {
            let dc = Rc::new(pc.open_channel(spec)?);
            spawn_channel_task(peer, conn_gen, Rc::clone(&dc), weak.clone());
            list.push(dc);
        }
        Ok(Self {
            conn_gen,
            pc,
            channels: list,
            local_fp: None,
            remote_fp: None,
            state: ConnectionState::New,
        })
    }

    /// Sends a frame on channel `ch`.
    pub fn send(&self, ch: ChannelId, bytes: &[u8]) -> Result<(), RtcError> {
        let dc = self
            .channels
            .iter()
            .find(|d| d.spec().id == ch)
            .ok_or(RtcError::ChannelNotOpen { label: "unknown" })?;
        dc.send(bytes)
    }

    /// Closes the channels and the connection now (receive tasks end).
    pub fn close(&self) {
        for dc in &self.channels {
            dc.close();
        }
        self.pc.close();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for the channel to open, then forwards every frame until it closes.
fn spawn_channel_task(peer: UserId, conn_gen: u64, dc: Rc<DataChannel>, weak: Weak<Shared>) {
    let channel = dc.spec().id;
    spawn_local(async move {
        if dc.opened().await.is_ok() {
            deliver(
                &weak,
                Input::ChannelOpen {
                    peer,
                    conn_gen,
                    channel,
                },
            );
            while let Ok(bytes) = dc.recv().await {
                deliver(
                    &weak,
                    Input::Frame {
                        peer,
                        conn_gen,
                        channel,
                        bytes,
                    },
                );
            }
        }
        deliver(
            &weak,
            Input::ChannelClosed {
                peer,
                conn_gen,
                channel,
            },
        );
    });
}
