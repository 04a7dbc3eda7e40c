//! Security against the real binary, real sockets and the real MariaDB: password guessing is
//! throttled while the agent at a clean desk still logs in; only allowed networks connect; peer
//! values cannot forge log lines; secrets reach no log line in any framing; repeated errors are
//! summarised; every login, failed login, logout and originate leaves one `audit:` line.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn connect_from(source: [u8; 4], addr: SocketAddr) -> Client {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let sock: TcpStream = sock.into();
    sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    Client { sock }
}

/// A login from `source` with the right secret, answered `101 KO` (the throttle).
fn refused_from(source: [u8; 4], server: &Server, user: &str, secret: &str) {
    let mut c = connect_from(source, server.addr);
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send(&format!("USER {user}\n"));
    c.expect(b"100 OK\n");
    c.send(&format!("PASS {secret}\n"));
    c.expect(b"101 KO\n");
}

fn log_file_text(server: &Server) -> String {
    std::fs::read_dir(server.dir.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn guessing_drops_to_a_few_lookups_from_any_number_of_addresses_while_the_agent_at_its_desk_logs_in(
) {
    let server = Server::start_with(Options {
        stats_interval: Some(1),
        ..Options::default()
    });
    let user = unique("guess");
    let secret = add_agent(&user, "right", Some(&unique("SIP/")), None);
    // The agent's desk (127.0.0.1, network 127.0.0.0/24) has logged in as this user before.
    let mut c = server.login(&user, &secret);
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");
    assert!(server.wait_log("event=logout", Duration::from_secs(10)));
    // The attacker guesses for 3 s, each guess from a new address in a new /24 (127.1.0.2,
    // 127.1.1.2, …): a new address is no new start.
    let t = Instant::now();
    let mut guesses = 0u32;
    while t.elapsed() < Duration::from_secs(3) {
        let addr = [127, 1 + (guesses / 250) as u8, (guesses % 250) as u8, 2];
        let mut a = connect_from(addr, server.addr);
        a.expect(b"100 CTISERVER WELCOME\n");
        a.send(&format!("USER {user}\n"));
        a.expect(b"100 OK\n");
        a.send(&format!("PASS {guesses:032x}\n"));
        a.expect(b"101 KO\n");
        guesses += 1;
    }
    let log = server.stderr_text();
    let lookups = log
        .matches(&format!(
            "login of \"{user}\" failed: unknown user or wrong secret"
        ))
        .count();
    let refused = log.matches("(no database lookup)").count() as u32;
    assert!(guesses > 50, "{guesses} guesses answered");
    assert_eq!(
        lookups, 5,
        "CTI_LOGIN_MAX_FAILURES lookups, then none: {guesses} guesses from {guesses} addresses"
    );
    assert!(refused >= guesses - 5 - 2, "{refused} refused of {guesses}");
    // From an address it never logged in from, even the right password waits for the cool-down.
    refused_from([127, 9, 9, 9], &server, &user, &secret);
    // The agent at its desk, with the right password, is not locked out (its login ends the
    // guard: the cool-down was for the guesser).
    let mut c = server.login(&user, &secret);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");
    // A network that guessed many users is blocked for all of them, the right password included.
    let mut again = connect_from([127, 5, 5, 2], server.addr);
    again.expect(b"100 CTISERVER WELCOME\n");
    let other = unique("guess2");
    let s2 = add_agent(&other, "pw", Some(&unique("SIP/")), None);
    for i in 0..20 {
        again.send(&format!("USER x{i}{other}\n"));
        again.expect(b"100 OK\n");
        again.send("PASS 0\n");
        again.expect(b"101 KO\n");
    }
    refused_from([127, 5, 5, 77], &server, &other, &s2);
    assert!(server.wait_log(
        "too many failed logins from 127.5.5.",
        Duration::from_secs(5)
    ));
}

#[test]
fn only_allowed_networks_get_the_welcome_line() {
    let server = Server::start_with(Options {
        ctiserver: vec![("CTI_ALLOWED_NETWORKS", "127.0.0.1/32, ::1".into())],
        ..Options::default()
    });
    let mut stranger = connect_from([127, 0, 0, 3], server.addr);
    assert!(
        stranger.closed_within(Duration::from_secs(5)),
        "closed, no welcome"
    );
    assert!(server.wait_log("connection from 127.0.0.3", Duration::from_secs(5)));
    assert!(server.stderr_text().contains("not in CTI_ALLOWED_NETWORKS"));
    let mut friend = server.connect();
    friend.expect(b"100 CTISERVER WELCOME\n");
}

#[test]
fn audit_lines_are_stable_key_value_and_peer_values_cannot_forge_lines() {
    let server = Server::start();
    let user = unique("aud");
    // An EXT as a client could write it into the table itself: CR/LF and a fake log line.
    let ext = format!(
        "SIP/{}\r\n2026-01-01 00:00:00 - INFO  : forged",
        unique("x")
    );
    let secret = add_agent(&user, "pw", Some(&ext), None);
    let mut c = server.login(&user, &secret);
    c.send("ORIG 202|default|1\n");
    c.expect(b"100 OK\n");
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");
    let mut bad = server.connect();
    bad.expect(b"100 CTISERVER WELCOME\n");
    bad.send(&format!("USER {user}\n"));
    bad.expect(b"100 OK\n");
    bad.send("PASS 0123\n");
    bad.expect(b"101 KO\n");
    assert!(server.wait_log("event=login_failed", Duration::from_secs(5)));
    assert!(server.wait_log("event=logout", Duration::from_secs(5)));
    let log = server.stderr_text();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit: event="))
        .collect();
    let find = |ev: &str| {
        audit
            .iter()
            .find(|l| l.contains(&format!("audit: event={ev} ")))
            .unwrap_or_else(|| panic!("no {ev} in {audit:#?}"))
            .to_string()
    };
    let login = find("login");
    assert!(login.contains(&format!("user=\"{user}\"")), "{login}");
    assert!(
        login.contains("ext=\"SIP/") && login.contains("\\r\\n2026-01-01"),
        "escaped: {login}"
    );
    assert!(login.contains(" client=client-") && login.contains(" address=127.0.0.1:"));
    let orig = find("originate");
    assert!(
        orig.contains("number=\"202\" context=\"default\" priority=\"1\""),
        "{orig}"
    );
    assert!(find("logout").contains("reason=quit"));
    assert!(find("login_failed").contains("reason=wrong_secret"));
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01 00:00:00 - INFO  : forged")),
        "no forged line"
    );
    assert!(
        !log_file_text(&server)
            .lines()
            .any(|l| l.contains(" - INFO  : forged") && l.starts_with("2026-01-01")),
        "no forged line in the file either"
    );
    admin()
        .exec_drop("DELETE FROM cti WHERE USERNAME = ?", (&user,))
        .unwrap();
}

#[test]
fn secrets_never_reach_a_log_line_in_any_framing() {
    let server = Server::start_with(Options {
        log_level: Some(255),
        args: vec!["--debug".into()],
        ..Options::default()
    });
    // A leading tab, lower case, mixed case, and PASS split across two TCP segments: a fresh agent
    // for each, logged in and out.
    let mut secrets = Vec::new();
    for framing in ["\tPASS", "pass", "  PaSs", "split"] {
        let user = unique("sec");
        let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
        let mut c = server.connect();
        c.expect(b"100 CTISERVER WELCOME\n");
        if framing == "split" {
            c.send(&format!("USER {user}\nPA"));
            std::thread::sleep(Duration::from_millis(100));
            c.send(&format!("SS {secret}\n"));
        } else {
            c.send(&format!("USER {user}\n{framing} {secret}\n"));
        }
        c.expect(b"100 OK\n");
        if framing == "  PaSs" {
            // A leading space makes the command word empty: ignored (as the original), yet the
            // trace must not show the secret either.
            assert!(c.silent_for(Duration::from_millis(200)));
        } else {
            c.expect(b"102 OK\n");
            c.send("QUIT\n");
            c.expect(b"900 BYE\n");
        }
        secrets.push(secret);
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = server.stderr_text() + &log_file_text(&server);
    assert!(
        text.contains("PASS ********"),
        "the trace shows the command, masked"
    );
    for secret in &secrets {
        assert!(
            !text.contains(&secret.secret),
            "the MD5 secret appears in a log line"
        );
        assert!(!text.contains(&secret[..16]), "not even half of it");
    }
}

#[test]
fn a_client_looping_on_an_error_is_summarised_not_logged_each_time() {
    let server = Server::start();
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    let mut burst = String::new();
    for _ in 0..2000 {
        burst.push_str("PASS 1\n");
    }
    c.send(&burst);
    let mut got = vec![0u8; 2000 * 7];
    c.sock.read_exact(&mut got).unwrap();
    c.send("QUIT\n");
    c.expect(b"900 BYE\n");
    assert!(server.wait_log(
        "more of \"PASS before USER refused\"",
        Duration::from_secs(5)
    ));
    let log = server.stderr_text();
    assert_eq!(
        log.matches("client-1: PASS before USER refused").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("… 1999 more of \"PASS before USER refused\""),
        "{log}"
    );
}

#[test]
fn the_ami_recording_is_not_world_readable() {
    let dir = temp_dir("rec");
    let path = dir.join("rec.ami");
    let mut server = Server::start_with(Options {
        args: vec!["--record-ami".into(), path.display().to_string()],
        ..Options::default()
    });
    assert!(server.wait_log("recording every AMI byte", Duration::from_secs(5)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
    server.signal("TERM");
    let _ = server.wait_exit(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = TcpStream::connect_timeout(&server.addr, Duration::from_millis(10))
        .map(|mut s| s.write(b""));
}
