//! The browser driver: a thin loop around the sans-I/O room [`Session`],
//! the browser counterpart of the native driver (`peer/src/native/driver.rs`).
//!
//! ```text
//! browser callbacks ──► deliver(Input) ──► bounded inbox ──► pump():
//!   signaling  → session.handle_signal / negotiation (Links: glare, retries)
//!   WebRTC     → session.channel_open / handle_frame / peer_disconnected
//!   player     → session.handle_player        timer → session.handle_timeout
//!   then drain session.poll_output():
//!     SendFrame → data channel   Signal → WebSocket (set_role/kick/handoff → REST)
//!     Player    → MediaPlayer    Disconnect → close   Event → page events
//!   then re-arm the one timer (session.poll_timeout, retries, reconnect, sampling)
//!   and, with the driver released, hand the page its events.
//! ```
//!
//! Every browser callback only *queues* an [`Input`] and pumps; the driver is
//! never re-entered (a callback firing while the driver runs leaves its input
//! for the running pump). The inbox holds at most [`MAX_INPUTS`]; page events
//! at most [`MAX_PENDING_EVENTS`] per pump (more are dropped and counted).
//! Everything is owned by [`Shared`]: leaving drops it, which closes the
//! socket and connections and frees every closure.

mod bounded;
pub mod command;
mod conn;
mod driver;
mod view;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use watchparty_peer::channels::ChannelId;
use watchparty_peer::ids::UserId;

pub use bounded::Bounded;
pub use command::{JsCommand, parse as parse_command};
pub use driver::{Driver, Options, SignalMode};

use crate::player::PlayerInput;
use crate::rtc::{ConnectionState, IceCandidate, SessionDescription};
use crate::signal::SignalInput;

/// Most inputs waiting for the driver: a flood beyond it is dropped and
/// counted (`status().counters.inputs_dropped`).
pub const MAX_INPUTS: usize = 4096;
/// Most page events collected in one pump before they are handed over; more
/// are dropped and counted (`status().counters.events_dropped`).
pub const MAX_PENDING_EVENTS: usize = 1024;

/// Something for the driver.
#[derive(Debug)]
pub enum Input {
    /// From the signaling socket.
    Signal(SignalInput),
    /// Our offer or answer is ready (or failed).
    LocalDescription {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The description.
        result: Result<SessionDescription, String>,
    },
    /// The peer's answer was applied (or refused).
    RemoteApplied {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// `Err` when the browser refused it.
        result: Result<(), String>,
    },
    /// A remote candidate was refused.
    CandidateFailed,
    /// A local ICE candidate (`None`: gathering done).
    LocalIce {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The candidate.
        candidate: Option<IceCandidate>,
    },
    /// The connection state changed.
    ConnState {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The new state.
        state: ConnectionState,
    },
    /// A channel opened.
    ChannelOpen {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The channel.
        channel: ChannelId,
    },
    /// A channel closed.
    ChannelClosed {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The channel.
        channel: ChannelId,
    },
    /// A frame arrived.
    Frame {
        /// The peer.
        peer: UserId,
        /// The connection generation.
        conn_gen: u64,
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// From the player adapter.
    Player(PlayerInput),
    /// The stream URL of a media item is known (or not).
    MediaResolved {
        /// The catalog id as the item names it.
        media: String,
        /// The source or why not.
        result: Result<crate::http::StreamSource, String>,
    },
    /// A REST call on behalf of a session output failed.
    RestFailed {
        /// Which call.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A server message from in-page signaling ([`SignalMode::InPage`]).
    ServerMessage(Box<watchparty_peer::signaling::ServerMessage>),
    /// The timer fired.
    Timer,
}

/// Builds a driver for `video` with its player adapter and starts it
/// (signaling, timers); what the page's `RoomClient.join` and the in-page
/// tests use.
///
/// # Errors
/// When the driver cannot start.
pub fn start(
    video: web_sys::HtmlMediaElement,
    opts: Options,
    identity: watchparty_peer::crypto::SigningKey,
) -> Result<Rc<Shared>, String> {
    let shared = Shared::new(|weak| {
        let w = weak.clone();
        let player = crate::player::MediaPlayer::new(
            video,
            crate::clock::Clock::new(),
            Rc::new(move |p| deliver(&w, Input::Player(p))),
        );
        Ok(Driver::new(weak, opts, identity, player))
    })?;
    shared.with_driver(Driver::start)?;
    Ok(shared)
}

/// Hands a server message to a driver using [`SignalMode::InPage`]
/// (ignored by WebSocket drivers).
pub fn inject_server_message(shared: &Rc<Shared>, msg: watchparty_peer::signaling::ServerMessage) {
    deliver(&Rc::downgrade(shared), Input::ServerMessage(Box::new(msg)));
}

/// The driver and what its callbacks share.
pub struct Shared {
    inbox: RefCell<Bounded<Input>>,
    driver: RefCell<Option<Driver>>,
    on_event: RefCell<Option<js_sys::Function>>,
    timer: RefCell<Option<i32>>,
    timer_cb: RefCell<Option<Closure<dyn FnMut()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("inbox", &self.inbox.borrow().len())
            .field("inputs_dropped", &self.inputs_dropped())
            .finish_non_exhaustive()
    }
}

/// Queues `input` for the driver behind `weak` and runs it, unless it is
/// already running (then the running pump takes it).
pub fn deliver(weak: &Weak<Shared>, input: Input) {
    let Some(shared) = weak.upgrade() else {
        return;
    };
    if !shared.inbox.borrow_mut().push(input) {
        return; // full: dropped and counted
    }
    shared.pump();
}

impl Shared {
    /// Builds the shared state; `make` builds the driver with a handle to it.
    pub fn new(
        make: impl FnOnce(&Weak<Shared>) -> Result<Driver, String>,
    ) -> Result<Rc<Self>, String> {
        let mut error = None;
        let shared = Rc::new_cyclic(|weak: &Weak<Shared>| {
            let driver = match make(weak) {
                Ok(d) => Some(d),
                Err(e) => {
                    error = Some(e);
                    None
                }
            };
            let cb = {
                let weak = weak.clone();
                Closure::<dyn FnMut()>::new(move || {
                    if let Some(s) = weak.upgrade() {
                        s.timer.replace(None);
                    }
                    deliver(&weak, Input::Timer);
                })
            };
            Shared {
                inbox: RefCell::new(Bounded::new(MAX_INPUTS)),
                driver: RefCell::new(driver),
                on_event: RefCell::new(None),
                timer: RefCell::new(None),
                timer_cb: RefCell::new(Some(cb)),
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        Ok(shared)
    }

    /// Sets the page's event callback.
    pub fn set_on_event(&self, f: Option<js_sys::Function>) {
        self.on_event.replace(f);
    }

    /// Inputs dropped because the inbox was full.
    #[must_use]
    pub fn inputs_dropped(&self) -> u64 {
        self.inbox.borrow().dropped()
    }

    /// Runs `f` on the driver (not from inside a driver callback).
    ///
    /// # Errors
    /// When the room was left or the driver is busy (re-entrant call).
    pub fn with_driver<T>(self: &Rc<Self>, f: impl FnOnce(&mut Driver) -> T) -> Result<T, String> {
        let out = {
            let Ok(mut d) = self.driver.try_borrow_mut() else {
                return Err("the room client is busy (re-entrant call)".into());
            };
            let Some(d) = d.as_mut() else {
                return Err("the room was left".into());
            };
            f(d)
        };
        // Whatever `f` caused (outputs, events) is handled now.
        self.pump();
        Ok(out)
    }

    /// Runs the driver until the inbox is empty, then hands the page its
    /// events with the driver released (the page may call back in).
    fn pump(self: &Rc<Self>) {
        loop {
            let (events, wake) = {
                let Ok(mut guard) = self.driver.try_borrow_mut() else {
                    return; // the running pump takes the input
                };
                let Some(d) = guard.as_mut() else {
                    self.inbox.borrow_mut().clear();
                    return;
                };
                loop {
                    let next = self.inbox.borrow_mut().pop();
                    let Some(input) = next else { break };
                    d.handle(input);
                    d.drain();
                }
                d.drain();
                (d.take_events(), d.next_wake_ms())
            };
            self.arm_timer(wake);
            let callback = self.on_event.borrow().clone();
            if let Some(cb) = callback {
                for ev in events {
                    if let Ok(v) = js_sys::JSON::parse(&ev.to_string()) {
                        // A throwing page handler must not stop the driver.
                        let _ = cb.call1(&wasm_bindgen::JsValue::NULL, &v);
                    }
                }
            }
            if self.inbox.borrow().is_empty() {
                break;
            }
        }
    }

    fn arm_timer(&self, delay_ms: Option<u32>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        if let Some(h) = self.timer.take() {
            window.clear_timeout_with_handle(h);
        }
        let Some(delay) = delay_ms else { return };
        let cb = self.timer_cb.borrow();
        let Some(cb) = cb.as_ref() else { return };
        let delay = i32::try_from(delay).unwrap_or(i32::MAX);
        if let Ok(h) = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            cb.as_ref().unchecked_ref(),
            delay,
        ) {
            self.timer.replace(Some(h));
        }
    }

    /// Closes everything: the driver (socket, connections, player handlers)
    /// is dropped, the timer cleared and its closure freed.
    pub fn shutdown(&self) {
        let driver = self.driver.try_borrow_mut().ok().and_then(|mut d| d.take());
        if let Some(mut d) = driver {
            d.leave();
        }
        if let (Some(h), Some(window)) = (self.timer.take(), web_sys::window()) {
            window.clear_timeout_with_handle(h);
        }
        self.timer_cb.replace(None);
        self.on_event.replace(None);
        self.inbox.borrow_mut().clear();
    }
}
