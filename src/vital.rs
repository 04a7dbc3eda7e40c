//! The server's one-of-a-kind threads (the AMI link, the dispatcher, the listener, the database's
//! login threads …): if one dies of a panic, the server can no longer do its work — no more pops,
//! or no more logins — while the process would look alive to the service manager. So the death is
//! logged and the process exits with [`EXIT_THREAD_DIED`]; the shipped systemd unit
//! (`Restart=on-failure`) and the Windows task (restart on failure) start it again.

use std::thread::{self, JoinHandle};

/// The exit status after a one-of-a-kind thread died (sysexits' EX_SOFTWARE).
pub const EXIT_THREAD_DIED: i32 = 70;

/// Starts `f` on a thread called `name` whose death by panic ends the process.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    let watched = name.to_string();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _watch = Watch(watched);
            f()
        })
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Dropped when its thread ends; ends the process if the thread is unwinding from a panic.
struct Watch(String);

impl Drop for Watch {
    fn drop(&mut self) {
        if thread::panicking() {
            let line = format!(
                "thread {} died (its panic is above): the server cannot work without it; exiting \
                 with status {EXIT_THREAD_DIED} so that the service manager starts it again",
                self.0
            );
            log::error!("{line}");
            log::logger().flush();
            eprintln!("astcti-server: {line}");
            std::process::exit(EXIT_THREAD_DIED);
        }
    }
}

/// A test's way to kill a thread (feature `failpoints`, never in a release): a panic where the
/// environment variable `ASTCTI_FAILPOINT` names `point`.
#[cfg(feature = "failpoints")]
pub fn failpoint(point: &str) {
    if std::env::var("ASTCTI_FAILPOINT").is_ok_and(|v| v == point) {
        panic!("failpoint {point}");
    }
}

/// Without the feature `failpoints`: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_point: &str) {}
