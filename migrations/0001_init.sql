-- watchparty signaling server: initial schema.
-- Every enum-like column carries a CHECK constraint; every table is STRICT so
-- SQLite enforces column types. Timestamps are Unix seconds (INTEGER).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE
                  CHECK (length(username) BETWEEN 3 AND 32 AND username NOT GLOB '*[^a-z0-9_.-]*'),
    display_name  TEXT    NOT NULL CHECK (length(display_name) BETWEEN 1 AND 50),
    password_hash TEXT    NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL
) STRICT;

-- One login = one session; a session owns a family of rotating refresh tokens.
CREATE TABLE sessions (
    id         BLOB    PRIMARY KEY CHECK (length(id) = 16),
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id, status);

-- Refresh tokens are stored as SHA-256 of the random token, never in clear.
CREATE TABLE refresh_tokens (
    token_hash BLOB    PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'used')),
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE libraries (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    root_path  TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE library_grants (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    library_id INTEGER NOT NULL REFERENCES libraries (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, library_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX library_grants_library ON library_grants (library_id);

CREATE TABLE media_items (
    id           INTEGER PRIMARY KEY,
    library_id   INTEGER NOT NULL REFERENCES libraries (id) ON DELETE CASCADE,
    rel_path     TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('video', 'audio')),
    mime_type    TEXT    NOT NULL,
    size_bytes   INTEGER NOT NULL CHECK (size_bytes >= 0),
    mtime        INTEGER NOT NULL,
    duration_ms  INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    content_hash BLOB    NOT NULL CHECK (length(content_hash) = 32),
    present      INTEGER NOT NULL DEFAULT 1 CHECK (present IN (0, 1)),
    scanned_at   INTEGER NOT NULL,
    UNIQUE (library_id, rel_path)
) STRICT;
CREATE INDEX media_items_library_present ON media_items (library_id, present);

CREATE TABLE subtitles (
    id       INTEGER PRIMARY KEY,
    item_id  INTEGER NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    rel_path TEXT    NOT NULL,
    language TEXT    CHECK (language IS NULL OR length(language) BETWEEN 1 AND 16),
    format   TEXT    NOT NULL CHECK (format IN ('vtt', 'srt')),
    present  INTEGER NOT NULL DEFAULT 1 CHECK (present IN (0, 1)),
    UNIQUE (item_id, rel_path)
) STRICT;

CREATE TABLE rooms (
    -- 16 random bytes as 32 lowercase hex characters.
    id               TEXT    PRIMARY KEY
                     CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    name             TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    host_user_id     INTEGER NOT NULL REFERENCES users (id),
    media_id         INTEGER NOT NULL REFERENCES media_items (id),
    invite_only      INTEGER NOT NULL CHECK (invite_only IN (0, 1)),
    password_hash    TEXT    CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    policy_json      TEXT    NOT NULL CHECK (json_valid(policy_json)),
    max_members      INTEGER NOT NULL CHECK (max_members BETWEEN 2 AND 64),
    status           TEXT    NOT NULL CHECK (status IN ('open', 'ended')),
    -- Bumped whenever the host changes (handoff); used by the signaling layer.
    epoch            INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    -- The host's Ed25519 room public key (32 bytes), registered for signaling.
    host_public_key  BLOB    CHECK (host_public_key IS NULL OR length(host_public_key) = 32),
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    CHECK ((status = 'ended') = (ended_at IS NOT NULL))
) STRICT;
CREATE INDEX rooms_host ON rooms (host_user_id, created_at);
CREATE INDEX rooms_status_activity ON rooms (status, last_activity_at);

CREATE TABLE room_members (
    room_id    TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('host', 'controller', 'viewer')),
    status     TEXT    NOT NULL CHECK (status IN ('invited', 'joined', 'declined', 'left', 'kicked')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX room_members_user ON room_members (user_id, status);
CREATE UNIQUE INDEX room_members_one_host ON room_members (room_id) WHERE role = 'host';

CREATE TABLE room_queue (
    room_id  TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    media_id INTEGER NOT NULL REFERENCES media_items (id),
    PRIMARY KEY (room_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX room_queue_media ON room_queue (media_id);
