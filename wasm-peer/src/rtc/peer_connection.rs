//! [`PeerConnection`]: an owned `RTCPeerConnection` with trickle ICE.

use std::cell::{Cell, RefCell};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use watchparty_peer::channels::ChannelSpec;
use web_sys::{
    RtcConfiguration, RtcDataChannelInit, RtcIceCandidateInit, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit,
};

use super::DataChannel;
use crate::error::RtcError;

/// Most remote ICE candidates kept while the remote description is not set
/// yet (they cannot be applied before it). One more is an error: a peer that
/// sends that many before its description is misbehaving.
pub const MAX_PENDING_REMOTE_CANDIDATES: usize = 64;

/// Whether a session description is an offer or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// The first description of a negotiation.
    Offer,
    /// The reply to an offer.
    Answer,
}

impl SdpKind {
    fn to_browser(self) -> RtcSdpType {
        match self {
            Self::Offer => RtcSdpType::Offer,
            Self::Answer => RtcSdpType::Answer,
        }
    }
}

/// A session description as it travels over signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// Offer or answer.
    pub kind: SdpKind,
    /// The SDP text.
    pub sdp: String,
}

/// One ICE candidate as it travels over signaling.
///
/// An empty `candidate` string marks the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    /// The `candidate:` attribute line.
    pub candidate: String,
    /// The media stream id the candidate belongs to.
    pub sdp_mid: Option<String>,
    /// The media line index the candidate belongs to.
    pub sdp_m_line_index: Option<u16>,
}

type IceHandler = Closure<dyn FnMut(RtcPeerConnectionIceEvent)>;
type StateHandler = Closure<dyn FnMut(web_sys::Event)>;

/// Most STUN/TURN servers handed to one connection, and most the page may
/// pass to `join` (more is an error there). The signaling server may send as
/// many again; [`combine_ice_servers`] keeps the server's first and leaves
/// out what is over this limit.
pub const MAX_ICE_SERVERS: usize = 8;

/// The STUN/TURN servers of one connection: the signaling server's first,
/// then the page's, at most [`MAX_ICE_SERVERS`] in all (the rest are left
/// out; the operator's servers win).
#[must_use]
pub fn combine_ice_servers(server: &[IceServer], page: &[IceServer]) -> Vec<IceServer> {
    server
        .iter()
        .chain(page)
        .take(MAX_ICE_SERVERS)
        .cloned()
        .collect()
}

/// One STUN/TURN server (`urls` plus optional TURN credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

impl IceServer {
    /// The server as the signaling protocol carries it (already bounded).
    #[must_use]
    pub fn from_wire(s: &watchparty_peer::signaling::IceServer) -> Self {
        Self {
            urls: s
                .urls
                .as_slice()
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            username: s.username.as_ref().map(|u| u.as_str().to_owned()),
            credential: s.credential.as_ref().map(|c| c.as_str().to_owned()),
        }
    }
}

/// The connection state the browser reports (`connectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started or gathering.
    New,
    /// ICE/DTLS in progress.
    Connecting,
    /// Up.
    Connected,
    /// ICE lost the path (may come back).
    Disconnected,
    /// ICE or DTLS failed for good.
    Failed,
    /// Closed.
    Closed,
}

impl ConnectionState {
    fn from_browser(s: web_sys::RtcPeerConnectionState) -> Self {
        use web_sys::RtcPeerConnectionState as S;
        match s {
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::Disconnected => Self::Disconnected,
            S::Failed => Self::Failed,
            S::Closed => Self::Closed,
            _ => Self::New,
        }
    }
}

/// An `RTCPeerConnection` with no ICE servers (host candidates only, for now).
///
/// Remote candidates that arrive before the remote description are buffered
/// (up to [`MAX_PENDING_REMOTE_CANDIDATES`]) and applied once it is set.
/// Dropping the value detaches its event handler and closes the connection.
#[derive(Debug)]
pub struct PeerConnection {
    pc: RtcPeerConnection,
    on_ice_candidate: RefCell<Option<IceHandler>>,
    on_state: RefCell<Option<StateHandler>>,
    pending_remote: RefCell<Vec<IceCandidate>>,
    remote_description_set: Cell<bool>,
}

impl PeerConnection {
    /// Creates a connection without STUN/TURN servers.
    ///
    /// # Errors
    /// [`RtcError::Js`] if the browser refuses to create it.
    pub fn new() -> Result<Self, RtcError> {
        Self::with_ice_servers(&[])
    }

    /// Creates a connection using these STUN/TURN servers (at most
    /// [`MAX_ICE_SERVERS`]; the driver passes [`combine_ice_servers`]'s
    /// list, so there are never more).
    ///
    /// # Errors
    /// [`RtcError::Js`] if the browser refuses to create it (e.g. a bad URL).
    pub fn with_ice_servers(servers: &[IceServer]) -> Result<Self, RtcError> {
        let config = RtcConfiguration::new();
        let list = js_sys::Array::new();
        for s in servers.iter().take(MAX_ICE_SERVERS) {
            let server = web_sys::RtcIceServer::new();
            let urls: js_sys::Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
            server.set_urls(&urls);
            if let Some(u) = &s.username {
                server.set_username(u);
            }
            if let Some(c) = &s.credential {
                server.set_credential(c);
            }
            list.push(&server);
        }
        config.set_ice_servers(&list);
        let pc = RtcPeerConnection::new_with_configuration(&config)
            .map_err(|e| RtcError::js("new RTCPeerConnection", &e))?;
        Ok(Self {
            pc,
            on_ice_candidate: RefCell::new(None),
            on_state: RefCell::new(None),
            pending_remote: RefCell::new(Vec::new()),
            remote_description_set: Cell::new(false),
        })
    }

    /// Calls `handler` with every local ICE candidate the browser gathers
    /// (`None` once gathering is complete). Replaces any previous handler.
    pub fn on_ice_candidate(&self, mut handler: impl FnMut(Option<IceCandidate>) + 'static) {
        let closure = IceHandler::new(move |event: RtcPeerConnectionIceEvent| {
            handler(event.candidate().map(|c| IceCandidate {
                candidate: c.candidate(),
                sdp_mid: c.sdp_mid(),
                sdp_m_line_index: c.sdp_m_line_index(),
            }));
        });
        self.pc
            .set_onicecandidate(Some(closure.as_ref().unchecked_ref()));
        // The old closure (if any) is no longer referenced by the browser.
        self.on_ice_candidate.replace(Some(closure));
    }

    /// Calls `handler` with every change of the connection state. Replaces
    /// any previous handler.
    pub fn on_connection_state(&self, mut handler: impl FnMut(ConnectionState) + 'static) {
        let pc = self.pc.clone();
        let closure = StateHandler::new(move |_: web_sys::Event| {
            handler(ConnectionState::from_browser(pc.connection_state()));
        });
        self.pc
            .set_onconnectionstatechange(Some(closure.as_ref().unchecked_ref()));
        self.on_state.replace(Some(closure));
    }

    /// The current connection state.
    #[must_use]
    pub fn connection_state(&self) -> ConnectionState {
        ConnectionState::from_browser(self.pc.connection_state())
    }

    /// Whether a remote description has been applied.
    #[must_use]
    pub fn has_remote_description(&self) -> bool {
        self.remote_description_set.get()
    }

    /// Detaches the handlers and closes the connection now (also done on
    /// drop; call it when other owners may keep the value alive a while).
    pub fn close(&self) {
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
    }

    /// Creates the pre-negotiated data channel `spec` (same id on both peers).
    ///
    /// Create the channels before [`Self::create_offer`] so that the offer
    /// carries the data section.
    ///
    /// # Errors
    /// [`RtcError::Js`] if the browser refuses the channel (e.g. id in use).
    pub fn open_channel(&self, spec: ChannelSpec) -> Result<DataChannel, RtcError> {
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(spec.id.get());
        init.set_ordered(spec.delivery.ordered());
        if let Some(max) = spec.delivery.max_retransmits() {
            init.set_max_retransmits(max);
        }
        let dc = self
            .pc
            .create_data_channel_with_data_channel_dict(spec.label, &init);
        // `createDataChannel` throws on a bad id; web-sys does not surface
        // that as a `Result`, so check that the channel took our id.
        if dc.id() != Some(spec.id.get()) {
            return Err(RtcError::Js {
                op: "createDataChannel",
                message: format!("channel `{}` did not get id {}", spec.label, spec.id.get()),
            });
        }
        Ok(DataChannel::new(dc, spec))
    }

    /// Creates an offer and sets it as the local description.
    ///
    /// # Errors
    /// [`RtcError::Js`] when the browser rejects; [`RtcError::MissingSdp`].
    pub async fn create_offer(&self) -> Result<SessionDescription, RtcError> {
        let offer = JsFuture::from(self.pc.create_offer())
            .await
            .map_err(|e| RtcError::js("createOffer", &e))?;
        self.set_local(SdpKind::Offer, offer).await
    }

    /// Creates an answer (after the remote offer is set) and sets it as the
    /// local description.
    ///
    /// # Errors
    /// [`RtcError::Js`] when the browser rejects; [`RtcError::MissingSdp`].
    pub async fn create_answer(&self) -> Result<SessionDescription, RtcError> {
        let answer = JsFuture::from(self.pc.create_answer())
            .await
            .map_err(|e| RtcError::js("createAnswer", &e))?;
        self.set_local(SdpKind::Answer, answer).await
    }

    async fn set_local(
        &self,
        kind: SdpKind,
        desc: wasm_bindgen::JsValue,
    ) -> Result<SessionDescription, RtcError> {
        let desc: RtcSessionDescriptionInit = desc.unchecked_into();
        let sdp = desc.get_sdp().ok_or(RtcError::MissingSdp)?;
        JsFuture::from(self.pc.set_local_description(&desc))
            .await
            .map_err(|e| RtcError::js("setLocalDescription", &e))?;
        Ok(SessionDescription { kind, sdp })
    }

    /// Sets the remote peer's description, then applies any remote candidates
    /// that arrived before it.
    ///
    /// # Errors
    /// [`RtcError::Js`] when the browser rejects the description or a
    /// buffered candidate.
    pub async fn set_remote_description(&self, desc: &SessionDescription) -> Result<(), RtcError> {
        let init = RtcSessionDescriptionInit::new(desc.kind.to_browser());
        init.set_sdp(&desc.sdp);
        JsFuture::from(self.pc.set_remote_description(&init))
            .await
            .map_err(|e| RtcError::js("setRemoteDescription", &e))?;
        self.remote_description_set.set(true);
        let pending = self.pending_remote.take();
        for candidate in &pending {
            self.apply_candidate(candidate).await?;
        }
        Ok(())
    }

    /// Adds a candidate from the remote peer, or buffers it until the remote
    /// description is set.
    ///
    /// # Errors
    /// [`RtcError::TooManyPendingCandidates`] when the buffer is full;
    /// [`RtcError::Js`] when the browser rejects the candidate.
    pub async fn add_remote_candidate(&self, candidate: &IceCandidate) -> Result<(), RtcError> {
        if !self.remote_description_set.get() {
            let mut pending = self.pending_remote.borrow_mut();
            if pending.len() >= MAX_PENDING_REMOTE_CANDIDATES {
                return Err(RtcError::TooManyPendingCandidates {
                    max: MAX_PENDING_REMOTE_CANDIDATES,
                });
            }
            pending.push(candidate.clone());
            return Ok(());
        }
        self.apply_candidate(candidate).await
    }

    async fn apply_candidate(&self, candidate: &IceCandidate) -> Result<(), RtcError> {
        let init = RtcIceCandidateInit::new(&candidate.candidate);
        init.set_sdp_mid(candidate.sdp_mid.as_deref());
        init.set_sdp_m_line_index(candidate.sdp_m_line_index);
        JsFuture::from(
            self.pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)),
        )
        .await
        .map_err(|e| RtcError::js("addIceCandidate", &e))?;
        Ok(())
    }

    /// Number of remote candidates waiting for the remote description.
    #[must_use]
    pub fn pending_remote_candidates(&self) -> usize {
        self.pending_remote.borrow().len()
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        // Detach first, so the browser never calls a freed closure.
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(port: usize) -> IceServer {
        IceServer {
            urls: vec![format!("stun:127.0.0.1:{port}")],
            username: None,
            credential: None,
        }
    }

    #[test]
    fn server_and_page_ice_servers_are_capped_server_first() {
        let server: Vec<IceServer> = (0..6).map(stun).collect();
        let page: Vec<IceServer> = (100..105).map(stun).collect();
        let all = combine_ice_servers(&server, &page);
        assert_eq!(all.len(), MAX_ICE_SERVERS);
        assert_eq!(all[..6], server[..]);
        assert_eq!(all[6..], page[..2]);
        // Under the limit nothing is left out.
        assert_eq!(combine_ice_servers(&server[..3], &page[..2]).len(), 5);
        let full: Vec<IceServer> = (0..MAX_ICE_SERVERS + 3).map(stun).collect();
        assert_eq!(combine_ice_servers(&full, &[]), full[..MAX_ICE_SERVERS]);
    }
}
