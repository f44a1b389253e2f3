//! The player adapter: an `HTMLMediaElement` as the core sees a player.
//!
//! - **Readings:** every media event (`play`, `pause`, `playing`, `waiting`,
//!   `stalled`, `seeking`, `seeked`, `ratechange`, `ended`, `canplay`,
//!   `loadedmetadata`) and every [`MediaPlayer::observe`] call produce a
//!   [`PlayerObservation`]: `currentTime`, `paused`, `playbackRate`,
//!   `ended`, and *buffering* (a source is set and the element cannot play
//!   on: no metadata yet, or `waiting`/`stalled` with less than
//!   `HAVE_FUTURE_DATA`).
//! - **Actions:** [`MediaPlayer::apply`] carries out the core's
//!   [`PlayerAction`]s (play/pause/seek/rate nudges). The events our own
//!   actions cause are reported like any other; the core's anti-echo
//!   (`watchparty_peer::player::EchoTracker`) matches them against what it
//!   commanded, so they are never taken for the viewer's intent.
//! - **Autoplay refusal:** when `play()` is rejected with `NotAllowedError`,
//!   the element stays paused although the room plays. Reporting that pause
//!   would look like the viewer pausing, so readings are **held** (not
//!   reported) and [`PlayerInput::AutoplayBlocked`] is raised until
//!   [`MediaPlayer::unlock`] is called from a click handler (sticky user
//!   activation) or the viewer starts the element themself.
//! - **Media:** [`MediaPlayer::load`] sets the signed stream URL and offers
//!   the item's subtitles as `<track kind="subtitles">` elements without a
//!   `default` flag; the adapter never changes text-track modes or audio
//!   tracks afterwards, so each viewer's choice stands.
//!
//! Handlers are closures owned by the adapter; dropping it removes them and
//! the tracks it added.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::JsFuture;
use watchparty_peer::player::{PlayerAction, PlayerEvent, PlayerObservation};
use watchparty_peer::time::{MediaPos, Rate};
use web_sys::{HtmlMediaElement, HtmlTrackElement};

use crate::clock::Clock;
use crate::error::{js_error_name, js_message};

/// How often the driver takes a reading while the element plays.
pub const SAMPLE_INTERVAL_MS: u32 = 100;
/// How often it takes one while paused (events cover the rest).
pub const IDLE_SAMPLE_INTERVAL_MS: u32 = 1000;
/// Most subtitle tracks offered for one item.
pub const MAX_SUBTITLE_TRACKS: usize = 32;

/// `HTMLMediaElement.HAVE_METADATA`.
const HAVE_METADATA: u16 = 1;
/// `HTMLMediaElement.HAVE_FUTURE_DATA`.
const HAVE_FUTURE_DATA: u16 = 3;

/// The media events the adapter listens to.
const EVENTS: [&str; 12] = [
    "play",
    "pause",
    "playing",
    "waiting",
    "stalled",
    "seeking",
    "seeked",
    "ratechange",
    "ended",
    "canplay",
    "loadedmetadata",
    "error",
];

/// What the adapter reports to the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerInput {
    /// A reading.
    Observation(PlayerObservation),
    /// `play()` was refused by the autoplay policy; readings are held until
    /// [`MediaPlayer::unlock`].
    AutoplayBlocked,
    /// Playback works again after a refusal.
    AutoplayUnblocked,
    /// The element could not load or decode the media.
    Failed(String),
}

/// A subtitle track to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitleTrack {
    /// URL of the WebVTT file (the server's signed subtitle URL).
    pub url: String,
    /// BCP 47 language tag, if known.
    pub language: Option<String>,
    /// Label shown in the player's menu.
    pub label: String,
}

/// State shared with the event handlers.
#[derive(Debug, Default)]
struct Flags {
    /// `waiting`/`stalled` seen since the last `playing`/`canplay`.
    waiting: Cell<bool>,
    /// Autoplay refused; readings are held.
    blocked: Cell<bool>,
    /// The last play/pause the core asked for (`Some(true)`: play).
    wanted_playing: Cell<Option<bool>>,
    /// A `play()` promise is pending.
    play_pending: Cell<bool>,
}

type Listener = Closure<dyn FnMut(web_sys::Event)>;

/// The adapter. See the module docs.
pub struct MediaPlayer {
    el: HtmlMediaElement,
    clock: Clock,
    flags: Rc<Flags>,
    deliver: Rc<dyn Fn(PlayerInput)>,
    listeners: Vec<(&'static str, Listener)>,
    tracks: Vec<HtmlTrackElement>,
}

impl std::fmt::Debug for MediaPlayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPlayer")
            .field("flags", &self.flags)
            .field("tracks", &self.tracks.len())
            .finish_non_exhaustive()
    }
}

/// Reads the element now.
fn read(
    el: &HtmlMediaElement,
    clock: &Clock,
    flags: &Flags,
    event: Option<PlayerEvent>,
) -> PlayerObservation {
    let ready = el.ready_state();
    let has_source = !el.current_src().is_empty() || !el.src().is_empty();
    let ended = el.ended();
    let buffering = has_source
        && !ended
        && (ready < HAVE_METADATA || (flags.waiting.get() && ready < HAVE_FUTURE_DATA));
    PlayerObservation {
        at: clock.now(),
        position: position_of(el.current_time()),
        paused: el.paused(),
        rate: Rate::from_f64_clamped(el.playback_rate()),
        buffering,
        ended,
        event,
    }
}

/// `currentTime` (seconds; NaN before metadata) as a media position.
fn position_of(secs: f64) -> MediaPos {
    if secs.is_finite() && secs > 0.0 {
        MediaPos::from_secs_f64(secs)
    } else {
        MediaPos::ZERO
    }
}

impl MediaPlayer {
    /// Attaches to `el`; readings and notices go to `deliver`.
    #[must_use]
    pub fn new(el: HtmlMediaElement, clock: Clock, deliver: Rc<dyn Fn(PlayerInput)>) -> Self {
        let flags = Rc::new(Flags::default());
        let mut listeners = Vec::with_capacity(EVENTS.len());
        for name in EVENTS {
            let listener = {
                let el = el.clone();
                let clock = clock.clone();
                let flags = Rc::clone(&flags);
                let deliver = Rc::clone(&deliver);
                Listener::new(move |_: web_sys::Event| {
                    on_event(name, &el, &clock, &flags, deliver.as_ref());
                })
            };
            // Adding a listener for a known event name does not throw.
            let _ = el.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            listeners.push((name, listener));
        }
        Self {
            el,
            clock,
            flags,
            deliver,
            listeners,
            tracks: Vec::new(),
        }
    }

    /// A reading now, or `None` while readings are held (autoplay refused).
    #[must_use]
    pub fn observe(&self) -> Option<PlayerObservation> {
        if self.flags.blocked.get() {
            return None;
        }
        Some(read(&self.el, &self.clock, &self.flags, None))
    }

    /// Whether the element is playing (for the sampling interval).
    #[must_use]
    pub fn is_playing(&self) -> bool {
        !self.el.paused()
    }

    /// Whether autoplay was refused and not yet unlocked.
    #[must_use]
    pub fn autoplay_blocked(&self) -> bool {
        self.flags.blocked.get()
    }

    /// The element.
    #[must_use]
    pub fn element(&self) -> &HtmlMediaElement {
        &self.el
    }

    /// Carries out an action of the core.
    pub fn apply(&self, action: PlayerAction) {
        match action {
            PlayerAction::Play => {
                self.flags.wanted_playing.set(Some(true));
                self.start_play();
            }
            PlayerAction::Pause => {
                self.flags.wanted_playing.set(Some(false));
                self.el.pause().ok();
            }
            PlayerAction::Seek { position } => {
                self.el.set_current_time(position.as_secs_f64());
            }
            PlayerAction::SetRate { rate } => {
                self.el.set_playback_rate(rate.as_f64());
            }
        }
    }

    fn start_play(&self) {
        let promise = match self.el.play() {
            Ok(p) => p,
            Err(e) => {
                (self.deliver)(PlayerInput::Failed(js_message(&e)));
                return;
            }
        };
        self.flags.play_pending.set(true);
        let flags = Rc::clone(&self.flags);
        let deliver = Rc::clone(&self.deliver);
        wasm_bindgen_futures::spawn_local(async move {
            let result = JsFuture::from(promise).await;
            flags.play_pending.set(false);
            match result {
                Ok(_) => {
                    if flags.blocked.replace(false) {
                        deliver(PlayerInput::AutoplayUnblocked);
                    }
                }
                Err(e) if js_error_name(&e).as_deref() == Some("NotAllowedError") => {
                    if !flags.blocked.replace(true) {
                        deliver(PlayerInput::AutoplayBlocked);
                    }
                }
                // AbortError: a pause or a new source interrupted the play
                // request — the core's next reading sorts it out.
                Err(_) => {}
            }
        });
    }

    /// Call from a click handler after [`PlayerInput::AutoplayBlocked`]:
    /// readings flow again, and if the room wants playback, `play()` is
    /// called within the user gesture.
    pub fn unlock(&self) {
        let was_blocked = self.flags.blocked.replace(false);
        if self.flags.wanted_playing.get() == Some(true) && self.el.paused() {
            self.start_play();
        }
        if was_blocked {
            (self.deliver)(PlayerInput::AutoplayUnblocked);
        }
    }

    /// Loads a new item: sets `url` as the source and offers `subtitles`
    /// (at most [`MAX_SUBTITLE_TRACKS`]) as `<track>` children, replacing
    /// the tracks of the previous item.
    pub fn load(&mut self, url: &str, subtitles: &[SubtitleTrack]) {
        self.remove_tracks();
        self.flags.waiting.set(false);
        self.el.set_src(url);
        let Some(doc) = self.el.owner_document() else {
            return;
        };
        for sub in subtitles.iter().take(MAX_SUBTITLE_TRACKS) {
            let Ok(track) = doc
                .create_element("track")
                .map(JsCast::unchecked_into::<HtmlTrackElement>)
            else {
                continue;
            };
            track.set_kind("subtitles");
            track.set_src(&sub.url);
            track.set_label(&sub.label);
            if let Some(lang) = &sub.language {
                track.set_srclang(lang);
            }
            if self.el.append_child(&track).is_ok() {
                self.tracks.push(track);
            }
        }
        self.el.load();
    }

    fn remove_tracks(&mut self) {
        for t in self.tracks.drain(..) {
            t.remove();
        }
    }
}

fn on_event(
    name: &'static str,
    el: &HtmlMediaElement,
    clock: &Clock,
    flags: &Flags,
    deliver: &dyn Fn(PlayerInput),
) {
    let event = match name {
        "waiting" => {
            flags.waiting.set(true);
            Some(PlayerEvent::Waiting)
        }
        "stalled" => {
            if el.ready_state() < HAVE_FUTURE_DATA {
                flags.waiting.set(true);
            }
            None
        }
        "playing" => {
            flags.waiting.set(false);
            // The viewer (or an unlock) got playback going after a refusal.
            if flags.blocked.replace(false) {
                deliver(PlayerInput::AutoplayUnblocked);
            }
            Some(PlayerEvent::Playing)
        }
        "canplay" => {
            flags.waiting.set(false);
            None
        }
        "seeked" => Some(PlayerEvent::Seeked),
        "ended" => Some(PlayerEvent::Ended),
        "error" => {
            let detail = el.error().map_or_else(
                || "media error".to_owned(),
                |e| {
                    let m = e.message();
                    if m.is_empty() {
                        format!("media error code {}", e.code())
                    } else {
                        m.chars().take(crate::error::MAX_JS_MESSAGE_CHARS).collect()
                    }
                },
            );
            deliver(PlayerInput::Failed(detail));
            return;
        }
        _ => None,
    };
    if flags.blocked.get() {
        return;
    }
    deliver(PlayerInput::Observation(read(el, clock, flags, event)));
}

impl Drop for MediaPlayer {
    fn drop(&mut self) {
        for (name, listener) in &self.listeners {
            let _ = self
                .el
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
        self.remove_tracks();
    }
}
