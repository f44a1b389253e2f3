//! The CLI's on-disk state and invite links.
//!
//! - [`ConfigStore`]: the user's config directory (`$WATCHPARTY_CONFIG_DIR`,
//!   else `$XDG_CONFIG_HOME/watchparty`, else `~/.config/watchparty`). The
//!   directory is created `0700`; `session.json` (server URL, username,
//!   tokens, the server's certificate key learned on first use) is written
//!   `0600` through a temporary file and a rename, and refused on load when
//!   group or others may read it. Room keys of rooms we host live in
//!   `rooms/<id>.key` (`0600`, 32-byte seed).
//! - [`InviteLink`]: `https://server/room/<id>#k=<host key>` (also
//!   `/join/<id>`), parsed strictly: the pin comes from the fragment only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::api_client::{TokenPair, parse_server_url};
use crate::cert::{parse_invite_fragment, parse_invite_secret};
use crate::crypto::{PublicKey, SEED_LEN, SigningKey};
use crate::ids::RoomId;

/// Environment variable overriding the config directory.
pub const CONFIG_DIR_ENV: &str = "WATCHPARTY_CONFIG_DIR";
/// The session file name.
pub const SESSION_FILE: &str = "session.json";
/// Largest session file read (bytes).
pub const MAX_SESSION_FILE: u64 = 64 * 1024;

/// Why the config store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No config directory could be determined (no `$HOME`).
    #[error("no config directory: set {CONFIG_DIR_ENV} or HOME")]
    NoDir,
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is readable by group or others.
    #[error("{0}: permissions too open (must be 0600)")]
    Permissions(PathBuf),
    /// A file does not parse.
    #[error("{0}: malformed")]
    Malformed(PathBuf),
    /// Not logged in.
    #[error("not logged in: run `watchparty login --server URL --user NAME`")]
    NotLoggedIn,
}

/// What `login` saves.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// Server base URL.
    pub server: String,
    /// Username.
    pub username: String,
    /// Tokens.
    pub tokens: TokenPair,
    /// The server's certificate-signing key, learned at the first `hello`
    /// (trust on first use) and checked on every later one.
    #[serde(default)]
    pub server_key: Option<String>,
    /// Custom CA file for a self-hosted TLS server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedSession")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The config directory. See the module docs.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ConfigStore {
    /// The store at `dir`.
    #[must_use]
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The default store (see the module docs).
    ///
    /// # Errors
    /// [`StoreError::NoDir`].
    pub fn default_location() -> Result<Self, StoreError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(d) = var(CONFIG_DIR_ENV) {
            return Ok(Self::at(d));
        }
        if let Some(x) = var("XDG_CONFIG_HOME") {
            return Ok(Self::at(x.join("watchparty")));
        }
        var("HOME")
            .map(|h| Self::at(h.join(".config").join("watchparty")))
            .ok_or(StoreError::NoDir)
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        Ok(())
    }

    /// Writes `bytes` to `path` with mode 0600 (temp file + rename).
    fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))
    }

    /// Reads a private file: `None` when missing; refused when readable by
    /// group/others or larger than `max`.
    fn read_private(&self, path: &Path, max: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(StoreError::Permissions(path.to_owned()));
            }
        }
        if meta.len() > max {
            return Err(StoreError::Malformed(path.to_owned()));
        }
        fs::read(path).map(Some).map_err(io(path))
    }

    /// Saves the login session (mode 0600).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn save_session(&self, s: &SavedSession) -> Result<(), StoreError> {
        let path = self.dir.join(SESSION_FILE);
        let bytes =
            serde_json::to_vec_pretty(s).map_err(|_| StoreError::Malformed(path.clone()))?;
        self.write_private(&path, &bytes)
    }

    /// Loads the login session.
    ///
    /// # Errors
    /// [`StoreError::NotLoggedIn`] when there is none, others as named.
    pub fn load_session(&self) -> Result<SavedSession, StoreError> {
        let path = self.dir.join(SESSION_FILE);
        let bytes = self
            .read_private(&path, MAX_SESSION_FILE)?
            .ok_or(StoreError::NotLoggedIn)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::Malformed(path))
    }

    /// The room key of a room we host, created (and saved 0600) if missing.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn room_key(&self, room: &RoomId) -> Result<SigningKey, StoreError> {
        let path = self.dir.join("rooms").join(format!("{room}.key"));
        if let Some(bytes) = self.read_private(&path, SEED_LEN as u64)? {
            let seed: [u8; SEED_LEN] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Malformed(path.clone()))?;
            return SigningKey::from_seed(&seed).map_err(|_| StoreError::Malformed(path));
        }
        let key = new_signing_key().map_err(|_| StoreError::Malformed(path.clone()))?;
        self.write_private(&path, key.expose_seed())?;
        Ok(key)
    }

    /// Saves the key of a room we just created (mode 0600).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn save_room_key(&self, room: &RoomId, key: &SigningKey) -> Result<(), StoreError> {
        let path = self.dir.join("rooms").join(format!("{room}.key"));
        self.write_private(&path, key.expose_seed())
    }
}

/// A fresh random signing key.
///
/// # Errors
/// When the system random source fails.
pub fn new_signing_key() -> Result<SigningKey, crate::crypto::CryptoError> {
    SigningKey::generate(&ring::rand::SystemRandom::new())
}

/// A parsed invite link. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// Server base URL (`scheme://host[:port]`).
    pub server: String,
    /// The room.
    pub room: RoomId,
    /// The host key pinned by the fragment, if any.
    pub pin: Option<PublicKey>,
    /// The room's admission secret from the fragment (`a=`), if any
    /// (docs/protocol.md §2.2).
    pub admit: Option<crate::admit::AdmitSecret>,
}

/// Why an invite link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not an `http(s)` URL.
    #[error("not an http(s) URL: {0}")]
    Url(String),
    /// The path is not `/room/<id>` or `/join/<id>`.
    #[error("expected …/room/<32 hex room id>")]
    Path,
    /// The fragment's pin is malformed (never ignored).
    #[error("invalid host key in the link: {0}")]
    Pin(String),
}

impl InviteLink {
    /// Parses `https://host[:port]/room/<id>#k=<key>`.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn parse(link: &str) -> Result<Self, LinkError> {
        let (before, fragment) = match link.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (link, None),
        };
        let mut url = parse_server_url(before).map_err(|e| LinkError::Url(e.to_string()))?;
        let segments: Vec<&str> = url.path().trim_matches('/').split('/').collect();
        let room = match segments.as_slice() {
            ["room" | "join", id] => id.parse::<RoomId>().map_err(|_| LinkError::Path)?,
            _ => return Err(LinkError::Path),
        };
        let (pin, admit) = match fragment {
            Some(f) => (
                parse_invite_fragment(f).map_err(|e| LinkError::Pin(e.to_string()))?,
                parse_invite_secret(f).map_err(|e| LinkError::Pin(e.to_string()))?,
            ),
            None => (None, None),
        };
        url.set_path("");
        let server = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            server,
            room,
            pin,
            admit,
        })
    }

    /// The link text: `<server>/room/<id>#k=<key>&a=<secret>` (the
    /// secret only with a key).
    #[must_use]
    pub fn to_link(&self) -> String {
        let fragment = match (&self.pin, &self.admit) {
            (Some(k), Some(a)) => crate::cert::invite_fragment_with_secret(k, a),
            (Some(k), None) => crate::cert::invite_fragment(k),
            (None, _) => return format!("{}/room/{}", self.server, self.room),
        };
        format!("{}/room/{}#{fragment}", self.server, self.room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::from_bytes([0xab; 16])
    }

    #[test]
    fn link_round_trip_and_refusals() {
        let key = new_signing_key().unwrap().public_key();
        let l = InviteLink {
            server: "https://watch.example:8443".into(),
            room: room(),
            pin: Some(key),
            admit: None,
        };
        let text = l.to_link();
        assert!(text.starts_with("https://watch.example:8443/room/abab"));
        assert_eq!(InviteLink::parse(&text).unwrap(), l);
        // With the admission secret (docs/protocol.md §2.2).
        let secret = crate::admit::AdmitSecret::from_bytes([5; 32]);
        let with = InviteLink {
            admit: Some(secret),
            ..l.clone()
        };
        assert!(with.to_link().contains("&a="));
        assert_eq!(InviteLink::parse(&with.to_link()).unwrap(), with);
        assert!(matches!(
            InviteLink::parse(&format!("{text}&a=AAAA")),
            Err(LinkError::Pin(_))
        ));
        // /join/ and a trailing slash work; no pin is allowed (not pinned).
        let j = InviteLink::parse(&format!("http://127.0.0.1:3000/join/{}/", room())).unwrap();
        assert_eq!(j.pin, None);
        assert_eq!(j.server, "http://127.0.0.1:3000");
        // A malformed pin is an error, never ignored.
        assert!(matches!(
            InviteLink::parse(&format!("https://x/room/{}#k=AAAA", room())),
            Err(LinkError::Pin(_))
        ));
        assert!(matches!(
            InviteLink::parse(&format!(
                "https://x/room/{}#k={}&k={}",
                room(),
                key.to_base64url(),
                key.to_base64url()
            )),
            Err(LinkError::Pin(_))
        ));
        for bad in [
            "https://x/room/xyz",
            "https://x/rooms/abababababababababababababababab",
            "https://x/room/abababababababababababababababab/extra",
            "ftp://x/room/abababababababababababababababab",
            "https://x/room/abababababababababababababababab?k=1",
        ] {
            assert!(InviteLink::parse(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn session_file_is_private_and_loose_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = ConfigStore::at(tmp.path().join("cfg"));
        assert!(matches!(store.load_session(), Err(StoreError::NotLoggedIn)));
        let s = SavedSession {
            server: "http://127.0.0.1:1".into(),
            username: "alice".into(),
            tokens: TokenPair {
                access_token: "a".into(),
                refresh_token: "r".into(),
                expires_in: 600,
            },
            server_key: None,
            ca_file: None,
        };
        store.save_session(&s).unwrap();
        let path = store.dir().join(SESSION_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(store.load_session().unwrap().username, "alice");
        // Overwrite keeps 0600.
        store.save_session(&s).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Group-readable: refused.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            store.load_session(),
            Err(StoreError::Permissions(_))
        ));
        // Room keys: created once, 0600, stable.
        let k1 = store.room_key(&room()).unwrap();
        let k2 = store.room_key(&room()).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());
        let kpath = store.dir().join("rooms").join(format!("{}.key", room()));
        assert_eq!(
            fs::metadata(&kpath).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
