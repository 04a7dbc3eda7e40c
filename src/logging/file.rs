//! The daily log files of the original: `<DIRECTORY>/YYYY-MM-DD.log`, filtered by the `LOG_LEVEL`
//! mask, kept for `LOG_KEEP_DAYS` days, created 0640. Part of the logging shell.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use log::{LevelFilter, Log, Metadata, Record};
use simplelog::SharedLogger;
use time::{OffsetDateTime, UtcOffset};

use super::{classify, file_name, format_line, max_level, Control};

struct Open {
    name: String,
    file: File,
}

/// Writes records to the day's file in `dir`, filtered by the original bit mask.
pub struct DailyFileLogger {
    dir: PathBuf,
    ctl: Arc<Control>,
    offset: UtcOffset,
    keep_days: u32,
    open: Mutex<Option<Open>>,
    config: simplelog::Config,
}

/// The `YYYY-MM-DD.log` files among `names` that are `keep_days` or more days older than `today`
/// (0 = keep everything). Other names are never touched.
pub fn expired_files(names: &[String], today: time::Date, keep_days: u32) -> Vec<String> {
    if keep_days == 0 {
        return Vec::new();
    }
    names
        .iter()
        .filter(|n| {
            n.strip_suffix(".log")
                .and_then(day_of)
                .is_some_and(|d| (today - d).whole_days() >= i64::from(keep_days))
        })
        .cloned()
        .collect()
}

/// `YYYY-MM-DD` → the date, for exactly that shape.
fn day_of(name: &str) -> Option<time::Date> {
    let b = name.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = name.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    time::Date::from_calendar_date(num(0..4)? as i32, month, u8::try_from(num(8..10)?).ok()?).ok()
}

fn create(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o640);
    o.open(path)
}

impl DailyFileLogger {
    pub fn new(dir: &Path, ctl: Arc<Control>, offset: UtcOffset, keep_days: u32) -> Self {
        let logger = DailyFileLogger {
            dir: dir.to_path_buf(),
            ctl,
            offset,
            keep_days,
            open: Mutex::new(None),
            config: simplelog::Config::default(),
        };
        logger.remove_old(OffsetDateTime::now_utc().to_offset(offset).date());
        logger
    }

    /// Deletes the day files past `LOG_KEEP_DAYS` (at startup and at each day's switch).
    fn remove_old(&self, today: time::Date) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for name in expired_files(&names, today, self.keep_days) {
            if let Err(e) = std::fs::remove_file(self.dir.join(&name)) {
                eprintln!("cannot remove old log file {name}: {e}");
            }
        }
    }

    fn write_line(&self, now: OffsetDateTime, line: &str) {
        let name = file_name(now);
        let Ok(mut guard) = self.open.lock() else {
            return;
        };
        let reopen = self.ctl.reopen.swap(false, Ordering::Relaxed);
        let switch = guard.as_ref().map(|o| o.name != name).unwrap_or(true);
        if switch || reopen {
            if switch && guard.is_some() {
                self.remove_old(now.date());
            }
            let path = self.dir.join(&name);
            match create(&path) {
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
        self.ctl.mask() & bit != 0
    }

    fn log(&self, record: &Record<'_>) {
        let (bit, tag) = classify(record.level(), record.target());
        if self.ctl.mask() & bit == 0 {
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
        max_level(self.ctl.mask())
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
    use super::super::{DEBUG, ERROR};
    use super::*;
    use log::Level;
    use time::macros::date;

    #[test]
    fn file_logger_filters_by_bit_mask_and_writes_the_days_file() {
        let dir = std::env::temp_dir().join(format!("astcti-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Error only (0x8): warnings and infos are dropped even though they are "less" verbose.
        let ctl = Arc::new(Control {
            mask: std::sync::atomic::AtomicU32::new(ERROR | DEBUG),
            reopen: std::sync::atomic::AtomicBool::new(false),
            debug: false,
            journal: false,
        });
        let logger = DailyFileLogger::new(&dir, ctl, UtcOffset::UTC, 30);
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
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(file_name(OffsetDateTime::now_utc())))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640, "not world-readable");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_day_files_past_the_bound_expire() {
        let names: Vec<String> = [
            "2026-11-01.log",
            "2026-11-02.log",
            "2026-11-30.log",
            "2026-12-01.log",
            "notes.txt",
            "2026-13-01.log",
            "2026-11-01.log.gz",
            "x2026-11-01.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let today = date!(2026 - 12 - 01);
        // 30 days: the 1st of November is 30 days old (expired), the 2nd 29 (kept).
        assert_eq!(expired_files(&names, today, 30), vec!["2026-11-01.log"]);
        assert_eq!(
            expired_files(&names, today, 1),
            vec!["2026-11-01.log", "2026-11-02.log", "2026-11-30.log"]
        );
        assert!(expired_files(&names, today, 0).is_empty(), "0 keeps all");
    }
}
