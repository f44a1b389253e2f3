//! Micro figures: frame sign + verify, `Session::handle_frame` per frame,
//! wasm bundle size. Simple in-binary timing loops: fixed batches, one
//! sample per batch, median over batches.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::frame::{self, Envelope, Header};
use watchparty_peer::ids::{
    DisplayName, Epoch, PositionMs, Role, RoomId, RoomMs, Seq, UnixSeconds, UserId,
};
use watchparty_peer::message::Message;
use watchparty_peer::session::{ChannelOpen, Output, Session, SessionConfig, UserCommand};
use watchparty_peer::signaling::{BoundedVec, OffererRule, RosterEntry, ServerMessage};
use watchparty_peer::time::{LocalTime, MediaPos};

use crate::stats::Figure;
use crate::{Error, Options};

/// Operations per timed batch.
const BATCH: usize = 1000;

/// Stop sampling after this long per figure.
const TIME_LIMIT: Duration = Duration::from_secs(5);

const ROOM: RoomId = RoomId::from_bytes([9; 16]);
const WALL: UnixSeconds = UnixSeconds(1_700_000_000);

/// Runs the micro figures.
pub fn run(opts: &Options, out: &mut Vec<Figure>, notes: &mut Vec<String>) {
    let batches = if opts.quick { 10 } else { 40 };
    match sign_verify(batches) {
        Ok(f) => out.extend(f),
        Err(e) => notes.push(format!("micro sign+verify: {e}")),
    }
    match handle_frame(batches) {
        Ok(f) => out.extend(f),
        Err(e) => notes.push(format!("micro handle_frame: {e}")),
    }
    if opts.wasm.is_empty() {
        notes.push("micro wasm size: not measured (no wasm build given)".into());
    }
    for path in &opts.wasm {
        match wasm_size(path) {
            Ok(f) => out.extend(f),
            Err(e) => notes.push(format!("micro wasm size {}: {e}", path.display())),
        }
    }
}

fn key(n: u8) -> Result<SigningKey, Error> {
    SigningKey::from_seed(&[n; 32]).map_err(Error::msg)
}

fn pause_msg(i: u64) -> Result<Message, Error> {
    Ok(Message::Pause {
        position: PositionMs::new(i * 10).map_err(Error::msg)?,
        at: RoomMs(0),
    })
}

fn sign_verify(batches: usize) -> Result<Vec<Figure>, Error> {
    let k = key(1)?;
    let pk = k.public_key();
    let msg = pause_msg(1)?;
    let mut rates = Vec::new();
    let mut frame_len = 0;
    let t_end = Instant::now() + TIME_LIMIT;
    for b in 0..batches {
        let t = Instant::now();
        for i in 0..BATCH {
            let h = Header {
                room: ROOM,
                epoch: Epoch(1),
                seq: Seq::new((b * BATCH + i + 1) as u64).map_err(Error::msg)?,
                issued_at: RoomMs(0),
            };
            let bytes = frame::encode(&k, &h, &msg).map_err(Error::msg)?;
            frame_len = bytes.len();
            let v = Envelope::parse(&bytes)
                .map_err(Error::msg)?
                .verify(&pk)
                .map_err(Error::msg)?;
            std::hint::black_box(v.decode().map_err(Error::msg)?);
        }
        rates.push(BATCH as f64 / t.elapsed().as_secs_f64());
        if Instant::now() > t_end {
            break;
        }
    }
    Ok(Figure::new(
        "micro",
        "frame_sign_verify",
        "frames/s",
        &rates,
        json!({"per_sample": format!("{BATCH} × (encode+sign, parse+verify+decode) of a Pause frame"), "frame_bytes": frame_len, "threads": 1}),
        None,
    )
    .into_iter()
    .collect())
}

fn cert(server: &SigningKey, user: u64, role: Role) -> Result<SignedCertificate, Error> {
    SignedCertificate::issue(
        server,
        CertificateBody {
            room: ROOM,
            epoch: Epoch(1),
            user: UserId::new(user).map_err(Error::msg)?,
            name: DisplayName::new("bench").map_err(Error::msg)?,
            role,
            key: key(user as u8)?.public_key(),
            not_after: UnixSeconds(WALL.0 + 3600),
        },
    )
    .map_err(Error::msg)
}

/// User `me` (1 = host, 2 = viewer) joined to a two-member room with its
/// channels to the other open.
fn joined(me: u64, now: LocalTime) -> Result<Session, Error> {
    let server = key(0x50)?;
    let other = 3 - me;
    let role = |u| if u == 1 { Role::Host } else { Role::Viewer };
    let mut s = Session::new(
        SessionConfig::new(ROOM),
        key(me as u8)?,
        server.public_key(),
        Some(key(1)?.public_key()),
        now,
        WALL,
    )
    .map_err(Error::msg)?;
    let members = vec![RosterEntry {
        certificate: cert(&server, other, role(other))?,
        online: true,
    }];
    s.handle_signal(
        ServerMessage::Hello {
            protocol: 1,
            room: ROOM,
            you: UserId::new(me).map_err(Error::msg)?,
            epoch: Epoch(1),
            server_key: server.public_key(),
            certificate: cert(&server, me, role(me))?,
            members: BoundedVec::new(members).map_err(Error::msg)?,
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        },
        now,
    );
    s.channel_open(
        ChannelOpen {
            peer: UserId::new(other).map_err(Error::msg)?,
            local_fingerprint: None,
            remote_fingerprint: None,
        },
        now,
    );
    while s.poll_output().is_some() {}
    Ok(s)
}

fn handle_frame(batches: usize) -> Result<Vec<Figure>, Error> {
    let start = LocalTime::from_millis(1000);
    let mut host = joined(1, start)?;
    let mut follower = joined(2, start)?;
    let host_id = UserId::new(1).map_err(Error::msg)?;
    // Host seeks, 1 ms apart: each yields one signed control frame.
    let total = batches * BATCH;
    let mut frames = Vec::with_capacity(total);
    let mut now = start;
    for i in 0..total {
        now = LocalTime::from_micros(start.as_micros() + (i as i64 + 1) * 1000);
        host.command(
            UserCommand::Seek(MediaPos::from_millis(1000 + i as u64)),
            now,
        )
        .map_err(Error::msg)?;
        while let Some(o) = host.poll_output() {
            if let Output::SendFrame { channel, bytes, .. } = o {
                frames.push((channel, bytes));
            }
        }
    }
    if frames.len() < total {
        return Err(Error::msg(format!(
            "host produced {} frames for {total} commands",
            frames.len()
        )));
    }
    let before = follower.stats();
    let mut per_frame_us = Vec::new();
    let t_end = Instant::now() + TIME_LIMIT;
    for chunk in frames.chunks(BATCH) {
        let t = Instant::now();
        for (channel, bytes) in chunk {
            follower.handle_frame(host_id, *channel, bytes, now);
            while let Some(o) = follower.poll_output() {
                std::hint::black_box(o);
            }
        }
        per_frame_us.push(t.elapsed().as_secs_f64() * 1e6 / chunk.len() as f64);
        if Instant::now() > t_end {
            break;
        }
    }
    let after = follower.stats();
    let drops: u64 = follower.drops().total();
    let _ = std::io::stderr().flush();
    Ok(Figure::new(
        "micro",
        "session_handle_frame",
        "µs/frame",
        &per_frame_us,
        json!({"per_sample": format!("{BATCH} host Seek control frames into a follower Session, outputs drained"),
               "stats_before": format!("{before:?}"), "stats_after": format!("{after:?}"), "dropped": drops}),
        None,
    )
    .into_iter()
    .collect())
}

fn gzip_len(path: &std::path::Path) -> Result<u64, Error> {
    let out = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(Error::msg("gzip failed"));
    }
    Ok(out.stdout.len() as u64)
}

fn wasm_size(path: &std::path::Path) -> Result<Vec<Figure>, Error> {
    let raw = std::fs::metadata(path)?.len();
    let gz = gzip_len(path)?;
    let name = path
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    let p = json!({"file": path.display().to_string(), "gzip": "gzip -9"});
    Ok([
        Figure::single(
            "micro",
            &format!("size_raw {name}"),
            "KiB",
            raw as f64 / 1024.0,
            p.clone(),
            None,
        ),
        Figure::single(
            "micro",
            &format!("size_gzip {name}"),
            "KiB",
            gz as f64 / 1024.0,
            p,
            None,
        ),
    ]
    .into_iter()
    .flatten()
    .collect())
}
