//! Errors of the browser WebRTC layer.

use wasm_bindgen::{JsCast, JsValue};

/// Everything that can go wrong in [`crate::rtc`] and [`crate::timer`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcError {
    /// A browser API call threw or its promise rejected.
    #[error("browser call `{op}` failed: {message}")]
    Js {
        /// The API that failed, e.g. `createOffer`.
        op: &'static str,
        /// The browser's error message.
        message: String,
    },
    /// There is no `window` (not running in a browser page).
    #[error("no `window` object: not running in a browser page")]
    NoWindow,
    /// The browser returned a session description without SDP text.
    #[error("the browser returned a session description without SDP")]
    MissingSdp,
    /// A frame is larger than [`crate::rtc::MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size of the rejected frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The data channel is not open (still connecting, closing or closed).
    #[error("data channel `{label}` is not open")]
    ChannelNotOpen {
        /// Label of the channel.
        label: &'static str,
    },
    /// The data channel closed while waiting for a frame.
    #[error("data channel `{label}` closed")]
    ChannelClosed {
        /// Label of the channel.
        label: &'static str,
    },
    /// A second `recv` started on the same channel while one was waiting.
    #[error("another `recv` on data channel `{label}` replaced this one")]
    RecvSuperseded {
        /// Label of the channel.
        label: &'static str,
    },
    /// More remote ICE candidates arrived before the remote description than
    /// [`crate::rtc::MAX_PENDING_REMOTE_CANDIDATES`].
    #[error("more than {max} remote ICE candidates arrived before the remote description")]
    TooManyPendingCandidates {
        /// The limit.
        max: usize,
    },
    /// An operation did not finish in time.
    #[error("timed out after {ms} ms")]
    Timeout {
        /// The time limit that was crossed.
        ms: u32,
    },
}

impl RtcError {
    /// Wraps a thrown JS value or a rejected promise's reason.
    pub(crate) fn js(op: &'static str, value: &JsValue) -> Self {
        Self::Js {
            op,
            message: js_message(value),
        }
    }
}

/// The message of a thrown JS value (an `Error`'s message, a string, or a
/// debug rendering), at most [`MAX_JS_MESSAGE_CHARS`] characters.
pub(crate) fn js_message(value: &JsValue) -> String {
    let text = if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        String::from(err.message())
    } else if let Some(text) = value.as_string() {
        text
    } else {
        format!("{value:?}")
    };
    text.chars().take(MAX_JS_MESSAGE_CHARS).collect()
}

/// The name of a thrown `DOMException`/`Error` (e.g. `NotAllowedError`).
pub(crate) fn js_error_name(value: &JsValue) -> Option<String> {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.name()))
}

/// Longest browser error message kept (they are shown to the user).
pub const MAX_JS_MESSAGE_CHARS: usize = 256;
