//! Counters an operator can read: shared by every thread as plain atomics (no locks), read by the
//! dispatcher for the statistics line every `STATS_INTERVAL` seconds and at shutdown.
//!
//! Shell support: nothing here decides anything; each counter is incremented where the event
//! happens (a client cut by the dispatcher or by its writer, a database error on a login thread, an
//! AMI frame lost on the link thread).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client connection was cut by the server (the client did not leave by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// Its queue passed `CTI_CLIENT_QUEUE_BYTES`.
    QueueFull,
    /// A write made no progress for `CTI_CLIENT_WRITE_TIMEOUT`.
    WriteStalled,
    /// A pending (not logged in) connection closed to admit a newer one.
    PendingEvicted,
    /// No room at `CTI_MAX_CLIENTS` (every slot held by logged-in agents).
    Refused,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub notifications: AtomicU64,
    pub cut_queue_full: AtomicU64,
    pub cut_write_stalled: AtomicU64,
    pub pending_evicted: AtomicU64,
    pub refused: AtomicU64,
    pub ami_reconnects: AtomicU64,
    pub ami_frames_lost: AtomicU64,
    pub ami_resyncs: AtomicU64,
    pub db_errors: AtomicU64,
    pub logins: AtomicU64,
    pub logins_failed: AtomicU64,
    /// Of those, refused by the guessing throttle without a database lookup.
    pub logins_throttled: AtomicU64,
    pub legs_expired: AtomicU64,
    /// Connections closed because their address is not in `CTI_ALLOWED_NETWORKS`.
    pub not_allowed: AtomicU64,
}

/// What the statistics line reports besides the counters: the sizes of things right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    /// Open client connections (pending or logged in).
    pub clients: usize,
    /// Of those, not logged in yet.
    pub pending: usize,
    pub agents: usize,
    pub calls: usize,
    pub legs: usize,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn cut(&self, reason: CutReason) {
        add(
            match reason {
                CutReason::QueueFull => &self.cut_queue_full,
                CutReason::WriteStalled => &self.cut_write_stalled,
                CutReason::PendingEvicted => &self.pending_evicted,
                CutReason::Refused => &self.refused,
            },
            1,
        );
    }

    /// The statistics line: `stats: key=value …`, one stable key per figure.
    pub fn line(&self, g: Gauges) -> String {
        format!(
            "stats: clients={} agents={} pending={} calls={} legs={} \
             notifications={} cut_queue_full={} cut_write_stalled={} pending_evicted={} refused={} \
             logins={} logins_failed={} logins_throttled={} db_errors={} ami_reconnects={} ami_frames_lost={} \
             ami_resyncs={} legs_expired={} not_allowed={} connections={}",
            g.clients,
            g.agents,
            g.pending,
            g.calls,
            g.legs,
            get(&self.notifications),
            get(&self.cut_queue_full),
            get(&self.cut_write_stalled),
            get(&self.pending_evicted),
            get(&self.refused),
            get(&self.logins),
            get(&self.logins_failed),
            get(&self.logins_throttled),
            get(&self.db_errors),
            get(&self.ami_reconnects),
            get(&self.ami_frames_lost),
            get(&self.ami_resyncs),
            get(&self.legs_expired),
            get(&self.not_allowed),
            get(&self.connections),
        )
    }
}

impl Counters {
    /// The same figures in the Prometheus text format (node_exporter's textfile collector).
    pub fn prometheus(&self, g: Gauges) -> String {
        let gauges = [
            (
                "clients",
                "Open client connections, logged in or not.",
                g.clients,
            ),
            ("agents", "Logged-in agents.", g.agents),
            (
                "pending",
                "Connections that have not logged in yet.",
                g.pending,
            ),
            ("calls", "Calls tracked.", g.calls),
            ("legs", "Call legs tracked.", g.legs),
        ];
        let counters = [
            (
                "notifications",
                "Notifications queued to clients.",
                &self.notifications,
            ),
            (
                "cut_queue_full",
                "Clients cut at CTI_CLIENT_QUEUE_BYTES.",
                &self.cut_queue_full,
            ),
            (
                "cut_write_stalled",
                "Clients cut at CTI_CLIENT_WRITE_TIMEOUT.",
                &self.cut_write_stalled,
            ),
            (
                "pending_evicted",
                "Pending connections closed to admit newer ones.",
                &self.pending_evicted,
            ),
            (
                "refused",
                "Connections refused at CTI_MAX_CLIENTS.",
                &self.refused,
            ),
            ("logins", "Successful logins.", &self.logins),
            ("logins_failed", "Failed logins.", &self.logins_failed),
            (
                "logins_throttled",
                "Logins refused by the guessing throttle, without a lookup.",
                &self.logins_throttled,
            ),
            ("db_errors", "Failed database queries.", &self.db_errors),
            ("ami_reconnects", "AMI reconnects.", &self.ami_reconnects),
            (
                "ami_frames_lost",
                "AMI frames dropped at MANAGER_QUEUE_BYTES.",
                &self.ami_frames_lost,
            ),
            (
                "ami_resyncs",
                "Call-state resynchronisations after a loss.",
                &self.ami_resyncs,
            ),
            (
                "legs_expired",
                "Legs expired at MANAGER_LEG_MAX_AGE.",
                &self.legs_expired,
            ),
            (
                "connections",
                "Client connections accepted.",
                &self.connections,
            ),
        ];
        let mut out = String::new();
        for (name, help, v) in gauges {
            out.push_str(&format!(
                "# HELP astcti_{name} {help}\n# TYPE astcti_{name} gauge\nastcti_{name} {v}\n"
            ));
        }
        for (name, help, c) in counters {
            out.push_str(&format!(
                "# HELP astcti_{name}_total {help}\n# TYPE astcti_{name}_total counter\n\
                 astcti_{name}_total {}\n",
                get(c)
            ));
        }
        out
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename, so a reader never
/// sees half a file (the node_exporter textfile convention).
pub fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_value_for_each() {
        let c = Counters::default();
        add(&c.notifications, 7);
        let text = c.prometheus(Gauges {
            agents: 2,
            ..Gauges::default()
        });
        assert!(
            text.contains("# TYPE astcti_agents gauge\nastcti_agents 2\n"),
            "{text}"
        );
        assert!(text
            .contains("# TYPE astcti_notifications_total counter\nastcti_notifications_total 7\n"));
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
        let dir = std::env::temp_dir().join(format!("astcti-prom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("astcti.prom");
        write_atomically(&path, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(!dir.join("astcti.prom.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_line_names_every_counter() {
        let c = Counters::default();
        c.cut(CutReason::QueueFull);
        c.cut(CutReason::WriteStalled);
        c.cut(CutReason::WriteStalled);
        let line = c.line(Gauges {
            clients: 3,
            pending: 0,
            agents: 2,
            calls: 1,
            legs: 4,
        });
        for part in [
            "clients=3",
            "agents=2",
            "calls=1",
            "legs=4",
            "cut_queue_full=1",
            "cut_write_stalled=2",
            "pending=0",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}
