//! `watchparty`: the native peer's command line.
//!
//! ```text
//! watchparty login --server URL --user NAME      (password on stdin / TTY prompt)
//! watchparty rooms | media
//! watchparty host --media ID [--invite USER:ROLE]… [--invite-only] [--password]
//! watchparty join LINK [--password]
//! ```
//! `host` and `join` then read commands on stdin: `play`, `pause`,
//! `seek SECS`, `rate X`, `load ID`, `chat TEXT`, `roster`, `status`, `quit`.
//! `--json` prints one event per line (for scripts and tests).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::AsyncBufReadExt;
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, RoomId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::{ApiClient, CreateRoom, Invite, MediaInfo};
use watchparty_peer::native::config_store::{
    ConfigStore, InviteLink, SavedSession, new_signing_key,
};
use watchparty_peer::native::driver::{
    DriverConfig, DriverEvent, DriverHandle, ServerMedia, VirtualMedia,
};
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::native::player::{AnyBackend, PlayerClock};
use watchparty_peer::native::signal_client::tls_config;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::{MediaPos, Rate};
use watchparty_peer::virtual_player::VirtualPlayerConfig;

/// Interval of status events in `--json` mode.
const JSON_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest password read from stdin (bytes).
const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Parser)]
#[command(name = "watchparty", about = "watch together, in sync (native peer)")]
struct Cli {
    /// Config directory (default: $WATCHPARTY_CONFIG_DIR, $XDG_CONFIG_HOME/watchparty, ~/.config/watchparty).
    #[arg(long, global = true)]
    config_dir: Option<PathBuf>,
    /// Print one JSON event per line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlayerKind {
    Virtual,
    Mpv,
}

#[derive(Debug, clap::Args)]
struct PeerArgs {
    /// Player backend.
    #[arg(long, value_enum, default_value = "virtual")]
    player: PlayerKind,
    /// Directory with local copies of media (used when the hash matches).
    #[arg(long)]
    media_dir: Option<PathBuf>,
    /// UDP address to bind (default: all interfaces, random port).
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
    /// Read the room password from stdin (first line).
    #[arg(long)]
    password: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Log in and save tokens (password from stdin or a prompt).
    Login {
        /// Server base URL.
        #[arg(long)]
        server: String,
        /// Username.
        #[arg(long)]
        user: String,
        /// PEM file of a private CA that signed the server's certificate.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Rooms you have joined.
    Rooms,
    /// Media you may watch.
    Media,
    /// Create a room and host it.
    Host {
        /// Media item id.
        #[arg(long)]
        media: i64,
        /// Invite USER:ROLE (role: controller or viewer).
        #[arg(long = "invite")]
        invites: Vec<String>,
        /// Only invited users may join.
        #[arg(long)]
        invite_only: bool,
        /// Room name.
        #[arg(long, default_value = "watchparty")]
        name: String,
        #[command(flatten)]
        peer: PeerArgs,
    },
    /// Join a room from its invite link.
    Join {
        /// `https://server/room/<id>#k=<host key>`.
        link: String,
        #[command(flatten)]
        peer: PeerArgs,
    },
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn store(cli: &Cli) -> Result<ConfigStore, AnyError> {
    Ok(match &cli.config_dir {
        Some(d) => ConfigStore::at(d.clone()),
        None => ConfigStore::default_location()?,
    })
}

/// Reads a secret: from a TTY with a prompt on stderr, else the first line of
/// stdin. Never from argv.
fn read_secret(prompt: &str) -> Result<String, AnyError> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if line.len() > MAX_PASSWORD_LEN {
        return Err("password too long".into());
    }
    let s = line.trim_end_matches(['\r', '\n']).to_owned();
    if s.is_empty() {
        return Err("empty password".into());
    }
    Ok(s)
}

async fn api_from_saved(store: &ConfigStore) -> Result<(ApiClient, SavedSession), AnyError> {
    let saved = store.load_session()?;
    let api = ApiClient::new(&saved.server, saved.ca_file.as_deref())?;
    let persist_store = store.clone();
    let base = saved.clone();
    api.set_tokens(
        saved.tokens.clone(),
        Some(Box::new(move |pair| {
            let mut s = base.clone();
            s.tokens = pair.clone();
            // Keep a learned server key.
            if let Ok(cur) = persist_store.load_session() {
                s.server_key = cur.server_key;
            }
            if let Err(e) = persist_store.save_session(&s) {
                eprintln!("warning: could not save refreshed tokens: {e}");
            }
        })),
    )
    .await;
    Ok((api, saved))
}

fn media_item(info: &MediaInfo) -> Result<MediaItem, AnyError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&info.content_hash, &mut hash).map_err(|_| "bad content hash")?;
    let duration = u64::try_from(info.duration_ms.unwrap_or(0)).unwrap_or(0);
    Ok(MediaItem {
        media: MediaId::new(&info.id.to_string())?,
        hash: ContentHash(hash),
        duration: PositionMs::new(duration)?,
    })
}

fn parse_command(line: &str) -> Result<Option<LineCmd>, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    Ok(Some(match word {
        "" => return Ok(None),
        "play" => LineCmd::User(UserCommand::Play),
        "pause" => LineCmd::User(UserCommand::Pause),
        "seek" => {
            let secs: f64 = rest.parse().map_err(|_| "seek SECS")?;
            if !secs.is_finite() || secs < 0.0 {
                return Err("seek SECS (>= 0)".into());
            }
            LineCmd::User(UserCommand::Seek(MediaPos::from_secs_f64(secs)))
        }
        "rate" => {
            let r: f64 = rest.parse().map_err(|_| "rate X")?;
            if !r.is_finite() || r <= 0.0 {
                return Err("rate X (> 0)".into());
            }
            LineCmd::User(UserCommand::Rate(Rate::from_f64_clamped(r)))
        }
        "load" => LineCmd::Load(rest.parse().map_err(|_| "load ID")?),
        "chat" => LineCmd::User(UserCommand::Chat(rest.to_owned())),
        "roster" => LineCmd::Roster,
        "status" => LineCmd::Status,
        "quit" | "exit" => LineCmd::Quit,
        other => return Err(format!("unknown command `{other}`")),
    }))
}

enum LineCmd {
    User(UserCommand),
    Load(i64),
    Roster,
    Status,
    Quit,
}

fn print_event(json: bool, e: &DriverEvent) {
    if json {
        if let Ok(s) = serde_json::to_string(e) {
            println!("{s}");
        }
    } else {
        match e {
            DriverEvent::Status(s) => print_status(s),
            DriverEvent::Chat { from, text } => println!("[{from}] {text}"),
            other => println!("* {other:?}"),
        }
    }
}

fn print_status(s: &watchparty_peer::native::driver::StatusSnapshot) {
    println!(
        "you={:?} host={:?} epoch={} signaling={} playback={:?}",
        s.you, s.host, s.epoch, s.signaling, s.playback
    );
    println!(
        "clock offset={:?} ms ± {:?} ms, position error={:?} ms, correcting={} ({} ppm)",
        s.clock_offset_ms,
        s.clock_uncertainty_ms,
        s.position_error_ms,
        s.correcting,
        s.rate_offset_ppm
    );
    for p in &s.peers {
        println!(
            "  peer {} {} channels={} online={} queued={}B retries={}",
            p.user, p.state, p.channels_open, p.online, p.queued_bytes, p.attempts
        );
    }
    println!("  rejected: {:?}", s.drops);
    println!("  counters: {:?}", s.counters);
}

#[allow(clippy::too_many_arguments)]
async fn run_peer(
    json: bool,
    store: &ConfigStore,
    api: ApiClient,
    saved: &SavedSession,
    room: RoomId,
    identity: watchparty_peer::crypto::SigningKey,
    pin: Option<PublicKey>,
    peer: &PeerArgs,
    initial_load: Option<i64>,
) -> Result<(), AnyError> {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let signal_url = api.signal_url(&room.to_string())?.to_string();
    let mut cfg = DriverConfig::new(room, signal_url, identity);
    cfg.pinned_host = pin;
    cfg.bind = peer.bind;
    cfg.server_key = saved
        .server_key
        .as_deref()
        .map(PublicKey::from_base64url)
        .transpose()
        .map_err(|_| "saved server key is malformed")?;
    if saved.server.starts_with("https") {
        cfg.tls = Some(tls_config(saved.ca_file.as_deref())?);
    }
    let mut handle = match peer.player {
        PlayerKind::Virtual => {
            let backend =
                AnyBackend::Virtual(VirtualBackend::new(VirtualPlayerConfig::default(), clock));
            DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia).await?
        }
        PlayerKind::Mpv => {
            #[cfg(unix)]
            {
                use watchparty_peer::native::player::mpv::{MpvBackend, MpvConfig};
                let backend =
                    AnyBackend::Mpv(MpvBackend::spawn(MpvConfig::default(), clock).await?);
                let resolver = ServerMedia {
                    api: api.clone(),
                    local_dir: peer.media_dir.clone(),
                };
                DriverHandle::spawn(cfg, clock, backend, api.clone(), resolver).await?
            }
            #[cfg(not(unix))]
            {
                return Err("mpv is supported on Unix only".into());
            }
        }
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(JSON_STATUS_INTERVAL);
    let mut pending_load = initial_load;
    loop {
        tokio::select! {
            ev = handle.events.recv() => {
                let Some(ev) = ev else { break };
                if let DriverEvent::ServerKeyLearned { key } = &ev
                    && let Ok(mut s) = store.load_session()
                {
                    s.server_key = Some(key.clone());
                    let _ = store.save_session(&s);
                }
                let joined = matches!(ev, DriverEvent::Joined { .. });
                print_event(json, &ev);
                if joined && let Some(id) = pending_load.take() {
                    load(&api, &handle, id, json).await;
                }
                if matches!(ev, DriverEvent::Stopped { .. }) {
                    break;
                }
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match parse_command(&line) {
                    Ok(None) => {}
                    Ok(Some(LineCmd::Quit)) => {
                        let _ = handle.commands.send(watchparty_peer::native::driver::DriverCommand::Quit).await;
                    }
                    Ok(Some(LineCmd::User(c))) => {
                        if let Err(e) = handle.command(c).await {
                            report(json, &format!("refused: {e}"));
                        }
                    }
                    Ok(Some(LineCmd::Load(id))) => load(&api, &handle, id, json).await,
                    Ok(Some(LineCmd::Status | LineCmd::Roster)) => {
                        if let Some(s) = handle.status().await {
                            print_event(json, &DriverEvent::Status(Box::new(s)));
                        }
                    }
                    Err(e) => report(json, &e),
                },
                // End of input: keep running (scripts close stdin).
                Ok(None) | Err(_) => stdin_open = false,
            },
            _ = tick.tick(), if json => {
                if let Some(s) = handle.status().await {
                    print_event(json, &DriverEvent::Status(Box::new(s)));
                }
            }
        }
    }
    match handle.task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}

fn report(json: bool, msg: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "error", "message": msg })
        );
    } else {
        eprintln!("{msg}");
    }
}

async fn load(api: &ApiClient, handle: &DriverHandle, id: i64, json: bool) {
    let item = match api.media_item(id).await {
        Ok(info) => media_item(&info),
        Err(e) => Err(e.into()),
    };
    match item {
        Ok(item) => {
            if let Err(e) = handle.command(UserCommand::Load(item)).await {
                report(json, &format!("load refused: {e}"));
            }
        }
        Err(e) => report(json, &format!("load: {e}")),
    }
}

async fn run(cli: Cli) -> Result<(), AnyError> {
    let store = store(&cli)?;
    match &cli.cmd {
        Cmd::Login {
            server,
            user,
            ca_file,
        } => {
            let api = ApiClient::new(server, ca_file.as_deref())?;
            let password = read_secret("password")?;
            let tokens = api.login(user, &password).await?;
            store.save_session(&SavedSession {
                server: api.base().as_str().trim_end_matches('/').to_owned(),
                username: user.clone(),
                tokens,
                server_key: None,
                ca_file: ca_file.clone(),
            })?;
            println!("logged in as {user}");
            Ok(())
        }
        Cmd::Rooms => {
            let (api, _) = api_from_saved(&store).await?;
            for r in api.rooms().await? {
                if cli.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!("{} {} ({}, you: {})", r.id, r.name, r.status, r.my_role);
                }
            }
            Ok(())
        }
        Cmd::Media => {
            let (api, _) = api_from_saved(&store).await?;
            for m in api.media().await? {
                if cli.json {
                    println!("{}", serde_json::to_string(&m)?);
                } else {
                    println!(
                        "{:>6} {} ({} ms)",
                        m.id,
                        m.title,
                        m.duration_ms.unwrap_or(0)
                    );
                }
            }
            Ok(())
        }
        Cmd::Host {
            media,
            invites,
            invite_only,
            name,
            peer,
        } => {
            let (api, saved) = api_from_saved(&store).await?;
            let password = if peer.password {
                Some(read_secret("room password")?)
            } else {
                None
            };
            let mut inv = Vec::new();
            for i in invites {
                let (u, r) = i.split_once(':').ok_or("--invite USER:ROLE")?;
                if !matches!(r, "controller" | "viewer") {
                    return Err("role must be controller or viewer".into());
                }
                inv.push(Invite {
                    username: u.to_owned(),
                    role: r.to_owned(),
                });
            }
            let key = new_signing_key().map_err(|e| format!("{e}"))?;
            let room = api
                .create_room(&CreateRoom {
                    name: name.clone(),
                    media_id: *media,
                    invite_only: *invite_only,
                    password,
                    invites: inv,
                    host_public_key: key.public_key().to_base64url(),
                })
                .await?;
            let room_id: RoomId = room
                .id
                .parse()
                .map_err(|_| "server returned a bad room id")?;
            store.save_room_key(&room_id, &key)?;
            let link = InviteLink {
                server: saved.server.clone(),
                room: room_id,
                pin: Some(key.public_key()),
            };
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "event": "room_created", "room": room.id, "link": link.to_link() })
                );
            } else {
                println!("invite link: {}", link.to_link());
            }
            run_peer(
                cli.json,
                &store,
                api,
                &saved,
                room_id,
                key,
                None,
                peer,
                Some(*media),
            )
            .await
        }
        Cmd::Join { link, peer } => {
            let link = InviteLink::parse(link)?;
            let (api, saved) = api_from_saved(&store).await?;
            if link.server != saved.server {
                return Err(format!(
                    "the link is for {} but you are logged in to {}",
                    link.server, saved.server
                )
                .into());
            }
            let password = if peer.password {
                Some(read_secret("room password")?)
            } else {
                None
            };
            let room = link.room.to_string();
            let info = api.join_room(&room, password.as_deref()).await?;
            // The host of the room re-joining: use its saved room key.
            let identity = if info.my_role == "host" {
                store.room_key(&link.room)?
            } else {
                new_signing_key().map_err(|e| format!("{e}"))?
            };
            run_peer(
                cli.json, &store, api, &saved, link.room, identity, link.pin, peer, None,
            )
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WATCHPARTY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert!(matches!(
            parse_command("play"),
            Ok(Some(LineCmd::User(UserCommand::Play)))
        ));
        assert!(matches!(
            parse_command("seek 12.5"),
            Ok(Some(LineCmd::User(UserCommand::Seek(p)))) if p == MediaPos::from_millis(12_500)
        ));
        assert!(matches!(
            parse_command("load 7"),
            Ok(Some(LineCmd::Load(7)))
        ));
        assert!(matches!(parse_command("  "), Ok(None)));
        for bad in [
            "seek", "seek -1", "seek NaN", "rate 0", "rate x", "load x", "dance",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
