//! The logs an administrator lives with, through the real binary: under systemd (JOURNAL_STREAM set)
//! stderr lines carry syslog priorities and no timestamp and stop at Info (the file keeps the debug
//! trace); old daily files go after LOG_KEEP_DAYS; log files are not world-readable; `ACTIVE=false`
//! writes no log file at all.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn under_journald_stderr_has_priorities_no_timestamps_and_no_debug_trace() {
    let server = Server::start_with(Options {
        log_level: Some(127),
        env: vec![("JOURNAL_STREAM", "8:12345".into())],
        ..Options::default()
    });
    let user = unique("jr");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let mut c = server.login(&user, &secret);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    assert!(server.wait_log("logged in as", Duration::from_secs(5)));
    let text = server.stderr_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>CTI server listening on ")),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            line.starts_with('<') && !line.starts_with("<7>"),
            "a priority and no debug line: {line:?}"
        );
        assert!(
            !line.starts_with("<6>20"),
            "no timestamp of its own: {line:?}"
        );
    }
    // The file still has the debug trace (the client's lines at DebugSocket).
    let logs = server.dir.join("logs");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let file: String = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        if file.contains(" - DSOCK : ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{file}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daily_files_older_than_log_keep_days_are_removed_and_others_kept() {
    let server = Server::start_with(Options {
        log_files: vec![
            ("2001-01-01.log".into(), "old\n".into()),
            ("notes.txt".into(), "mine\n".into()),
        ],
        ..Options::default()
    });
    let logs = server.dir.join("logs");
    assert!(
        !logs.join("2001-01-01.log").exists(),
        "past LOG_KEEP_DAYS (30)"
    );
    assert!(logs.join("notes.txt").exists(), "not a day file: kept");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let today = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .expect("today's file");
        let mode = today.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}

#[test]
fn active_false_writes_no_log_file_and_says_so() {
    let quiet = Server::start_with(Options {
        logging: vec![("ACTIVE", "false".into())],
        ..Options::default()
    });
    let loud = Server::start();
    for s in [&quiet, &loud] {
        let user = unique("act");
        let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
        let mut c = s.login(&user, &secret);
        c.send("NOOP\n");
        c.expect(b"100 OK\n");
        assert!(s.wait_log("logged in as", Duration::from_secs(5)));
    }
    let files = |s: &Server| -> Vec<String> {
        std::fs::read_dir(s.dir.join("logs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(files(&quiet).is_empty(), "{:?}", files(&quiet));
    assert!(
        quiet
            .stderr_text()
            .contains("no log files: ACTIVE is false in "),
        "{}",
        quiet.stderr_text()
    );
    // The same start with ACTIVE=true has its daily file, with the login in it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text: String = files(&loud)
            .iter()
            .map(|f| std::fs::read_to_string(loud.dir.join("logs").join(f)).unwrap_or_default())
            .collect();
        if text.contains("logged in as") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", files(&loud));
        std::thread::sleep(Duration::from_millis(50));
    }
}
