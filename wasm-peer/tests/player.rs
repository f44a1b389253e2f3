//! The player adapter against a real `<video>` element in headless
//! Chromium and headless Firefox, playing a committed 4 s VP8 + Opus clip
//! (`tests/assets/clip.webm`, 18 kB, made with `ffmpeg -f lavfi -i
//! testsrc=size=64x48:rate=10:duration=4 -f lavfi -i
//! sine=frequency=440:sample_rate=48000:duration=4 -c:v libvpx -b:v 40k -g 10
//! -c:a libopus -b:a 6k -shortest`) through a blob URL. The clip has sound
//! on purpose: Firefox lets a video without an audio track autoplay, so
//! only an audible clip meets its autoplay rule.
//!
//! The adapter's readings go through the core's anti-echo
//! ([`EchoTracker`]): the changes our own actions cause must never be
//! classified as the viewer's intent, while a change made behind the
//! adapter's back (page script pausing the element, as a viewer would) must.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_peer::player::{
    EchoTracker, PlayerAction, PlayerEvent, PlayerObservation, UserIntent,
};
use watchparty_peer::sync_config::SyncConfig;
use watchparty_peer::time::{MediaPos, Rate, TimeDelta};
use watchparty_wasm_peer::clock::Clock;
use watchparty_wasm_peer::player::{MediaPlayer, PlayerInput, SubtitleTrack};
use watchparty_wasm_peer::timer::sleep;
use web_sys::{Blob, BlobPropertyBag, HtmlVideoElement, Url};

wasm_bindgen_test_configure!(run_in_browser);

const CLIP: &[u8] = include_bytes!("assets/clip.webm");
/// Limit for each wait; a broken setup fails instead of hanging.
const WAIT_MS: u32 = 10_000;

struct Rig {
    player: MediaPlayer,
    inputs: Rc<RefCell<Vec<PlayerInput>>>,
    video: HtmlVideoElement,
    url: String,
}

fn clip_url() -> String {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(CLIP));
    let bag = BlobPropertyBag::new();
    bag.set_type("video/webm");
    let blob = Blob::new_with_u8_array_sequence_and_options(&parts, &bag).expect("blob");
    Url::create_object_url_with_blob(&blob).expect("blob url")
}

fn rig() -> Rig {
    let doc = web_sys::window().unwrap().document().unwrap();
    let video: HtmlVideoElement = doc.create_element("video").unwrap().unchecked_into();
    // Muted media may play without a user gesture.
    video.set_muted(true);
    doc.body().unwrap().append_child(&video).unwrap();
    let inputs = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&inputs);
    let player = MediaPlayer::new(
        video.clone().unchecked_into(),
        Clock::new(),
        Rc::new(move |i| sink.borrow_mut().push(i)),
    );
    Rig {
        player,
        inputs,
        video,
        url: clip_url(),
    }
}

impl Rig {
    /// Waits until an observation satisfies `pred`; returns it.
    async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&PlayerObservation) -> bool,
    ) -> PlayerObservation {
        let mut waited = 0;
        loop {
            let found = self.inputs.borrow().iter().find_map(|i| match i {
                PlayerInput::Observation(o) if pred(o) => Some(*o),
                _ => None,
            });
            if let Some(o) = found {
                return o;
            }
            // A periodic reading, as the driver takes them (fed to the
            // tracker like the event readings).
            if let Some(o) = self.player.observe() {
                self.inputs.borrow_mut().push(PlayerInput::Observation(o));
                if pred(&o) {
                    return o;
                }
            }
            assert!(
                waited < WAIT_MS,
                "timed out waiting for {what}: {:?}",
                self.inputs.borrow()
            );
            sleep(20).unwrap().await;
            waited += 20;
        }
    }

    /// Feeds every reading so far to `tracker`; returns the intents found.
    fn classify(&self, tracker: &mut EchoTracker) -> Vec<UserIntent> {
        let drained: Vec<PlayerInput> = self.inputs.borrow_mut().drain(..).collect();
        drained
            .into_iter()
            .filter_map(|i| match i {
                PlayerInput::Observation(o) => tracker.observe(o).intent,
                _ => None,
            })
            .collect()
    }

    fn apply(&self, tracker: &mut EchoTracker, action: PlayerAction) {
        tracker.issued(action, Clock::new().now());
        self.player.apply(action);
    }
}

#[wasm_bindgen_test]
async fn readings_and_actions_on_a_real_video_element() {
    let mut r = rig();
    // Our actions stay "recent" for `action_retry`; short here so the
    // viewer's actions below are outside that window.
    let cfg = SyncConfig {
        action_retry: TimeDelta::from_millis(300),
        ..SyncConfig::default()
    };
    cfg.check().expect("valid config");
    let mut tracker = EchoTracker::new(&cfg);
    r.player.load(&r.url, &[]);
    // Before metadata the element cannot play: buffering.
    let first = r.player.observe().expect("not blocked");
    assert!(first.buffering, "{first:?}");
    r.wait_for("metadata", |o| !o.buffering).await;
    assert!(r.classify(&mut tracker).is_empty());

    // Seek while paused: a `seeked` reading at the target.
    r.apply(
        &mut tracker,
        PlayerAction::Seek {
            position: MediaPos::from_millis(1500),
        },
    );
    let o = r
        .wait_for("seeked", |o| o.event == Some(PlayerEvent::Seeked))
        .await;
    assert!((o.position.as_secs_f64() - 1.5).abs() < 0.05, "{o:?}");
    assert!(o.paused);

    // Play: the element advances.
    r.apply(&mut tracker, PlayerAction::Play);
    r.wait_for("playing", |o| {
        !o.paused && o.position > MediaPos::from_millis(1700)
    })
    .await;

    // Rate nudge.
    let nudged = Rate::from_f64_clamped(1.05);
    r.apply(&mut tracker, PlayerAction::SetRate { rate: nudged });
    let o = r.wait_for("rate", |o| o.rate == nudged).await;
    assert_eq!(r.video.playback_rate(), 1.05);
    assert!(!o.paused);

    // Pause.
    r.apply(&mut tracker, PlayerAction::Pause);
    r.wait_for("paused", |o| o.paused).await;

    // None of that was the viewer.
    let intents = r.classify(&mut tracker);
    assert!(
        intents.is_empty(),
        "our own actions taken for intent: {intents:?}"
    );

    // The viewer plays and then pauses behind our back (after our window):
    // both are intents.
    sleep(400).unwrap().await;
    let promise = r.video.play().unwrap();
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
    r.wait_for("viewer play", |o| !o.paused).await;
    let intents = r.classify(&mut tracker);
    assert!(
        intents.iter().any(|i| matches!(i, UserIntent::Play { .. })),
        "viewer play not seen: {intents:?}"
    );
    // The room follows the viewer (the engine then expects playing).
    tracker.issued(PlayerAction::Play, Clock::new().now());
    sleep(400).unwrap().await;
    r.video.pause().unwrap();
    r.wait_for("viewer pause", |o| o.paused).await;
    let seen = format!("{:?}", r.inputs.borrow());
    let intents = r.classify(&mut tracker);
    assert!(
        intents
            .iter()
            .any(|i| matches!(i, UserIntent::Pause { .. })),
        "viewer pause not seen: {intents:?} in {seen}"
    );
    r.video.remove();
}

#[wasm_bindgen_test]
async fn subtitles_are_offered_not_chosen_and_removed_on_reload() {
    let mut r = rig();
    let subs = [
        SubtitleTrack {
            url: "data:text/vtt,WEBVTT%0A".into(),
            language: Some("en".into()),
            label: "English".into(),
        },
        SubtitleTrack {
            url: "data:text/vtt,WEBVTT%0A".into(),
            language: None,
            label: "Subtitles 2".into(),
        },
    ];
    r.player.load(&r.url, &subs);
    let tracks = r.video.query_selector_all("track").unwrap();
    assert_eq!(tracks.length(), 2);
    let t0: web_sys::HtmlTrackElement = tracks.get(0).unwrap().unchecked_into();
    assert_eq!(t0.kind(), "subtitles");
    assert_eq!(t0.srclang(), "en");
    assert_eq!(t0.label(), "English");
    assert!(!t0.default(), "the room never picks a track for the viewer");
    r.wait_for("metadata", |o| !o.buffering).await;
    // The viewer picks the second track; our next load for the same element
    // replaces our tracks but nothing else touches modes meanwhile.
    let list = r.video.text_tracks().unwrap();
    list.get(1)
        .unwrap()
        .set_mode(web_sys::TextTrackMode::Showing);
    r.player.apply(PlayerAction::Seek {
        position: MediaPos::from_millis(500),
    });
    r.wait_for("seeked", |o| o.event == Some(PlayerEvent::Seeked))
        .await;
    assert_eq!(list.get(1).unwrap().mode(), web_sys::TextTrackMode::Showing);
    r.player.load(&r.url, &subs[..1]);
    assert_eq!(r.video.query_selector_all("track").unwrap().length(), 1);
    drop(r.player);
    assert_eq!(
        r.video.query_selector_all("track").unwrap().length(),
        0,
        "dropping the adapter removes its tracks"
    );
    r.video.remove();
}

#[wasm_bindgen_test]
fn subtitle_tracks_over_the_limit_are_left_out() {
    use watchparty_wasm_peer::player::MAX_SUBTITLE_TRACKS;
    let mut r = rig();
    let subs: Vec<SubtitleTrack> = (0..MAX_SUBTITLE_TRACKS + 8)
        .map(|i| SubtitleTrack {
            url: "data:text/vtt,WEBVTT%0A".into(),
            language: None,
            label: format!("track {i}"),
        })
        .collect();
    r.player.load(&r.url, &subs);
    let tracks = r.video.query_selector_all("track").unwrap();
    assert_eq!(tracks.length() as usize, MAX_SUBTITLE_TRACKS);
    // The first ones, in order.
    let label = |i: u32| -> String {
        tracks
            .get(i)
            .unwrap()
            .unchecked_into::<web_sys::HtmlTrackElement>()
            .label()
    };
    assert_eq!(label(0), "track 0");
    let last = u32::try_from(MAX_SUBTITLE_TRACKS - 1).unwrap();
    assert_eq!(label(last), format!("track {last}"));
    // At the limit exactly, nothing is left out.
    r.player.load(&r.url, &subs[..MAX_SUBTITLE_TRACKS]);
    assert_eq!(
        r.video.query_selector_all("track").unwrap().length() as usize,
        MAX_SUBTITLE_TRACKS
    );
    drop(r.player);
    r.video.remove();
}

/// Chromium runs these tests with `--autoplay-policy=document-user-activation-required`
/// and Firefox with `media.autoplay.default=1` (`webdriver.json`): an
/// unmuted, audible element's `play()` without a user gesture
/// is refused for real (`NotAllowedError`), as on a page the viewer has
/// not clicked yet. Muted playback stays allowed, as on the web.
#[wasm_bindgen_test]
async fn autoplay_refusal_holds_readings_until_unlocked() {
    let mut r = rig();
    r.video.set_muted(false);
    r.player.load(&r.url, &[]);
    r.wait_for("metadata", |o| !o.buffering).await;
    r.inputs.borrow_mut().clear();

    r.player.apply(PlayerAction::Play);
    let mut waited = 0;
    while !r.inputs.borrow().contains(&PlayerInput::AutoplayBlocked) {
        assert!(
            waited < WAIT_MS,
            "play() was not refused: {:?} paused={}",
            r.inputs.borrow(),
            r.video.paused()
        );
        sleep(20).unwrap().await;
        waited += 20;
    }
    assert!(r.player.autoplay_blocked());
    assert!(r.video.paused(), "the browser refused to play");
    // Held: the refusal's pause must not reach the core as the viewer
    // pausing, neither as a periodic reading nor as an event reading.
    assert_eq!(r.player.observe(), None);
    r.inputs.borrow_mut().clear();
    r.player.apply(PlayerAction::Seek {
        position: MediaPos::from_millis(1000),
    });
    sleep(500).unwrap().await;
    assert!(
        !r.inputs
            .borrow()
            .iter()
            .any(|i| matches!(i, PlayerInput::Observation(_))),
        "readings while blocked: {:?}",
        r.inputs.borrow()
    );
    // A second refused play() raises nothing new.
    r.player.apply(PlayerAction::Play);
    sleep(300).unwrap().await;
    assert!(!r.inputs.borrow().contains(&PlayerInput::AutoplayBlocked));

    // The viewer makes playback possible (here by muting, which needs no
    // gesture; on the page it is the "click to join playback" button,
    // covered by the e2e test `web_autoplay`) and unlocks: the room's play
    // is carried out and readings flow again.
    r.video.set_muted(true);
    r.player.unlock();
    r.wait_for("playing after unlock", |o| !o.paused).await;
    assert!(r.inputs.borrow().contains(&PlayerInput::AutoplayUnblocked));
    assert!(!r.player.autoplay_blocked());
    assert!(r.player.observe().is_some());
    drop(r.player);
    r.video.remove();
}
