//! `scripts/test.sh --bench` (which starts the test MariaDB, then `cargo bench`): the real server
//! binary under load, on this machine.
//!
//! 1. memory: the server's resident memory and threads when idle, then with CLIENTS agents logged in;
//! 2. logins: how long CLIENTS agents take to log in, one after another over real sockets and MariaDB;
//! 3. the AMI burst: ami-replay plays the 50-call burst captured from Asterisk 20 five times as fast as
//!    it can (250 calls, 25800 events) while CLIENTS agents are logged in; measured from the replay's
//!    start to the last of the 1000 notifications arriving at the agent the calls ring (SIP/201).
//!
//! CLIENTS is 1000 unless ASTCTI_BENCH_CLIENTS says otherwise. docs/PERFORMANCE.md records one run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::*;
use mysql::prelude::Queryable;

fn status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

fn main() {
    if std::env::var("ASTCTI_TEST_MYSQL_HOST").is_err() {
        eprintln!("benches/server.rs needs the test MariaDB: run scripts/test.sh --bench");
        return;
    }
    let clients: usize = std::env::var("ASTCTI_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let plays = 5u64;

    // Agents: bench_0 … on SIP/5xxxx, plus the burst's agent SIP/201.
    let secret = format!("{:x}", md5::compute(b"bench"));
    let mut db = admin();
    db.query_drop("DELETE FROM cti WHERE USERNAME LIKE 'bench_%'")
        .unwrap();
    db.query_drop("UPDATE cti SET EXT = NULL WHERE EXT = 'SIP/201'")
        .unwrap();
    let rows: Vec<(String, String)> = (0..clients)
        .map(|i| (format!("bench_{i}"), format!("SIP/5{i:04}")))
        .collect();
    db.exec_batch(
        "INSERT INTO cti (USERNAME, SECRET, HOST, EXT) VALUES (?, ?, NULL, ?)",
        rows.iter().map(|(u, e)| (u, &secret, e)),
    )
    .unwrap();
    db.exec_drop(
        "INSERT INTO cti (USERNAME, SECRET, HOST, EXT) VALUES ('bench_agent', ?, NULL, 'SIP/201')",
        (&secret,),
    )
    .unwrap();

    let burst = Capture::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami/asterisk-20.20.1/f-burst-50.ami"),
    )
    .unwrap();
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![burst]);
    cfg.held = true;
    cfg.pace = Pace::Fast;
    cfg.times = plays;
    cfg.rewrite_ids = true;
    let replay = ReplayServer::start(cfg).unwrap();
    let server = Server::start_with(Options {
        manager_port: Some(replay.addr().port()),
        ..Options::default()
    });
    assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id();
    let (rss_idle, threads_idle) = status(pid);

    let start = Instant::now();
    let mut held: Vec<Client> = (0..clients)
        .map(|i| server.login(&format!("bench_{i}"), &secret))
        .collect();
    let login_time = start.elapsed();
    let mut agent = server.login("bench_agent", &secret);
    std::thread::sleep(Duration::from_millis(300));
    let (rss_clients, threads_clients) = status(pid);

    let expected = 200 * plays as usize; // 50 calls x 4 notifications per play
    let start = Instant::now();
    replay.release();
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    agent
        .sock
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tail = String::new();
    while got < expected {
        let n = agent.sock.read(&mut buf).expect("notifications");
        assert!(n > 0, "closed after {got} notifications");
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
        got += tail.matches("</call></event>\n").count();
        if let Some(i) = tail.rfind("</call></event>\n") {
            tail.drain(..i + "</call></event>\n".len());
        }
    }
    let burst_time = start.elapsed();
    let (rss_after, _) = status(pid);
    for c in held.iter_mut() {
        c.send("NOOP\n");
    }

    let events = 5160.0 * plays as f64;
    println!("astcti-server under load ({clients} agents logged in)");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| resident memory, idle | {:.1} MiB, {threads_idle} threads |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| resident memory, {clients} agents logged in | {:.1} MiB, {threads_clients} threads ({:.0} KiB per agent) |",
        rss_clients as f64 / 1024.0,
        (rss_clients.saturating_sub(rss_idle)) as f64 / clients as f64
    );
    println!(
        "| {clients} logins, one after another (USER, PASS, MariaDB lookup) | {:.2} s ({:.0} logins/s) |",
        login_time.as_secs_f64(),
        clients as f64 / login_time.as_secs_f64()
    );
    println!(
        "| {plays} x f-burst-50 at full speed ({} events, {} calls) to the agent's {expected} notifications | {:.0} ms ({:.0} events/s) |",
        events,
        50 * plays,
        burst_time.as_secs_f64() * 1e3,
        events / burst_time.as_secs_f64()
    );
    println!(
        "| resident memory after the burst | {:.1} MiB |",
        rss_after as f64 / 1024.0
    );
}
