//! The acoustic measure: what people hear, from recordings of each
//! player's audio output (pure functions; the capture is in
//! `tests/tests/support/pulse.rs`, the measurement in
//! `tests/tests/acoustic.rs`).
//!
//! The test clip's audio is a **marker track** ([`marker_sample`], made by
//! ffmpeg from [`ffmpeg_marker_source`]): at the start of every second `k`
//! of media time, a [`CHIRP_SECS`] linear chirp from [`CHIRP_FROM_HZ`] to
//! [`CHIRP_TO_HZ`] (its sharp autocorrelation times the marker), then after
//! a short gap an identity tone whose frequency tells `k` modulo
//! [`ID_COUNT`] (so a player a whole second or more off is not mistaken for
//! one in sync); silence for the rest of the second.
//!
//! [`pair_offsets`] compares two recordings captured sample-aligned (one
//! multichannel stream): it finds the markers in each ([`find_markers`]:
//! energy onset after a quiet stretch, identity by the strongest tone),
//! pairs markers of the same identity, and refines each pair's coarse lag
//! by normalised cross-correlation of the chirp (sub-sample by a parabola
//! through the peak). The result, marker by marker, is how much later the
//! second player sounded than the first; [`Summary`] gives the median,
//! p99, and drift over time.

/// Time between two markers (s of media time).
pub const PERIOD_SECS: f64 = 1.0;
/// Length of a marker's chirp (s).
pub const CHIRP_SECS: f64 = 0.02;
/// Chirp start frequency (Hz).
pub const CHIRP_FROM_HZ: f64 = 1000.0;
/// Chirp end frequency (Hz); well inside what Opus keeps at the clip's
/// bitrate.
pub const CHIRP_TO_HZ: f64 = 5000.0;
/// Chirp amplitude (full scale 1).
pub const CHIRP_AMPLITUDE: f64 = 0.8;
/// The identity tone plays from this far into the second (s)…
pub const ID_FROM_SECS: f64 = 0.05;
/// …to this far (s).
pub const ID_TO_SECS: f64 = 0.08;
/// Identity tone amplitude.
pub const ID_AMPLITUDE: f64 = 0.5;
/// Number of distinct identities: marker `k` has identity `k % ID_COUNT`,
/// so pairing is unambiguous for offsets under `ID_COUNT / 2` periods.
pub const ID_COUNT: u32 = 8;
/// Frequency of identity 0 (Hz)…
pub const ID_BASE_HZ: f64 = 600.0;
/// …and the step between identities (Hz).
pub const ID_STEP_HZ: f64 = 200.0;

/// Envelope window (s) of the onset detector.
const ENVELOPE_SECS: f64 = 0.001;
/// An onset needs this much quiet before it (s): longer than the gap
/// between chirp and identity tone, shorter than the silence before a
/// chirp.
const QUIET_BEFORE_SECS: f64 = 0.2;
/// Onset threshold, as a fraction of the recording's loudest envelope.
const ONSET_FRACTION: f64 = 0.1;
/// A recording whose loudest envelope (mean square) stays under this holds
/// no markers (about −40 dBFS).
const MIN_PEAK_ENERGY: f64 = 1e-4;
/// The identity is read over this part of the tone (s after the onset),
/// clear of its edges and of the onset's detection delay.
const ID_READ: (f64, f64) = (0.055, 0.075);
/// The strongest identity must beat the second by this power ratio.
const ID_MARGIN: f64 = 2.0;
/// The chirp window compared: from this long before the onset (s)…
const WINDOW_BEFORE_SECS: f64 = 0.002;
/// …to this long after it (s).
const WINDOW_AFTER_SECS: f64 = 0.025;
/// How far around the coarse lag the fine search looks (s): more than the
/// onset detector's error between two channels.
const SEARCH_SECS: f64 = 0.005;
/// A pair whose best normalised correlation is under this is not counted
/// (one of the two is not the same chirp: noise, a cut, a stretch).
pub const MIN_CORRELATION: f64 = 0.6;

/// Largest |offset| a pair can have, from the identities (s).
pub fn max_offset_secs() -> f64 {
    (f64::from(ID_COUNT) / 2.0 - 0.5) * PERIOD_SECS
}

/// Frequency of identity `id` (Hz).
pub fn id_hz(id: u32) -> f64 {
    ID_BASE_HZ + ID_STEP_HZ * f64::from(id % ID_COUNT)
}

/// The marker track at media time `t` (s), in −1..1.
pub fn marker_sample(t: f64) -> f64 {
    let k = (t / PERIOD_SECS).floor();
    let p = t - k * PERIOD_SECS;
    let sweep = (CHIRP_TO_HZ - CHIRP_FROM_HZ) / (2.0 * CHIRP_SECS);
    if (0.0..CHIRP_SECS).contains(&p) {
        CHIRP_AMPLITUDE * (std::f64::consts::TAU * (CHIRP_FROM_HZ * p + sweep * p * p)).sin()
    } else if (ID_FROM_SECS..ID_TO_SECS).contains(&p) {
        // `k` is a whole, non-negative number of periods for t ≥ 0.
        let id = (k as i64).rem_euclid(i64::from(ID_COUNT)) as u32;
        ID_AMPLITUDE * (std::f64::consts::TAU * id_hz(id) * t).sin()
    } else {
        0.0
    }
}

/// The same track as an ffmpeg `aevalsrc` source of `secs` seconds at
/// `rate` Hz (for `-f lavfi -i`).
pub fn ffmpeg_marker_source(secs: u32, rate: u32) -> String {
    let sweep = (CHIRP_TO_HZ - CHIRP_FROM_HZ) / (2.0 * CHIRP_SECS);
    // Commas inside the expression are escaped for the filter graph.
    let expr = format!(
        "if(lt(mod(t,{PERIOD_SECS}),{CHIRP_SECS}), \
         {CHIRP_AMPLITUDE}*sin(2*PI*({CHIRP_FROM_HZ}*mod(t,{PERIOD_SECS})+{sweep}*mod(t,{PERIOD_SECS})*mod(t,{PERIOD_SECS}))), \
         if(gte(mod(t,{PERIOD_SECS}),{ID_FROM_SECS})*lt(mod(t,{PERIOD_SECS}),{ID_TO_SECS}), \
         {ID_AMPLITUDE}*sin(2*PI*({ID_BASE_HZ}+{ID_STEP_HZ}*mod(floor(t/{PERIOD_SECS}),{ID_COUNT}))*t), 0))"
    )
    .replace(' ', "")
    .replace(',', "\\,");
    format!("aevalsrc=exprs={expr}:s={rate}:d={secs}")
}

/// Splits interleaved signed 16-bit little-endian audio of `channels`
/// channels into one `f32` vector per channel (a trailing partial frame is
/// dropped).
pub fn deinterleave_s16le(bytes: &[u8], channels: usize) -> Vec<Vec<f32>> {
    let channels = channels.max(1);
    let frames = bytes.len() / (2 * channels);
    let mut out = vec![Vec::with_capacity(frames); channels];
    for frame in bytes.chunks_exact(2 * channels) {
        for (c, s) in frame.chunks_exact(2).enumerate() {
            out[c].push(f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0);
        }
    }
    out
}

/// A marker found in a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Sample index of its onset.
    pub at: usize,
    /// Its identity (media second modulo [`ID_COUNT`]).
    pub id: u32,
}

fn secs_to_samples(secs: f64, rate: u32) -> usize {
    // Only small non-negative durations (the constants above).
    (secs * f64::from(rate)).round() as usize
}

/// Power of `x` at `hz` (Goertzel).
fn tone_power(x: &[f32], hz: f64, rate: u32) -> f64 {
    let w = std::f64::consts::TAU * hz / f64::from(rate);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The markers of one recording at `rate` Hz, in order. A marker cut by
/// either end of the recording, or whose identity is unclear, is left out.
pub fn find_markers(x: &[f32], rate: u32) -> Vec<Marker> {
    let w = secs_to_samples(ENVELOPE_SECS, rate).max(1);
    if x.len() < w {
        return Vec::new();
    }
    // Trailing mean square over `w` samples.
    let mut env = Vec::with_capacity(x.len());
    let mut acc = 0.0f64;
    for (i, &v) in x.iter().enumerate() {
        acc += f64::from(v) * f64::from(v);
        if i >= w {
            acc -= f64::from(x[i - w]) * f64::from(x[i - w]);
        }
        env.push(acc.max(0.0) / w as f64);
    }
    let peak = env.iter().copied().fold(0.0, f64::max);
    if peak < MIN_PEAK_ENERGY {
        return Vec::new();
    }
    let threshold = ONSET_FRACTION * peak;
    let quiet = secs_to_samples(QUIET_BEFORE_SECS, rate);
    let (read_from, read_to) = (
        secs_to_samples(ID_READ.0, rate),
        secs_to_samples(ID_READ.1, rate),
    );
    let mut out = Vec::new();
    // The last loud sample; the start counts as loud (a marker there may
    // be cut).
    let mut last_loud = 0usize;
    for (i, &e) in env.iter().enumerate() {
        if e < threshold {
            continue;
        }
        let onset = i - last_loud > quiet;
        last_loud = i;
        if !onset || i + read_to > x.len() {
            continue;
        }
        let window = &x[i + read_from..i + read_to];
        let mut powers: Vec<(f64, u32)> = (0..ID_COUNT)
            .map(|id| (tone_power(window, id_hz(id), rate), id))
            .collect();
        powers.sort_by(|a, b| b.0.total_cmp(&a.0));
        if powers[0].0 >= ID_MARGIN * powers[1].0 {
            out.push(Marker {
                at: i,
                id: powers[0].1,
            });
        }
    }
    out
}

/// One paired marker: when the first player sounded it, and how much
/// later the second one did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// Time of the first player's marker from the recording's start (s).
    pub at_secs: f64,
    /// Second player's marker minus the first's (ms): positive = the
    /// second sounds later.
    pub offset_ms: f64,
    /// Normalised correlation of the two chirps (1 = identical).
    pub correlation: f64,
}

/// Two recordings compared marker by marker.
#[derive(Debug, Clone, PartialEq)]
pub struct PairResult {
    /// Markers found in the first recording.
    pub markers_a: usize,
    /// Markers found in the second recording.
    pub markers_b: usize,
    /// The paired markers, in order.
    pub offsets: Vec<Offset>,
}

/// The best lag (samples, fractional) of `b` against the window of `a`
/// starting at `start`, searched in `lags`, with its normalised
/// correlation; `None` if a window falls outside a recording.
fn best_lag(
    a: &[f32],
    b: &[f32],
    start: usize,
    len: usize,
    lags: std::ops::RangeInclusive<i64>,
) -> Option<(f64, f64)> {
    let ta = a.get(start..start + len)?;
    let ea: f64 = ta.iter().map(|v| f64::from(*v).powi(2)).sum();
    let mut scores = Vec::new();
    for lag in lags.clone() {
        let from = usize::try_from(start as i64 + lag).ok()?;
        let tb = b.get(from..from + len)?;
        let (mut dot, mut eb) = (0.0f64, 0.0f64);
        for (x, y) in ta.iter().zip(tb) {
            dot += f64::from(*x) * f64::from(*y);
            eb += f64::from(*y) * f64::from(*y);
        }
        let norm = (ea * eb).sqrt();
        scores.push(if norm > 0.0 { dot / norm } else { 0.0 });
    }
    let (k, &best) = scores
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))?;
    // A parabola through the peak and its neighbours (at an edge of the
    // search: the peak itself).
    let shift = match (k.checked_sub(1).map(|j| scores[j]), scores.get(k + 1)) {
        (Some(l), Some(&r)) => {
            let d = l - 2.0 * best + r;
            if d < 0.0 { 0.5 * (l - r) / d } else { 0.0 }
        }
        _ => 0.0,
    };
    Some((*lags.start() as f64 + k as f64 + shift, best))
}

/// Compares recordings `a` and `b` (same `rate`, captured sample-aligned)
/// marker by marker.
pub fn pair_offsets(a: &[f32], b: &[f32], rate: u32) -> PairResult {
    let ma = find_markers(a, rate);
    let mb = find_markers(b, rate);
    let max = secs_to_samples(max_offset_secs(), rate) as i64;
    let before = secs_to_samples(WINDOW_BEFORE_SECS, rate);
    let len = before + secs_to_samples(WINDOW_AFTER_SECS, rate);
    let search = secs_to_samples(SEARCH_SECS, rate) as i64;
    let mut offsets = Vec::new();
    for m in &ma {
        let nearest = mb
            .iter()
            .filter(|n| n.id == m.id)
            .map(|n| n.at as i64 - m.at as i64)
            .filter(|lag| lag.abs() <= max)
            .min_by_key(|lag| lag.abs());
        let (Some(coarse), Some(start)) = (nearest, m.at.checked_sub(before)) else {
            continue;
        };
        let Some((lag, corr)) = best_lag(a, b, start, len, coarse - search..=coarse + search)
        else {
            continue;
        };
        if corr >= MIN_CORRELATION {
            offsets.push(Offset {
                at_secs: m.at as f64 / f64::from(rate),
                offset_ms: lag * 1000.0 / f64::from(rate),
                correlation: corr,
            });
        }
    }
    PairResult {
        markers_a: ma.len(),
        markers_b: mb.len(),
        offsets,
    }
}

/// Summary of a pair's offsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Paired markers.
    pub count: usize,
    /// Median of |offset| (ms).
    pub median_abs_ms: f64,
    /// 99th percentile (nearest rank) of |offset| (ms).
    pub p99_abs_ms: f64,
    /// Largest |offset| (ms).
    pub max_abs_ms: f64,
    /// Median of the signed offset (ms): which player sounds first.
    pub median_ms: f64,
    /// Drift: least-squares slope of the signed offset over time (ms per
    /// minute); 0 with fewer than two markers.
    pub drift_ms_per_min: f64,
}

/// Nearest-rank percentile of sorted, non-empty `s`.
fn nearest_rank(s: &[f64], q: f64) -> f64 {
    let rank = (q * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

impl Summary {
    /// The summary of `offsets`, `None` when there are none.
    pub fn of(offsets: &[Offset]) -> Option<Summary> {
        if offsets.is_empty() {
            return None;
        }
        let mut abs: Vec<f64> = offsets.iter().map(|o| o.offset_ms.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let mut signed: Vec<f64> = offsets.iter().map(|o| o.offset_ms).collect();
        signed.sort_by(f64::total_cmp);
        let n = offsets.len() as f64;
        let mt = offsets.iter().map(|o| o.at_secs).sum::<f64>() / n;
        let mo = offsets.iter().map(|o| o.offset_ms).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for o in offsets {
            sxy += (o.at_secs - mt) * (o.offset_ms - mo);
            sxx += (o.at_secs - mt).powi(2);
        }
        Some(Summary {
            count: offsets.len(),
            median_abs_ms: nearest_rank(&abs, 0.5),
            p99_abs_ms: nearest_rank(&abs, 0.99),
            max_abs_ms: abs[abs.len() - 1],
            median_ms: nearest_rank(&signed, 0.5),
            drift_ms_per_min: if sxx > 0.0 { 60.0 * sxy / sxx } else { 0.0 },
        })
    }
}

/// One video frame as a page presented it (`requestVideoFrameCallback`):
/// its media time (s) and when it was expected on screen (wall-clock ms,
/// `performance.timeOrigin + expectedDisplayTime`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// The frame's media time (s).
    pub media_secs: f64,
    /// When it was (expected to be) on screen (ms since the epoch).
    pub shown_ms: f64,
}

/// Two media times closer than this (s) are the same frame.
const SAME_FRAME_SECS: f64 = 1e-4;

/// The visual offsets of two pages, frame by frame: for each frame both
/// presented, when the second showed it minus when the first did (ms;
/// positive = the second shows it later), at the first's display time.
/// Frames only one page presented are left out; if a page presented a
/// frame twice (after a seek back), its first showing counts.
pub fn frame_offsets(a: &[Frame], b: &[Frame]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<&Frame> = b.iter().collect();
    sorted.sort_by(|x, y| {
        x.media_secs
            .total_cmp(&y.media_secs)
            .then(x.shown_ms.total_cmp(&y.shown_ms))
    });
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for f in a {
        if seen
            .iter()
            .any(|m: &f64| (m - f.media_secs).abs() < SAME_FRAME_SECS)
        {
            continue;
        }
        seen.push(f.media_secs);
        // The first of `b`'s showings of that frame.
        let i = sorted.partition_point(|g| g.media_secs < f.media_secs - SAME_FRAME_SECS);
        if let Some(g) = sorted.get(i)
            && (g.media_secs - f.media_secs).abs() < SAME_FRAME_SECS
        {
            out.push((f.shown_ms, g.shown_ms - f.shown_ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    /// `secs` of a player that sounds media time `media(t)` at recording
    /// time `t`, plus uniform noise of amplitude `noise` (fixed seed).
    fn record(secs: f64, media: impl Fn(f64) -> Option<f64>, noise: f64, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let n = (secs * f64::from(RATE)) as usize;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                let t = i as f64 / f64::from(RATE);
                let s = media(t).map_or(0.0, |m| if m >= 0.0 { marker_sample(m) } else { 0.0 });
                (s + noise * r) as f32
            })
            .collect()
    }

    /// A player that starts media time 0 at recording time `start` (s).
    fn player(start: f64) -> impl Fn(f64) -> Option<f64> {
        move |t| Some(t - start)
    }

    #[test]
    fn known_offsets_are_measured_to_a_fraction_of_a_sample() {
        let a = record(12.0, player(0.3), 0.0, 1);
        for delay_ms in [7.3, -4.9, 0.0, 0.02] {
            let b = record(12.0, player(0.3 + delay_ms / 1000.0), 0.0, 2);
            let r = pair_offsets(&a, &b, RATE);
            assert!(r.markers_a >= 11, "{r:?}");
            assert_eq!(r.offsets.len(), r.markers_a, "{r:?}");
            for o in &r.offsets {
                assert!(
                    (o.offset_ms - delay_ms).abs() < 0.02,
                    "{delay_ms} ms: {o:?}"
                );
                assert!(o.correlation > 0.95, "{o:?}");
            }
            let s = Summary::of(&r.offsets).unwrap();
            assert!((s.median_abs_ms - delay_ms.abs()).abs() < 0.02, "{s:?}");
            assert!(s.drift_ms_per_min.abs() < 0.1, "{s:?}");
        }
    }

    #[test]
    fn noise_does_not_move_the_offsets() {
        let a = record(10.0, player(0.25), 0.05, 3);
        let b = record(10.0, player(0.25 + 0.0123), 0.05, 4);
        let r = pair_offsets(&a, &b, RATE);
        assert!(r.offsets.len() >= 9, "{r:?}");
        for o in &r.offsets {
            assert!((o.offset_ms - 12.3).abs() < 0.1, "{o:?}");
        }
    }

    #[test]
    fn a_missing_marker_is_left_out_not_mispaired() {
        let a = record(10.0, player(0.25), 0.0, 5);
        // The second player is silent during media second 4.
        let b = record(
            10.0,
            |t| {
                let m = t - 0.26;
                (!(4.0..5.0).contains(&m)).then_some(m)
            },
            0.0,
            6,
        );
        let r = pair_offsets(&a, &b, RATE);
        assert_eq!(r.markers_b + 1, r.markers_a, "{r:?}");
        assert_eq!(r.offsets.len(), r.markers_a - 1, "{r:?}");
        for o in &r.offsets {
            assert!((o.offset_ms - 10.0).abs() < 0.05, "{o:?}");
        }
        assert!(
            !r.offsets.iter().any(|o| (o.at_secs - 4.25).abs() < 0.1),
            "{r:?}"
        );
    }

    #[test]
    fn offsets_of_more_than_half_a_period_are_told_by_the_identity() {
        let a = record(12.0, player(0.2), 0.0, 7);
        let b = record(12.0, player(0.2 + 1.3), 0.0, 8);
        let r = pair_offsets(&a, &b, RATE);
        assert!(r.offsets.len() >= 9, "{r:?}");
        for o in &r.offsets {
            assert!((o.offset_ms - 1300.0).abs() < 0.05, "{o:?}");
        }
    }

    #[test]
    fn drift_is_the_slope_of_the_offsets() {
        let a = record(20.0, player(0.2), 0.0, 9);
        // 0.5 ms later every second: 30 ms per minute.
        let b = record(20.0, |t| Some((t - 0.2) * (1.0 - 0.0005) - 0.002), 0.0, 10);
        let r = pair_offsets(&a, &b, RATE);
        let s = Summary::of(&r.offsets).unwrap();
        assert!(s.count >= 18, "{s:?}");
        assert!((s.drift_ms_per_min - 30.0).abs() < 0.5, "{s:?}");
        assert!(s.p99_abs_ms > s.median_abs_ms, "{s:?}");
    }

    #[test]
    fn silence_has_no_markers_and_no_summary() {
        let a = record(5.0, |_| None, 0.001, 11);
        assert!(find_markers(&a, RATE).is_empty());
        let b = record(5.0, player(0.1), 0.0, 12);
        let r = pair_offsets(&a, &b, RATE);
        assert!(r.offsets.is_empty(), "{r:?}");
        assert_eq!(Summary::of(&r.offsets), None);
    }

    #[test]
    fn s16le_is_split_by_channel() {
        let bytes: Vec<u8> = [0i16, 16384, -32768, 1, 7]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let ch = deinterleave_s16le(&bytes, 2);
        assert_eq!(ch, vec![vec![0.0, -1.0], vec![0.5, 1.0 / 32768.0]]);
    }

    #[test]
    fn the_ffmpeg_source_escapes_its_commas() {
        let s = ffmpeg_marker_source(30, RATE);
        assert!(
            s.starts_with("aevalsrc=exprs=if(lt(mod(t\\,1)\\,0.02)"),
            "{s}"
        );
        assert!(s.ends_with(":s=48000:d=30"), "{s}");
        assert!(!s.contains(' '), "{s}");
        assert!(!s.replace("\\,", "").contains(','), "{s}");
    }

    #[test]
    fn frames_are_matched_by_media_time() {
        let f = |m: f64, t: f64| Frame {
            media_secs: m,
            shown_ms: t,
        };
        // 25 fps; the second page shows every frame 12 ms later, skips
        // frame 0.08 and shows 0.04 twice (the second time is ignored).
        let a = [
            f(0.0, 1000.0),
            f(0.04, 1040.0),
            f(0.08, 1080.0),
            f(0.12, 1120.0),
        ];
        let b = [
            f(0.04, 1052.0),
            f(0.0, 1012.0),
            f(0.04, 1300.0),
            f(0.12, 1132.0),
        ];
        let o = frame_offsets(&a, &b);
        assert_eq!(o.len(), 3, "{o:?}");
        for (at, off) in &o {
            assert!((off - 12.0).abs() < 1e-9, "{o:?}");
            assert!(*at >= 1000.0);
        }
        assert!(frame_offsets(&a, &[]).is_empty());
    }
}
