//! Database faults against a real MariaDB of this test's own (started with scripts/mariadb.sh on a
//! free port, data in a temporary directory): frozen with SIGSTOP, stopped, restarted. Logins must
//! be answered within MYSQL_TIMEOUT every time, fail fast while the database is known to be down,
//! and succeed again once it is back, without restarting the server. First, in the same run (one
//! private database per test binary), the login connections' quota: each is replaced after
//! `USES_PER_CONNECTION` queries, and no more than `MYSQL_POOL_SIZE` are ever open.

mod common;

use std::time::{Duration, Instant};

use common::private_db::{sh, PrivateDb};
use common::*;

/// One login attempt: (logged in, how long the answer took).
fn try_login(server: &Server) -> (bool, Duration) {
    try_login_at(server.addr)
}

/// One login attempt at `addr` (from any thread): the answer is 102 OK or 101 KO; a session that
/// logged in quits cleanly.
fn try_login_at(addr: std::net::SocketAddr) -> (bool, Duration) {
    let mut c = Client::connect(addr);
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send("USER fault\n");
    c.expect(b"100 OK\n");
    let t = Instant::now();
    c.send(&format!("PASS {:x}\n", md5::compute(b"pw")));
    let mut reply = [0u8; 7];
    std::io::Read::read_exact(&mut c.sock, &mut reply).expect("an answer");
    let took = t.elapsed();
    let ok = &reply == b"102 OK\n";
    assert!(
        ok || &reply == b"101 KO\n",
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    if ok {
        c.send("QUIT\n");
        c.expect(b"900 BYE\n");
        assert!(c.closed_within(Duration::from_secs(5)));
    }
    (ok, took)
}

/// Tries to log in every 200 ms until it works; how long that took.
fn login_works_within(server: &Server, timeout: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if try_login(server).0 {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn frozen_stopped_and_restarted_database_answer_within_the_bound_and_recover() {
    const TIMEOUT: u64 = 2;
    let db = PrivateDb::start();
    let server = Server::start_with(Options {
        db_port: Some(db.port),
        mysql_timeout: Some(TIMEOUT as u32),
        ..Options::default()
    });
    assert!(try_login(&server).0, "{}", server.stderr_text());

    // Quota: 2,100 logins one after another reuse one connection, replaced twice (after its 1,000th
    // query); without the quota none would be opened, and the driver's 4 MiB read buffer of that
    // one connection would slowly become resident (docs/PERFORMANCE.md, "Soak").
    let status = |what: &str| -> u64 {
        let out = sh(
            &format!("mariadb_root \"$DB_DIR\" -N -e \"{what}\""),
            &db.dir,
        );
        out.split_whitespace().last().unwrap().parse().unwrap()
    };
    let server_conns = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='{}'",
        common::db().user
    );
    let opened = || status("SHOW GLOBAL STATUS LIKE 'Connections'");
    let before = opened();
    for n in 0..2100 {
        assert!(try_login(&server).0, "login {n}: {}", server.stderr_text());
    }
    let after = opened();
    // `after` counts the two `mariadb_root` sessions of these checks too.
    assert!(
        (before + 2 + 1..=before + 3 + 1).contains(&after),
        "connections opened during 2,100 logins: {}",
        after - before - 1
    );
    assert_eq!(status(&server_conns), 1, "one connection kept");

    // Frozen: four logins at once are each answered 101 KO within MYSQL_TIMEOUT (not one after
    // another), then the next fails fast.
    db.signal("STOP");
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || try_login_at(addr))
        })
        .collect();
    for t in tries {
        let (ok, took) = t.join().unwrap();
        assert!(!ok);
        assert!(
            took < Duration::from_millis(TIMEOUT * 1000 + 1500),
            "answered after {took:?}"
        );
    }
    let (ok, took) = try_login(&server);
    assert!(!ok);
    assert!(took < Duration::from_millis(500), "fails fast: {took:?}");
    assert!(server
        .stderr_text()
        .contains("logins fail fast until it answers again"));

    // Thawed: logins work again, no restart.
    db.signal("CONT");
    let back = login_works_within(&server, Duration::from_secs(10));
    assert!(back.is_some(), "{}", server.stderr_text());

    // Stopped: answered at once.
    sh("mariadb_stop \"$DB_DIR\"", &db.dir);
    let (ok, took) = try_login(&server);
    assert!(!ok);
    assert!(took < Duration::from_secs(TIMEOUT), "{took:?}");

    // Restarted on the same port: logins work again.
    sh(&format!("mariadb_start \"$DB_DIR\" {}", db.port), &db.dir);
    assert!(
        login_works_within(&server, Duration::from_secs(15)).is_some(),
        "{}",
        server.stderr_text()
    );
    assert!(server.stderr_text().contains("the database answers again"));
}
