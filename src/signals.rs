//! Signals → what the main thread does: SIGTERM and SIGINT stop the server; SIGHUP reloads it
//! (never stops it — `kill -HUP` used to exit 0, which left systemd's `Restart=on-failure` with a
//! dead service).
//!
//! Shell. On Unix the three signals are blocked in the calling thread before any other thread
//! exists (every later thread inherits the mask), and a `signals` thread takes them with
//! `sigwait`, so no handler code runs in signal context. It is not joined: it ends with the process.
//! On Windows, Ctrl-C / Ctrl-Break / console close stop the server (the `ctrlc` crate); there is no
//! SIGHUP.

use crossbeam_channel::{bounded, Receiver};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Reload,
}

/// Must be called while the process has a single thread.
#[cfg(unix)]
pub fn install() -> Result<Receiver<Signal>, String> {
    use nix::sys::signal::{SigSet, Signal as S};
    let mut set = SigSet::empty();
    for s in [S::SIGINT, S::SIGTERM, S::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("cannot block the signals: {e}"))?;
    let (tx, rx) = bounded(16);
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            let sig = match set.wait() {
                Ok(S::SIGHUP) => Signal::Reload,
                Ok(_) => Signal::Stop,
                Err(_) => continue,
            };
            if tx.send(sig).is_err() {
                return;
            }
        })
        .map_err(|e| format!("cannot start the signals thread: {e}"))?;
    Ok(rx)
}

#[cfg(not(unix))]
pub fn install() -> Result<Receiver<Signal>, String> {
    let (tx, rx) = bounded(16);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(Signal::Stop);
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    Ok(rx)
}
