//! The signaling WebSocket of a browser peer.
//!
//! [`SignalSocket`] is one connection attempt: it opens the WebSocket, sends
//! `auth` (token + session key) as the **first message** — the token never
//! appears in the URL — and reports everything else as [`SignalInput`]s to a
//! callback. Reconnecting (backoff with jitter) is the driver's job: it
//! drops the socket and makes a new one.
//!
//! Limits: incoming text above [`MAX_SIGNAL_MESSAGE_LEN`] is dropped without
//! parsing (counted as invalid); binary messages are ignored; outgoing
//! messages above the limit are refused locally; while the socket is not
//! open, outgoing messages are discarded (offers and candidates are stale
//! once their connection is gone) and counted by the driver.
//!
//! Event handlers are closures owned by the socket; dropping it detaches
//! them and closes the connection.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::signaling::{
    ClientMessage, MAX_SIGNAL_MESSAGE_LEN, PROTOCOL_VERSION, ServerMessage, Token,
};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Close code the server uses for an auth failure.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code for "not a member of this room / room ended".
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Consecutive auth refusals before the driver gives up.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// What a socket reports.
#[derive(Debug)]
pub enum SignalInput {
    /// Open; `auth` was sent.
    Open {
        /// The socket generation (stale sockets' reports are ignored).
        generation: u64,
    },
    /// A parsed server message.
    Message {
        /// The socket generation.
        generation: u64,
        /// The message.
        message: Box<ServerMessage>,
    },
    /// A message that did not parse or was too large (never quoted).
    Invalid {
        /// The socket generation.
        generation: u64,
        /// Why.
        reason: String,
    },
    /// The connection closed (or could not be opened).
    Closed {
        /// The socket generation.
        generation: u64,
        /// The close code (1006 when the connection failed).
        code: u16,
        /// The close reason sent by the server (may be empty).
        reason: String,
    },
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The socket is not open.
    #[error("signaling is not connected")]
    NotOpen,
    /// Larger than [`MAX_SIGNAL_MESSAGE_LEN`] or not serializable.
    #[error("signaling message too large or invalid")]
    Invalid,
    /// The browser refused.
    #[error("the browser refused to send")]
    Browser,
}

type Handler<E> = Closure<dyn FnMut(E)>;

/// One signaling connection attempt. See the module docs.
pub struct SignalSocket {
    ws: WebSocket,
    generation: u64,
    _on_open: Handler<web_sys::Event>,
    _on_message: Handler<MessageEvent>,
    _on_close: Handler<CloseEvent>,
    _on_error: Handler<web_sys::Event>,
}

impl std::fmt::Debug for SignalSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSocket")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl SignalSocket {
    /// Connects to `url` and, once open, sends `auth` with `token` and
    /// `session_key`. Every report goes to `deliver`.
    ///
    /// # Errors
    /// The browser's message when the URL is refused (not `ws(s)://`).
    pub fn connect(
        url: &str,
        token: Token,
        session_key: PublicKey,
        generation: u64,
        deliver: Rc<dyn Fn(SignalInput)>,
    ) -> Result<Self, String> {
        let ws = WebSocket::new(url).map_err(|e| crate::error::js_message(&e))?;
        let on_open = {
            let ws = ws.clone();
            let deliver = Rc::clone(&deliver);
            Handler::new(move |_: web_sys::Event| {
                let auth = ClientMessage::Auth {
                    token: token.clone(),
                    protocol: Some(PROTOCOL_VERSION),
                    key: Some(session_key),
                };
                match auth.to_json() {
                    Ok(text) if ws.send_with_str(&text).is_ok() => {
                        deliver(SignalInput::Open { generation });
                    }
                    _ => {
                        let _ = ws.close();
                    }
                }
            })
        };
        let on_message = {
            let deliver = Rc::clone(&deliver);
            Handler::new(move |event: MessageEvent| {
                let Some(text) = event.data().as_string() else {
                    return; // binary frames are not part of the protocol
                };
                // UTF-16 length ≤ UTF-8 length ≤ 3× it: refuse before copying
                // anything far too large.
                if text.len() > MAX_SIGNAL_MESSAGE_LEN {
                    deliver(SignalInput::Invalid {
                        generation,
                        reason: format!("message of {} bytes over the limit", text.len()),
                    });
                    return;
                }
                match ServerMessage::from_json(&text) {
                    Ok(message) => deliver(SignalInput::Message {
                        generation,
                        message: Box::new(message),
                    }),
                    Err(e) => deliver(SignalInput::Invalid {
                        generation,
                        reason: e.to_string(),
                    }),
                }
            })
        };
        let on_close = {
            let deliver = Rc::clone(&deliver);
            Handler::new(move |event: CloseEvent| {
                deliver(SignalInput::Closed {
                    generation,
                    code: event.code(),
                    reason: event.reason().chars().take(128).collect(),
                });
            })
        };
        // `error` is always followed by `close`; nothing to do but exist, so
        // the browser does not log an unhandled error event.
        let on_error = Handler::new(move |_: web_sys::Event| {});
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            ws,
            generation,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        })
    }

    /// This socket's generation.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the socket is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Sends one message.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn send(&self, msg: &ClientMessage) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::NotOpen);
        }
        let text = msg.to_json().map_err(|_| SendError::Invalid)?;
        if text.len() > MAX_SIGNAL_MESSAGE_LEN {
            return Err(SendError::Invalid);
        }
        self.ws.send_with_str(&text).map_err(|_| SendError::Browser)
    }
}

impl Drop for SignalSocket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}
