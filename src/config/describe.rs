//! The effective configuration as `KEY = value` entries: `--check-config` prints them (passwords
//! masked), SIGHUP compares the running and the new file's ([`Config::changes`]). Part of the pure
//! core in `config`.

use super::Config;

/// The keys SIGHUP applies to the running server; every other change needs a restart. Client
/// settings apply to connections accepted after the reload.
pub const RELOADABLE: &[&str] = &[
    "LOG_LEVEL",
    "CTI_CLIENT_TIMEOUT",
    "CTI_CLIENT_KEEPALIVE",
    "CTI_LOGIN_TIMEOUT",
    "CTI_ORIGINATE_CONTEXTS",
    "CTI_ORIGINATE_PER_MINUTE",
    "CTI_ORIGINATE_BURST",
    "CTI_CLIENT_QUEUE_BYTES",
    "CTI_CLIENT_WRITE_TIMEOUT",
    "CTI_MAX_CLIENTS",
    "CTI_MAX_PENDING",
    "CTI_MAX_PENDING_PER_IP",
    "CTI_ALLOWED_NETWORKS",
    "CTI_LOGIN_MAX_FAILURES",
    "CTI_LOGIN_MAX_FAILURES_PER_IP",
    "CTI_LOGIN_WINDOW",
    "CTI_LOGIN_COOLDOWN",
    "CTI_LOGIN_IPV4_PREFIX",
    "CTI_LOGIN_IPV6_PREFIX",
];

/// One key that differs between two configurations (values as `--check-config` shows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub old: String,
    pub new: String,
    pub reloadable: bool,
}

struct Entry {
    section: &'static str,
    key: &'static str,
    value: String,
    secret: bool,
}

fn mask(secret: &str) -> &'static str {
    if secret.is_empty() {
        "(empty)"
    } else {
        "********"
    }
}

impl Config {
    fn entries(&self) -> Vec<Entry> {
        let d = &self.database;
        let l = &self.logging;
        let m = &self.manager;
        let c = &self.cti;
        let contexts = if c.originate_contexts.is_empty() {
            "(any)".to_string()
        } else {
            c.originate_contexts.join(",")
        };
        let e = |section, key, value: String| Entry {
            section,
            key,
            value,
            secret: false,
        };
        let secret = |section, key, value: &str| Entry {
            section,
            key,
            value: value.to_string(),
            secret: true,
        };
        let s = |d: std::time::Duration| d.as_secs().to_string();
        vec![
            e("database", "MYSQL_HOST", d.host.clone()),
            e("database", "MYSQL_PORT", d.port.to_string()),
            e("database", "MYSQL_USER", d.user.clone()),
            secret("database", "MYSQL_PASS", &d.pass),
            e("database", "MYSQL_DBMS", d.dbms.clone()),
            e("database", "MYSQL_TIMEOUT", s(d.timeout)),
            e("database", "MYSQL_RETRY_TIMES", d.retry_times.to_string()),
            e("database", "MYSQL_RETRY_WAIT", s(d.retry_wait)),
            e("database", "MYSQL_POOL_SIZE", d.pool_size.to_string()),
            e(
                "logging",
                "ACTIVE",
                if l.active {
                    "true (daily log files in DIRECTORY)".to_string()
                } else {
                    "false (no log files; stderr only)".to_string()
                },
            ),
            e("logging", "DIRECTORY", l.directory.display().to_string()),
            e("logging", "LOG_LEVEL", l.level.to_string()),
            e("logging", "STATS_INTERVAL", s(l.stats_interval)),
            e("logging", "LOG_KEEP_DAYS", l.keep_days.to_string()),
            e(
                "logging",
                "METRICS_FILE",
                l.metrics_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into()),
            ),
            e("manager", "SOCKET_TIMEOUT", s(m.socket_timeout)),
            e("manager", "MANAGER_HOST", m.host.clone()),
            e("manager", "MANAGER_PORT", m.port.to_string()),
            e("manager", "MANAGER_USER", m.user.clone()),
            secret("manager", "MANAGER_PASS", &m.pass),
            e("manager", "MANAGER_QUEUE_BYTES", m.queue_bytes.to_string()),
            e("manager", "MANAGER_LEG_MAX_AGE", s(m.leg_max_age)),
            e("manager", "MANAGER_MAX_LEGS", m.max_legs.to_string()),
            e("ctiserver", "CTI_CLIENT_TIMEOUT", s(c.client_timeout)),
            e("ctiserver", "CTI_CLIENT_KEEPALIVE", c.keepalive.to_string()),
            e("ctiserver", "CTI_SERVER_LISTEN_IP", c.listen_ip.to_string()),
            e(
                "ctiserver",
                "CTI_SERVER_LISTEN_PORT",
                c.listen_port.to_string(),
            ),
            e("ctiserver", "CTI_MAX_CLIENTS", c.max_clients.to_string()),
            e("ctiserver", "CTI_LOGIN_TIMEOUT", s(c.login_timeout)),
            e("ctiserver", "CTI_ORIGINATE_CONTEXTS", contexts),
            e(
                "ctiserver",
                "CTI_ORIGINATE_PER_MINUTE",
                c.originate_rate.per_minute.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_ORIGINATE_BURST",
                c.originate_rate.burst.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_CLIENT_QUEUE_BYTES",
                c.client_queue_bytes.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_CLIENT_WRITE_TIMEOUT",
                s(c.client_write_timeout),
            ),
            e("ctiserver", "CTI_MAX_PENDING", c.max_pending.to_string()),
            e(
                "ctiserver",
                "CTI_MAX_PENDING_PER_IP",
                c.max_pending_per_ip.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_ALLOWED_NETWORKS",
                if c.allowed_networks.is_empty() {
                    "(all)".to_string()
                } else {
                    c.allowed_networks
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            e(
                "ctiserver",
                "CTI_LOGIN_MAX_FAILURES",
                c.login_throttle.max_user.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_LOGIN_MAX_FAILURES_PER_IP",
                c.login_throttle.max_ip.to_string(),
            ),
            e("ctiserver", "CTI_LOGIN_WINDOW", s(c.login_throttle.window)),
            e(
                "ctiserver",
                "CTI_LOGIN_COOLDOWN",
                s(c.login_throttle.cooldown),
            ),
            e(
                "ctiserver",
                "CTI_LOGIN_IPV4_PREFIX",
                c.login_throttle.v4_prefix.to_string(),
            ),
            e(
                "ctiserver",
                "CTI_LOGIN_IPV6_PREFIX",
                c.login_throttle.v6_prefix.to_string(),
            ),
        ]
    }

    /// Human-readable effective configuration with passwords masked (for `--check-config`).
    pub fn describe(&self) -> String {
        let mut out = format!("file = {}\n", self.file.display());
        let mut section = "";
        for e in self.entries() {
            if e.section != section {
                section = e.section;
                out.push_str(&format!("[{section}]\n"));
            }
            let value = if e.secret { mask(&e.value) } else { &e.value };
            out.push_str(&format!("{} = {value}\n", e.key));
        }
        out
    }

    /// What differs from `self` in `new`, key by key (a changed password shows as masked).
    pub fn changes(&self, new: &Config) -> Vec<Change> {
        self.entries()
            .into_iter()
            .zip(new.entries())
            .filter(|(a, b)| a.value != b.value)
            .map(|(a, b)| {
                let shown = |e: &Entry| {
                    if e.secret {
                        "********".to_string()
                    } else {
                        e.value.clone()
                    }
                };
                Change {
                    key: a.key,
                    old: shown(&a),
                    new: shown(&b),
                    reloadable: RELOADABLE.contains(&a.key),
                }
            })
            .collect()
    }
}
