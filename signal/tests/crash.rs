//! Crash safety: the real server binary is killed with SIGKILL at a random
//! moment while clients write over real HTTP (room creation with invitations,
//! accepting invitations, leaving and rejoining, role changes, ending rooms).
//! After every kill the SQLite file is opened directly and checked:
//!
//! - `PRAGMA integrity_check` is `ok`, `PRAGMA foreign_key_check` is empty;
//! - no acknowledged write (a 2xx answer) is lost; a request that got no
//!   answer may or may not have been applied, but nothing in between;
//! - no half-created room: every room is one the clients asked for, with its
//!   host seated and exactly the requested invitations and queue;
//! - invariants: one host per room (the room's `host_user_id`, joined), seats
//!   taken ≤ `max_members`, open rooms per host ≤ the cap.
//!
//! Then the server is restarted on the same files and the next cycle runs.
//! Cycles: [`DEFAULT_CYCLES`] in the default test run, `WATCHPARTY_CRASH_CYCLES`
//! (set by `cargo xtask soak`) otherwise.

mod proc_common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proc_common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// Kill/restart cycles in the default test run.
const DEFAULT_CYCLES: usize = 5;
/// Concurrent writers (each hosts its own rooms, one request at a time).
const WRITERS: usize = 4;
/// Guests shared by all writers.
const GUESTS: usize = 8;
/// Invitations per created room.
const INVITES: usize = 3;
/// Seat limit of every created room (host + up to 3 guests fit; a fourth
/// guest is never invited).
const MAX_MEMBERS: u32 = 4;
/// Kill after a random load time in this range (ms).
const LOAD_MS: (u64, u64) = (300, 1500);
/// Server cap on open rooms per host (`MAX_OPEN_ROOMS_PER_HOST`).
const HOST_OPEN_CAP: i64 = 20;

/// A tiny xorshift PRNG (seeded from the clock; the seed is printed so a
/// failing run can be replayed with `WATCHPARTY_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A member row: (role, status).
type Member = (String, String);

/// A room as the clients know it: its creation request and the acknowledged
/// state since.
#[derive(Clone, Debug)]
struct Room {
    id: String,
    host: i64,
    members: BTreeMap<i64, Member>,
    ended: bool,
}

/// The one request a writer may have in flight when the server dies.
#[derive(Clone, Debug)]
enum Pending {
    Create { name: String, room: Room },
    Member { room: String, user: i64, to: Member },
    End { room: String },
}

/// One writer: its host account, its rooms, and what it was doing.
struct Writer {
    host: i64,
    token: String,
    rooms: BTreeMap<String, Room>,
    next_name: usize,
    pending: Option<Pending>,
    acked: u64,
    rng: Rng,
}

struct Shared {
    base: String,
    client: reqwest::Client,
    guests: Vec<(i64, String)>,
    stop: AtomicBool,
}

enum Outcome {
    /// 2xx: acknowledged.
    Ok(Value),
    /// A definite refusal (4xx): nothing was written.
    Refused(StatusCode),
    /// No answer (the server died): unknown.
    Lost,
}

async fn call(sh: &Shared, method: Method, path: &str, token: &str, body: Value) -> Outcome {
    let r = sh
        .client
        .request(method, format!("{}{path}", sh.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) => Outcome::Ok(serde_json::from_slice(&b).unwrap_or(Value::Null)),
            // Status line received but the body was cut: the write committed
            // (handlers answer after commit), treat as unknown anyway.
            Err(_) => Outcome::Lost,
        },
        Ok(r) if r.status().is_client_error() => Outcome::Refused(r.status()),
        Ok(r) => panic!("{path}: unexpected {}", r.status()),
        Err(_) => Outcome::Lost,
    }
}

fn guest_token(sh: &Shared, user: i64) -> &str {
    &sh.guests.iter().find(|(u, _)| *u == user).unwrap().1
}

/// One step of a writer. Returns `false` when the server stopped answering.
async fn step(sh: &Shared, w: &mut Writer) -> bool {
    let open: Vec<String> = w
        .rooms
        .values()
        .filter(|r| !r.ended)
        .map(|r| r.id.clone())
        .collect();
    let choice = w.rng.below(10);
    if open.is_empty() || choice < 3 {
        if open.len() as i64 >= HOST_OPEN_CAP - 2 {
            return end_room(sh, w, &open[0]).await;
        }
        return create(sh, w).await;
    }
    let id = open[w.rng.below(open.len() as u64) as usize].clone();
    if choice == 9 {
        return end_room(sh, w, &id).await;
    }
    let room = &w.rooms[&id];
    let guests: Vec<(i64, Member)> = room
        .members
        .iter()
        .filter(|(u, _)| **u != room.host)
        .map(|(u, m)| (*u, m.clone()))
        .collect();
    let (user, (role, status)) = guests[w.rng.below(guests.len() as u64) as usize].clone();
    let (method, path, token, body, to) = match status.as_str() {
        "invited" => (
            Method::POST,
            format!("/api/v1/invites/{id}/accept"),
            guest_token(sh, user).to_owned(),
            Value::Null,
            (role, "joined".to_owned()),
        ),
        "left" => (
            Method::POST,
            format!("/api/v1/rooms/{id}/join"),
            guest_token(sh, user).to_owned(),
            json!({}),
            (role, "joined".to_owned()),
        ),
        "joined" if choice < 6 => (
            Method::POST,
            format!("/api/v1/rooms/{id}/leave"),
            guest_token(sh, user).to_owned(),
            Value::Null,
            (role, "left".to_owned()),
        ),
        _ => {
            let new = if role == "viewer" {
                "controller"
            } else {
                "viewer"
            };
            (
                Method::PATCH,
                format!("/api/v1/rooms/{id}/members/{user}"),
                w.token.clone(),
                json!({"role": new}),
                (new.to_owned(), status),
            )
        }
    };
    w.pending = Some(Pending::Member {
        room: id.clone(),
        user,
        to: to.clone(),
    });
    match call(sh, method, &path, &token, body).await {
        Outcome::Ok(_) => {
            w.pending = None;
            w.acked += 1;
            w.rooms.get_mut(&id).unwrap().members.insert(user, to);
            true
        }
        Outcome::Refused(s) => panic!("{path}: refused with {s} although the state allows it"),
        Outcome::Lost => false,
    }
}

async fn create(sh: &Shared, w: &mut Writer) -> bool {
    let name = format!("crash-{}-{}", w.host, w.next_name);
    w.next_name += 1;
    let mut invites: Vec<(i64, String)> = Vec::new();
    while invites.len() < INVITES {
        let (g, _) = sh.guests[w.rng.below(sh.guests.len() as u64) as usize];
        if invites.iter().all(|(u, _)| *u != g) {
            let role = if w.rng.below(2) == 0 {
                "viewer"
            } else {
                "controller"
            };
            invites.push((g, role.to_owned()));
        }
    }
    let names: HashMap<i64, String> = sh
        .guests
        .iter()
        .enumerate()
        .map(|(i, (u, _))| (*u, format!("guest{i}")))
        .collect();
    let body = json!({
        "name": name,
        "media_id": 1,
        "max_members": MAX_MEMBERS,
        "invites": invites.iter().map(|(u, r)| json!({"username": names[u], "role": r})).collect::<Vec<_>>(),
    });
    let mut members: BTreeMap<i64, Member> = invites
        .iter()
        .map(|(u, r)| (*u, (r.clone(), "invited".to_owned())))
        .collect();
    members.insert(w.host, ("host".to_owned(), "joined".to_owned()));
    let room = Room {
        id: String::new(),
        host: w.host,
        members,
        ended: false,
    };
    w.pending = Some(Pending::Create {
        name: name.clone(),
        room: room.clone(),
    });
    match call(sh, Method::POST, "/api/v1/rooms", &w.token, body).await {
        Outcome::Ok(v) => {
            let id = v["id"].as_str().unwrap().to_owned();
            w.pending = None;
            w.acked += 1;
            w.rooms.insert(id.clone(), Room { id, ..room });
            true
        }
        // Room-creation rate limit (in memory, resets on restart): try
        // something else.
        Outcome::Refused(StatusCode::TOO_MANY_REQUESTS) => {
            w.pending = None;
            tokio::time::sleep(Duration::from_millis(20)).await;
            true
        }
        Outcome::Refused(s) => panic!("create refused with {s}"),
        Outcome::Lost => false,
    }
}

async fn end_room(sh: &Shared, w: &mut Writer, id: &str) -> bool {
    w.pending = Some(Pending::End {
        room: id.to_owned(),
    });
    match call(
        sh,
        Method::POST,
        &format!("/api/v1/rooms/{id}/end"),
        &w.token,
        Value::Null,
    )
    .await
    {
        Outcome::Ok(_) => {
            w.pending = None;
            w.acked += 1;
            w.rooms.get_mut(id).unwrap().ended = true;
            true
        }
        Outcome::Refused(s) => panic!("end refused with {s}"),
        Outcome::Lost => false,
    }
}

/// What the database holds.
struct DbRoom {
    id: String,
    name: String,
    host: i64,
    ended: bool,
    max_members: i64,
    members: BTreeMap<i64, Member>,
    queue: i64,
}

async fn read_db(dir: &DataDir) -> (Vec<String>, Vec<DbRoom>) {
    let opts = SqliteConnectOptions::new()
        .filename(dir.db_path())
        .foreign_keys(true);
    let mut db = SqliteConnection::connect_with(&opts).await.unwrap();
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let fk: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(fk.is_empty(), "foreign key violations in {fk:?}");
    let rows: Vec<(String, String, i64, String, i64)> =
        sqlx::query_as("SELECT id, name, host_user_id, status, max_members FROM rooms")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut rooms = Vec::new();
    for (id, name, host, status, max_members) in rows {
        let members: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT user_id, role, status FROM room_members WHERE room_id = ?1")
                .bind(&id)
                .fetch_all(&mut db)
                .await
                .unwrap();
        let queue: i64 = sqlx::query_scalar("SELECT count(*) FROM room_queue WHERE room_id = ?1")
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        rooms.push(DbRoom {
            id,
            name,
            host,
            ended: status == "ended",
            max_members,
            members: members.into_iter().map(|(u, r, s)| (u, (r, s))).collect(),
            queue,
        });
    }
    db.close().await.unwrap();
    (integrity, rooms)
}

/// Checks the database against what the writers were told, then resolves
/// every unanswered request to what the database says. Returns the number of
/// acknowledged rooms checked.
fn verify(writers: &mut [Writer], db: &[DbRoom]) -> usize {
    let by_id: HashMap<&str, &DbRoom> = db.iter().map(|r| (r.id.as_str(), r)).collect();
    // Invariants of every room, known or not.
    let mut open_per_host: HashMap<i64, i64> = HashMap::new();
    for r in db {
        let hosts: Vec<_> = r.members.iter().filter(|(_, m)| m.0 == "host").collect();
        assert_eq!(hosts.len(), 1, "room {} has {} hosts", r.id, hosts.len());
        assert_eq!(
            *hosts[0].0, r.host,
            "room {}: host row is not the room's host",
            r.id
        );
        assert_eq!(hosts[0].1.1, "joined", "room {}: host not seated", r.id);
        let seated = r.members.values().filter(|m| m.1 == "joined").count() as i64;
        assert!(
            seated <= r.max_members,
            "room {}: {seated} seated > {}",
            r.id,
            r.max_members
        );
        assert_eq!(r.queue, 1, "room {}: queue rows {}", r.id, r.queue);
        if !r.ended {
            *open_per_host.entry(r.host).or_default() += 1;
        }
    }
    assert!(open_per_host.values().all(|n| *n <= HOST_OPEN_CAP));

    let mut checked = 0;
    let mut claimed: Vec<&str> = Vec::new();
    for w in writers.iter_mut() {
        for room in w.rooms.values_mut() {
            let got = by_id
                .get(room.id.as_str())
                .unwrap_or_else(|| panic!("acknowledged room {} lost", room.id));
            claimed.push(got.id.as_str());
            checked += 1;
            assert_eq!(got.host, room.host);
            let pending_here = |p: &Option<Pending>| match p {
                Some(Pending::End { room: r }) => *r == room.id,
                _ => false,
            };
            if room.ended {
                assert!(got.ended, "acknowledged end of {} lost", room.id);
            } else if !pending_here(&w.pending) {
                assert!(!got.ended, "room {} ended without an end request", room.id);
            }
            room.ended = got.ended;
            for (user, want) in &room.members {
                let have = got
                    .members
                    .get(user)
                    .unwrap_or_else(|| panic!("member {user} of {} lost", room.id));
                let alt = match &w.pending {
                    Some(Pending::Member {
                        room: r,
                        user: u,
                        to,
                    }) if *r == room.id && u == user => Some(to),
                    _ => None,
                };
                assert!(
                    have == want || Some(have) == alt,
                    "room {} member {user}: acknowledged {want:?}, pending {alt:?}, database {have:?}",
                    room.id
                );
            }
            assert_eq!(
                got.members.len(),
                room.members.len(),
                "room {}: extra member rows",
                room.id
            );
            room.members = got.members.clone();
        }
        // An unanswered creation: absent, or present and complete.
        if let Some(Pending::Create { name, room }) = &w.pending
            && let Some(got) = db.iter().find(|r| &r.name == name)
        {
            assert_eq!(got.host, room.host);
            assert!(!got.ended);
            assert_eq!(
                got.members, room.members,
                "unanswered creation {name} is half-written"
            );
            claimed.push(got.id.as_str());
            let mut adopted = room.clone();
            adopted.id = got.id.clone();
            w.rooms.insert(adopted.id.clone(), adopted);
        }
        w.pending = None;
    }
    // Every room in the database was asked for by a writer.
    for r in db {
        assert!(
            claimed.contains(&r.id.as_str()),
            "room {} ({}) exists but no client created it",
            r.id,
            r.name
        );
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_loses_nothing() {
    let cycles: usize = std::env::var("WATCHPARTY_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES);
    let seed: u64 = std::env::var("WATCHPARTY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash: {cycles} cycles, seed {seed} (WATCHPARTY_CRASH_SEED)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path(), "");
    for i in 0..WRITERS {
        dir.add_user(&format!("host{i}"));
    }
    for i in 0..GUESTS {
        dir.add_user(&format!("guest{i}"));
    }
    let ids = user_ids(&dir);
    let port = free_port();
    let server = Proc::start(&dir, port).await;
    let client = client_from(None);
    let base = server.url("");
    // Tokens survive restarts (the signing key and sessions are on disk).
    let mut guests = Vec::new();
    for i in 0..GUESTS {
        let name = format!("guest{i}");
        guests.push((ids[&name], login(&client, &base, &name).await));
    }
    let mut writers = Vec::new();
    let mut rng = Rng(seed);
    for i in 0..WRITERS {
        let name = format!("host{i}");
        writers.push(Writer {
            host: ids[&name],
            token: login(&client, &base, &name).await,
            rooms: BTreeMap::new(),
            next_name: 0,
            pending: None,
            acked: 0,
            rng: Rng(rng.next() | 1),
        });
    }
    let mut server = Some(server);
    let started = Instant::now();
    let mut unanswered = 0;
    for cycle in 0..cycles {
        let proc = match server.take() {
            Some(p) => p,
            None => Proc::start(&dir, port).await,
        };
        let sh = Arc::new(Shared {
            base: base.clone(),
            client: client_from(None),
            guests: guests.clone(),
            stop: AtomicBool::new(false),
        });
        let tasks: Vec<_> = writers
            .drain(..)
            .map(|mut w| {
                let sh = sh.clone();
                tokio::spawn(async move {
                    loop {
                        if sh.stop.load(Ordering::Relaxed) || !step(&sh, &mut w).await {
                            break;
                        }
                    }
                    w
                })
            })
            .collect();
        let load = LOAD_MS.0 + rng.below(LOAD_MS.1 - LOAD_MS.0);
        tokio::time::sleep(Duration::from_millis(load)).await;
        proc.kill9();
        for t in tasks {
            writers.push(t.await.unwrap());
        }
        unanswered += writers.iter().filter(|w| w.pending.is_some()).count();
        let (integrity, rooms) = read_db(&dir).await;
        assert_eq!(integrity, ["ok"], "cycle {cycle}: integrity_check");
        let checked = verify(&mut writers, &rooms);
        println!(
            "crash cycle {cycle}: killed after {load} ms; integrity ok; {checked} acknowledged rooms intact, {} rooms in the database",
            rooms.len()
        );
    }
    let acked: u64 = writers.iter().map(|w| w.acked).sum();
    println!(
        "crash: {cycles} kill -9 cycles in {:.1} s, {acked} acknowledged writes, none lost; {unanswered} unanswered requests resolved all-or-nothing",
        started.elapsed().as_secs_f64()
    );
    assert!(acked > 0, "no write was acknowledged: the load did not run");
    // The last restart answers again on the same files.
    let proc = Proc::start(&dir, port).await;
    let r = client
        .get(proc.url("/api/v1/rooms"))
        .bearer_auth(&writers[0].token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    proc.kill9();
}
