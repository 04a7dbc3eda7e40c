//! The original client protocol (docs/ORIGINAL.md §3) against the real binary, a real MariaDB and real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

#[test]
fn original_login_transcript_byte_for_byte() {
    // docs/ORIGINAL.md §3.5, with the original client's exact bytes: LF-only commands, one send each,
    // a NOOP every 1.5 s from the moment the connection is up.
    let user = unique("orig");
    let ext = unique("SIP/");
    let secret = add_agent(&user, "test", Some(&ext), Some("0.0.0.0"));
    assert_eq!(&*secret, TEST_SECRET);
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send(&format!("USER {user}\n"));
    c.expect(b"100 OK\n");
    c.send("PASS 098f6bcd4621d373cade4e832627b4f6\n");
    c.expect(b"102 OK\n");
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    assert!(
        c.silent_for(Duration::from_millis(300)),
        "nothing else is sent"
    );
    assert!(server.wait_log(
        &format!("logged in as {user:?} on {ext}"),
        Duration::from_secs(5)
    ));
}

#[test]
fn wrong_secret_unknown_user_and_pass_before_user_get_ko() {
    let user = unique("ko");
    let _row = add_agent(&user, "right", Some(&unique("SIP/")), None);
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send("PASS 098f6bcd4621d373cade4e832627b4f6\n");
    c.expect(b"101 KO\n");
    c.send(&format!("USER {user}\n"));
    c.expect(b"100 OK\n");
    c.send(&format!("PASS {}\n", TEST_SECRET));
    c.expect(b"101 KO\n");
    c.send(&format!("USER {}\n", unique("nobody")));
    c.expect(b"100 OK\n");
    c.send(&format!("PASS {}\n", TEST_SECRET));
    c.expect(b"101 KO\n");
    // The connection stays open after a failed PASS, as in the original.
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
}

#[test]
fn empty_parameters_are_101_error() {
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send("USER\n");
    c.expect(b"101 ERROR\n");
    c.send("USER \n");
    c.expect(b"101 ERROR\n");
    c.send("USER someone\n");
    c.expect(b"100 OK\n");
    c.send("PASS\n");
    c.expect(b"101 ERROR\n");
    c.send("ORIG\n");
    c.expect(b"101 ERROR\n");
    c.send("ORIG 202|ctx\n");
    c.expect(b"101 ERROR\n");
}

#[test]
fn null_host_logs_in_but_null_or_empty_ext_does_not() {
    let ok_user = unique("nullhost");
    let secret = add_agent(&ok_user, "pw", Some(&unique("SIP/")), None);
    let no_ext = unique("noext");
    let _no_ext = add_agent(&no_ext, "pw", None, Some("0.0.0.0"));
    let empty_ext = unique("emptyext");
    // EXT is UNIQUE, but many rows may hold ''? No: '' is a value, so only this test uses it.
    admin()
        .exec_drop("DELETE FROM cti WHERE EXT = ''", ())
        .unwrap();
    let _empty_ext = add_agent(&empty_ext, "pw", Some(""), None);
    let server = Server::start();
    server.login(&ok_user, &secret);
    for user in [&no_ext, &empty_ext] {
        let mut c = server.connect();
        c.expect(b"100 CTISERVER WELCOME\n");
        c.send(&format!("USER {user}\n"));
        c.expect(b"100 OK\n");
        c.send(&format!("PASS {secret}\n"));
        c.expect(b"101 KO\n");
    }
    assert!(server.wait_log("has no EXT", Duration::from_secs(5)));
}

#[test]
fn duplicate_login_is_refused_until_the_first_session_ends() {
    let user = unique("dup");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start();
    let first = server.login(&user, &secret);
    let mut second = server.connect();
    second.expect(b"100 CTISERVER WELCOME\n");
    second.send(&format!("USER {user}\n"));
    second.expect(b"101 KO\n");
    // EOF is the original client's logout (it never sends QUIT).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        second.send(&format!("USER {user}\n"));
        let mut got = [0u8; 7];
        std::io::Read::read_exact(&mut second.sock, &mut got).unwrap();
        if &got == b"100 OK\n" {
            break;
        }
        assert_eq!(&got, b"101 KO\n");
        assert!(Instant::now() < deadline, "logout was never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    second.send(&format!("PASS {secret}\n"));
    second.expect(b"102 OK\n");
}

#[test]
fn noop_helo_and_quit() {
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    c.send("HELO\n");
    c.expect(b"100 OK\n");
    c.send("noop\n");
    c.expect(b"100 OK\n");
    c.send("LIST\n");
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");
    assert!(c.closed_within(Duration::from_secs(5)));
}

/// `EXT` (new; the original ignores it, as it ignores any unknown command): nothing before login,
/// then the EXT the login is registered under, from the cti table.
#[test]
fn ext_names_the_registered_ext_after_login_and_nothing_before() {
    let server = Server::start();
    let user = unique("ext");
    let ext = unique("SIP/");
    let _row = add_agent(&user, "pw", Some(&ext), None);
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send("EXT\nNOOP\n");
    c.expect(b"100 OK\n");
    c.send(&format!("USER {user}\nPASS {:x}\n", md5::compute("pw")));
    c.expect(b"100 OK\n102 OK\n");
    c.send("EXT\n");
    c.expect(format!("100 EXT {ext}\n").as_bytes());
    c.send("ext\nNOOP\n");
    c.expect(format!("100 EXT {ext}\n100 OK\n").as_bytes());
}

#[test]
fn split_and_coalesced_writes_and_crlf() {
    let user = unique("split");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    // One command split over several TCP segments.
    for part in ["US", "ER ", &user, "\r", "\n"] {
        c.send(part);
        std::thread::sleep(Duration::from_millis(30));
    }
    c.expect(b"100 OK\n");
    // Several commands in one segment: one reply each, in order.
    c.send(&format!("PASS {secret}\r\nNOOP\nHELO\r\nQUIT\n"));
    c.expect(b"102 OK\n100 OK\n100 OK\n900 BYE\n");
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn a_line_at_the_limit_is_served_one_over_it_disconnects() {
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    // 4096 bytes exactly: an unknown command, ignored; the connection lives on.
    let mut line = "X".repeat(4096);
    line.push('\n');
    c.send(&line);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    // 4097 bytes without LF: disconnected.
    c.send(&"Y".repeat(4097));
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(server.wait_log("line longer than 4096 bytes", Duration::from_secs(5)));
}

#[test]
fn login_timeout_closes_a_client_that_keeps_sending_noop() {
    let server = Server::start_with(Options {
        ctiserver: vec![("CTI_LOGIN_TIMEOUT", "1".into())],
        ..Options::default()
    });
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    let start = Instant::now();
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    std::thread::sleep(Duration::from_millis(500));
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    assert!(c.closed_within(Duration::from_secs(5)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(server.wait_log("no login within the timeout", Duration::from_secs(5)));
}

#[test]
fn client_timeout_closes_a_silent_logged_in_client() {
    let user = unique("idle");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start_with(Options {
        ctiserver: vec![("CTI_CLIENT_TIMEOUT", "1".into())],
        ..Options::default()
    });
    let mut c = server.login(&user, &secret);
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(server.wait_log("client socket timeout", Duration::from_secs(5)));
}

#[test]
fn max_clients_is_enforced_at_the_bound() {
    let server = Server::start_with(Options {
        ctiserver: vec![("CTI_MAX_CLIENTS", "3".into())],
        ..Options::default()
    });
    let agents: Vec<(String, AgentRow)> = (0..3)
        .map(|_| {
            let user = unique("max");
            let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
            (user, secret)
        })
        .collect();
    // Two agents log in; a third connection is pending.
    let mut held: Vec<Client> = agents[..2]
        .iter()
        .map(|(u, s)| server.login(u, s))
        .collect();
    let mut pending = server.connect();
    pending.expect(b"100 CTISERVER WELCOME\n");
    // At the bound, a new connection makes the pending one (not an agent) leave.
    let mut newer = server.connect();
    newer.expect(b"100 CTISERVER WELCOME\n");
    assert!(
        pending.closed_within(Duration::from_secs(5)),
        "the oldest pending connection is closed to admit the new one"
    );
    newer.send(&format!("USER {}\n", agents[2].0));
    newer.expect(b"100 OK\n");
    newer.send(&format!("PASS {}\n", agents[2].1));
    newer.expect(b"102 OK\n");
    // Three agents: every slot is an agent, so a 4th connection is refused without the welcome.
    let mut extra = server.connect();
    assert!(
        extra.closed_within(Duration::from_secs(5)),
        "the 4th client is refused"
    );
    assert!(server.wait_log("client limit (3) reached", Duration::from_secs(5)));
    // Once one leaves, a new one is served.
    let mut leaving = held.pop().unwrap();
    leaving.send("QUIT\n");
    leaving.expect(b"900 BYE\n");
    assert!(leaving.closed_within(Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = server.connect();
        let mut b = [0u8; 22];
        if std::io::Read::read_exact(&mut c.sock, &mut b).is_ok() {
            assert_eq!(&b, b"100 CTISERVER WELCOME\n");
            break;
        }
        assert!(Instant::now() < deadline, "a slot never freed up");
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in held.iter_mut().chain([&mut newer]) {
        c.send("NOOP\n");
        c.expect(b"100 OK\n");
    }
}

#[test]
fn sigterm_closes_clients_and_exits_0_within_2_seconds() {
    let user = unique("term");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let mut server = Server::start();
    let mut logged = server.login(&user, &secret);
    let mut waiting = server.connect();
    waiting.expect(b"100 CTISERVER WELCOME\n");
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(2));
    let took = start.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("still running after 2 s:\n{}", server.stderr_text()));
    assert_eq!(status.code(), Some(0), "{}", server.stderr_text());
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Clients are closed without any unexpected line.
    assert!(logged.closed_within(Duration::from_secs(2)));
    assert!(waiting.closed_within(Duration::from_secs(2)));
    assert!(server.wait_log("astcti-server stopped", Duration::from_secs(1)));
}

#[test]
fn sigint_also_stops_cleanly() {
    let mut server = Server::start();
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(2)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn database_connections_killed_behind_the_server_are_replaced() {
    let user = unique("reconn");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start();
    let mut c = server.login(&user, &secret);
    drop(c.sock.shutdown(std::net::Shutdown::Both));
    // Kill every connection of the server's account, as a MariaDB restart would.
    let mut admin = admin();
    let ids: Vec<u64> = admin
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'astcti_server'")
        .unwrap();
    assert!(!ids.is_empty(), "the server holds a pooled connection");
    for id in ids {
        let _ = admin.query_drop(format!("KILL CONNECTION {id}"));
    }
    // Wait until the logout is seen, then log in again: the pool replaces the dead connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("logged out") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    c = server.login(&user, &secret);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
}

#[test]
fn logs_go_to_the_daily_file_in_the_original_format_without_secrets() {
    let user = unique("logf");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let mut server = Server::start();
    let _c = server.login(&user, &secret);
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(2)).expect("exits");
    let logs = server.dir.join("logs");
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().into_string().unwrap();
    assert!(
        name.len() == "2026-11-28.log".len() && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("logged in as"))
        .expect("login logged");
    // yyyy-MM-dd HH:mm:ss - INFO  : message
    let b = line.as_bytes();
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16]),
        (b'-', b'-', b' ', b':', b':'),
        "{line}"
    );
    assert_eq!(&line[19..30], " - INFO  : ", "{line}");
    assert!(!text.contains(&*secret), "secret in the log");
    assert!(!server.stderr_text().contains(&*secret), "secret on stderr");
}

#[test]
fn database_unreachable_at_startup_exits_non_zero() {
    let dir = temp_dir("nodb");
    // A port where nothing listens.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let config = write_config(
        &dir,
        &Options {
            db_port: Some(port),
            ..Options::default()
        },
    );
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database connection is not available"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_install_guides_example_agent_logs_in() {
    // scripts/test.sh inserts docs/INSTALL.md's row: ('alice', MD5('her password'), NULL, 'PJSIP/201').
    let server = Server::start();
    let secret = format!("{:x}", md5::compute(b"her password"));
    let mut c = server.login("alice", &secret);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    assert!(server.wait_log(
        "logged in as \"alice\" on PJSIP/201",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_silent_client_before_login_hits_the_client_timeout_first_when_it_is_shorter() {
    let server = Server::start_with(Options {
        ctiserver: vec![
            ("CTI_CLIENT_TIMEOUT", "1".into()),
            ("CTI_LOGIN_TIMEOUT", "30".into()),
        ],
        ..Options::default()
    });
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(server.wait_log("client socket timeout", Duration::from_secs(5)));
    assert!(!server.stderr_text().contains("no login within the timeout"));
}

#[test]
fn garbage_from_clients_never_takes_the_server_down() {
    let user = unique("survivor");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start();
    // Deterministic pseudo-random bytes, with line ends and command words mixed in.
    let mut x: u32 = 0x2545_f491;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let words: [&[u8]; 8] = [
        b"USER ", b"PASS ", b"ORIG ", b"NOOP", b"QUIT", b"\r\n", b"\n", b"|",
    ];
    for _ in 0..6 {
        let mut c = server.connect();
        let mut junk = Vec::new();
        while junk.len() < 20_000 {
            let r = next();
            if r % 5 == 0 {
                junk.extend_from_slice(words[(r >> 8) as usize % words.len()]);
            } else {
                junk.push((r >> 16) as u8);
            }
            if r % 97 == 0 {
                junk.push(b'\n');
            }
        }
        // The server may close us (QUIT, a too-long line): that is fine, it must not go down.
        let _ = std::io::Write::write_all(&mut c.sock, &junk);
    }
    let mut ok = server.login(&user, &secret);
    ok.send("NOOP\n");
    ok.expect(b"100 OK\n");
}
