//! mpv's JSON IPC, sans-I/O: typed commands out, bounded line decoding and
//! typed messages in.
//!
//! mpv speaks newline-delimited JSON over a Unix socket. We send
//! `{"command": [...], "request_id": N}` and receive either replies
//! (`{"request_id": N, "error": "success", "data": ...}`) or events
//! (`{"event": "property-change", "id": 3, "name": "speed", "data": 1.0}`).
//! Everything received is bounded ([`MAX_LINE_LEN`]) and parsed into
//! [`Message`]; anything malformed is an [`IpcError`], never a panic.

use serde_json::{Value, json};

/// Longest line accepted from mpv, in bytes (newline excluded). mpv's replies
/// and the events we subscribe to are a few hundred bytes; a longer line
/// means a broken or hostile peer on the socket.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Something mpv sent that we refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    /// A line exceeded [`MAX_LINE_LEN`].
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A line is not valid JSON (the parser's message, without the input).
    #[error("malformed JSON: {0}")]
    Json(String),
    /// Valid JSON of the wrong shape.
    #[error("unexpected message: {0}")]
    Shape(&'static str),
}

/// The mpv properties we observe. The observation id of each is its
/// position in [`Property::ALL`] plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// `time-pos`: position in seconds (absent without media).
    TimePos,
    /// `pause`: paused by command.
    Pause,
    /// `speed`: playback rate.
    Speed,
    /// `paused-for-cache`: stalled waiting for data.
    PausedForCache,
    /// `seeking`: a seek or a restart of playback is in progress.
    Seeking,
    /// `eof-reached`: at the end of the media (with `--keep-open`).
    EofReached,
    /// `duration`: media length in seconds (absent if unknown).
    Duration,
}

impl Property {
    /// Every observed property, in id order.
    pub const ALL: [Self; 7] = [
        Self::TimePos,
        Self::Pause,
        Self::Speed,
        Self::PausedForCache,
        Self::Seeking,
        Self::EofReached,
        Self::Duration,
    ];

    /// mpv's name of the property.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TimePos => "time-pos",
            Self::Pause => "pause",
            Self::Speed => "speed",
            Self::PausedForCache => "paused-for-cache",
            Self::Seeking => "seeking",
            Self::EofReached => "eof-reached",
            Self::Duration => "duration",
        }
    }

    /// The observation id we register it under.
    #[must_use]
    pub const fn id(self) -> u64 {
        match self {
            Self::TimePos => 1,
            Self::Pause => 2,
            Self::Speed => 3,
            Self::PausedForCache => 4,
            Self::Seeking => 5,
            Self::EofReached => 6,
            Self::Duration => 7,
        }
    }

    fn from_id(id: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.id() == id)
    }
}

/// A new value of an observed property. `None` means mpv reports the
/// property unavailable (e.g. `time-pos` with no media loaded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// `time-pos` in seconds.
    TimePos(Option<f64>),
    /// `pause`.
    Pause(Option<bool>),
    /// `speed`.
    Speed(Option<f64>),
    /// `paused-for-cache`.
    PausedForCache(Option<bool>),
    /// `seeking`.
    Seeking(Option<bool>),
    /// `eof-reached`.
    EofReached(Option<bool>),
    /// `duration` in seconds.
    Duration(Option<f64>),
}

/// An mpv event we act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An observed property changed.
    PropertyChange(Change),
    /// A seek started.
    Seek,
    /// Playback (re)started after a seek or a load.
    PlaybackRestart,
    /// A new file started loading.
    StartFile,
    /// mpv is shutting down.
    Shutdown,
    /// Anything else (ignored).
    Other,
}

/// One message from mpv.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The reply to our request `request_id`: its `data`, or mpv's error
    /// string.
    Reply {
        /// The id we sent.
        request_id: u64,
        /// `data` (JSON `null` if none) or the error text.
        result: Result<Value, String>,
    },
    /// An event.
    Event(Event),
}

/// A command we send to mpv.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `observe_property <id> <name>`.
    Observe(Property),
    /// `get_property audio-pts` (the periodic sample, when there is audio).
    GetAudioPts,
    /// `get_property time-pos` (the periodic sample without audio).
    GetTimePos,
    /// `set_property pause <bool>`.
    SetPause(bool),
    /// `set_property speed <f64>`.
    SetSpeed(f64),
    /// `seek <secs> absolute+exact`.
    SeekAbsolute(f64),
    /// `loadfile <source> replace`.
    LoadFile(String),
}

impl Command {
    /// A short name for errors and logs (never the media source, which may
    /// be a signed URL).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Observe(_) => "observe_property",
            Self::GetAudioPts => "get_property audio-pts",
            Self::GetTimePos => "get_property time-pos",
            Self::SetPause(_) => "pause",
            Self::SetSpeed(_) => "speed",
            Self::SeekAbsolute(_) => "seek",
            Self::LoadFile(_) => "loadfile",
        }
    }

    /// The request line (JSON plus newline) with `request_id`.
    #[must_use]
    pub fn encode(&self, request_id: u64) -> Vec<u8> {
        let command = match self {
            Self::Observe(p) => json!(["observe_property", p.id(), p.name()]),
            Self::GetAudioPts => json!(["get_property", "audio-pts"]),
            Self::GetTimePos => json!(["get_property", "time-pos"]),
            Self::SetPause(b) => json!(["set_property", "pause", b]),
            Self::SetSpeed(s) => json!(["set_property", "speed", s]),
            Self::SeekAbsolute(s) => json!(["seek", s, "absolute+exact"]),
            Self::LoadFile(src) => json!(["loadfile", src, "replace"]),
        };
        let mut line = json!({ "command": command, "request_id": request_id }).to_string();
        line.push('\n');
        line.into_bytes()
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_LEN`] bytes and
/// parses each into a [`Message`].
#[derive(Debug)]
pub struct LineDecoder {
    partial: Vec<u8>,
    limit: usize,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new(MAX_LINE_LEN)
    }
}

impl LineDecoder {
    /// A decoder accepting lines up to `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            partial: Vec::new(),
            limit,
        }
    }

    /// Feeds received bytes; returns the messages of every line completed.
    /// Memory is bounded by the limit: a line that grows past it is an error
    /// even before its newline arrives.
    ///
    /// # Errors
    /// [`IpcError`] for an over-long line or a malformed message; the stream
    /// should then be abandoned.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<Message>, IpcError> {
        let mut out = Vec::new();
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(nl);
            self.append(head)?;
            let line = std::mem::take(&mut self.partial);
            data = rest.get(1..).unwrap_or_default();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(parse_line(&line)?);
        }
        self.append(data)?;
        Ok(out)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), IpcError> {
        if self.partial.len().saturating_add(bytes.len()) > self.limit {
            self.partial.clear();
            return Err(IpcError::LineTooLong { limit: self.limit });
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }
}

fn opt_f64(v: Option<&Value>) -> Result<Option<f64>, IpcError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(IpcError::Shape("property value is not a number")),
    }
}

fn opt_bool(v: Option<&Value>) -> Result<Option<bool>, IpcError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(IpcError::Shape("property value is not a boolean")),
    }
}

/// Parses one line (without its newline).
///
/// # Errors
/// [`IpcError`] when the line is not a JSON object of mpv's reply or event
/// shape.
pub fn parse_line(line: &[u8]) -> Result<Message, IpcError> {
    if line.len() > MAX_LINE_LEN {
        return Err(IpcError::LineTooLong {
            limit: MAX_LINE_LEN,
        });
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| IpcError::Json(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(IpcError::Shape("not a JSON object"));
    };
    if let Some(event) = obj.get("event") {
        let name = event
            .as_str()
            .ok_or(IpcError::Shape("`event` is not a string"))?;
        let ev = match name {
            "property-change" => {
                let id = obj
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or(IpcError::Shape("property-change without numeric `id`"))?;
                let data = obj.get("data");
                match Property::from_id(id) {
                    None => Event::Other,
                    Some(p) => Event::PropertyChange(match p {
                        Property::TimePos => Change::TimePos(opt_f64(data)?),
                        Property::Pause => Change::Pause(opt_bool(data)?),
                        Property::Speed => Change::Speed(opt_f64(data)?),
                        Property::PausedForCache => Change::PausedForCache(opt_bool(data)?),
                        Property::Seeking => Change::Seeking(opt_bool(data)?),
                        Property::EofReached => Change::EofReached(opt_bool(data)?),
                        Property::Duration => Change::Duration(opt_f64(data)?),
                    }),
                }
            }
            "seek" => Event::Seek,
            "playback-restart" => Event::PlaybackRestart,
            "start-file" => Event::StartFile,
            "shutdown" => Event::Shutdown,
            _ => Event::Other,
        };
        return Ok(Message::Event(ev));
    }
    let request_id = obj
        .get("request_id")
        .and_then(Value::as_u64)
        .ok_or(IpcError::Shape("reply without numeric `request_id`"))?;
    let error = obj
        .get("error")
        .and_then(Value::as_str)
        .ok_or(IpcError::Shape("reply without `error` string"))?;
    let result = if error == "success" {
        Ok(obj.get("data").cloned().unwrap_or(Value::Null))
    } else {
        Err(error.to_owned())
    };
    Ok(Message::Reply { request_id, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_and_events() {
        let mut d = LineDecoder::default();
        let msgs = d
            .feed(
                b"{\"data\":1.5,\"request_id\":7,\"error\":\"success\"}\n\
                  {\"request_id\":8,\"error\":\"property unavailable\"}\n\
                  {\"event\":\"property-change\",\"id\":3,\"name\":\"speed\",\"data\":1.25}\n\
                  {\"event\":\"property-change\",\"id\":1,\"name\":\"time-pos\"}\n\
                  {\"event\":\"seek\"}\n{\"event\":\"playback-restart\"}\n\
                  {\"event\":\"audio-reconfig\"}\n\
                  {\"event\":\"property-change\",\"id\":99,\"name\":\"x\",\"data\":[1]}\n",
            )
            .unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Reply {
                    request_id: 7,
                    result: Ok(json!(1.5))
                },
                Message::Reply {
                    request_id: 8,
                    result: Err("property unavailable".into())
                },
                Message::Event(Event::PropertyChange(Change::Speed(Some(1.25)))),
                Message::Event(Event::PropertyChange(Change::TimePos(None))),
                Message::Event(Event::Seek),
                Message::Event(Event::PlaybackRestart),
                Message::Event(Event::Other),
                Message::Event(Event::Other),
            ]
        );
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut d = LineDecoder::default();
        assert!(d.feed(b"{\"event\":\"pro").unwrap().is_empty());
        assert!(d.feed(b"perty-change\",\"id\":2,").unwrap().is_empty());
        let m = d.feed(b"\"data\":true}\n\n  \n{\"ev").unwrap();
        assert_eq!(
            m,
            vec![Message::Event(Event::PropertyChange(Change::Pause(Some(
                true
            ))))]
        );
        let m = d.feed(b"ent\":\"shutdown\"}\n").unwrap();
        assert_eq!(m, vec![Message::Event(Event::Shutdown)]);
    }

    #[test]
    fn an_over_long_line_is_refused_before_its_newline() {
        let mut d = LineDecoder::new(32);
        // Exactly at the limit is fine.
        let ok = format!("{{\"event\":\"seek\"{}}}\n", " ".repeat(32 - 16));
        assert_eq!(ok.len(), 33);
        assert_eq!(d.feed(ok.as_bytes()).unwrap().len(), 1);
        // One byte more, with no newline yet: refused at once.
        assert_eq!(
            d.feed(&[b' '; 33]),
            Err(IpcError::LineTooLong { limit: 32 })
        );
        // Many small pieces add up.
        let mut d = LineDecoder::new(32);
        for _ in 0..3 {
            assert!(d.feed(&[b' '; 10]).unwrap().is_empty());
        }
        assert!(d.feed(&[b' '; 10]).is_err());
        // The real limit.
        let mut d = LineDecoder::default();
        assert!(d.feed(&vec![b'x'; MAX_LINE_LEN + 1]).is_err());
        assert!(parse_line(&vec![b' '; MAX_LINE_LEN + 1]).is_err());
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"garbage"[..],
            b"[1,2]",
            b"{\"request_id\":1}",
            b"{\"request_id\":\"1\",\"error\":\"success\"}",
            b"{\"request_id\":-1,\"error\":\"success\"}",
            b"{\"error\":\"success\"}",
            b"{\"event\":5}",
            b"{\"event\":\"property-change\",\"name\":\"pause\",\"data\":true}",
            b"{\"event\":\"property-change\",\"id\":2,\"data\":\"yes\"}",
            b"{\"event\":\"property-change\",\"id\":1,\"data\":\"1.0\"}",
            b"{\"data\":1e999,\"request_id\":1,\"error\":\"success\"}",
            b"\xff\xfe",
        ] {
            let mut d = LineDecoder::default();
            let mut line = bad.to_vec();
            line.push(b'\n');
            assert!(d.feed(&line).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn commands_encode_as_one_json_line() {
        let line = Command::SeekAbsolute(12.5).encode(42);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            json!({"command": ["seek", 12.5, "absolute+exact"], "request_id": 42})
        );
        let v: Value =
            serde_json::from_slice(&Command::Observe(Property::Duration).encode(1)).unwrap();
        assert_eq!(v["command"], json!(["observe_property", 7, "duration"]));
        // A source with quotes and newlines stays one line.
        let line = Command::LoadFile("a\"b\nc".into()).encode(3);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        for p in Property::ALL {
            assert_eq!(Property::from_id(p.id()), Some(p));
        }
    }
}
