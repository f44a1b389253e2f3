//! Recognised media types: by file extension, confirmed by magic bytes.

/// Bytes read from the start of a file for the magic check.
pub const MAGIC_LEN: usize = 16;

/// A recognised media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaKind {
    /// `video` or `audio`.
    pub kind: &'static str,
    /// MIME type served in `Content-Type`.
    pub mime: &'static str,
    magic: Magic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Magic {
    /// ISO base media file (`ftyp` box at offset 4).
    Isobmff,
    /// QuickTime: `ftyp`, `moov`, `mdat`, `wide` or `free` at offset 4.
    QuickTime,
    /// EBML header (Matroska / WebM).
    Ebml,
    /// `OggS`.
    Ogg,
    /// `ID3` tag or an MPEG audio frame sync.
    Mp3,
    /// `fLaC`.
    Flac,
    /// `RIFF....WAVE`.
    Wave,
}

/// Every file extension the scan indexes ([`by_extension`] knows each).
pub const EXTENSIONS: [&str; 13] = [
    "mp4", "m4v", "mov", "webm", "mkv", "ogv", "mp3", "m4a", "ogg", "oga", "opus", "flac", "wav",
];

/// Every MIME type an item can be served with, once each (the stream
/// route's OpenAPI description lists them).
pub fn served_mime_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = Vec::new();
    for mime in EXTENSIONS
        .iter()
        .filter_map(|e| by_extension(e))
        .map(|k| k.mime)
    {
        if !types.contains(&mime) {
            types.push(mime);
        }
    }
    types
}

/// The media type for a lowercase file extension, if it is one we index.
pub fn by_extension(ext: &str) -> Option<MediaKind> {
    let (kind, mime, magic) = match ext {
        "mp4" | "m4v" => ("video", "video/mp4", Magic::Isobmff),
        "mov" => ("video", "video/quicktime", Magic::QuickTime),
        "webm" => ("video", "video/webm", Magic::Ebml),
        "mkv" => ("video", "video/x-matroska", Magic::Ebml),
        "ogv" => ("video", "video/ogg", Magic::Ogg),
        "mp3" => ("audio", "audio/mpeg", Magic::Mp3),
        "m4a" => ("audio", "audio/mp4", Magic::Isobmff),
        "ogg" | "oga" | "opus" => ("audio", "audio/ogg", Magic::Ogg),
        "flac" => ("audio", "audio/flac", Magic::Flac),
        "wav" => ("audio", "audio/wav", Magic::Wave),
        _ => return None,
    };
    Some(MediaKind { kind, mime, magic })
}

impl MediaKind {
    /// Whether the first bytes of a file match this type.
    pub fn matches(&self, head: &[u8]) -> bool {
        let at = |off: usize, tag: &[u8]| head.get(off..off + tag.len()) == Some(tag);
        match self.magic {
            Magic::Isobmff => at(4, b"ftyp"),
            Magic::QuickTime => [b"ftyp", b"moov", b"mdat", b"wide", b"free"]
                .iter()
                .any(|t| at(4, *t)),
            Magic::Ebml => at(0, &[0x1a, 0x45, 0xdf, 0xa3]),
            Magic::Ogg => at(0, b"OggS"),
            Magic::Mp3 => at(0, b"ID3") || matches!(head, [0xff, b, ..] if b & 0xe0 == 0xe0),
            Magic::Flac => at(0, b"fLaC"),
            Magic::Wave => at(0, b"RIFF") && at(8, b"WAVE"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        let mp4 = by_extension("mp4").unwrap();
        assert!(mp4.matches(b"\0\0\0\x18ftypisom\0\0\0\0"));
        assert!(!mp4.matches(b"not a video at all"));
        assert!(
            by_extension("webm")
                .unwrap()
                .matches(&[0x1a, 0x45, 0xdf, 0xa3, 0, 0])
        );
        assert!(by_extension("mp3").unwrap().matches(b"ID3\x04"));
        assert!(by_extension("mp3").unwrap().matches(&[0xff, 0xfb, 0x90]));
        assert!(!by_extension("mp3").unwrap().matches(&[0xff, 0x00]));
        assert!(
            by_extension("wav")
                .unwrap()
                .matches(b"RIFF\0\0\0\0WAVEfmt ")
        );
        assert!(by_extension("txt").is_none());
        assert!(!mp4.matches(b"\0\0"), "short files never match");
    }

    #[test]
    fn every_indexed_extension_has_a_served_type() {
        for ext in EXTENSIONS {
            assert!(by_extension(ext).is_some(), "{ext}");
        }
        let types = served_mime_types();
        assert_eq!(types.len(), 10, "{types:?}");
        assert!(types.contains(&"video/mp4") && types.contains(&"audio/wav"));
    }
}
