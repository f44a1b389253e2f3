//! [`DataChannel`]: an owned, pre-negotiated `RTCDataChannel` carrying
//! binary frames, with a bounded inbox.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Function, Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::JsFuture;
use watchparty_peer::channels::ChannelSpec;
use web_sys::{MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

use crate::error::RtcError;

/// Largest frame sent or accepted, in bytes: the protocol's frame limit
/// ([`watchparty_peer::frame::MAX_FRAME_LEN`], 16 KiB, the same as the
/// native transport's `MAX_FRAME_SIZE`; browsers pass up to 64 KiB
/// portably, so this is well inside). Larger incoming messages are dropped
/// and counted ([`DropCounts::oversize`]) before they are copied out of the
/// browser.
pub const MAX_FRAME_BYTES: usize = watchparty_peer::frame::MAX_FRAME_LEN;

/// Most received frames held per channel until [`DataChannel::recv`] takes
/// them. Frames arriving while the inbox is full are dropped and counted
/// ([`DropCounts::inbox_full`]), so a flooding peer cannot grow memory.
pub const MAX_INBOX_FRAMES: usize = 256;

/// Incoming messages dropped on one channel, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Larger than [`MAX_FRAME_BYTES`].
    pub oversize: u64,
    /// Arrived while [`MAX_INBOX_FRAMES`] frames were waiting.
    pub inbox_full: u64,
    /// A text message (the protocol is binary only).
    pub not_binary: u64,
}

/// Received frames and the state shared with the browser event handlers.
#[derive(Debug, Default)]
struct Inbox {
    frames: RefCell<VecDeque<Vec<u8>>>,
    /// `resolve`/`reject` of the promise a waiting `recv` awaits.
    waiter: RefCell<Option<(Function, Function)>>,
    /// `reject` of the promise a waiting `opened` awaits (a close before
    /// open ends the wait).
    open_waiter: RefCell<Option<Function>>,
    closed: Cell<bool>,
    dropped: Cell<DropCounts>,
}

impl Inbox {
    fn count(&self, bump: impl FnOnce(&mut DropCounts)) {
        let mut counts = self.dropped.get();
        bump(&mut counts);
        self.dropped.set(counts);
    }

    fn on_message(&self, event: &MessageEvent) {
        let data = event.data();
        let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
            self.count(|c| c.not_binary += 1);
            return;
        };
        // `byte_length` is a u32; usize is at least 32 bits on every target we build.
        let len = usize::try_from(buffer.byte_length()).unwrap_or(usize::MAX);
        if len > MAX_FRAME_BYTES {
            self.count(|c| c.oversize += 1);
            return;
        }
        {
            let mut frames = self.frames.borrow_mut();
            if frames.len() >= MAX_INBOX_FRAMES {
                self.count(|c| c.inbox_full += 1);
                return;
            }
            frames.push_back(Uint8Array::new(buffer).to_vec());
        }
        self.wake();
    }

    fn on_close(&self) {
        self.closed.set(true);
        if let Some(reject) = self.open_waiter.take() {
            // Calling a promise's `reject` does not throw.
            let _ = reject.call0(&wasm_bindgen::JsValue::NULL);
        }
        self.wake();
    }

    /// Resolves the promise a waiting `recv` awaits, if any.
    fn wake(&self) {
        if let Some((resolve, _reject)) = self.waiter.take() {
            // Calling a promise's `resolve` does not throw.
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    }
}

type MessageHandler = Closure<dyn FnMut(MessageEvent)>;
type CloseHandler = Closure<dyn FnMut()>;

/// A pre-negotiated data channel carrying binary frames.
///
/// Dropping it detaches its event handlers and closes the channel.
#[derive(Debug)]
pub struct DataChannel {
    dc: RtcDataChannel,
    spec: ChannelSpec,
    inbox: Rc<Inbox>,
    /// Owns the closure installed as `onmessage`.
    _on_message: MessageHandler,
    /// Owns the closure installed as `onclose`.
    _on_close: CloseHandler,
}

impl DataChannel {
    pub(super) fn new(dc: RtcDataChannel, spec: ChannelSpec) -> Self {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        let inbox = Rc::new(Inbox::default());
        let on_message = {
            let inbox = Rc::clone(&inbox);
            MessageHandler::new(move |event: MessageEvent| inbox.on_message(&event))
        };
        let on_close = {
            let inbox = Rc::clone(&inbox);
            CloseHandler::new(move || inbox.on_close())
        };
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Self {
            dc,
            spec,
            inbox,
            _on_message: on_message,
            _on_close: on_close,
        }
    }

    /// The channel's id, label and delivery mode.
    #[must_use]
    pub fn spec(&self) -> ChannelSpec {
        self.spec
    }

    /// Whether the channel is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.dc.ready_state() == RtcDataChannelState::Open
    }

    /// Waits until the channel is open (both peers created it and the
    /// connection is up). A close before that ends the wait with
    /// [`RtcError::ChannelClosed`]. Combine with [`crate::timer::timeout`].
    ///
    /// # Errors
    /// [`RtcError::ChannelClosed`] if it is closing or closed;
    /// [`RtcError::Js`] if the browser reports a channel error.
    pub async fn opened(&self) -> Result<(), RtcError> {
        if self.inbox.closed.get() {
            return Err(RtcError::ChannelClosed {
                label: self.spec.label,
            });
        }
        match self.dc.ready_state() {
            RtcDataChannelState::Open => return Ok(()),
            RtcDataChannelState::Closing | RtcDataChannelState::Closed => {
                return Err(RtcError::ChannelClosed {
                    label: self.spec.label,
                });
            }
            _ => {}
        }
        // The promise's own resolve/reject are the handlers: no Rust closure.
        let promise = Promise::new(&mut |resolve, reject| {
            self.dc.set_onopen(Some(&resolve));
            self.dc.set_onerror(Some(&reject));
            self.inbox.open_waiter.replace(Some(reject));
        });
        let result = JsFuture::from(promise).await;
        self.inbox.open_waiter.take();
        self.dc.set_onopen(None);
        self.dc.set_onerror(None);
        if self.inbox.closed.get() {
            return Err(RtcError::ChannelClosed {
                label: self.spec.label,
            });
        }
        result
            .map(drop)
            .map_err(|e| RtcError::js("RTCDataChannel open", &e))
    }

    /// Sends one binary frame.
    ///
    /// # Errors
    /// [`RtcError::FrameTooLarge`] above [`MAX_FRAME_BYTES`];
    /// [`RtcError::ChannelNotOpen`]; [`RtcError::Js`] if `send` throws.
    pub fn send(&self, frame: &[u8]) -> Result<(), RtcError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(RtcError::FrameTooLarge {
                len: frame.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        if !self.is_open() {
            return Err(RtcError::ChannelNotOpen {
                label: self.spec.label,
            });
        }
        self.dc
            .send_with_u8_array(frame)
            .map_err(|e| RtcError::js("RTCDataChannel.send", &e))
    }

    /// Takes the next received frame, waiting for one if the inbox is empty.
    ///
    /// One receiver at a time: a second concurrent `recv` makes the first
    /// return [`RtcError::RecvSuperseded`]. Combine with
    /// [`crate::timer::timeout`].
    ///
    /// # Errors
    /// [`RtcError::ChannelClosed`] once the channel is closed and the inbox
    /// is drained; [`RtcError::RecvSuperseded`].
    pub async fn recv(&self) -> Result<Vec<u8>, RtcError> {
        loop {
            if let Some(frame) = self.inbox.frames.borrow_mut().pop_front() {
                return Ok(frame);
            }
            if self.inbox.closed.get() {
                return Err(RtcError::ChannelClosed {
                    label: self.spec.label,
                });
            }
            let promise = Promise::new(&mut |resolve, reject| {
                if let Some((_, previous)) = self.inbox.waiter.replace(Some((resolve, reject))) {
                    // Calling a promise's `reject` does not throw.
                    let _ = previous.call0(&wasm_bindgen::JsValue::NULL);
                }
            });
            if JsFuture::from(promise).await.is_err() {
                return Err(RtcError::RecvSuperseded {
                    label: self.spec.label,
                });
            }
        }
    }

    /// Frames received but not yet taken by [`Self::recv`].
    #[must_use]
    pub fn queued(&self) -> usize {
        self.inbox.frames.borrow().len()
    }

    /// Incoming messages dropped so far, by reason.
    #[must_use]
    pub fn dropped(&self) -> DropCounts {
        self.inbox.dropped.get()
    }

    /// Closes the channel now and ends a waiting [`Self::recv`] (also done
    /// on drop; call it when a receive task may keep the value alive).
    pub fn close(&self) {
        self.dc.close();
        self.inbox.on_close();
    }

    /// The underlying browser object, for tests and diagnostics that need to
    /// bypass this wrapper's checks (e.g. to send an oversize message).
    #[must_use]
    pub fn as_raw(&self) -> &RtcDataChannel {
        &self.dc
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        // Detach first, so the browser never calls a freed closure; the
        // closures themselves are freed when the fields drop after this.
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onopen(None);
        self.dc.set_onerror(None);
        self.dc.close();
    }
}
