//! Command line: `serve` and the admin sub-commands.
//!
//! Every sub-command takes `--data-dir` (or `WATCHPARTY_DATA_DIR`) and
//! `--config`. Passwords are read from standard input (first line), never
//! from the command line.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sqlx::SqlitePool;

use crate::audit::{Actor, AuditAction, Entry, Target};
use crate::client_ip::IpNet;
use crate::config::{self, Config, FileConfig};
use crate::password::PasswordHasherPool;
use crate::validate::{DisplayName, LibraryName, NewPassword, Username};

/// watchparty signaling server.
#[derive(Debug, Parser)]
#[command(name = "watchparty-signal", version, about)]
pub struct Cli {
    /// Optional TOML configuration file (flags and env win over it).
    #[arg(long, global = true, env = "WATCHPARTY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the database and the generated keys (default ./data).
    #[arg(long, global = true, env = "WATCHPARTY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage libraries.
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Index media.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Give a user access to a library.
    Grant {
        /// Username.
        username: String,
        /// Library name.
        library: String,
    },
    /// Take a library away from a user.
    Revoke {
        /// Username.
        username: String,
        /// Library name.
        library: String,
    },
    /// Read the audit trail, newest first.
    Audit(AuditArgs),
}

/// `audit` flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records since this time: Unix seconds, or an age such as 24h or 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only records of this username (as actor or target, and failed logins
    /// that named it).
    #[arg(long)]
    pub user: Option<String>,
    /// Only records about this room id.
    #[arg(long)]
    pub room: Option<String>,
    /// Only this action (e.g. login, room_created).
    #[arg(long)]
    pub action: Option<String>,
    /// Most records to print (1..=500).
    #[arg(long, default_value_t = crate::audit::store::DEFAULT_PAGE)]
    pub limit: u32,
    /// Only records with an id below this (the previous output's last id).
    #[arg(long)]
    pub before: Option<i64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `serve` flags (each also readable from the environment).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (default 127.0.0.1:8080).
    #[arg(long, env = "WATCHPARTY_BIND")]
    pub bind: Option<SocketAddr>,
    /// Public base URL, e.g. https://party.example.org.
    #[arg(long, env = "WATCHPARTY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Allow self-registration (off by default).
    #[arg(long, env = "WATCHPARTY_OPEN_REGISTRATION", num_args = 0..=1, default_missing_value = "true")]
    pub open_registration: Option<bool>,
    /// TLS certificate chain (PEM); requires --tls-key.
    #[arg(long, env = "WATCHPARTY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); requires --tls-cert.
    #[arg(long, env = "WATCHPARTY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxy address or network whose X-Forwarded-For is trusted (repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "WATCHPARTY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// Browser origin allowed by CORS (repeatable; CORS is off without one).
    #[arg(
        long = "cors-origin",
        env = "WATCHPARTY_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,
    /// Web app directory served at `/` (default ./web).
    #[arg(long, env = "WATCHPARTY_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Wasm bundle directory served under `/pkg/` (default <web-dir>/pkg).
    #[arg(long, env = "WATCHPARTY_WEB_PKG_DIR")]
    pub web_pkg_dir: Option<PathBuf>,
}

/// `user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        /// Username ([a-z0-9_.-]{3,32}).
        username: String,
        /// Make the user an administrator (sees all media).
        #[arg(long)]
        admin: bool,
        /// Display name (default: the username).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user and revoke their sessions.
    Disable {
        /// Username.
        username: String,
    },
    /// Set a new password (read from standard input) and revoke sessions.
    ResetPassword {
        /// Username.
        username: String,
    },
    /// Make a user an administrator (or, with --revoke, no longer one).
    Admin {
        /// Username.
        username: String,
        /// Take the administrator flag away instead.
        #[arg(long)]
        revoke: bool,
    },
}

/// `library …`.
#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// Register a library folder.
    Add {
        /// Library name.
        name: String,
        /// Root folder.
        path: PathBuf,
    },
    /// List libraries.
    List,
}

/// `media …`.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Index (or re-index) a library; safe to run repeatedly.
    Scan {
        /// Library name.
        library: String,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves the configuration for any sub-command.
fn resolve_config(cli: &Cli, serve: Option<&ServeArgs>) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut over = FileConfig {
        data_dir: cli.data_dir.clone(),
        ..FileConfig::default()
    };
    if let Some(s) = serve {
        over.bind = s.bind;
        over.public_url = s.public_url.clone();
        over.open_registration = s.open_registration;
        over.tls_cert = s.tls_cert.clone();
        over.tls_key = s.tls_key.clone();
        over.trusted_proxies = s.trusted_proxies.clone();
        over.cors_origins = s.cors_origins.clone();
        over.web_dir = s.web_dir.clone();
        over.web_pkg_dir = s.web_pkg_dir.clone();
    }
    config::resolve(over, file)
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), String> {
    let serve_args = match &cli.command {
        Command::Serve(a) => Some(a),
        _ => None,
    };
    let config = resolve_config(&cli, serve_args)?;
    if let Command::Serve(_) = cli.command {
        return crate::server::run(config).await.map_err(|e| e.to_string());
    }
    crate::state::ensure_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let db = crate::db::open(&config.database_path())
        .await
        .map_err(|e| format!("database: {e}"))?;
    let result = admin(&cli.command, &config, &db).await;
    db.close().await;
    result
}

fn read_password() -> Result<NewPassword, String> {
    eprintln!("reading the password from standard input (first line)");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read password: {e}"))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw).to_owned();
    NewPassword::parse(pw).map_err(|e| e.to_string())
}

async fn user_id(db: &SqlitePool, username: &str) -> Result<i64, String> {
    sqlx::query_scalar("SELECT id FROM users WHERE username = ?1")
        .bind(username)
        .fetch_optional(db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user: {username}"))
}

async fn library_id(db: &SqlitePool, name: &str) -> Result<i64, String> {
    sqlx::query_scalar("SELECT id FROM libraries WHERE name = ?1")
        .bind(name)
        .fetch_optional(db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such library: {name}"))
}

/// The operator's record of `action` on `target` (the command line has no
/// client address or request id).
fn by_operator(action: AuditAction, target: Target) -> Entry {
    Entry::ok(Actor::Operator, action).target(target)
}

/// Writes a record right after the action; a failure is reported, the
/// action stands.
async fn record(db: &SqlitePool, entry: &Entry) {
    if let Err(e) = crate::audit::store::insert(db, entry, crate::db::now_secs()).await {
        eprintln!("warning: audit record not written: {e}");
    }
}

async fn admin(cmd: &Command, config: &Config, db: &SqlitePool) -> Result<(), String> {
    let hasher = || {
        PasswordHasherPool::new(config.argon2, config.hash_queue_limits())
            .map_err(|e| e.to_string())
    };
    let now = crate::db::now_secs();
    match cmd {
        Command::Serve(_) => Ok(()),
        Command::Audit(args) => print_audit(args, config, db).await,
        Command::User(UserCommand::Add {
            username,
            admin,
            display_name,
        }) => {
            let username = Username::parse(username).map_err(|e| e.to_string())?;
            let display = DisplayName::parse(display_name.as_deref().unwrap_or(username.as_str()))
                .map_err(|e| e.to_string())?;
            let password = read_password()?;
            let hash = hasher()?
                .hash_blocking(password.as_bytes())
                .map_err(|e| e.to_string())?;
            let id = crate::accounts::create_user(db, &username, &display, &hash, *admin)
                .await
                .map_err(|e| e.to_string())?;
            let mut entry = by_operator(AuditAction::UserCreated, Target::User(id));
            if *admin {
                entry = entry.detail("admin");
            }
            record(db, &entry).await;
            println!(
                "created user {username} (id {id}{})",
                if *admin { ", admin" } else { "" }
            );
            Ok(())
        }
        Command::User(UserCommand::List) => {
            let rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
                "SELECT id, username, display_name, is_admin, disabled FROM users ORDER BY id",
            )
            .fetch_all(db)
            .await
            .map_err(|e| e.to_string())?;
            for (id, name, display, is_admin, disabled) in rows {
                let mut flags = Vec::new();
                if is_admin != 0 {
                    flags.push("admin");
                }
                if disabled != 0 {
                    flags.push("disabled");
                }
                println!("{id}\t{name}\t{display}\t{}", flags.join(","));
            }
            Ok(())
        }
        Command::User(UserCommand::Disable { username }) => {
            let id = user_id(db, username).await?;
            sqlx::query("UPDATE users SET disabled = 1 WHERE id = ?1")
                .bind(id)
                .execute(db)
                .await
                .map_err(|e| e.to_string())?;
            crate::accounts::revoke_all_sessions(db, id)
                .await
                .map_err(|e| e.to_string())?;
            record(
                db,
                &by_operator(AuditAction::UserDisabled, Target::User(id)),
            )
            .await;
            println!("disabled {username}");
            Ok(())
        }
        Command::User(UserCommand::ResetPassword { username }) => {
            let id = user_id(db, username).await?;
            let password = read_password()?;
            let hash = hasher()?
                .hash_blocking(password.as_bytes())
                .map_err(|e| e.to_string())?;
            sqlx::query("UPDATE users SET password_hash = ?2 WHERE id = ?1")
                .bind(id)
                .bind(hash)
                .execute(db)
                .await
                .map_err(|e| e.to_string())?;
            crate::accounts::revoke_all_sessions(db, id)
                .await
                .map_err(|e| e.to_string())?;
            record(
                db,
                &by_operator(AuditAction::UserPasswordReset, Target::User(id)),
            )
            .await;
            println!("password reset for {username}; sessions revoked");
            Ok(())
        }
        Command::User(UserCommand::Admin { username, revoke }) => {
            let id = user_id(db, username).await?;
            sqlx::query("UPDATE users SET is_admin = ?2 WHERE id = ?1")
                .bind(id)
                .bind(i64::from(!*revoke))
                .execute(db)
                .await
                .map_err(|e| e.to_string())?;
            let entry = by_operator(AuditAction::UserAdminChanged, Target::User(id))
                .detail(if *revoke { "off" } else { "on" });
            record(db, &entry).await;
            if *revoke {
                println!("{username} is no longer an administrator");
            } else {
                println!("{username} is now an administrator");
            }
            Ok(())
        }
        Command::Library(LibraryCommand::Add { name, path }) => {
            let name = LibraryName::parse(name).map_err(|e| e.to_string())?;
            let root = std::fs::canonicalize(path)
                .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
            if !root.is_dir() {
                return Err(format!("{} is not a directory", root.display()));
            }
            let root_text = root
                .to_str()
                .ok_or("library path must be valid UTF-8")?
                .to_owned();
            match crate::media::library::add(db, name.as_str(), &root_text, now).await {
                Ok(id) => {
                    let entry =
                        by_operator(AuditAction::LibraryAdded, Target::Library(id)).in_library(id);
                    record(db, &entry).await;
                    println!("created library {} (id {id}) at {root_text}", name.as_str());
                    Ok(())
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(format!("library {} already exists", name.as_str()))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Library(LibraryCommand::List) => {
            let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                "SELECT l.id, l.name, l.root_path,
                        (SELECT count(*) FROM media_items m WHERE m.library_id = l.id AND m.present = 1)
                   FROM libraries l ORDER BY l.id",
            )
            .fetch_all(db)
            .await
            .map_err(|e| e.to_string())?;
            for (id, name, root, count) in rows {
                println!("{id}\t{name}\t{root}\t{count} items");
            }
            Ok(())
        }
        Command::Media(MediaCommand::Scan { library }) => {
            let id = library_id(db, library).await?;
            let scanned =
                crate::media::scan::scan_library_limited(db, id, config.scan_max_entries).await;
            let r = match scanned {
                Ok(r) => r,
                Err(e) => {
                    let entry = Entry::new(
                        Actor::Operator,
                        AuditAction::LibraryScanned,
                        crate::audit::AuditOutcome::Failure,
                    )
                    .target(Target::Library(id))
                    .in_library(id);
                    record(db, &entry).await;
                    return Err(e.to_string());
                }
            };
            let entry = by_operator(AuditAction::LibraryScanned, Target::Library(id))
                .in_library(id)
                .detail(format!(
                    "{} added, {} updated, {} unchanged, {} missing, {} rejected",
                    r.added, r.updated, r.unchanged, r.missing, r.rejected
                ));
            record(db, &entry).await;
            println!(
                "scanned {library}: {} added, {} updated, {} unchanged, {} missing, {} subtitles, {} rejected",
                r.added, r.updated, r.unchanged, r.missing, r.subtitles, r.rejected
            );
            Ok(())
        }
        Command::Grant { username, library } => {
            let uid = user_id(db, username).await?;
            let lid = library_id(db, library).await?;
            crate::media::library::grant(db, uid, lid, now)
                .await
                .map_err(|e| e.to_string())?;
            let entry = by_operator(AuditAction::LibraryGranted, Target::User(uid)).in_library(lid);
            record(db, &entry).await;
            println!("granted {library} to {username}");
            Ok(())
        }
        Command::Revoke { username, library } => {
            let uid = user_id(db, username).await?;
            let lid = library_id(db, library).await?;
            crate::media::library::revoke(db, uid, lid)
                .await
                .map_err(|e| e.to_string())?;
            let entry = by_operator(AuditAction::LibraryRevoked, Target::User(uid)).in_library(lid);
            record(db, &entry).await;
            println!("revoked {library} from {username}");
            Ok(())
        }
    }
}

/// `audit`: prints one page of the trail, newest first.
async fn print_audit(args: &AuditArgs, config: &Config, db: &SqlitePool) -> Result<(), String> {
    use crate::audit::store::{self, Filter, MAX_PAGE, UserMatch};
    if !(1..=MAX_PAGE).contains(&args.limit) {
        return Err(format!("--limit must be 1..={MAX_PAGE}"));
    }
    let since = args
        .since
        .as_deref()
        .map(|t| crate::audit::parse_since(t, crate::db::now_secs()))
        .transpose()?;
    let room = args
        .room
        .as_deref()
        .map(|r| {
            crate::rooms::model::RoomId::parse(r)
                .map(|r| r.to_string())
                .map_err(|_| format!("not a room id: {r}"))
        })
        .transpose()?;
    let action = args
        .action
        .as_deref()
        .map(|a| {
            AuditAction::parse(a)
                .map(|a| a.as_str().to_owned())
                .ok_or_else(|| format!("no such action: {a}"))
        })
        .transpose()?;
    let user = match &args.user {
        Some(name) => {
            let key = crate::keys::load_or_create_audit_key(&config.data_dir)
                .map_err(|e| e.to_string())?;
            Some(UserMatch {
                id: user_id(db, name).await.ok(),
                name_hash: Some(crate::audit::name_hash(&key, name)),
            })
        }
        None => None,
    };
    let filter = Filter {
        since,
        user,
        room,
        action,
        before: args.before,
        limit: args.limit,
    };
    let page = store::query(db, &filter).await.map_err(|e| e.to_string())?;
    for r in &page.records {
        if args.json {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        } else {
            println!("{}", audit_line(r));
        }
    }
    if let Some(next) = page.next_before
        && !args.json
    {
        eprintln!("more: --before {next}");
    }
    Ok(())
}

/// One record as a tab-separated line: id, time (UTC), actor, action,
/// outcome, target, place, detail, client address, request id.
fn audit_line(r: &crate::audit::store::AuditRecord) -> String {
    let actor = match (&r.actor_user_id, &r.actor_name_hash) {
        (Some(id), _) => format!("user {id}"),
        (None, Some(h)) => format!("name {h}"),
        (None, None) => r.actor_kind.clone(),
    };
    let target = match (&r.target_kind, &r.target_id) {
        (Some(k), Some(id)) => format!("{k} {id}"),
        _ => "-".to_owned(),
    };
    let place = match (&r.room_id, r.library_id) {
        (Some(room), _) => format!("room {room}"),
        (None, Some(lib)) => format!("library {lib}"),
        (None, None) => "-".to_owned(),
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    format!(
        "{}\t{}\t{actor}\t{}\t{}\t{target}\t{place}\t{}\t{}\t{}",
        r.id,
        crate::audit::format_utc(r.at),
        r.action,
        r.outcome,
        dash(&r.detail),
        dash(&r.client_ip),
        dash(&r.request_id),
    )
}
