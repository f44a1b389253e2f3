//! Server key material, generated on first start in the data directory.
//!
//! | file | content | use |
//! |---|---|---|
//! | `jwt-hs256.key` | 32 random bytes | HMAC key for access JWTs (HS256) |
//! | `stream-hmac.key` | 32 random bytes | HMAC key for signed stream URLs |
//! | `server-ed25519.pk8` | PKCS#8 v2 document (ring) | the server's Ed25519 signing key (member certificates) |
//! | `audit-hmac.key` | 32 random bytes | HMAC key for the attempted usernames in the audit trail |
//!
//! Files are created with mode 0600 (created exclusively, so a concurrent
//! start cannot overwrite a key), and their contents are never logged or
//! printed. Key files with group/other permission bits are refused.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

/// File name of the JWT HMAC key.
pub const JWT_KEY_FILE: &str = "jwt-hs256.key";
/// File name of the stream-URL HMAC key.
pub const STREAM_KEY_FILE: &str = "stream-hmac.key";
/// File name of the audit trail's HMAC key (usernames of failed logins are
/// stored only as their keyed hash, see [`crate::audit`]).
pub const AUDIT_KEY_FILE: &str = "audit-hmac.key";
/// File name of the server Ed25519 key (PKCS#8).
pub const SERVER_ED25519_FILE: &str = "server-ed25519.pk8";
/// Length of the symmetric keys in bytes (256 bits).
pub const SYMMETRIC_KEY_LEN: usize = 32;
/// Largest key file we read.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Errors while loading or creating keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// I/O on a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file exists but is not a valid key (its content is not shown).
    #[error("key file {0} is malformed")]
    Malformed(PathBuf),
    /// The key file is readable by group or others.
    #[error("key file {0} must not be accessible by group or others (chmod 600)")]
    Permissions(PathBuf),
    /// The system random generator failed.
    #[error("random generator failure")]
    Rng,
}

/// A 256-bit symmetric key. `Debug` does not show the bytes.
#[derive(Clone)]
pub struct SymmetricKey([u8; SYMMETRIC_KEY_LEN]);

impl SymmetricKey {
    /// A key with these bytes (tests and fuzzing use a fixed key; the server
    /// loads its keys with [`ServerKeys::load_or_create`]).
    pub fn from_bytes(bytes: [u8; SYMMETRIC_KEY_LEN]) -> Self {
        SymmetricKey(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; SYMMETRIC_KEY_LEN] {
        &self.0
    }

    /// A short public identifier of the key (hex of the first 8 bytes of its SHA-256),
    /// used as the JWT `kid`.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0);
        hex::encode(&digest[..8])
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SymmetricKey(kid={})", self.key_id())
    }
}

/// All key material of a server.
pub struct ServerKeys {
    /// HS256 key for access tokens.
    pub jwt: SymmetricKey,
    /// HMAC-SHA256 key for stream URLs.
    pub stream: SymmetricKey,
    /// HMAC-SHA256 key for attempted usernames in the audit trail.
    pub audit: SymmetricKey,
    /// The server's Ed25519 key pair (ring), for signing member certificates.
    pub server_ed25519: Ed25519KeyPair,
    /// The same key as the protocol core's signer (`SignedCertificate::issue`).
    pub cert_signer: watchparty_peer::crypto::SigningKey,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("jwt", &self.jwt)
            .field("stream", &self.stream)
            .field("audit", &self.audit)
            .field(
                "server_ed25519_public",
                &hex::encode(self.server_ed25519.public_key().as_ref()),
            )
            .finish()
    }
}

impl ServerKeys {
    /// Loads the keys from `data_dir`, creating any that are missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let jwt = load_or_create_symmetric(&data_dir.join(JWT_KEY_FILE), &rng)?;
        let stream = load_or_create_symmetric(&data_dir.join(STREAM_KEY_FILE), &rng)?;
        let audit = load_or_create_audit_key_with(data_dir, &rng)?;
        let (server_ed25519, cert_signer) =
            load_or_create_ed25519(&data_dir.join(SERVER_ED25519_FILE), &rng)?;
        Ok(ServerKeys {
            jwt,
            stream,
            audit,
            server_ed25519,
            cert_signer,
        })
    }
}

/// Loads the audit trail's HMAC key from `data_dir`, creating it if missing
/// (the `audit` sub-command needs it to find a name's failed logins).
pub fn load_or_create_audit_key(data_dir: &Path) -> Result<SymmetricKey, KeyError> {
    load_or_create_audit_key_with(data_dir, &SystemRandom::new())
}

fn load_or_create_audit_key_with(
    data_dir: &Path,
    rng: &SystemRandom,
) -> Result<SymmetricKey, KeyError> {
    load_or_create_symmetric(&data_dir.join(AUDIT_KEY_FILE), rng)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a whole key file, refusing loose permissions and oversized files.
/// Returns `None` when the file does not exist.
fn read_key_file(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let meta = file.metadata().map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Permissions(path.to_owned()));
        }
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed(path.to_owned()));
    }
    let mut buf = Vec::new();
    file.take(MAX_KEY_FILE_LEN)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    Ok(Some(buf))
}

/// Creates `path` exclusively with mode 0600 and writes `bytes`.
fn write_new_key_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn load_or_create_symmetric(path: &Path, rng: &SystemRandom) -> Result<SymmetricKey, KeyError> {
    if let Some(bytes) = read_key_file(path)? {
        let key: [u8; SYMMETRIC_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Malformed(path.to_owned()))?;
        return Ok(SymmetricKey(key));
    }
    let mut key = [0u8; SYMMETRIC_KEY_LEN];
    rng.fill(&mut key).map_err(|_| KeyError::Rng)?;
    write_new_key_file(path, &key)?;
    tracing::info!(file = %path.display(), "generated new key");
    Ok(SymmetricKey(key))
}

/// DER of ring's Ed25519 PKCS#8 v2 document after the outer `SEQUENCE`
/// header (2 bytes) up to the 32-byte seed (RFC 8410 `OneAsymmetricKey`:
/// version 1, `id-Ed25519`, `OCTET STRING(OCTET STRING(seed))`).
const PKCS8_V2_SEED_PREFIX: [u8; 14] = [
    0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Loads the pair and derives the protocol-core signer from the seed in the
/// PKCS#8 document; the derived public key must equal ring's.
fn load_or_create_ed25519(
    path: &Path,
    rng: &SystemRandom,
) -> Result<(Ed25519KeyPair, watchparty_peer::crypto::SigningKey), KeyError> {
    let doc = match read_key_file(path)? {
        Some(bytes) => bytes,
        None => {
            let doc = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyError::Rng)?;
            write_new_key_file(path, doc.as_ref())?;
            tracing::info!(file = %path.display(), "generated new server Ed25519 key");
            doc.as_ref().to_vec()
        }
    };
    let malformed = || KeyError::Malformed(path.to_owned());
    let pair = Ed25519KeyPair::from_pkcs8(&doc).map_err(|_| malformed())?;
    let seed: [u8; 32] = doc
        .get(2..)
        .filter(|_| doc.first() == Some(&0x30))
        .and_then(|d| d.strip_prefix(PKCS8_V2_SEED_PREFIX.as_slice()))
        .and_then(|rest| rest.get(..32))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(malformed)?;
    let signer = watchparty_peer::crypto::SigningKey::from_seed(&seed).map_err(|_| malformed())?;
    if signer.public_key().as_bytes().as_slice() != pair.public_key().as_ref() {
        return Err(malformed());
    }
    Ok((pair, signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_with_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerKeys::load_or_create(dir.path()).unwrap();
        let b = ServerKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.jwt.as_bytes(), b.jwt.as_bytes());
        assert_eq!(a.stream.as_bytes(), b.stream.as_bytes());
        assert_ne!(a.jwt.as_bytes(), a.stream.as_bytes());
        assert_eq!(
            a.server_ed25519.public_key().as_ref(),
            b.server_ed25519.public_key().as_ref()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [JWT_KEY_FILE, STREAM_KEY_FILE, SERVER_ED25519_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(&hex::encode(a.jwt.as_bytes())));
    }

    #[test]
    fn loose_permissions_and_bad_content_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JWT_KEY_FILE);
        std::fs::write(&path, [0u8; 32]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                ServerKeys::load_or_create(dir.path()),
                Err(KeyError::Permissions(_))
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, [0u8; 31]).unwrap();
        assert!(matches!(
            ServerKeys::load_or_create(dir.path()),
            Err(KeyError::Malformed(_))
        ));
    }
}
