//! `watchparty`: the native peer's command line.
//!
//! ```text
//! watchparty login --server URL --user NAME      (password on stdin / TTY prompt)
//! watchparty rooms | media
//! watchparty host --media ID [--invite USER:ROLE]… [--invite-only] [--password]
//! watchparty join LINK [--password]
//! ```
//! `host` and `join` then read commands on stdin: `play`, `pause`,
//! `seek SECS`, `rate X`, `load ID`, `queue ID…`, `next`, `prev`,
//! `chat TEXT`, `roster`, `status [TAG]`, `ask pause|play|seek SECS` (ask
//! the host for what our role or the room's rules do not let us do), and
//! for the host `kick USER`, `role USER controller|viewer`, `handoff USER`
//! (USER: user id or username; these go through the server's REST routes,
//! then the signed frame tells the peers), `accept USER` / `dismiss USER`
//! (answer that member's ask; `status` lists the asks waiting), `approve
//! USER` (let a member who joined without the invite link's secret be
//! heard; `status` marks such members "not approved by the host"), `quit`.
//! `--json` prints one event per line (for scripts and tests); a status
//! line carries `wall_us` (Unix µs of the snapshot instant) and the `TAG`
//! given to `status`.
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
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, Role, RoomId, UserId};
use watchparty_peer::message::{MAX_QUEUE_ITEMS, MediaItem};
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
use watchparty_peer::session::{AskFor, UserCommand};
use watchparty_peer::time::{MediaPos, Rate};
use watchparty_peer::virtual_player::VirtualPlayerConfig;

/// Interval of status events in `--json` mode.
const JSON_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest password read from stdin (bytes).
const MAX_PASSWORD_LEN: usize = 1024;
/// Duration used for an item whose duration the server does not know (its
/// scanner does not probe media): 24 h, so positions are not clamped to 0.
/// The protocol needs a duration; the player's own end-of-file still ends
/// playback.
const UNKNOWN_DURATION_MS: u64 = 24 * 3600 * 1000;
/// Longest tag accepted by `status TAG` (bytes).
const MAX_STATUS_TAG: usize = 64;

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
    let duration = match info.duration_ms.map(u64::try_from) {
        Some(Ok(ms)) if ms > 0 => ms,
        _ => UNKNOWN_DURATION_MS,
    };
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
        "queue" => {
            let ids = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<Vec<i64>, _>>()
                .map_err(|_| "queue ID [ID…]")?;
            if ids.len() > MAX_QUEUE_ITEMS {
                return Err(format!("queue: at most {MAX_QUEUE_ITEMS} items"));
            }
            LineCmd::Queue(ids)
        }
        "next" => LineCmd::User(UserCommand::Next),
        "prev" | "previous" => LineCmd::User(UserCommand::Previous),
        "chat" => LineCmd::User(UserCommand::Chat(rest.to_owned())),
        "ask" => {
            const USAGE: &str = "ask pause|play|seek SECS";
            let (what, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            let what = match what {
                "pause" => AskFor::Pause,
                "play" => AskFor::Play,
                "seek" => {
                    let secs: f64 = arg.trim().parse().map_err(|_| USAGE)?;
                    if !secs.is_finite() || secs < 0.0 {
                        return Err(USAGE.into());
                    }
                    AskFor::Seek(MediaPos::from_secs_f64(secs))
                }
                _ => return Err(USAGE.into()),
            };
            LineCmd::User(UserCommand::Ask(what))
        }
        "accept" => LineCmd::Answer(UserRef::parse(rest).ok_or("accept USER")?, true),
        "dismiss" => LineCmd::Answer(UserRef::parse(rest).ok_or("dismiss USER")?, false),
        "approve" => LineCmd::Approve(UserRef::parse(rest).ok_or("approve USER")?),
        "roster" => LineCmd::Status(None),
        "status" => {
            if rest.len() > MAX_STATUS_TAG || rest.chars().any(char::is_control) {
                return Err(format!(
                    "status [TAG] (TAG: at most {MAX_STATUS_TAG} bytes)"
                ));
            }
            LineCmd::Status((!rest.is_empty()).then(|| rest.to_owned()))
        }
        "kick" => LineCmd::Kick(UserRef::parse(rest).ok_or("kick USER")?),
        "handoff" => LineCmd::Handoff(UserRef::parse(rest).ok_or("handoff USER")?),
        "role" => {
            let (user, role) = rest.split_once(' ').ok_or("role USER controller|viewer")?;
            let role = match role.trim() {
                "controller" => Role::Controller,
                "viewer" => Role::Viewer,
                _ => return Err("role USER controller|viewer".into()),
            };
            LineCmd::Role(
                UserRef::parse(user).ok_or("role USER controller|viewer")?,
                role,
            )
        }
        "quit" | "exit" => LineCmd::Quit,
        other => return Err(format!("unknown command `{other}`")),
    }))
}

enum LineCmd {
    User(UserCommand),
    Load(i64),
    Queue(Vec<i64>),
    /// A status snapshot, with the caller's tag.
    Status(Option<String>),
    Kick(UserRef),
    Handoff(UserRef),
    Role(UserRef, Role),
    /// Host: accept (`true`) or dismiss a member's ask.
    Answer(UserRef, bool),
    /// Host: admit a member by hand (docs/protocol.md §2.2).
    Approve(UserRef),
    Quit,
}

/// A member named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UserRef {
    Id(u64),
    Name(String),
}

impl UserRef {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() || s.contains(char::is_whitespace) {
            return None;
        }
        Some(match s.parse::<u64>() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Name(s.to_owned()),
        })
    }

    /// The user id (a username is looked up among the room's members).
    async fn resolve(&self, api: &ApiClient, room: &str) -> Result<UserId, AnyError> {
        let id = match self {
            Self::Id(id) => *id,
            Self::Name(name) => {
                let info = api.room(room).await?;
                let m = info
                    .members
                    .iter()
                    .find(|m| &m.username == name)
                    .ok_or_else(|| format!("no member named {name}"))?;
                u64::try_from(m.user_id).map_err(|_| "bad user id")?
            }
        };
        Ok(UserId::new(id)?)
    }
}

fn print_event(json: bool, e: &DriverEvent) {
    if json {
        if let Ok(s) = serde_json::to_string(e) {
            println!("{s}");
        }
    } else {
        match e {
            DriverEvent::Status(s) => print_status(s),
            DriverEvent::Chat {
                from,
                text,
                earlier,
            } => {
                let mark = if *earlier { " (earlier)" } else { "" };
                println!("[{from}]{mark} {text}");
            }
            DriverEvent::HostChangeRefused(r) => println!("! {}", r.message),
            DriverEvent::NoLongerWaitedFor { message, .. } => println!("* {message}"),
            DriverEvent::Asks { asks } => print_asks(asks),
            DriverEvent::Refused { message } => println!("! {message}"),
            DriverEvent::LinkFailed { message, .. } => println!("! {message}"),
            other => println!("* {other:?}"),
        }
    }
}

fn print_status(s: &watchparty_peer::native::driver::StatusSnapshot) {
    println!(
        "you={:?} ({}) host={:?} epoch={} signaling={} playback={:?}",
        s.you,
        role_word(s.role),
        s.host,
        s.epoch,
        s.signaling,
        s.playback
    );
    if s.admission && !s.admitted {
        println!("  waiting for the host to approve you: nobody hears you yet");
    }
    println!(
        "clock offset={:?} ms ± {:?} ms, position error={:?} ms, correcting={} ({} ppm)",
        s.clock_offset_ms,
        s.clock_uncertainty_ms,
        s.position_error_ms,
        s.correcting,
        s.rate_offset_ppm
    );
    for p in &s.peers {
        // Only a follower's link to the host can carry the host's binding.
        let link = match (p.is_host && !s.is_host, p.bound) {
            (true, true) => " (verified link)",
            (true, false) => " (link not verified)",
            (false, _) => "",
        };
        // In a room that needs the host's approval (docs/protocol.md §2.2).
        let approval = if s.admission && !p.is_host && !p.admitted {
            " (not approved by the host: not heard)"
        } else {
            ""
        };
        println!(
            "  peer {} {} ({}) {}{link}{approval} channels={} online={} queued={}B retries={}",
            p.user,
            p.name.as_deref().unwrap_or("?"),
            role_word(p.role),
            p.state,
            p.channels_open,
            p.online,
            p.queued_bytes,
            p.attempts
        );
        if let (Some(path), Some(l), Some(r)) = (p.path, p.local_candidate, p.remote_candidate) {
            let how = if path == "relay" {
                "through the TURN relay"
            } else {
                "directly"
            };
            println!("    connected {how} (candidate pair {l} → {r})");
        }
        if let Some(problem) = &p.problem {
            println!("    ! {problem}");
        }
    }
    println!(
        "  ice: offering {} (TURN relay: {})",
        s.ice.local_candidates.join(", "),
        if s.ice.turn_offered {
            s.ice.relays.join(", ")
        } else {
            "none offered by the server".to_owned()
        }
    );
    println!("  rejected: {:?}", s.drops);
    println!("  counters: {:?}", s.counters);
    if let Some(r) = &s.refused_host_change {
        println!("  ! {}", r.message);
    }
    if let Some(p) = &s.policy {
        println!("  rules: {p}");
    }
    print_asks(&s.asks);
}

/// The host's pending asks, with the commands that answer them.
fn print_asks(asks: &[watchparty_peer::native::driver::AskView]) {
    if asks.is_empty() {
        println!("  requests: none waiting");
    }
    for a in asks {
        println!(
            "  request: {} (accept {m} / dismiss {m})",
            a.text,
            m = a.member
        );
    }
}

/// A role as the status line shows it.
fn role_word(role: Option<watchparty_peer::ids::Role>) -> &'static str {
    use watchparty_peer::ids::Role;
    match role {
        Some(Role::Host) => "host",
        Some(Role::Controller) => "controller",
        Some(Role::Viewer) => "viewer",
        None => "not in the room",
    }
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
    admit: Option<AdmitSecret>,
    peer: &PeerArgs,
    initial_load: Option<i64>,
) -> Result<(), AnyError> {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let signal_url = api.signal_url(&room.to_string())?.to_string();
    let mut cfg = DriverConfig::new(room, signal_url, identity);
    cfg.pinned_host = pin;
    cfg.session.admit_secret = admit;
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
    let room_text = room.to_string();
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
                    Ok(Some(LineCmd::Queue(ids))) => queue(&api, &handle, &ids, json).await,
                    Ok(Some(LineCmd::Status(tag))) => {
                        if let Some(s) = handle.status().await {
                            print_status_event(json, &clock, s, tag.as_deref());
                        }
                    }
                    Ok(Some(LineCmd::Kick(who))) => {
                        let r = host_action(&api, &handle, &room_text, &who, HostAction::Kick).await;
                        host_result(json, "kick", r);
                    }
                    Ok(Some(LineCmd::Handoff(who))) => {
                        let r = host_action(&api, &handle, &room_text, &who, HostAction::Handoff).await;
                        host_result(json, "handoff", r);
                    }
                    Ok(Some(LineCmd::Answer(who, accept))) => {
                        let what = if accept { "accept" } else { "dismiss" };
                        let r = answer_ask(&api, &handle, &room_text, &who, accept).await;
                        host_result(json, what, r);
                    }
                    Ok(Some(LineCmd::Approve(who))) => {
                        let r = approve(&api, &handle, &room_text, &who).await;
                        host_result(json, "approve", r);
                    }
                    Ok(Some(LineCmd::Role(who, role))) => {
                        let r = host_action(&api, &handle, &room_text, &who, HostAction::Role(role)).await;
                        host_result(json, "role", r);
                    }
                    Err(e) => report(json, &e),
                },
                // End of input: keep running (scripts close stdin).
                Ok(None) | Err(_) => stdin_open = false,
            },
            _ = tick.tick(), if json => {
                if let Some(s) = handle.status().await {
                    print_status_event(json, &clock, s, None);
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

/// Prints a status snapshot; in `--json` mode with `wall_us`, the Unix time
/// (µs) of the snapshot instant, so scripts can compare peers (processes
/// with different local clocks) at one shared instant, and the caller's tag.
fn print_status_event(
    json: bool,
    clock: &PlayerClock,
    s: watchparty_peer::native::driver::StatusSnapshot,
    tag: Option<&str>,
) {
    if !json {
        print_status(&s);
        return;
    }
    // Read both clocks back to back; the snapshot was taken `age` ago on
    // the driver's clock.
    let local_now = clock.now().as_micros();
    let wall_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let age = local_now.saturating_sub(s.local_us);
    let Ok(mut v) = serde_json::to_value(DriverEvent::Status(Box::new(s))) else {
        return;
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("wall_us".into(), wall_now.saturating_sub(age).into());
        if let Some(tag) = tag {
            o.insert("tag".into(), tag.into());
        }
    }
    println!("{v}");
}

/// A host-only room change executed by the server.
#[derive(Debug, Clone, Copy)]
enum HostAction {
    Kick,
    Handoff,
    Role(Role),
}

/// The server's REST route first (it is the authority and pushes the change
/// to every signaling socket), then the signed frame so peers act at once
/// (and, for a handoff, so pinned followers accept the new host key).
async fn host_action(
    api: &ApiClient,
    handle: &DriverHandle,
    room: &str,
    who: &UserRef,
    action: HostAction,
) -> Result<UserId, AnyError> {
    let status = handle.status().await.ok_or("the peer has stopped")?;
    if !status.is_host {
        return Err("only the host can do that".into());
    }
    let user = who.resolve(api, room).await?;
    let cmd = match action {
        HostAction::Kick => {
            api.kick_member(room, user.get()).await?;
            UserCommand::Kick(user)
        }
        HostAction::Handoff => {
            // The signed Handoff reaches only peers with open channels; the
            // new host must get it, or pinned peers would refuse it.
            let reachable = status.peers.iter().any(|p| {
                p.user == user.get()
                    && p.state == "connected"
                    && p.channels_open >= watchparty_peer::channels::ALL.len()
            });
            if !reachable {
                return Err(format!(
                    "user {} is not connected to us yet; try again in a moment",
                    user.get()
                )
                .into());
            }
            api.handoff(room, user.get()).await?;
            UserCommand::Handoff(user)
        }
        HostAction::Role(role) => {
            let name = if role == Role::Controller {
                "controller"
            } else {
                "viewer"
            };
            api.set_member_role(room, user.get(), name).await?;
            UserCommand::SetRole { member: user, role }
        }
    };
    handle
        .command(cmd)
        .await
        .map_err(|e| format!("the server accepted, but the signed frame was refused: {e}"))?;
    Ok(user)
}

/// Host: accepts or dismisses `who`'s ask (signed by us; no REST route).
async fn answer_ask(
    api: &ApiClient,
    handle: &DriverHandle,
    room: &str,
    who: &UserRef,
    accept: bool,
) -> Result<UserId, AnyError> {
    let user = who.resolve(api, room).await?;
    let cmd = if accept {
        UserCommand::AcceptAsk(user)
    } else {
        UserCommand::DismissAsk(user)
    };
    handle.command(cmd).await.map_err(|e| e.to_string())?;
    Ok(user)
}

/// Host: admits `who` by hand (signed by us in our roster; no REST route).
async fn approve(
    api: &ApiClient,
    handle: &DriverHandle,
    room: &str,
    who: &UserRef,
) -> Result<UserId, AnyError> {
    let user = who.resolve(api, room).await?;
    handle
        .command(UserCommand::Approve(user))
        .await
        .map_err(|e| e.to_string())?;
    Ok(user)
}

fn host_result(json: bool, what: &str, r: Result<UserId, AnyError>) {
    match r {
        Ok(user) if json => println!(
            "{}",
            serde_json::json!({ "event": "done", "command": what, "user": user.get() })
        ),
        Ok(user) => println!("{what} {}: done", user.get()),
        Err(e) => report(json, &format!("{what}: {e}")),
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

async fn queue(api: &ApiClient, handle: &DriverHandle, ids: &[i64], json: bool) {
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        match api.media_item(*id).await {
            Ok(info) => match media_item(&info) {
                Ok(item) => items.push(item),
                Err(e) => return report(json, &format!("queue: {e}")),
            },
            Err(e) => return report(json, &format!("queue: {e}")),
        }
    }
    if let Err(e) = handle.command(UserCommand::Queue(items)).await {
        report(json, &format!("queue refused: {e}"));
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
            let admit = AdmitSecret::derive(&key);
            let link = InviteLink {
                server: saved.server.clone(),
                room: room_id,
                pin: Some(key.public_key()),
                admit: Some(admit),
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
                Some(admit),
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
            let (identity, admit) = if info.my_role == "host" {
                // Its admission secret comes from the room key (§2.2).
                let key = store.room_key(&link.room)?;
                let admit = AdmitSecret::derive(&key);
                (key, Some(admit))
            } else {
                (new_signing_key().map_err(|e| format!("{e}"))?, link.admit)
            };
            run_peer(
                cli.json, &store, api, &saved, link.room, identity, link.pin, admit, peer, None,
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
    let result = rt.block_on(run(cli));
    // The stdin reader sits in a blocking read on a runtime thread; waiting
    // for it would keep a stopped peer (kicked, room ended) alive until the
    // user types something.
    rt.shutdown_background();
    match result {
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
        assert!(matches!(
            parse_command("ask pause"),
            Ok(Some(LineCmd::User(UserCommand::Ask(AskFor::Pause))))
        ));
        assert!(matches!(
            parse_command("ask seek 90"),
            Ok(Some(LineCmd::User(UserCommand::Ask(AskFor::Seek(p))))) if p == MediaPos::from_millis(90_000)
        ));
        assert!(parse_command("ask seek").is_err());
        assert!(parse_command("ask rate 2").is_err());
        assert!(matches!(
            parse_command("accept bob"),
            Ok(Some(LineCmd::Answer(UserRef::Name(n), true))) if n == "bob"
        ));
        assert!(matches!(
            parse_command("dismiss 3"),
            Ok(Some(LineCmd::Answer(UserRef::Id(3), false)))
        ));
        assert!(matches!(
            parse_command("approve bob"),
            Ok(Some(LineCmd::Approve(UserRef::Name(n)))) if n == "bob"
        ));
        assert!(parse_command("approve").is_err());
        assert!(matches!(
            parse_command("kick 7"),
            Ok(Some(LineCmd::Kick(UserRef::Id(7))))
        ));
        assert!(matches!(
            parse_command("handoff alice"),
            Ok(Some(LineCmd::Handoff(UserRef::Name(n)))) if n == "alice"
        ));
        assert!(matches!(
            parse_command("role bob viewer"),
            Ok(Some(LineCmd::Role(UserRef::Name(n), Role::Viewer))) if n == "bob"
        ));
        assert!(matches!(
            parse_command("queue 1 2 3"),
            Ok(Some(LineCmd::Queue(ids))) if ids == [1, 2, 3]
        ));
        assert!(matches!(
            parse_command("status t1"),
            Ok(Some(LineCmd::Status(Some(t)))) if t == "t1"
        ));
        assert!(matches!(
            parse_command("status"),
            Ok(Some(LineCmd::Status(None)))
        ));
        assert!(matches!(
            parse_command("next"),
            Ok(Some(LineCmd::User(UserCommand::Next)))
        ));
        let too_many = format!("queue {}", vec!["1"; MAX_QUEUE_ITEMS + 1].join(" "));
        let long_tag = format!("status {}", "t".repeat(MAX_STATUS_TAG + 1));
        for bad in [
            "seek",
            "seek -1",
            "seek NaN",
            "rate 0",
            "rate x",
            "load x",
            "dance",
            "kick",
            "handoff",
            "role bob",
            "role bob host",
            "queue x",
            &too_many,
            &long_tag,
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
