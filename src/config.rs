//! Configuration: the original AstCTIServer four-section XML file (`AstCTIServer.xml`, or an existing
//! install's `AstCTIServer.exe.config`) turned into a validated [`Config`].
//!
//! Pure core: [`Config::from_xml`] takes the text and returns values or a [`ConfigError`] that names the
//! file, the key and the line:column. It never touches the file system except through
//! [`locate`], which only tests which candidate files exist. Run on the main thread at startup.
//!
//! Format (docs/ORIGINAL.md §1.1): `<configuration><globalsettings>` holding `<database>`, `<logging>`, `<manager>`,
//! `<ctiserver>`, each a list of `<add key="…" value="…"/>`, `<remove key="…"/>` and `<clear/>` with .NET
//! `NameValueSectionHandler` semantics: keys case-insensitive, last `add` wins, comments ignored.
//! `<configSections>` is accepted and ignored. Unknown keys and elements are reported as warnings.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a value came from: 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A configuration problem, printed as one line: `file:line:col: KEY: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Pos,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.col)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub dbms: String,
    /// Connect, read and write timeout of each MySQL connection.
    pub timeout: Duration,
    /// Extra connection attempts at startup (0 = a single attempt).
    pub retry_times: u32,
    pub retry_wait: Duration,
    /// `MYSQL_POOL_SIZE`: login threads, each with its own database connection.
    pub pool_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Read for compatibility; the original never used it either (logging is always on).
    pub active: bool,
    pub directory: PathBuf,
    /// Bit mask of the original levels (see `logging`).
    pub level: u32,
    /// `STATS_INTERVAL`: seconds between statistics lines; zero = off.
    pub stats_interval: Duration,
    /// `LOG_KEEP_DAYS`: daily files older than this are deleted; zero = keep all.
    pub keep_days: u32,
    /// `METRICS_FILE`: the statistics in the Prometheus text format, replaced every interval.
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// AMI silence after which the link sends a `Ping` (the original read this key and never used it).
    pub socket_timeout: Duration,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    /// `MANAGER_QUEUE_BYTES`: decoded AMI frames waiting for the dispatcher, in bytes.
    pub queue_bytes: usize,
    /// `MANAGER_LEG_MAX_AGE`: a leg with no event for this long is dropped.
    pub leg_max_age: Duration,
    /// `MANAGER_MAX_LEGS`: the most call legs known at once (the oldest go first).
    pub max_legs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtiConfig {
    /// A client silent this long is disconnected (the original client sends NOOP every 1.5 s).
    pub client_timeout: Duration,
    /// TCP keep-alive idle time in seconds; 0 disables keep-alive.
    pub keepalive: u32,
    pub listen_ip: IpAddr,
    pub listen_port: u16,
    pub max_clients: usize,
    /// Time from accept to a completed USER/PASS login.
    pub login_timeout: Duration,
    /// Contexts agents may originate into; empty = any (as the original).
    pub originate_contexts: Vec<String>,
    /// `CTI_ORIGINATE_PER_MINUTE`, `CTI_ORIGINATE_BURST`: ORIGs per agent.
    pub originate_rate: crate::dialrate::DialLimits,
    /// `CTI_CLIENT_QUEUE_BYTES`: bytes queued for one client beyond which it is cut.
    pub client_queue_bytes: usize,
    /// `CTI_CLIENT_WRITE_TIMEOUT`: a write that makes no progress this long cuts the client.
    pub client_write_timeout: Duration,
    /// `CTI_MAX_PENDING`: connections that have not logged in yet.
    pub max_pending: usize,
    /// `CTI_MAX_PENDING_PER_IP`: the same, per source address.
    pub max_pending_per_ip: usize,
    /// `CTI_ALLOWED_NETWORKS`: who may connect; empty = everyone.
    pub allowed_networks: Vec<crate::netlist::Network>,
    /// `CTI_LOGIN_MAX_FAILURES`, `CTI_LOGIN_MAX_FAILURES_PER_IP`, `CTI_LOGIN_WINDOW`,
    /// `CTI_LOGIN_COOLDOWN`: password-guessing throttle.
    pub login_throttle: crate::throttle::Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub database: DatabaseConfig,
    pub logging: LoggingConfig,
    pub manager: ManagerConfig,
    pub cti: CtiConfig,
}

/// Section names, in file order.
pub const SECTIONS: [&str; 4] = ["database", "logging", "manager", "ctiserver"];

/// Every key this server understands, per section (upper case). Anything else is warned about.
const KNOWN_KEYS: [(&str, &[&str]); 4] = [
    (
        "database",
        &[
            "MYSQL_HOST",
            "MYSQL_PORT",
            "MYSQL_USER",
            "MYSQL_PASS",
            "MYSQL_DBMS",
            "MYSQL_TIMEOUT",
            "MYSQL_RETRY_TIMES",
            "MYSQL_RETRY_WAIT",
            "MYSQL_POOL_SIZE",
        ],
    ),
    (
        "logging",
        &[
            "ACTIVE",
            "DIRECTORY",
            "LOG_LEVEL",
            "STATS_INTERVAL",
            "LOG_KEEP_DAYS",
            "METRICS_FILE",
        ],
    ),
    (
        "manager",
        &[
            "SOCKET_TIMEOUT",
            "MANAGER_HOST",
            "MANAGER_PORT",
            "MANAGER_USER",
            "MANAGER_PASS",
            "MANAGER_QUEUE_BYTES",
            "MANAGER_LEG_MAX_AGE",
            "MANAGER_MAX_LEGS",
        ],
    ),
    (
        "ctiserver",
        &[
            "CTI_CLIENT_TIMEOUT",
            "CTI_CLIENT_KEEPALIVE",
            "CTI_SERVER_LISTEN_IP",
            "CTI_SERVER_LISTEN_PORT",
            "CTI_MAX_CLIENTS",
            "CTI_LOGIN_TIMEOUT",
            "CTI_ORIGINATE_CONTEXTS",
            "CTI_ORIGINATE_PER_MINUTE",
            "CTI_ORIGINATE_BURST",
            "CTI_CLIENT_QUEUE_BYTES",
            "CTI_CLIENT_WRITE_TIMEOUT",
            "CTI_MAX_PENDING",
            "CTI_MAX_PENDING_PER_IP",
            "CTI_ALLOWED_NETWORKS",
            "CTI_LOGIN_MAX_FAILURES",
            "CTI_LOGIN_MAX_FAILURES_PER_IP",
            "CTI_LOGIN_WINDOW",
            "CTI_LOGIN_COOLDOWN",
            "CTI_LOGIN_IPV4_PREFIX",
            "CTI_LOGIN_IPV6_PREFIX",
        ],
    ),
];

/// The file names tried, in order, when no `--config` is given.
pub fn candidates(exe_dir: &Path, cwd: &Path) -> Vec<PathBuf> {
    vec![
        exe_dir.join("AstCTIServer.xml"),
        cwd.join("AstCTIServer.xml"),
        exe_dir.join("AstCTIServer.exe.config"),
    ]
}

/// Picks the configuration file: `explicit` if given, else the first existing candidate.
pub fn locate(explicit: Option<&Path>, exe_dir: &Path, cwd: &Path) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let tried = candidates(exe_dir, cwd);
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let names: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        format!(
            "no configuration file found (tried {}); use --config PATH",
            names.join(", ")
        )
    })
}

impl Config {
    /// Parses and validates `text`. `file` names the file in errors; `app_dir` replaces
    /// `{APPLICATION_DIR}`. Returns the config and warnings (unknown keys or elements).
    pub fn from_xml(
        text: &str,
        file: &Path,
        app_dir: &Path,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let label = file.display().to_string();
        let mut warnings = Vec::new();
        let reader = Reader::parse(text, &label, &mut warnings)?;
        let config = reader.build(file, app_dir)?;
        Ok((config, warnings))
    }
}

/// Replaces `{APPLICATION_DIR}` and `{FILE_SEPARATOR}` (docs/ORIGINAL.md §1.3).
pub fn expand_path(value: &str, app_dir: &Path) -> PathBuf {
    let sep = std::path::MAIN_SEPARATOR.to_string();
    let app = app_dir.display().to_string();
    PathBuf::from(
        value
            .replace("{APPLICATION_DIR}", &app)
            .replace("{FILE_SEPARATOR}", &sep),
    )
}

mod describe;
mod reader;

pub use describe::{Change, RELOADABLE};

use reader::Reader;

#[cfg(test)]
mod tests;
