//! Logging: the original's daily log files plus stderr for journald / Task Scheduler.
//!
//! Files: `<DIRECTORY>/YYYY-MM-DD.log`, one line per record,
//! `yyyy-MM-dd HH:mm:ss - TAG: message`, with the original's tags and its `LOG_LEVEL` bit mask
//! (docs/ORIGINAL.md §1.4): Info 0x1, Notice 0x2, Warning 0x4, Error 0x8, Fatal 0x10, Debug 0x20, DebugSocket 0x40.
//! A record is written iff its bit is set in the mask. The file stays open and is switched at midnight
//! (the original reopened it for every line); files older than `LOG_KEEP_DAYS` are deleted at startup
//! and at each day's switch; files are created 0640 (they hold callers' numbers and names). stderr
//! (`stderr`): `yyyy-MM-dd HH:mm:ss [LEVEL] message`, or, when it is the systemd journal
//! (`JOURNAL_STREAM` set), `<priority>message` with syslog priorities and no timestamp of its own;
//! its level is the mask's (at least errors, at most Info under journald, whose file already has the
//! trace; everything with `--debug`). Both loggers read the mask from [`Control`], which SIGHUP
//! changes ([`set_mask`], [`reopen`]). The two are combined with simplelog's `CombinedLogger`.
//!
//! Rust log levels map to the original ones: error → Error (target `fatal` → Fatal), warn → Warning,
//! info → Info (target `notice` → Notice), debug → Debug, trace → DebugSocket (raw socket traffic).
//! Secrets are never passed to the logger by any module.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use log::{Level, LevelFilter};
use simplelog::{CombinedLogger, SharedLogger};
use time::{OffsetDateTime, UtcOffset};

pub const INFO: u32 = 0x1;
pub const NOTICE: u32 = 0x2;
pub const WARNING: u32 = 0x4;
pub const ERROR: u32 = 0x8;
pub const FATAL: u32 = 0x10;
pub const DEBUG: u32 = 0x20;
pub const DEBUG_SOCKET: u32 = 0x40;

/// The original level bit and tag of a record.
pub fn classify(level: Level, target: &str) -> (u32, &'static str) {
    match level {
        Level::Error if target == "fatal" => (FATAL, "FATAL : "),
        Level::Error => (ERROR, "ERROR: "),
        Level::Warn => (WARNING, "WARN  : "),
        Level::Info if target == "notice" => (NOTICE, "NOTICE: "),
        Level::Info => (INFO, "INFO  : "),
        Level::Debug => (DEBUG, "DEBUG : "),
        Level::Trace => (DEBUG_SOCKET, "DSOCK : "),
    }
}

/// The most verbose `log` level any bit of `mask` needs.
pub fn max_level(mask: u32) -> LevelFilter {
    if mask & DEBUG_SOCKET != 0 {
        LevelFilter::Trace
    } else if mask & DEBUG != 0 {
        LevelFilter::Debug
    } else if mask & (INFO | NOTICE) != 0 {
        LevelFilter::Info
    } else if mask & WARNING != 0 {
        LevelFilter::Warn
    } else if mask & (ERROR | FATAL) != 0 {
        LevelFilter::Error
    } else {
        LevelFilter::Off
    }
}

/// One formatted file line (without the newline).
pub fn format_line(now: OffsetDateTime, tag: &str, message: &str) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} - {}{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        tag,
        message
    )
}

/// The file name for the day of `now`: `YYYY-MM-DD.log`.
pub fn file_name(now: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}.log",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Longest peer-supplied value put in one log line, in characters.
pub const LOG_CAP: usize = 200;

/// A peer- or database-supplied value for a log line: control characters (CR, LF, NUL, ESC …) and
/// quotes escaped so that no value can forge a line, at most [`LOG_CAP`] characters.
pub fn escape(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == LOG_CAP {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// [`escape`] in double quotes.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

/// At most one log line per `window` for a repeated event; the next line says how many were not
/// logged in between. Pure: the time is passed in.
#[derive(Debug, Clone)]
pub struct Throttle {
    window: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(window: std::time::Duration) -> Self {
        Throttle {
            window,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log this one (n were suppressed since the last line); `None`: count it only.
    pub fn hit(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.window => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The suffix for a logged line: `""` or `" (and N more since the last such line)"`.
    pub fn since(suppressed: u64) -> String {
        if suppressed == 0 {
            String::new()
        } else {
            format!(" (and {suppressed} more since the last such line)")
        }
    }
}

/// The local UTC offset; must be called while the process has one thread (before ctrlc, AMI, …).
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

/// What can change while the server runs (SIGHUP): the `LOG_LEVEL` mask, and a request to reopen
/// the log file (after logrotate moved it, or the directory was cleaned). Shared by both loggers.
#[derive(Debug)]
pub struct Control {
    mask: AtomicU32,
    reopen: AtomicBool,
    /// `--debug`: stderr shows every level whatever the mask.
    debug: bool,
    /// stderr is the systemd journal (`JOURNAL_STREAM` is set).
    journal: bool,
}

static CONTROL: OnceLock<Arc<Control>> = OnceLock::new();

impl Control {
    pub fn mask(&self) -> u32 {
        self.mask.load(Ordering::Relaxed)
    }

    /// The most verbose level stderr shows: the mask's, at least errors (journald and the Task
    /// Scheduler history always get them); under journald at most Info, because the file already
    /// has the Debug/DebugSocket trace (it would be written twice); everything with `--debug`.
    pub fn stderr_level(&self) -> LevelFilter {
        if self.debug {
            return LevelFilter::Trace;
        }
        let level = max_level(self.mask()).max(LevelFilter::Error);
        if self.journal {
            level.min(LevelFilter::Info)
        } else {
            level
        }
    }

    fn max_level(&self) -> LevelFilter {
        self.stderr_level().max(max_level(self.mask()))
    }
}

/// The running logger's control, if `init` has run.
pub fn control() -> Option<Arc<Control>> {
    CONTROL.get().cloned()
}

/// Applies a new `LOG_LEVEL` mask to both loggers.
pub fn set_mask(mask: u32) {
    if let Some(c) = control() {
        c.mask.store(mask, Ordering::Relaxed);
        log::set_max_level(c.max_level());
    }
}

/// Asks the file logger to reopen its file before the next line.
pub fn reopen() {
    if let Some(c) = control() {
        c.reopen.store(true, Ordering::Relaxed);
    }
}

/// Installs the file logger (if `dir` is given, keeping `keep_days` days of files; 0 = all) and the
/// stderr logger. `debug` = `--debug`.
pub fn init(dir: Option<&Path>, mask: u32, debug: bool, keep_days: u32) -> Result<(), String> {
    let offset = local_offset();
    let ctl = Arc::new(Control {
        mask: AtomicU32::new(mask),
        reopen: AtomicBool::new(false),
        debug,
        journal: std::env::var_os("JOURNAL_STREAM").is_some(),
    });
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![Box::new(StderrLogger::new(ctl.clone(), offset))];
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        loggers.push(Box::new(DailyFileLogger::new(
            dir,
            ctl.clone(),
            offset,
            keep_days,
        )));
    }
    let level = ctl.max_level();
    let _ = CONTROL.set(ctl);
    CombinedLogger::init(loggers).map_err(|e| format!("cannot install the logger: {e}"))?;
    log::set_max_level(level);
    Ok(())
}

mod file;
mod stderr;

pub use file::{expired_files, DailyFileLogger};
pub use stderr::StderrLogger;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn throttle_logs_once_per_window_and_counts_the_rest() {
        use std::time::{Duration, Instant};
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(0));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(Throttle::since(2), " (and 2 more since the last such line)");
        assert_eq!(Throttle::since(0), "");
    }

    #[test]
    fn line_and_file_name_follow_the_original_layout() {
        let now = datetime!(2008-11-22 09:05:07 UTC);
        assert_eq!(file_name(now), "2008-11-22.log");
        let (_, tag) = classify(Level::Info, "astcti");
        assert_eq!(
            format_line(now, tag, "hello"),
            "2008-11-22 09:05:07 - INFO  : hello"
        );
    }

    #[test]
    fn levels_map_to_the_original_bits_and_tags() {
        assert_eq!(classify(Level::Error, "fatal"), (FATAL, "FATAL : "));
        assert_eq!(classify(Level::Error, "x"), (ERROR, "ERROR: "));
        assert_eq!(classify(Level::Warn, "x"), (WARNING, "WARN  : "));
        assert_eq!(classify(Level::Info, "notice"), (NOTICE, "NOTICE: "));
        assert_eq!(classify(Level::Debug, "x"), (DEBUG, "DEBUG : "));
        assert_eq!(classify(Level::Trace, "x"), (DEBUG_SOCKET, "DSOCK : "));
        assert_eq!(max_level(255), LevelFilter::Trace);
        assert_eq!(max_level(63), LevelFilter::Debug);
        assert_eq!(max_level(ERROR), LevelFilter::Error);
        assert_eq!(max_level(WARNING | ERROR), LevelFilter::Warn);
        assert_eq!(max_level(0), LevelFilter::Off);
    }
}
