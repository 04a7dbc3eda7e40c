//! SIGHUP against the real binary: it reopens the log file, applies what can change without a
//! restart (log level, originate contexts, limits, client settings for new connections), says
//! what needs a restart, keeps running on a broken file, and never exits. SIGTERM still stops it.

mod common;

use std::time::Duration;

use common::*;

fn opts(contexts: &str, level: u32, manager_port: u16) -> Options {
    Options {
        ctiserver: vec![("CTI_ORIGINATE_CONTEXTS", contexts.to_string())],
        log_level: Some(level),
        manager_port: Some(manager_port),
        ..Options::default()
    }
}

#[test]
fn sighup_reloads_what_it_can_names_what_needs_a_restart_and_never_exits() {
    let mut server = Server::start_with(opts("", 63, 1));
    let user = unique("hup");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let log_dir = server.dir.join("logs");

    // Rewrite the file: two reloadable keys and one that needs a restart.
    write_config(&server.dir, &opts("internal", 255, 2));
    server.signal("HUP");
    assert!(
        server.wait_log(
            "reload (SIGHUP): CTI_ORIGINATE_CONTEXTS (any) -> internal",
            Duration::from_secs(5)
        ),
        "{}",
        server.stderr_text()
    );
    assert!(server
        .stderr_text()
        .contains("reload (SIGHUP): LOG_LEVEL 63 -> 255"));
    assert!(server.stderr_text().contains(
        "reload (SIGHUP): MANAGER_PORT changed in the file (1 -> 2) but takes effect only after a restart"
    ));
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "still running"
    );

    // A new connection runs with the new contexts: ORIG into another one is refused.
    let mut c = server.login(&user, &secret);
    c.send("ORIG 123|other|1\n");
    c.expect(b"100 OK\n");
    assert!(server.wait_log(
        "context \"other\" is not in CTI_ORIGINATE_CONTEXTS",
        Duration::from_secs(5)
    ));
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");

    // The log file was removed (logrotate, a clean-up): SIGHUP reopens it.
    std::fs::remove_dir_all(&log_dir).unwrap();
    std::fs::create_dir_all(&log_dir).unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.stderr_text().matches("log file reopened").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let c2 = server.login(&user, &secret);
    drop(c2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text: String = std::fs::read_dir(&log_dir)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        if text.contains("logged in as") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains("logged in as"),
        "the reopened file gets the lines: {text:?}"
    );

    // A broken file changes nothing and stops nothing.
    std::fs::write(server.dir.join("AstCTIServer.xml"), "<configuration><oops").unwrap();
    server.signal("HUP");
    assert!(server.wait_log("the running configuration is kept", Duration::from_secs(5)));
    let mut c3 = server.login(&user, &secret);
    c3.send("NOOP\n");
    c3.expect(b"100 OK\n");
    drop(c3);

    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(status.success());
}
