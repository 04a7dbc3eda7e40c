//! Reading the XML: the `NameValueSectionHandler` rules (`add`, `remove`, `clear`, case-insensitive
//! keys) and typed, positioned access to the values. Part of the pure core in `config`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::{
    expand_path, Config, ConfigError, CtiConfig, DatabaseConfig, LoggingConfig, ManagerConfig, Pos,
    KNOWN_KEYS, SECTIONS,
};

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
pub(super) struct Reader<'a> {
    file: &'a str,
    root_pos: Pos,
    sections: HashMap<&'static str, Section>,
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

    pub(super) fn parse(
        text: &str,
        file: &'a str,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let doc = roxmltree::Document::parse(text).map_err(|e| {
            let p = e.pos();
            ConfigError {
                file: file.to_string(),
                pos: Pos {
                    line: p.row,
                    col: p.col,
                },
                key: None,
                // roxmltree may quote the offending character raw ('\n'): keep the error one line.
                message: format!(
                    "malformed XML: {}{}",
                    e.to_string()
                        .chars()
                        .map(|c| if c.is_control() {
                            c.escape_debug().to_string()
                        } else {
                            c.to_string()
                        })
                        .collect::<String>(),
                    xml_hint(&e)
                ),
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
                        let hint = nearest(&key, known)
                            .map(|k| format!(" (did you mean {k}?)"))
                            .unwrap_or_default();
                        warnings.push(format!(
                            "{}:{}: unknown key {} in <{}> ignored{hint}",
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
        // A key that is there but misspelt is reported where it is, with the right name.
        let known = KNOWN_KEYS
            .iter()
            .find(|(n, _)| *n == section)
            .map(|(_, k)| *k)
            .unwrap_or(&[]);
        let misspelt = s
            .keys
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()) && nearest(k, &[key]).is_some())
            .min_by_key(|(_, e)| (e.pos.line, e.pos.col));
        if let Some((k, e)) = misspelt {
            return self.err(
                e.pos,
                Some(k),
                format!("unknown key; did you mean {key}? (required, missing from <{section}>)"),
            );
        }
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

    /// A lenient boolean (`ACTIVE`, which the original read but never used, so old files hold
    /// anything there): `true`/`yes`/`1`/`on` read as true, any other value as false, a missing key
    /// as `missing`. Never an error.
    fn lenient_boolean(&self, section: &str, key: &str, missing: bool) -> bool {
        self.get(section, key).map_or(missing, |e| {
            matches!(
                e.value.trim().to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "on"
            )
        })
    }

    pub(super) fn build(&self, file: &Path, app_dir: &Path) -> Result<Config, ConfigError> {
        let database = DatabaseConfig {
            host: self.nonempty("database", "MYSQL_HOST")?,
            port: self.port("database", "MYSQL_PORT", Some(3306))?,
            user: self.nonempty("database", "MYSQL_USER")?,
            pass: self.string("database", "MYSQL_PASS")?,
            dbms: self.nonempty("database", "MYSQL_DBMS")?,
            timeout: self.secs("database", "MYSQL_TIMEOUT", 30, 1)?,
            retry_times: self.int("database", "MYSQL_RETRY_TIMES", Some(0), 0, 1_000_000)? as u32,
            retry_wait: self.secs("database", "MYSQL_RETRY_WAIT", 10, 0)?,
            pool_size: self.int("database", "MYSQL_POOL_SIZE", Some(4), 1, 64)? as usize,
        };
        let dir = self.nonempty("logging", "DIRECTORY")?;
        let logging = LoggingConfig {
            active: self.lenient_boolean("logging", "ACTIVE", true),
            directory: expand_path(&dir, app_dir),
            level: self.int("logging", "LOG_LEVEL", Some(31), 0, 255)? as u32,
            stats_interval: self.secs("logging", "STATS_INTERVAL", 300, 0)?,
            keep_days: self.int("logging", "LOG_KEEP_DAYS", Some(30), 0, 36_500)? as u32,
            metrics_file: self
                .get("logging", "METRICS_FILE")
                .map(|e| e.value.trim())
                .filter(|v| !v.is_empty())
                .map(|v| expand_path(v, app_dir)),
        };
        let manager = ManagerConfig {
            socket_timeout: self.secs("manager", "SOCKET_TIMEOUT", 120, 1)?,
            host: self.nonempty("manager", "MANAGER_HOST")?,
            port: self.port("manager", "MANAGER_PORT", None)?,
            user: self.nonempty("manager", "MANAGER_USER")?,
            pass: self.string("manager", "MANAGER_PASS")?,
            queue_bytes: self.int(
                "manager",
                "MANAGER_QUEUE_BYTES",
                Some(64 << 20),
                64 << 10,
                4 << 30,
            )? as usize,
            leg_max_age: self.secs("manager", "MANAGER_LEG_MAX_AGE", 86_400, 60)?,
            max_legs: self.int(
                "manager",
                "MANAGER_MAX_LEGS",
                Some(crate::calls::DEFAULT_MAX_LEGS as u64),
                100,
                10_000_000,
            )? as usize,
        };
        let cti = CtiConfig {
            client_timeout: self.secs("ctiserver", "CTI_CLIENT_TIMEOUT", 60, 1)?,
            keepalive: self.int("ctiserver", "CTI_CLIENT_KEEPALIVE", Some(30), 0, 86_400)? as u32,
            listen_ip: self.ip("ctiserver", "CTI_SERVER_LISTEN_IP")?,
            listen_port: self.port("ctiserver", "CTI_SERVER_LISTEN_PORT", None)?,
            max_clients: self.int("ctiserver", "CTI_MAX_CLIENTS", Some(2000), 1, 100_000)? as usize,
            login_timeout: self.secs("ctiserver", "CTI_LOGIN_TIMEOUT", 30, 1)?,
            originate_contexts: self.list("ctiserver", "CTI_ORIGINATE_CONTEXTS"),
            originate_rate: crate::dialrate::DialLimits {
                per_minute: self.int(
                    "ctiserver",
                    "CTI_ORIGINATE_PER_MINUTE",
                    Some(60),
                    1,
                    60_000,
                )? as u32,
                burst: self.int("ctiserver", "CTI_ORIGINATE_BURST", Some(5), 1, 10_000)? as u32,
            },
            client_queue_bytes: self.int(
                "ctiserver",
                "CTI_CLIENT_QUEUE_BYTES",
                Some(8 << 20),
                4096,
                1 << 30,
            )? as usize,
            client_write_timeout: self.secs("ctiserver", "CTI_CLIENT_WRITE_TIMEOUT", 10, 1)?,
            max_pending: self.int("ctiserver", "CTI_MAX_PENDING", Some(256), 1, 100_000)? as usize,
            max_pending_per_ip: self.int(
                "ctiserver",
                "CTI_MAX_PENDING_PER_IP",
                Some(64),
                1,
                100_000,
            )? as usize,
            allowed_networks: self.networks("ctiserver", "CTI_ALLOWED_NETWORKS")?,
            login_throttle: crate::throttle::Limits {
                max_user: self.int("ctiserver", "CTI_LOGIN_MAX_FAILURES", Some(5), 1, 1_000_000)?
                    as u32,
                max_ip: self.int(
                    "ctiserver",
                    "CTI_LOGIN_MAX_FAILURES_PER_IP",
                    Some(20),
                    1,
                    1_000_000,
                )? as u32,
                window: self.secs("ctiserver", "CTI_LOGIN_WINDOW", 60, 1)?,
                cooldown: self.secs("ctiserver", "CTI_LOGIN_COOLDOWN", 60, 1)?,
                v4_prefix: self.int("ctiserver", "CTI_LOGIN_IPV4_PREFIX", Some(24), 8, 32)? as u8,
                v6_prefix: self.int("ctiserver", "CTI_LOGIN_IPV6_PREFIX", Some(64), 16, 128)? as u8,
            },
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

    fn networks(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Vec<crate::netlist::Network>, ConfigError> {
        let Some(e) = self.get(section, key) else {
            return Ok(Vec::new());
        };
        e.value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|n| crate::netlist::Network::parse(n).map_err(|m| self.err(e.pos, Some(key), m)))
            .collect()
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

/// The known key closest to `key` when it is a likely misspelling (edit distance 1–2, or the same
/// letters in another order), else None.
pub(super) fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| (1..=2).contains(d))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a swap of two neighbours counting one (Damerau's restricted form).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// A hint for the XML mistakes people make in this file.
fn xml_hint(e: &roxmltree::Error) -> &'static str {
    match e {
        roxmltree::Error::MalformedEntityReference(_)
        | roxmltree::Error::UnknownEntityReference(..) => {
            " (a value with & must write it as &amp; — e.g. a password p&ss is value=\"p&amp;ss\"; \
             < is &lt;, \" is &quot;)"
        }
        roxmltree::Error::NonXmlChar(..) => {
            " (a control character that XML does not allow: retype that value)"
        }
        _ => "",
    }
}

fn fmt_pos(p: Pos) -> String {
    format!("{}:{}", p.line, p.col)
}
