//! Timers on the browser event loop: [`sleep`] and [`timeout`].
//!
//! Both rest on `window.setTimeout`; no Rust closure is handed to the browser
//! (the promise's own `resolve` function is the timer callback), and a timer
//! that is dropped early is cleared.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use js_sys::Promise;
use wasm_bindgen_futures::JsFuture;

use crate::error::RtcError;

/// A future that completes after a delay. Dropping it clears the timer.
#[derive(Debug)]
pub struct Sleep {
    window: web_sys::Window,
    handle: i32,
    done: JsFuture,
}

/// Starts a timer of `ms` milliseconds.
///
/// # Errors
/// [`RtcError::NoWindow`] outside a browser page; [`RtcError::Js`] if
/// `setTimeout` throws.
pub fn sleep(ms: u32) -> Result<Sleep, RtcError> {
    let window = web_sys::window().ok_or(RtcError::NoWindow)?;
    // setTimeout takes a signed 32-bit delay; larger values saturate.
    let delay = i32::try_from(ms).unwrap_or(i32::MAX);
    let mut handle = Ok(0);
    let promise = Promise::new(&mut |resolve, _reject| {
        handle = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, delay);
    });
    let handle = handle.map_err(|e| RtcError::js("setTimeout", &e))?;
    Ok(Sleep {
        window,
        handle,
        done: JsFuture::from(promise),
    })
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The promise never rejects: only `resolve` is given to the timer.
        Pin::new(&mut self.done).poll(cx).map(|_| ())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.window.clear_timeout_with_handle(self.handle);
    }
}

/// Runs `fut`, giving up after `ms` milliseconds.
///
/// # Errors
/// [`RtcError::Timeout`] when the limit is crossed; errors of [`sleep`].
pub async fn timeout<F: Future>(ms: u32, fut: F) -> Result<F::Output, RtcError> {
    let mut fut = pin!(fut);
    let mut timer = sleep(ms)?;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(RtcError::Timeout { ms }));
        }
        Poll::Pending
    })
    .await
}
