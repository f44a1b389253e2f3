//! Counting instead of logging: str0m's per-message warning for data on an
//! unknown stream.
//!
//! str0m drops a message that arrives on an SCTP stream id with no channel
//! (a negotiated id we never created) inside `Rtc::poll_output` and logs
//! one `WARN` line per message ("Drop ChannelData event for id: …"); the
//! data never reaches the transport. At the CLI's default log level a
//! member could fill the log with one line per message it sends. The
//! transport therefore drains each connection under a [`StreamDropCounter`]
//! dispatcher: that one warning is counted (per connection, in
//! `PeerStats::unknown_channel_dropped`) and not logged; every other event
//! and span goes unchanged to the subscriber that was current when the
//! transport was made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Level, Metadata};

/// The start of str0m 0.25's warning for a message on an unknown stream
/// (`src/lib.rs`, `SctpEvent::Data` without a channel).
const UNKNOWN_STREAM_WARNING: &str = "Drop ChannelData event";

/// Whether `meta` can be str0m's unknown-stream warning.
fn is_str0m_warning(meta: &Metadata<'_>) -> bool {
    meta.is_event() && *meta.level() == Level::WARN && meta.target().starts_with("str0m")
}

/// Reads an event's `message` field.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// A subscriber that forwards everything to `inner` except str0m's
/// unknown-stream warning, which it counts.
struct Filter {
    inner: Dispatch,
    dropped: Arc<AtomicU64>,
}

impl Subscriber for Filter {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_str0m_warning(meta) {
            Interest::sometimes()
        } else {
            self.inner.register_callsite(meta)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Only WARN events of our own are needed; the inner subscriber's
        // hint (registered on its own) covers what it wants.
        Some(LevelFilter::WARN)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_str0m_warning(meta) || self.inner.enabled(meta)
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &span::Id, follows: &span::Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if is_str0m_warning(meta) {
            let mut m = Message::default();
            event.record(&mut m);
            if m.0.starts_with(UNKNOWN_STREAM_WARNING) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !self.inner.enabled(meta) {
                return;
            }
        }
        self.inner.event(event);
    }

    fn enter(&self, span: &span::Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &span::Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &span::Id) -> span::Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: span::Id) -> bool {
        self.inner.try_close(id)
    }
}

/// Counts str0m's "data on an unknown stream" drops of the code run under
/// [`StreamDropCounter::count`], instead of logging one line per message.
#[derive(Clone)]
pub(crate) struct StreamDropCounter {
    dispatch: Dispatch,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for StreamDropCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDropCounter").finish_non_exhaustive()
    }
}

impl StreamDropCounter {
    /// Forwards everything else to the subscriber current now.
    pub(crate) fn new() -> Self {
        let inner = tracing::dispatcher::get_default(Dispatch::clone);
        let dropped = Arc::new(AtomicU64::new(0));
        let dispatch = Dispatch::new(Filter {
            inner,
            dropped: Arc::clone(&dropped),
        });
        Self { dispatch, dropped }
    }

    /// Runs `f` and returns its result with the number of unknown-stream
    /// messages str0m dropped meanwhile (on this thread).
    pub(crate) fn count<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.dropped.load(Ordering::Relaxed);
        let out = tracing::dispatcher::with_default(&self.dispatch, f);
        let after = self.dropped.load(Ordering::Relaxed);
        (out, after.wrapping_sub(before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unknown-stream warning is counted and not passed on; other
    /// events (str0m's other warnings included) reach the inner subscriber.
    #[test]
    fn counts_the_unknown_stream_warning_and_forwards_the_rest() {
        #[derive(Default)]
        struct Seen(std::sync::Mutex<Vec<String>>);
        struct Inner(Arc<Seen>);
        impl Subscriber for Inner {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, e: &Event<'_>) {
                let mut m = Message::default();
                e.record(&mut m);
                self.0.0.lock().unwrap().push(m.0);
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }
        let seen = Arc::new(Seen::default());
        let outer = Dispatch::new(Inner(Arc::clone(&seen)));
        let counter = tracing::dispatcher::with_default(&outer, StreamDropCounter::new);
        let ((), n) = counter.count(|| {
            for id in 0..3 {
                tracing::warn!(target: "str0m", "Drop ChannelData event for id: {id:?}");
            }
            tracing::warn!(target: "str0m", "Drop BufferedAmountLow for id: 5");
            tracing::warn!(target: "watchparty", "Drop ChannelData event, but ours");
        });
        assert_eq!(n, 3);
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                "Drop BufferedAmountLow for id: 5".to_owned(),
                "Drop ChannelData event, but ours".to_owned()
            ]
        );
        // Outside `count` nothing is filtered.
        tracing::dispatcher::with_default(&outer, || {
            tracing::warn!(target: "str0m", "Drop ChannelData event for id: 9");
        });
        assert_eq!(seen.0.lock().unwrap().len(), 3);
    }
}
