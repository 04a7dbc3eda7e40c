//! Configuration: the original AstCTIServer four-section XML file (`AstCTIServer.xml`, or an existing
//! install's `AstCTIServer.exe.config`) turned into a validated [`Config`].
//!
//! Pure core: [`Config::from_xml`] takes the text and returns values or a [`ConfigError`] that names the
//! file, the key and the line:column. It never touches the file system except through
//! [`locate`], which only tests which candidate files exist. Run on the main thread at startup.
//!
//! Format (spec §1.1): `<configuration><globalsettings>` holding `<database>`, `<logging>`, `<manager>`,
//! `<ctiserver>`, each a list of `<add key="…" value="…"/>`, `<remove key="…"/>` and `<clear/>` with .NET
//! `NameValueSectionHandler` semantics: keys case-insensitive, last `add` wins, comments ignored.
//! `<configSections>` is accepted and ignored. Unknown keys and elements are reported as warnings.

use std::collections::HashMap;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Read for compatibility; the original never used it either (logging is always on).
    pub active: bool,
    pub directory: PathBuf,
    /// Bit mask of the original levels (see `logging`).
    pub level: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// AMI silence after which the link sends a `Ping` (the original read this key and never used it).
    pub socket_timeout: Duration,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
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
        ],
    ),
    ("logging", &["ACTIVE", "DIRECTORY", "LOG_LEVEL"]),
    (
        "manager",
        &[
            "SOCKET_TIMEOUT",
            "MANAGER_HOST",
            "MANAGER_PORT",
            "MANAGER_USER",
            "MANAGER_PASS",
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

/// One `<add>` after `<remove>`/`<clear>` processing.
#[derive(Debug, Clone)]
struct Entry {
    value: String,
    pos: Pos,
}

/// The keys of one section, upper-cased, plus where the section starts.
#[derive(Debug, Default)]
struct Section {
    pos: Pos,
    present: bool,
    keys: HashMap<String, Entry>,
}

/// Reads values out of the parsed sections, producing positioned errors.
struct Reader<'a> {
    file: &'a str,
    root_pos: Pos,
    sections: HashMap<&'static str, Section>,
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

    /// Human-readable effective configuration with passwords masked (for `--check-config`).
    pub fn describe(&self) -> String {
        let d = &self.database;
        let l = &self.logging;
        let m = &self.manager;
        let c = &self.cti;
        let contexts = if c.originate_contexts.is_empty() {
            "(any)".to_string()
        } else {
            c.originate_contexts.join(",")
        };
        let lines = [
            format!("file = {}", self.file.display()),
            "[database]".into(),
            format!("MYSQL_HOST = {}", d.host),
            format!("MYSQL_PORT = {}", d.port),
            format!("MYSQL_USER = {}", d.user),
            format!("MYSQL_PASS = {}", mask(&d.pass)),
            format!("MYSQL_DBMS = {}", d.dbms),
            format!("MYSQL_TIMEOUT = {}", d.timeout.as_secs()),
            format!("MYSQL_RETRY_TIMES = {}", d.retry_times),
            format!("MYSQL_RETRY_WAIT = {}", d.retry_wait.as_secs()),
            "[logging]".into(),
            format!("ACTIVE = {} (ignored, as in the original)", l.active),
            format!("DIRECTORY = {}", l.directory.display()),
            format!("LOG_LEVEL = {}", l.level),
            "[manager]".into(),
            format!("SOCKET_TIMEOUT = {}", m.socket_timeout.as_secs()),
            format!("MANAGER_HOST = {}", m.host),
            format!("MANAGER_PORT = {}", m.port),
            format!("MANAGER_USER = {}", m.user),
            format!("MANAGER_PASS = {}", mask(&m.pass)),
            "[ctiserver]".into(),
            format!("CTI_CLIENT_TIMEOUT = {}", c.client_timeout.as_secs()),
            format!("CTI_CLIENT_KEEPALIVE = {}", c.keepalive),
            format!("CTI_SERVER_LISTEN_IP = {}", c.listen_ip),
            format!("CTI_SERVER_LISTEN_PORT = {}", c.listen_port),
            format!("CTI_MAX_CLIENTS = {}", c.max_clients),
            format!("CTI_LOGIN_TIMEOUT = {}", c.login_timeout.as_secs()),
            format!("CTI_ORIGINATE_CONTEXTS = {contexts}"),
        ];
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

fn mask(secret: &str) -> &'static str {
    if secret.is_empty() {
        "(empty)"
    } else {
        "********"
    }
}

/// Replaces `{APPLICATION_DIR}` and `{FILE_SEPARATOR}` (spec §1.3).
pub fn expand_path(value: &str, app_dir: &Path) -> PathBuf {
    let sep = std::path::MAIN_SEPARATOR.to_string();
    let app = app_dir.display().to_string();
    PathBuf::from(
        value
            .replace("{APPLICATION_DIR}", &app)
            .replace("{FILE_SEPARATOR}", &sep),
    )
}

fn pos_of(doc: &roxmltree::Document<'_>, node: roxmltree::Node<'_, '_>) -> Pos {
    let p = doc.text_pos_at(node.range().start);
    Pos {
        line: p.row,
        col: p.col,
    }
}

impl<'a> Reader<'a> {
    fn err(&self, pos: Pos, key: Option<&str>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            pos,
            key: key.map(str::to_string),
            message,
        }
    }

    fn parse(text: &str, file: &'a str, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let doc = roxmltree::Document::parse(text).map_err(|e| {
            let p = e.pos();
            ConfigError {
                file: file.to_string(),
                pos: Pos {
                    line: p.row,
                    col: p.col,
                },
                key: None,
                message: format!("malformed XML: {e}"),
            }
        })?;
        let root = doc.root_element();
        let mut reader = Reader {
            file,
            root_pos: pos_of(&doc, root),
            sections: SECTIONS.iter().map(|s| (*s, Section::default())).collect(),
        };
        if root.tag_name().name() != "configuration" {
            return Err(reader.err(
                reader.root_pos,
                None,
                format!(
                    "the root element is <{}>, expected <configuration>",
                    root.tag_name().name()
                ),
            ));
        }
        let mut global = None;
        for child in root.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "globalsettings" if global.is_some() => {
                    return Err(reader.err(
                        pos_of(&doc, child),
                        None,
                        "<globalsettings> appears twice".into(),
                    ))
                }
                "globalsettings" => global = Some(child),
                "configSections" => {}
                other => warnings.push(format!(
                    "{}:{}: ignoring unknown element <{}>",
                    file,
                    fmt_pos(pos_of(&doc, child)),
                    other
                )),
            }
        }
        let global = global.ok_or_else(|| {
            reader.err(
                reader.root_pos,
                None,
                "no <globalsettings> element in <configuration>".into(),
            )
        })?;
        for node in global.children().filter(|n| n.is_element()) {
            let name = node.tag_name().name();
            let Some(sname) = SECTIONS.iter().find(|s| **s == name) else {
                warnings.push(format!(
                    "{}:{}: ignoring unknown section <{}>",
                    file,
                    fmt_pos(pos_of(&doc, node)),
                    name
                ));
                continue;
            };
            let pos = pos_of(&doc, node);
            if reader.sections[sname].present {
                return Err(reader.err(pos, None, format!("section <{name}> appears twice")));
            }
            let keys = reader.read_section(&doc, node, sname, warnings)?;
            reader.sections.insert(
                sname,
                Section {
                    pos,
                    present: true,
                    keys,
                },
            );
        }
        Ok(reader)
    }

    fn read_section(
        &self,
        doc: &roxmltree::Document<'_>,
        node: roxmltree::Node<'_, '_>,
        section: &str,
        warnings: &mut Vec<String>,
    ) -> Result<HashMap<String, Entry>, ConfigError> {
        let known = KNOWN_KEYS
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, k)| *k)
            .unwrap_or(&[]);
        let mut keys: HashMap<String, Entry> = HashMap::new();
        for item in node.children().filter(|n| n.is_element()) {
            let pos = pos_of(doc, item);
            let tag = item.tag_name().name();
            let key_attr = || {
                item.attribute("key").ok_or_else(|| {
                    self.err(
                        pos,
                        None,
                        format!("<{tag}> in <{section}> has no key attribute"),
                    )
                })
            };
            match tag {
                "add" => {
                    let key = key_attr()?.to_ascii_uppercase();
                    let value = item.attribute("value").ok_or_else(|| {
                        self.err(pos, Some(&key), "<add> has no value attribute".into())
                    })?;
                    if !known.contains(&key.as_str()) {
                        warnings.push(format!(
                            "{}:{}: unknown key {} in <{}> ignored",
                            self.file,
                            fmt_pos(pos),
                            key,
                            section
                        ));
                    }
                    keys.insert(
                        key,
                        Entry {
                            value: value.to_string(),
                            pos,
                        },
                    );
                }
                "remove" => {
                    keys.remove(&key_attr()?.to_ascii_uppercase());
                }
                "clear" => keys.clear(),
                other => warnings.push(format!(
                    "{}:{}: ignoring unknown element <{}> in <{}>",
                    self.file,
                    fmt_pos(pos),
                    other,
                    section
                )),
            }
        }
        Ok(keys)
    }

    fn section(&self, name: &str) -> &Section {
        // Every name in SECTIONS is inserted by `parse`.
        &self.sections[name]
    }

    fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section).keys.get(key)
    }

    fn missing(&self, section: &str, key: &str) -> ConfigError {
        let s = self.section(section);
        if s.present {
            self.err(
                s.pos,
                Some(key),
                format!("required key missing from <{section}>"),
            )
        } else {
            self.err(
                self.root_pos,
                Some(key),
                format!("required section <{section}> missing from <globalsettings>"),
            )
        }
    }

    fn string(&self, section: &str, key: &str) -> Result<String, ConfigError> {
        self.get(section, key)
            .map(|e| e.value.clone())
            .ok_or_else(|| self.missing(section, key))
    }

    fn nonempty(&self, section: &str, key: &str) -> Result<String, ConfigError> {
        let e = self
            .get(section, key)
            .ok_or_else(|| self.missing(section, key))?;
        let v = e.value.trim();
        if v.is_empty() {
            return Err(self.err(e.pos, Some(key), "must not be empty".into()));
        }
        Ok(v.to_string())
    }

    /// An integer in `min..=max`; `default` when the key is absent (`None` = required).
    fn int(
        &self,
        section: &str,
        key: &str,
        default: Option<u64>,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(e) = self.get(section, key) else {
            return default.ok_or_else(|| self.missing(section, key));
        };
        match e.value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(
                e.pos,
                Some(key),
                format!(
                    "{:?} is not a whole number from {} to {}",
                    e.value, min, max
                ),
            )),
        }
    }

    fn port(&self, section: &str, key: &str, default: Option<u64>) -> Result<u16, ConfigError> {
        // Port 0 asks the OS for a free port (tests use it for the listener).
        let min = if key == "CTI_SERVER_LISTEN_PORT" {
            0
        } else {
            1
        };
        Ok(self.int(section, key, default, min, 65535)? as u16)
    }

    fn secs(
        &self,
        section: &str,
        key: &str,
        default: u64,
        min: u64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.int(
            section,
            key,
            Some(default),
            min,
            86_400,
        )?))
    }

    fn boolean(&self, section: &str, key: &str) -> Result<bool, ConfigError> {
        let Some(e) = self.get(section, key) else {
            return Ok(false);
        };
        match e.value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            _ => Err(self.err(
                e.pos,
                Some(key),
                format!("{:?} is neither true nor false", e.value),
            )),
        }
    }

    fn build(&self, file: &Path, app_dir: &Path) -> Result<Config, ConfigError> {
        let database = DatabaseConfig {
            host: self.nonempty("database", "MYSQL_HOST")?,
            port: self.port("database", "MYSQL_PORT", Some(3306))?,
            user: self.nonempty("database", "MYSQL_USER")?,
            pass: self.string("database", "MYSQL_PASS")?,
            dbms: self.nonempty("database", "MYSQL_DBMS")?,
            timeout: self.secs("database", "MYSQL_TIMEOUT", 30, 1)?,
            retry_times: self.int("database", "MYSQL_RETRY_TIMES", Some(0), 0, 1_000_000)? as u32,
            retry_wait: self.secs("database", "MYSQL_RETRY_WAIT", 10, 0)?,
        };
        let dir = self.nonempty("logging", "DIRECTORY")?;
        let logging = LoggingConfig {
            active: self.boolean("logging", "ACTIVE")?,
            directory: expand_path(&dir, app_dir),
            level: self.int("logging", "LOG_LEVEL", Some(31), 0, 255)? as u32,
        };
        let manager = ManagerConfig {
            socket_timeout: self.secs("manager", "SOCKET_TIMEOUT", 120, 1)?,
            host: self.nonempty("manager", "MANAGER_HOST")?,
            port: self.port("manager", "MANAGER_PORT", None)?,
            user: self.nonempty("manager", "MANAGER_USER")?,
            pass: self.string("manager", "MANAGER_PASS")?,
        };
        let cti = CtiConfig {
            client_timeout: self.secs("ctiserver", "CTI_CLIENT_TIMEOUT", 60, 1)?,
            keepalive: self.int("ctiserver", "CTI_CLIENT_KEEPALIVE", Some(30), 0, 86_400)? as u32,
            listen_ip: self.ip("ctiserver", "CTI_SERVER_LISTEN_IP")?,
            listen_port: self.port("ctiserver", "CTI_SERVER_LISTEN_PORT", None)?,
            max_clients: self.int("ctiserver", "CTI_MAX_CLIENTS", Some(2000), 1, 100_000)? as usize,
            login_timeout: self.secs("ctiserver", "CTI_LOGIN_TIMEOUT", 30, 1)?,
            originate_contexts: self.list("ctiserver", "CTI_ORIGINATE_CONTEXTS"),
        };
        Ok(Config {
            file: file.to_path_buf(),
            database,
            logging,
            manager,
            cti,
        })
    }

    fn ip(&self, section: &str, key: &str) -> Result<IpAddr, ConfigError> {
        let e = self
            .get(section, key)
            .ok_or_else(|| self.missing(section, key))?;
        e.value.trim().parse().map_err(|_| {
            self.err(
                e.pos,
                Some(key),
                format!("{:?} is not an IPv4 or IPv6 address", e.value),
            )
        })
    }

    fn list(&self, section: &str, key: &str) -> Vec<String> {
        self.get(section, key)
            .map(|e| {
                e.value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn fmt_pos(p: Pos) -> String {
    format!("{}:{}", p.line, p.col)
}

#[cfg(test)]
mod tests;
