//! The soak run (`scripts/soak.sh [SECONDS]`, default one hour; docs/PERFORMANCE.md records the run):
//! the real server binary for SECONDS with
//! - ami-replay playing the Asterisk 20 inbound call (112 events, 4 notifications to SIP/201) in an
//!   endless loop at 1,000 frames/s, with new Uniqueids every play;
//! - the AMI connection dropped every 300 s (ami-replay closes it; the server reconnects);
//! - one steady agent on SIP/201 that reads everything, and 499 more agents logging in and out at
//!   random (each stays 1–20 s; about 250 logged in at a time); every client sends `NOOP` every
//!   1.5 s, as the original client does;
//! - the server's RSS, threads and descriptors sampled every 10 s.
//!
//! It checks that no notification is lost for the reading agent (every leg it is told about gets
//! Newcallerid, Newstate, Link and Hangup, except at most one leg in flight at each AMI drop and the
//! call in progress when the run stops), and that threads and descriptors return to their baseline
//! once the churn stops (no slot leaked); it prints RSS, threads and descriptors over the run. Without ASTCTI_SOAK_SECONDS (set
//! by scripts/soak.sh) it does nothing, so `cargo bench` stays short.
//!
//! `ASTCTI_SOAK_SERVER_ENV="K=V K=V"` adds variables to the server's environment only, e.g.
//! `MALLOC_ARENA_MAX=2`, or heaptrack's preload library to profile the server's heap:
//! `LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=/tmp/soak.raw`
//! (then `heaptrack_interpret < /tmp/soak.raw | gzip > soak.gz; heaptrack_print soak.gz`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::*;
use mysql::prelude::Queryable;

const CHURN_AGENTS: usize = 499;
/// The AMI connection is dropped this often (ASTCTI_SOAK_DROP_EVERY seconds, default 300).
fn drop_every() -> Duration {
    let secs = std::env::var("ASTCTI_SOAK_DROP_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

fn sample(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (field("VmRSS:"), field("Threads:"), fds)
}

/// ASTCTI_SOAK_SERVER_ENV, split into the server's extra variables (leaked: read once per run).
fn server_env() -> Vec<(&'static str, String)> {
    std::env::var("ASTCTI_SOAK_SERVER_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (&*Box::leak(k.to_string().into_boxed_str()), v.to_string()))
        .collect()
}

/// xorshift: deterministic churn.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// USER/PASS; None if the server answers 101 KO (the user is still logged in elsewhere).
fn login(addr: std::net::SocketAddr, user: &str, secret: &str) -> Option<Client> {
    let mut c = Client::connect(addr);
    let expect = |c: &mut Client, want: &[u8]| {
        let mut got = vec![0u8; want.len()];
        c.sock.read_exact(&mut got).is_ok() && got == want
    };
    if !expect(&mut c, b"100 CTISERVER WELCOME\n") {
        return None;
    }
    c.send(&format!("USER {user}\n"));
    if !expect(&mut c, b"100 OK\n") {
        return None;
    }
    c.send(&format!("PASS {secret}\n"));
    expect(&mut c, b"102 OK\n").then_some(c)
}

fn churn(
    addr: std::net::SocketAddr,
    users: Vec<String>,
    secret: String,
    stop: Arc<AtomicBool>,
    seed: u64,
    logins: Arc<AtomicU64>,
) {
    let mut rng = Rng(seed | 1);
    let mut held: Vec<(Instant, Client)> = Vec::new();
    let mut free: Vec<String> = users;
    let mut out: Vec<String> = Vec::new();
    let mut last_noop = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Leave: the client QUITs or just drops the connection.
        let mut i = 0;
        while i < held.len() {
            if held[i].0 <= now {
                let (_, mut c) = held.swap_remove(i);
                if rng.next(2) == 0 {
                    let _ = std::io::Write::write_all(&mut c.sock, b"QUIT\n");
                }
                free.push(out.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if !free.is_empty() && held.len() < (free.len() + held.len()) / 2 {
            let user = free.swap_remove(rng.next(free.len() as u64) as usize);
            match login(addr, &user, &secret) {
                Some(c) => {
                    logins.fetch_add(1, Ordering::Relaxed);
                    held.push((now + Duration::from_millis(1000 + rng.next(19_000)), c));
                    out.push(user);
                }
                // Still logged in on the connection just dropped (the server has not seen its EOF
                // yet: the original protocol's duplicate-login rule): try another one later.
                None => free.push(user),
            }
        }
        // NOOP every 1.5 s, as the original client does (its replies are read and dropped).
        if last_noop.elapsed() >= Duration::from_millis(1500) {
            last_noop = Instant::now();
            let mut sink = [0u8; 512];
            for (_, c) in held.iter_mut() {
                let _ = std::io::Write::write_all(&mut c.sock, b"NOOP\n");
                let _ = c.sock.set_nonblocking(true);
                while matches!(c.sock.read(&mut sink), Ok(n) if n > 0) {}
                let _ = c.sock.set_nonblocking(false);
            }
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

fn main() {
    let Ok(secs) = std::env::var("ASTCTI_SOAK_SECONDS") else {
        eprintln!("benches/soak.rs: skipped (run scripts/soak.sh [SECONDS])");
        return;
    };
    let secs: u64 = secs.parse().expect("ASTCTI_SOAK_SECONDS");
    if std::env::var("ASTCTI_TEST_MYSQL_HOST").is_err() {
        eprintln!("benches/soak.rs needs the test MariaDB: run scripts/soak.sh");
        return;
    }
    let secret = format!("{:x}", md5::compute(b"soak"));
    let mut db = admin();
    db.query_drop("DELETE FROM cti WHERE USERNAME LIKE 'soak%' OR EXT = 'SIP/201'")
        .unwrap();
    db.exec_drop(
        "INSERT INTO cti VALUES ('soak_steady', ?, NULL, 'SIP/201')",
        (&secret,),
    )
    .unwrap();
    let users: Vec<String> = (0..CHURN_AGENTS).map(|i| format!("soak{i}")).collect();
    for u in &users {
        db.exec_drop(
            "INSERT INTO cti VALUES (?, ?, NULL, ?)",
            (u, &secret, format!("SIP/9{u}")),
        )
        .unwrap();
    }
    let capture = Capture::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.ami"),
    )
    .unwrap();
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![capture]);
    cfg.pace = Pace::Rate(1000.0);
    cfg.times = 0;
    cfg.rewrite_ids = true;
    let replay = ReplayServer::start(cfg).unwrap();
    let server = Server::start_with(Options {
        manager_port: Some(replay.addr().port()),
        stats_interval: Some(60),
        env: server_env(),
        ..Options::default()
    });
    let pid = server.child.id();
    let mut steady = server.login("soak_steady", &secret);
    steady
        .sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let base = sample(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let per_thread = CHURN_AGENTS.div_ceil(4);
    let churners: Vec<_> = users
        .chunks(per_thread)
        .enumerate()
        .map(|(i, chunk)| {
            let (addr, chunk, secret, stop, logins) = (
                server.addr,
                chunk.to_vec(),
                secret.clone(),
                stop.clone(),
                logins.clone(),
            );
            std::thread::spawn(move || churn(addr, chunk, secret, stop, 77 + i as u64, logins))
        })
        .collect();
    let start = Instant::now();
    let (mut last_sample, mut last_drop) = (start, start);
    let mut samples = vec![(0u64, sample(pid))];
    let mut drops = 0u64;
    let drop_every = drop_every();
    let mut last_steady_noop = start;
    let mut text = String::new();
    let mut buf = vec![0u8; 1 << 16];
    while start.elapsed() < Duration::from_secs(secs) {
        match steady.sock.read(&mut buf) {
            Ok(0) => panic!(
                "the steady agent was disconnected:\n{}",
                server.stderr_text()
            ),
            Ok(n) => text.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
            Err(_) => {}
        }
        if last_steady_noop.elapsed() >= Duration::from_millis(1500) {
            last_steady_noop = Instant::now();
            let _ = std::io::Write::write_all(&mut steady.sock, b"NOOP\n");
        }
        if last_drop.elapsed() >= drop_every {
            replay.drop_connections();
            drops += 1;
            last_drop = Instant::now();
        }
        if last_sample.elapsed() >= Duration::from_secs(10) {
            samples.push((start.elapsed().as_secs(), sample(pid)));
            last_sample = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    // The legs the steady agent heard of, in order: a leg is the notifications of one uniqueid from
    // its Newcallerid to its Hangup (uniqueids repeat after each AMI drop, when the replay starts
    // over), complete when it is exactly Newcallerid, Newstate, Link, Hangup.
    let complete = ["Newcallerid", "Newstate", "Link", "Hangup"];
    let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut whole, mut partial) = (0usize, Vec::new());
    for n in text
        .replace("100 OK\n", "")
        .split_inclusive("</call></event>\n")
    {
        let kind = n
            .split("id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let uid = n
            .split("<uniqueid>")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or("?");
        if kind == "Newcallerid" {
            if let Some(old) = open.remove(uid) {
                partial.push((uid.to_string(), old));
            }
        }
        let leg = open.entry(uid.to_string()).or_default();
        leg.push(kind.to_string());
        if kind == "Hangup" {
            let leg = open.remove(uid).unwrap_or_default();
            if leg == complete {
                whole += 1;
            } else {
                partial.push((uid.to_string(), leg));
            }
        }
    }
    partial.extend(open);
    let (rss0, th0, fd0) = samples
        .iter()
        .find(|(t, _)| *t >= 60)
        .map(|s| s.1)
        .unwrap_or(samples[0].1);
    let (rss_max, th_max, fd_max) = samples.iter().fold((0, 0, 0), |m, (_, (r, t, f))| {
        (m.0.max(*r), m.1.max(*t), m.2.max(*f))
    });
    let (rss1, th1, fd1) = samples.last().unwrap().1;
    let stats = server
        .stderr_text()
        .lines()
        .rev()
        .find(|l| l.contains("stats: "))
        .unwrap_or("")
        .to_string();
    let final_ = sample(pid);
    println!(
        "soak: {secs} s, {drops} AMI drops, {} churn logins",
        logins.load(Ordering::Relaxed)
    );
    println!(
        "soak: steady agent: {whole} complete legs, {} partial (allowed: {}): {:?}",
        partial.len(),
        drops + 1,
        &partial[..partial.len().min(5)]
    );
    println!("soak: RSS KiB after 60 s {rss0}, max {rss_max}, last sample {rss1}");
    println!("soak: threads after 60 s {th0}, max {th_max}, last sample {th1}; after the churn stopped {}", final_.1);
    println!("soak: descriptors after 60 s {fd0}, max {fd_max}, last sample {fd1}; after the churn stopped {}", final_.2);
    println!("soak: last statistics line: {stats}");
    for (t, (r, th, fd)) in samples.iter().step_by(30) {
        println!("soak: t={t:>5} s  RSS {r} KiB  threads {th}  fds {fd}");
    }
    println!(
        "soak: baseline before the churn: threads {}, descriptors {} (+ up to 3 database \
         connections the login threads open on first use)",
        base.1, base.2
    );
    // Allowed: one leg per AMI drop (the replayer starts its capture over on the new connection, so
    // the call in flight never ends on the AMI side; the reconnect's reconcile sends its Hangup), and
    // the call in progress when the run stops.
    let allowed = drops + 1;
    let ok = partial.len() as u64 <= allowed
        && whole > 0
        && final_.1 <= base.1 + 2
        // The login threads open their database connections as they are first needed.
        && final_.2 <= base.2 + 4;
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
