//! The served OpenAPI document against the real server, checked by a
//! schema-based fuzzer: schemathesis (pinned; `cargo xtask setup` installs it
//! into the project's Python virtualenv, see `xtask/src/setup.rs`) reads
//! `GET /api/v1/openapi.json` from a running server over a real SQLite file,
//! generates valid and invalid requests for every operation, and checks every
//! answer: no 5xx or dropped connection, every status the document lists for
//! that operation, the body matching the documented schema, the documented
//! `Content-Type` and headers, secured operations refusing requests without
//! credentials, and unknown methods refused. Any finding fails the test, with schemathesis'
//! report (and the `curl` command that reproduces each finding) printed.
//!
//! The server runs with open registration and without the per-IP and
//! room-creation throttles (their 429 would answer most requests). The
//! caller is a seeded admin with a bearer token, so the generated
//! requests reach past authentication into the handlers; a media library is
//! scanned and two rooms seeded so the media and room routes have something
//! to find (see [`config`]). `POST /api/v1/auth/logout` revokes the session
//! of the token it is sent with, so it runs last, on its own, after
//! everything else.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Server, media_tree};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Environment variable naming the schemathesis executable (`cargo xtask
/// test` sets it); without it, the one in `<target dir>/venv`.
const SCHEMATHESIS_ENV: &str = "WATCHPARTY_SCHEMATHESIS";

/// Test cases per operation and phase: enough to try each parameter and body
/// field with valid and invalid values, small enough that the whole run
/// takes a minute or two on a loaded 2-core machine.
const MAX_EXAMPLES: &str = "60";

/// Longest a schemathesis run may take before the test fails as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The schemathesis checks that must hold for every answer: all of them
/// (no 5xx; status, `Content-Type`, headers and body as documented; data
/// the schema forbids refused; requests without credentials refused;
/// unsupported methods answered 405 with `Allow`; …) but those below.
const CHECKS: &str = "all";

/// The checks left out:
/// * `positive_data_acceptance` wants every request the schema allows
///   answered without 400. The server refuses some such requests on rules
///   no JSON schema can state — a seat limit the server's configuration
///   caps, an invitation listed twice, the host inviting themselves, a name
///   that is only blanks or holds invisible characters, an integer written
///   `1.0` (JSON Schema calls it an integer, serde does not) — and says so
///   with a documented 400, which the conformance checks still hold to the
///   document.
/// * `ensure_resource_availability` and `use_after_free` judge REST
///   resource lifecycles along links schemathesis guesses from field names
///   (it paired a room's `id` with `{user_id}`); a room member is not a
///   resource one can `GET`, and removing one keeps the room.
const EXCLUDED_CHECKS: &str =
    "positive_data_acceptance,ensure_resource_availability,use_after_free";

/// The generator's seed, so every run tries the same cases (a finding is
/// one to fix, not a fluke); [`SEED_ENV`] sets another to explore.
const DEFAULT_SEED: &str = "2026120722";

/// Environment variable overriding [`DEFAULT_SEED`].
const SEED_ENV: &str = "WATCHPARTY_OPENAPI_FUZZ_SEED";

/// What the seeded data offers the fuzzer: real ids and a real stream token.
struct Seeds {
    /// The scanned media items.
    media: Vec<i64>,
    /// The item the stream token is for.
    streamed: i64,
    /// Its subtitles.
    subtitles: Vec<i64>,
    /// A stream token (`t`) for `streamed`.
    ticket: String,
    /// Rooms: one the caller hosts (the other user joined), one the
    /// other user hosts (the caller invited).
    rooms: Vec<String>,
    /// The caller's and the other user's ids.
    users: Vec<i64>,
}

/// schemathesis' configuration: half of the generated values name what
/// exists — media ids in bodies, the seeded user as invitee, the streamed
/// item, its subtitles and a valid `t` on the stream and subtitle routes,
/// the seeded rooms and their members on the room and invitation routes —
/// so rooms get created and changed, invitations answered and bytes
/// streamed, instead of every request stopping at 404 or 401.
fn config(seeds: &Seeds) -> String {
    let list = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[dictionaries.media]
values = [{media}]

[dictionaries.users]
values = ["viewer"]

[dictionaries.streamed]
values = [{streamed}]

[dictionaries.subtitles]
values = [{subtitles}]

[dictionaries.tickets]
values = ["{ticket}"]

[dictionaries.rooms]
values = [{rooms}]

[dictionaries.members]
values = [{users}]

[parameters]
"body.media_id" = {{ dictionary = "media", probability = 0.5 }}
"body.username" = {{ dictionary = "users", probability = 0.5 }}

[[operations]]
include-path-regex = '^/api/v1/media/\{{id\}}/(stream|subtitles/)'
parameters = {{ "path.id" = {{ dictionary = "streamed", probability = 0.5 }}, "path.sub_id" = {{ dictionary = "subtitles", probability = 0.5 }}, "query.t" = {{ dictionary = "tickets", probability = 0.5 }} }}

[[operations]]
include-path-regex = '^/api/v1/(rooms/\{{id\}}|invites/\{{room_id\}})'
parameters = {{ "path.id" = {{ dictionary = "rooms", probability = 0.5 }}, "path.room_id" = {{ dictionary = "rooms", probability = 0.5 }}, "path.user_id" = {{ dictionary = "members", probability = 0.5 }}, "body.user_id" = {{ dictionary = "members", probability = 0.5 }} }}
"#,
        media = list(&seeds.media),
        streamed = seeds.streamed,
        subtitles = list(&seeds.subtitles),
        ticket = seeds.ticket,
        rooms = seeds
            .rooms
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", "),
        users = list(&seeds.users),
    )
}

/// The operation that ends the token's session; fuzzed last, alone.
const LOGOUT: &str = "/api/v1/auth/logout";

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os(SCHEMATHESIS_ENV) {
        return PathBuf::from(path);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("venv/bin/schemathesis")
}

/// Runs schemathesis against `server` on the operations `filter` selects;
/// panics with its output on any finding.
async fn fuzz(server: &Server, token: &str, seeds: &Seeds, filter: &[&str], workdir: &Path) {
    let program = schemathesis();
    assert!(
        program.is_file(),
        "{} is missing: the API fuzzer is installed by `cargo xtask setup` \
         (a Python virtualenv with a pinned schemathesis); run it, or point {SCHEMATHESIS_ENV} \
         at a schemathesis executable",
        program.display()
    );
    let seed = std::env::var(SEED_ENV).unwrap_or_else(|_| DEFAULT_SEED.to_owned());
    let config = workdir.join("schemathesis.toml");
    std::fs::write(&config, self::config(seeds)).unwrap();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args(["--url", &server.base])
        .args(["--checks", CHECKS])
        .args(["--exclude-checks", EXCLUDED_CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed])
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "too_slow"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        // Loopback only: never through a proxy of the environment.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        // No config file or example database of the surroundings.
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found answers the OpenAPI document does not describe, or could \
         not run (exit {:?}; report above):\n{report}",
        output.status.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_real_server_is_the_documented_one() {
    let dir = tempfile::tempdir().unwrap();
    // Open registration, so the registration route is fuzzed past its 403.
    let server = Server::start_relaxed_with(dir.path(), |c| c.open_registration = true).await;
    let library = server
        .add_library("films", &media_tree(&dir.path().join("lib")))
        .await;
    let admin = server.add_user("admin", true).await;
    let viewer = server.add_user("viewer", false).await;
    server.grant(viewer, library).await;
    let token = server.login("admin").await;
    let viewer_token = server.login("viewer").await;
    let movie = server.item_id("films/movie.mp4").await;
    let song = server.item_id("song.mp3").await;
    let stream = common::json(
        server
            .call(
                Method::POST,
                &format!("/api/v1/media/{movie}/stream-url"),
                &token,
                None,
            )
            .await,
    )
    .await;
    let mut rooms = Vec::new();
    for (host, guest) in [(&token, "viewer"), (&viewer_token, "admin")] {
        let created = server
            .call(
                Method::POST,
                "/api/v1/rooms",
                host,
                Some(json!({"name": "seeded", "media_id": movie,
                            "invites": [{"username": guest, "role": "controller"}]})),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        rooms.push(
            common::json(created).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let joined = server
        .call(
            Method::POST,
            &format!("/api/v1/rooms/{}/join", rooms[0]),
            &viewer_token,
            None,
        )
        .await;
    assert_eq!(joined.status(), StatusCode::OK);
    let seeds = Seeds {
        rooms,
        users: vec![admin, viewer],
        media: vec![movie, song],
        streamed: movie,
        subtitles: stream["subtitles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect(),
        ticket: stream["url"]
            .as_str()
            .unwrap()
            .split_once("t=")
            .unwrap()
            .1
            .to_owned(),
    };
    assert_eq!(seeds.subtitles.len(), 2, "{stream}");
    let workdir = tempfile::tempdir().unwrap();

    let everything_else = ["--exclude-path", LOGOUT];
    fuzz(&server, &token, &seeds, &everything_else, workdir.path()).await;
    fuzz(
        &server,
        &token,
        &seeds,
        &["--include-path", LOGOUT],
        workdir.path(),
    )
    .await;
    server.stop().await;
}
