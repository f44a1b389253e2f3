//! HTTP `Range` parsing for media streaming (RFC 9110 §14).
//!
//! Supported: one `bytes=` range (`a-b`, `a-`, `-n`). A header that is not
//! syntactically valid, uses another unit, or asks for several ranges is
//! ignored (the full body is sent with 200), as RFC 9110 allows. A valid range
//! that does not overlap the representation gives 416 with `Content-Range: bytes */size`.

/// Longest `Range` header value we parse.
pub const MAX_RANGE_HEADER_LEN: usize = 256;

/// The outcome of interpreting a `Range` header against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Send everything (no header, or one we ignore).
    Full,
    /// Send bytes `start..=end` (inclusive; `end < size`).
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// 416.
    Unsatisfiable,
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Interprets `header` for a representation of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    if h.len() > MAX_RANGE_HEADER_LEN {
        return RangeSpec::Full;
    }
    let Some(spec) = h
        .trim()
        .strip_prefix("bytes=")
        .or_else(|| h.trim().strip_prefix("Bytes="))
    else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match digits(suffix) {
            None => RangeSpec::Full,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (a, "") => match digits(a) {
            None => RangeSpec::Full,
            Some(a) if a >= size => RangeSpec::Unsatisfiable,
            Some(a) => RangeSpec::Partial {
                start: a,
                end: size - 1,
            },
        },
        (a, b) => match (digits(a), digits(b)) {
            (Some(a), Some(b)) if b >= a => {
                if a >= size {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Partial {
                        start: a,
                        end: b.min(size - 1),
                    }
                }
            }
            _ => RangeSpec::Full,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeSpec::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), Full);
        assert_eq!(parse(Some("bytes=0-0"), 10), Partial { start: 0, end: 0 });
        assert_eq!(parse(Some("bytes=2-5"), 10), Partial { start: 2, end: 5 });
        assert_eq!(parse(Some("bytes=9-"), 10), Partial { start: 9, end: 9 });
        assert_eq!(parse(Some("bytes=5-100"), 10), Partial { start: 5, end: 9 });
        assert_eq!(parse(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(parse(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(parse(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse(Some("bytes=+1-2"), 10), Full);
        assert_eq!(parse(Some("items=0-1"), 10), Full);
        assert_eq!(parse(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse(Some("bytes=-"), 10), Full);
        assert_eq!(parse(Some("bytes=99999999999999999999999-"), 10), Full);
        let long = format!("bytes=0-1{}", " ".repeat(MAX_RANGE_HEADER_LEN));
        assert_eq!(
            parse(Some(&long), 10),
            Full,
            "over-long headers are ignored"
        );
    }
}
