//! `fengqiao`: the command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fengqiao::config::{Config, LogFormat};
use fengqiao::server;
use fengqiao_cases::{CasesError, DemoLogin, StaffRole, Store};
use fengqiao_signaling::invite::{InviteKey, Role};
use std::io::Read as _;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "fengqiao", version, about = "Fengqiao: video mediation media server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve pages, signaling and media.
    Serve {
        /// TOML config file (keys in docs/interfaces.md); FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print a mediator and an applicant invite URL for room `demo` once started,
        /// and on first start (no staff account yet) load the demo district and print
        /// its logins.
        #[arg(long)]
        demo_invites: bool,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        cmd: DbCmd,
    },
    /// Staff accounts.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Load the demo district (organisations, roster, one login per role, disputes in
    /// every state) and print its logins.
    DemoData {
        /// TOML config file; FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a join URL for one participant.
    Invite {
        /// Room id.
        #[arg(long)]
        room: String,
        /// Display name (shown to everyone, not editable).
        #[arg(long)]
        name: String,
        /// mediator, applicant, respondent, agent or observer.
        #[arg(long)]
        role: Role,
        /// How long the invite is valid, e.g. 2h, 30m, 7d.
        #[arg(long, default_value = "2h")]
        ttl: humantime::Duration,
        /// Participant id; a random one by default.
        #[arg(long)]
        pid: Option<String>,
        /// Case id to carry in the token.
        #[arg(long)]
        case: Option<String>,
        /// Mediation session id to carry in the token.
        #[arg(long)]
        session: Option<String>,
        /// Admit without the waiting room.
        #[arg(long)]
        admitted: bool,
        /// Config file (for data_dir and server.public_url).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The configuration file (docs/configuration.md).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// The evidence signing key (docs/evidence.md § Keys).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Check a recorded session folder: every file hash, the manifest chain and its
    /// signature (docs/evidence.md). Prints a report; exits 1 on any mismatch.
    Verify {
        /// The session folder, e.g. data/sessions/<session-id>.
        session_dir: PathBuf,
        /// Trusted public key file (PEM from `keys export`, or 64 hex digits); by
        /// default the server's own key in <data_dir>/keys.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// TOML config file (for data_dir); FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Export a case's recordings as ISO 9660 disc images (docs/disc.md): review
    /// videos, originals, WAV, the evidence manifests, the public key, a signed disc
    /// manifest and an offline verifier page; spread over several discs when needed.
    Export {
        /// The case: its dispute id or its case number, e.g. "(2026)枫调字第00001号".
        #[arg(long)]
        case: String,
        /// Session ids to export, comma-separated; default every session with recordings.
        #[arg(long, value_delimiter = ',')]
        sessions: Option<Vec<i64>>,
        /// cd, dvd, dvd-dl, bd25 or bd50.
        #[arg(long)]
        media: fengqiao_recorder::disc::Media,
        /// Folder for the .iso files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Also export caucus (背靠背) recordings, marked confidential.
        #[arg(long)]
        include_caucus: bool,
        /// Who exports, for the disc manifest and the audit log (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// TOML config file; FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Burn an exported image to a disc with xorriso, then read the disc back and
    /// compare every file with its disc manifest (docs/disc.md). Exits 1 unless all match.
    Burn {
        /// The .iso made by `fengqiao export`.
        #[arg(long)]
        image: PathBuf,
        /// The drive, e.g. /dev/sr0 (a regular file is written as a disc image).
        #[arg(long)]
        device: PathBuf,
        /// Trusted public key file (PEM or 64 hex digits) for the disc manifest's
        /// signature; by default the server's own key in <data_dir>/keys.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// TOML config file (for data_dir); FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Render the review videos of a finished session (docs/evidence.md § Review video):
    /// review/main.mp4 and review/caucus-<room>.mp4, H.264 + AAC with the recording-time
    /// overlay; progress in review/render.json. Refuses a session that does not verify.
    Render {
        /// The session folder, e.g. data/sessions/<session-id>.
        session_dir: PathBuf,
        /// Trusted public key file (PEM from `keys export`, or 64 hex digits); by
        /// default the server's own key in <data_dir>/keys.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// TOML config file (for data_dir); FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output width in pixels.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Output height in pixels.
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Output frames per second.
        #[arg(long, default_value_t = 25)]
        fps: u32,
        /// x264 speed preset (ultrafast … veryslow).
        #[arg(long, default_value = "veryfast")]
        preset: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the full default configuration as commented TOML (every key, its
    /// default, unit and meaning).
    PrintDefault,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Print the evidence public key (key id, hex, PEM), creating the key on first use.
    Export {
        /// TOML config file (for data_dir); FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Create the database if needed and run pending migrations.
    Migrate {
        /// TOML config file; FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create a staff account. Without --password-stdin a random password is
    /// generated and printed.
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// admin, triage, org_admin, mediator, judge or clerk.
        #[arg(long, value_parser = parse_role)]
        role: StaffRole,
        /// Organisation id (required for org_admin and mediator).
        #[arg(long)]
        org: Option<i64>,
        /// Read the password (at least 10 characters) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// TOML config file; FENGQIAO_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<StaffRole, String> {
    StaffRole::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
        let names: Vec<&str> = StaffRole::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {s:?}; one of {}", names.join(", "))
    })
}

/// A random password of 20 letters and digits.
fn generate_password() -> String {
    use rand::distr::{Alphanumeric, SampleString as _};
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// A case-service error for the command line: the field of a validation error or a
/// conflict is named.
fn cases_err(e: CasesError) -> anyhow::Error {
    match e {
        CasesError::Conflict { message, field: Some(f) } => anyhow::anyhow!("conflict ({f}): {message}"),
        e => anyhow::anyhow!("{e}"),
    }
}

fn print_demo_logins(logins: &[DemoLogin]) {
    println!("Demo logins (case service, passwords shown once):");
    for l in logins {
        println!("  {:<10} {:<16} {}", l.role.as_str(), l.username, l.password);
    }
}

/// Loads the demo district when the store has no staff account yet and returns its
/// logins; `None` when staff accounts exist.
async fn demo_data_on_first_start(store: &Store) -> anyhow::Result<Option<Vec<DemoLogin>>> {
    if !store.has_no_users().await.map_err(cases_err)? {
        return Ok(None);
    }
    Ok(Some(fengqiao_cases::load_demo_data(store).await.map_err(cases_err)?))
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config, demo_invites } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging(&cfg);
            let grace_secs = cfg.server.shutdown_grace_secs;
            let running = server::start(cfg).await?;
            if demo_invites {
                let logins = match demo_data_on_first_start(&running.cases).await {
                    Ok(l) => l,
                    Err(e) => {
                        running.shutdown().await;
                        return Err(e.context("loading the demo data"));
                    }
                };
                let m = running.invite_url(&server::claims("demo", "mediator-1", "王调解员", Role::Mediator, 12 * 3600));
                let a = running.invite_url(&server::claims("demo", "applicant-1", "张三", Role::Applicant, 12 * 3600));
                let r = running.invite_url(&server::claims("demo", "respondent-1", "李四", Role::Respondent, 12 * 3600));
                println!("\nFengqiao is running at {}\n", running.public_url);
                println!("Demo room invites (valid 12 h). Open the mediator's in one tab and a party's in another;");
                println!("the party waits until the mediator admits them (等候室 → 允许进入):");
                println!("  mediator   (王调解员): {m}");
                println!("  applicant  (张三):     {a}");
                println!("  respondent (李四):     {r}\n");
                match logins {
                    Some(l) => print_demo_logins(&l),
                    None => println!("Demo logins: staff accounts exist already (the demo logins were printed on first start)."),
                }
                println!("\nStaff pages: {0}/staff/ (sign in with a login above; docs/staff.md walks through a recorded session)", running.public_url);
                println!("Case API: {0}/api/… — sign in with POST {0}/api/auth/login; every endpoint is listed at {0}/api/openapi.json\n", running.public_url);
            }
            let sfu = running.sfu.clone();
            let stop = async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            stop.await;
            let grace = std::time::Duration::from_secs(grace_secs);
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new joins; closing recordings and the database");
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            let clean = async {
                sfu.shutdown().await;
                running.shutdown().await;
            };
            tokio::select! {
                () = clean => tracing::info!("stopped cleanly"),
                _ = tokio::time::sleep(grace) => {
                    tracing::error!("shutdown grace period of {} s is over; exiting now (what was written verifies as after a crash)", grace.as_secs());
                    std::process::exit(1);
                }
                _ = term.recv() => {
                    tracing::warn!("second SIGTERM; exiting now");
                    std::process::exit(1);
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::warn!("second interrupt; exiting now");
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        Cmd::Db { cmd: DbCmd::Migrate { config } } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging(&cfg);
            cfg.prepare_data_dir()?;
            let cc = cfg.cases_config(&cfg.server.public_url);
            fengqiao_cases::migrate(&cc).await.map_err(cases_err)?;
            println!("database migrated: {}", fengqiao_cases::db::redact(&cc.effective_database_url()));
            Ok(())
        }
        Cmd::Admin {
            cmd: AdminCmd::CreateUser { username, name, role, org, password_stdin, config },
        } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging(&cfg);
            let (password, generated) = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the password from stdin")?;
                let line = s.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
                (line, false)
            } else {
                (generate_password(), true)
            };
            let store = server::connect_cases(&cfg, &cfg.server.public_url).await?;
            let r = fengqiao_cases::create_user(&store, &username, &name, role, org, &password).await;
            store.close().await;
            let user = r.map_err(cases_err)?;
            println!("created user {} (id {}, role {})", user.username, user.id, role.as_str());
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        Cmd::DemoData { config } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging(&cfg);
            let store = server::connect_cases(&cfg, &cfg.server.public_url).await?;
            let r = fengqiao_cases::load_demo_data(&store).await;
            store.close().await;
            let logins = r.map_err(|e| match e {
                CasesError::Conflict { .. } => {
                    cases_err(e).context("the demo data is loaded already (its organisations exist)")
                }
                e => cases_err(e).context("loading the demo data"),
            })?;
            print_demo_logins(&logins);
            Ok(())
        }
        Cmd::Invite { room, name, role, ttl, pid, case, session, admitted, config } => {
            let cfg = Config::load(config.as_deref())?;
            cfg.prepare_data_dir()?;
            let key = InviteKey::load_or_create(&cfg.keys_dir()).context("loading the invite key")?;
            let pid = pid.unwrap_or_else(fengqiao_signaling::invite::random_id);
            let mut c = server::claims(&room, &pid, &name, role, ttl.as_secs());
            c.case_id = case;
            c.session_id = session;
            c.admitted = admitted;
            println!("{}/join/{}", cfg.server.public_url, key.mint(&c));
            Ok(())
        }
        Cmd::Config { cmd: ConfigCmd::PrintDefault } => {
            print!("{}", fengqiao::config::default_toml());
            Ok(())
        }
        Cmd::Keys { cmd: KeysCmd::Export { config } } => {
            let cfg = Config::load(config.as_deref())?;
            cfg.prepare_data_dir()?;
            let key = fengqiao_recorder::EvidenceKey::load_or_generate(&cfg.keys_dir())
                .context("loading the evidence key")?;
            let pk = key.public_key();
            println!("key id: {}", pk.key_id());
            println!("ed25519 public key (hex): {}", pk.to_hex());
            print!("{}", pk.to_pem());
            Ok(())
        }
        Cmd::Render { session_dir, public_key, config, width, height, fps, preset } => {
            let pk = match public_key {
                Some(p) => {
                    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    fengqiao_recorder::PublicKey::parse(&text).with_context(|| format!("public key {}", p.display()))?
                }
                None => {
                    let cfg = Config::load(config.as_deref())?;
                    let key = fengqiao_recorder::EvidenceKey::load(&cfg.keys_dir())
                        .context("loading the server's evidence key (or pass --public-key)")?;
                    *key.public_key()
                }
            };
            let opts = fengqiao_recorder::render::RenderOptions {
                width,
                height,
                fps,
                speed_preset: preset,
                ..fengqiao_recorder::render::RenderOptions::new(pk)
            };
            let bar = indicatif::ProgressBar::new(100);
            bar.set_style(
                indicatif::ProgressStyle::with_template("render [{bar:40}] {pos:>3}% {elapsed_precise}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let result = fengqiao_recorder::render::render(&session_dir, &opts, |p| bar.set_position(u64::from(p)));
            bar.finish_and_clear();
            match result {
                Ok(outputs) => {
                    for o in outputs {
                        println!("{}  {}  ({} bytes, room {})", o.sha256, o.path, o.size, o.room);
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow::Error::new(e).context(format!("rendering {}", session_dir.display()))),
            }
        }
        Cmd::Export { case, sessions, media, out, include_caucus, by, config } => {
            export_cmd(config, &case, sessions, media, out, include_caucus, by).await
        }
        Cmd::Burn { image, device, public_key, config } => burn_cmd(image, device, public_key, config).await,
        Cmd::Verify { session_dir, public_key, config } => {
            let pk = match public_key {
                Some(p) => {
                    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    fengqiao_recorder::PublicKey::parse(&text).with_context(|| format!("public key {}", p.display()))?
                }
                None => {
                    let cfg = Config::load(config.as_deref())?;
                    let key = fengqiao_recorder::EvidenceKey::load(&cfg.keys_dir())
                        .context("loading the server's evidence key (or pass --public-key)")?;
                    *key.public_key()
                }
            };
            let report = fengqiao_recorder::verify(&session_dir, &pk);
            println!("{report}");
            if !report.is_ok() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// A progress bar over bytes with the phase as its message (indicatif).
fn progress_bar() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(100);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:28} [{bar:40}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

fn show_progress(pb: &indicatif::ProgressBar, p: &fengqiao_recorder::disc::Progress) {
    use fengqiao_recorder::disc::Phase;
    pb.set_length(p.total.max(1));
    pb.set_position(p.done);
    let msg = match p.phase {
        Phase::Check => "checking evidence".to_owned(),
        Phase::Build => format!("writing disc {}/{}", p.disc, p.discs),
        Phase::ReadBack => format!("reading back disc {}/{}", p.disc, p.discs),
        Phase::Burn => "burning".to_owned(),
    };
    pb.set_message(msg);
}

/// `fengqiao export`: resolve the case, export, audit, print the images.
async fn export_cmd(
    config: Option<PathBuf>,
    case: &str,
    sessions: Option<Vec<i64>>,
    media: fengqiao_recorder::disc::Media,
    out: PathBuf,
    include_caucus: bool,
    by: Option<String>,
) -> anyhow::Result<()> {
    use fengqiao::export_api;
    let cfg = Config::load(config.as_deref())?;
    let store = server::connect_cases(&cfg, &cfg.server.public_url).await?;
    let r = async {
        let d = export_api::resolve_case(&store, case).await.map_err(cases_err)?;
        let srcs = export_api::sources(&store, &d, sessions.as_deref()).await.map_err(cases_err)?;
        let key = export_api::load_key(&store).map_err(cases_err)?;
        let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "system".into());
        let actor = fengqiao_cases::Actor { name: format!("cli:{by}"), role: "system".into(), addr: String::new() };
        let pb = progress_bar();
        let pb2 = pb.clone();
        let (case_number, dispute_id) = (d.case_number.clone(), d.id);
        let result = tokio::task::spawn_blocking(move || {
            let req = fengqiao_recorder::disc::ExportRequest {
                case_number,
                dispute_id,
                sessions: srcs,
                media,
                out_dir: out,
                include_caucus,
                key: &key,
                now: fengqiao_recorder::Timestamp::now(),
                exported_by: by,
            };
            fengqiao_recorder::disc::export(&req, &mut |p| show_progress(&pb2, p))
        })
        .await?;
        pb.finish_and_clear();
        export_api::audit_export(&store, &actor, &d, media, &result).await.map_err(cases_err)?;
        let report = result.with_context(|| format!("exporting case {}", d.case_number))?;
        println!("case {}: {} disc(s) of {}", d.case_number, report.images.len(), media.as_str());
        for i in &report.images {
            println!("  {}  disc {}/{}  {} bytes  sha256 {}", i.path.display(), i.disc, i.discs, i.size, i.sha256);
        }
        if !report.caucus_left_out.is_empty() {
            println!("  {} caucus file(s) left out (--include-caucus to add them, marked confidential)", report.caucus_left_out.len());
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    r
}

/// `fengqiao burn`: burn, read back, report.
async fn burn_cmd(image: PathBuf, device: PathBuf, public_key: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<()> {
    let pk = match public_key {
        Some(p) => {
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            fengqiao_recorder::PublicKey::parse(&text).with_context(|| format!("public key {}", p.display()))?
        }
        None => {
            let cfg = Config::load(config.as_deref())?;
            let key = fengqiao_recorder::EvidenceKey::load(&cfg.keys_dir())
                .context("loading the server's evidence key (or pass --public-key)")?;
            *key.public_key()
        }
    };
    let pb = progress_bar();
    let pb2 = pb.clone();
    let r = tokio::task::spawn_blocking(move || {
        fengqiao_recorder::disc::burn(&image, &device, &pk, &mut |p| show_progress(&pb2, p)).map(|r| (r, device))
    })
    .await?;
    pb.finish_and_clear();
    let (report, device) = r?;
    println!(
        "burnt {} disc {}/{} ({}) to {}: all {} files read back and match the disc manifest",
        report.manifest.case_number,
        report.manifest.disc,
        report.manifest.discs,
        report.manifest.volume_id,
        device.display(),
        report.check.ok.len()
    );
    Ok(())
}
