//! stderr for journald, the Task Scheduler's history or a terminal. Part of the logging shell.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line is `<priority>message`: the journal adds its own
//! timestamp and reads the priority (`journalctl -p err` works): Fatal 2, Error 3, Warning 4,
//! Notice 5, Info 6, Debug and DebugSocket 7. Elsewhere: `yyyy-MM-dd HH:mm:ss [LEVEL] message`.

use std::io::Write;
use std::sync::Arc;

use log::{Level, LevelFilter, Log, Metadata, Record};
use simplelog::SharedLogger;
use time::{OffsetDateTime, UtcOffset};

use super::{classify, Control, DEBUG, DEBUG_SOCKET, ERROR, FATAL, INFO, NOTICE, WARNING};

pub struct StderrLogger {
    ctl: Arc<Control>,
    offset: UtcOffset,
    config: simplelog::Config,
}

/// The syslog priority of an original level bit.
pub fn priority(bit: u32) -> u8 {
    match bit {
        FATAL => 2,
        ERROR => 3,
        WARNING => 4,
        NOTICE => 5,
        INFO => 6,
        DEBUG | DEBUG_SOCKET => 7,
        _ => 6,
    }
}

/// One stderr line (without the newline).
pub fn line(journal: bool, now: OffsetDateTime, level: Level, target: &str, msg: &str) -> String {
    let (bit, _) = classify(level, target);
    if journal {
        return format!("<{}>{msg}", priority(bit));
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} [{}] {msg}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        level
    )
}

impl StderrLogger {
    pub fn new(ctl: Arc<Control>, offset: UtcOffset) -> Self {
        StderrLogger {
            ctl,
            offset,
            config: simplelog::Config::default(),
        }
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.ctl.stderr_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let text = line(
            self.ctl.journal,
            now,
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

impl SharedLogger for StderrLogger {
    fn level(&self) -> LevelFilter {
        self.ctl.stderr_level()
    }

    fn config(&self) -> Option<&simplelog::Config> {
        Some(&self.config)
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn journal_lines_carry_priorities_and_no_timestamp() {
        let now = datetime!(2026-12-01 09:05:07 UTC);
        assert_eq!(line(true, now, Level::Error, "x", "boom"), "<3>boom");
        assert_eq!(line(true, now, Level::Error, "fatal", "dead"), "<2>dead");
        assert_eq!(line(true, now, Level::Warn, "x", "w"), "<4>w");
        assert_eq!(line(true, now, Level::Info, "notice", "n"), "<5>n");
        assert_eq!(line(true, now, Level::Info, "x", "i"), "<6>i");
        assert_eq!(line(true, now, Level::Trace, "x", "t"), "<7>t");
        assert_eq!(
            line(false, now, Level::Info, "x", "hello"),
            "2026-12-01 09:05:07 [INFO] hello"
        );
    }
}
