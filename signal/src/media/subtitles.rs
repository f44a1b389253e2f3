//! Subtitle handling: WebVTT passthrough and SubRip (`.srt`) → WebVTT.

/// Largest subtitle file served or indexed (bytes).
pub const MAX_SUBTITLE_BYTES: u64 = 5 * 1024 * 1024;

/// Whether `text` looks like WebVTT (signature line, optional BOM).
pub fn is_webvtt(text: &str) -> bool {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    t.starts_with("WEBVTT")
        && matches!(
            t.as_bytes().get(6),
            None | Some(b' ' | b'\t' | b'\n' | b'\r')
        )
}

/// Converts SubRip text to WebVTT: adds the `WEBVTT` header, normalises line
/// endings, and rewrites the timestamp separator `,` to `.` on cue timing lines.
pub fn srt_to_vtt(srt: &str) -> String {
    let body = srt.strip_prefix('\u{feff}').unwrap_or(srt);
    let mut out = String::with_capacity(body.len() + 16);
    out.push_str("WEBVTT\n\n");
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains("-->") {
            out.push_str(&line.replace(',', "."));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_srt() {
        let srt = "1\r\n00:00:01,000 --> 00:00:02,500\r\nHello, world\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\nBye\r\n";
        let vtt = srt_to_vtt(srt);
        assert!(vtt.starts_with("WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.500\nHello, world\n"));
        assert!(is_webvtt(&vtt));
        assert!(!vtt.contains('\r'));
    }

    #[test]
    fn detects_webvtt() {
        assert!(is_webvtt("WEBVTT\n\n"));
        assert!(is_webvtt("\u{feff}WEBVTT - title\n"));
        assert!(!is_webvtt("WEBVTTX"));
        assert!(!is_webvtt("1\n00:00"));
    }
}
