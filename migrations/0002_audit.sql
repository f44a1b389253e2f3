-- watchparty signaling server: the audit trail (issue #21).
-- Append-only: a trigger refuses every UPDATE; rows leave only through the
-- retention prune (signal/src/audit/store.rs). No foreign keys, so records
-- outlive the rooms, sessions and grants they describe. Never holds a
-- password, token, room password or chat text: every column is an id, a
-- closed set of words, a keyed hash or a client address.

CREATE TABLE audit_log (
    -- Monotonic (AUTOINCREMENT never reuses an id), so it is the keyset cursor.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_kind      TEXT    NOT NULL CHECK (actor_kind IN ('user', 'anonymous', 'operator', 'system')),
    actor_user_id   INTEGER CHECK ((actor_kind = 'user') = (actor_user_id IS NOT NULL)),
    -- HMAC-SHA256 (server key, truncated, hex) of a username nobody has.
    actor_name_hash TEXT    CHECK (actor_name_hash IS NULL
                                   OR (actor_kind = 'anonymous' AND length(actor_name_hash) = 32
                                       AND actor_name_hash NOT GLOB '*[^0-9a-f]*')),
    action          TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 40 AND action NOT GLOB '*[^a-z_]*'),
    outcome         TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'throttled')),
    target_kind     TEXT    CHECK (target_kind IN ('user', 'room', 'library')),
    target_id       TEXT    CHECK ((target_kind IS NULL) = (target_id IS NULL)
                                   AND (target_id IS NULL OR length(target_id) BETWEEN 1 AND 32)),
    -- The room or library the action happened in, when the target is inside it.
    room_id         TEXT    CHECK (room_id IS NULL OR (length(room_id) = 32 AND room_id NOT GLOB '*[^0-9a-f]*')),
    library_id      INTEGER,
    -- A short word or figures chosen by the server (a role, "on"/"off",
    -- scan counts); never text a client sent.
    detail          TEXT    CHECK (detail IS NULL OR length(detail) <= 120),
    client_ip       TEXT    CHECK (client_ip IS NULL OR length(client_ip) <= 45),
    request_id      TEXT    CHECK (request_id IS NULL OR length(request_id) <= 64)
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_user_id, id) WHERE actor_user_id IS NOT NULL;
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, id) WHERE target_kind IS NOT NULL;
CREATE INDEX audit_log_room ON audit_log (room_id, id) WHERE room_id IS NOT NULL;
CREATE INDEX audit_log_name ON audit_log (actor_name_hash, id) WHERE actor_name_hash IS NOT NULL;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
