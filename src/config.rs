//! The `fengqiao` configuration: one TOML file plus `FENGQIAO_<SECTION>__<KEY>`
//! environment overrides (figment). Every key is listed in `docs/interfaces.md`.

use anyhow::Context as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use fengqiao_sfu::MediaConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `[server]`: HTTP and the public base URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where pages, API and signaling listen. Port 0 picks a free one. Default 127.0.0.1:8080.
    pub http_addr: SocketAddr,
    /// The base of invite links (`{public_url}/join/{token}`). Default http://127.0.0.1:8080.
    pub public_url: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `fengqiao_sfu=debug,info`. Default `info`.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The data folder: keys, database, session folders. Default `./data`.
    pub data_dir: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[media]`.
    pub media: MediaConfig,
    /// `[log]`.
    pub log: LogConfig,
}

impl Config {
    /// Loads defaults, then the TOML file (if given), then `FENGQIAO_*` variables.
    ///
    /// # Errors
    /// A missing file, bad TOML, an unknown key or a value of the wrong type, named
    /// by its key path (e.g. `media.udp_port`).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config {
            data_dir: PathBuf::from("data"),
            ..Default::default()
        }));
        if let Some(p) = path {
            anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
            fig = fig.merge(Toml::file(p));
        }
        fig = fig.merge(Env::prefixed("FENGQIAO_").split("__").map(|k| {
            // FENGQIAO_DATA_DIR → data_dir; FENGQIAO_MEDIA__UDP_PORT → media.udp_port
            k.as_str().to_ascii_lowercase().into()
        }));
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e
                .into_iter()
                .map(|e| {
                    let key = if e.path.is_empty() { "(root)".to_owned() } else { e.path.join(".") };
                    format!("config key `{key}`: {}", e.kind)
                })
                .collect();
            anyhow::anyhow!("invalid configuration: {}", msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let u = &self.server.public_url;
        anyhow::ensure!(
            (u.starts_with("http://") || u.starts_with("https://")) && !u.ends_with('/'),
            "config key `server.public_url`: must start with http:// or https:// and not end with /, got {u:?}"
        );
        anyhow::ensure!(self.media.max_participants >= 1, "config key `media.max_participants`: must be at least 1");
        Ok(())
    }

    /// `data_dir/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Creates the data folder layout.
    pub fn prepare_data_dir(&self) -> anyhow::Result<()> {
        for d in [self.data_dir.clone(), self.keys_dir(), self.data_dir.join("sessions")] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }
}
