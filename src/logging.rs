//! Logging: the original's daily log files plus stderr for journald / Task Scheduler.
//!
//! Files: `<DIRECTORY>/YYYY-MM-DD.log`, one line per record,
//! `yyyy-MM-dd HH:mm:ss - TAG: message`, with the original's tags and its `LOG_LEVEL` bit mask
//! (spec §1.4): Info 0x1, Notice 0x2, Warning 0x4, Error 0x8, Fatal 0x10, Debug 0x20, DebugSocket 0x40.
//! A record is written iff its bit is set in the mask. The file stays open and is switched at midnight
//! (the original reopened it for every line). stderr goes through simplelog's `TermLogger`
//! (level = the highest enabled level, at least errors; everything with `--debug`).
//!
//! Rust log levels map to the original ones: error → Error (target `fatal` → Fatal), warn → Warning,
//! info → Info (target `notice` → Notice), debug → Debug, trace → DebugSocket (raw socket traffic).
//! Secrets are never passed to the logger by any module.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use simplelog::{ColorChoice, CombinedLogger, SharedLogger, TermLogger, TerminalMode};
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

struct Open {
    name: String,
    file: File,
}

/// Writes records to the day's file in `dir`, filtered by the original bit mask.
pub struct DailyFileLogger {
    dir: PathBuf,
    mask: u32,
    offset: UtcOffset,
    open: Mutex<Option<Open>>,
    config: simplelog::Config,
}

impl DailyFileLogger {
    pub fn new(dir: &Path, mask: u32, offset: UtcOffset) -> Self {
        DailyFileLogger {
            dir: dir.to_path_buf(),
            mask,
            offset,
            open: Mutex::new(None),
            config: simplelog::Config::default(),
        }
    }

    fn write_line(&self, now: OffsetDateTime, line: &str) {
        let name = file_name(now);
        let Ok(mut guard) = self.open.lock() else {
            return;
        };
        if guard.as_ref().map(|o| o.name != name).unwrap_or(true) {
            let path = self.dir.join(&name);
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => *guard = Some(Open { name, file }),
                Err(e) => {
                    eprintln!("cannot open log file {}: {e}", path.display());
                    *guard = None;
                    return;
                }
            }
        }
        if let Some(open) = guard.as_mut() {
            // A full disk must not stop the server; the line still reaches stderr.
            let _ = writeln!(open.file, "{line}");
        }
    }
}

impl Log for DailyFileLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let (bit, _) = classify(metadata.level(), metadata.target());
        self.mask & bit != 0
    }

    fn log(&self, record: &Record<'_>) {
        let (bit, tag) = classify(record.level(), record.target());
        if self.mask & bit == 0 {
            return;
        }
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        self.write_line(now, &format_line(now, tag, &record.args().to_string()));
    }

    fn flush(&self) {
        if let Ok(mut guard) = self.open.lock() {
            if let Some(open) = guard.as_mut() {
                let _ = open.file.flush();
            }
        }
    }
}

impl SharedLogger for DailyFileLogger {
    fn level(&self) -> LevelFilter {
        max_level(self.mask)
    }

    fn config(&self) -> Option<&simplelog::Config> {
        Some(&self.config)
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

/// The local UTC offset; must be called while the process has one thread (before ctrlc, AMI, …).
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

/// Installs the file logger (if `dir` is given) and the stderr logger. `debug` = `--debug`.
pub fn init(dir: Option<&Path>, mask: u32, debug: bool) -> Result<(), String> {
    let offset = local_offset();
    // Errors always reach stderr (journald, the Task Scheduler's history), whatever LOG_LEVEL says.
    let term_level = if debug {
        LevelFilter::Trace
    } else {
        max_level(mask).max(LevelFilter::Error)
    };
    let term_config = simplelog::ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_offset(offset)
        .set_time_format_custom(simplelog::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        term_level,
        term_config,
        TerminalMode::Stderr,
        ColorChoice::Never,
    )];
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        loggers.push(Box::new(DailyFileLogger::new(dir, mask, offset)));
    }
    CombinedLogger::init(loggers).map_err(|e| format!("cannot install the logger: {e}"))
}

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

    #[test]
    fn file_logger_filters_by_bit_mask_and_writes_the_days_file() {
        let dir = std::env::temp_dir().join(format!("astcti-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Error only (0x8): warnings and infos are dropped even though they are "less" verbose.
        let logger = DailyFileLogger::new(&dir, ERROR | DEBUG, UtcOffset::UTC);
        let rec = |level, target, msg| {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("{msg}"))
                    .build(),
            )
        };
        rec(Level::Error, "astcti", "boom");
        rec(Level::Warn, "astcti", "not written");
        rec(Level::Info, "astcti", "not written");
        rec(Level::Debug, "astcti", "details");
        logger.flush();
        let name = file_name(OffsetDateTime::now_utc());
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" - ERROR: boom"), "{text}");
        assert!(lines[1].ends_with(" - DEBUG : details"), "{text}");
        assert_eq!(lines[0].len(), "2008-11-22 09:05:07 - ERROR: boom".len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
