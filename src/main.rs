//! `fengqiao`: the command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fengqiao::config::{Config, LogFormat};
use fengqiao::server;
use fengqiao_signaling::invite::{InviteKey, Role};
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
        /// Print a mediator and an applicant invite URL for room `demo` once started.
        #[arg(long)]
        demo_invites: bool,
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
            let running = server::start(cfg).await?;
            if demo_invites {
                let m = running.invite_url(&server::claims("demo", "mediator-1", "王调解员", Role::Mediator, 12 * 3600));
                let a = running.invite_url(&server::claims("demo", "applicant-1", "张三", Role::Applicant, 12 * 3600));
                let r = running.invite_url(&server::claims("demo", "respondent-1", "李四", Role::Respondent, 12 * 3600));
                println!("\nFengqiao is running at {}\n", running.public_url);
                println!("Demo room invites (valid 12 h) — open two in separate tabs:");
                println!("  mediator   (王调解员): {m}");
                println!("  applicant  (张三):     {a}");
                println!("  respondent (李四):     {r}\n");
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
            tokio::select! {
                _ = stop => {
                    tracing::info!("shutting down");
                    sfu.shutdown().await;
                    running.shutdown().await;
                }
            }
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
    }
}
