//! A call centre's morning (issue 21): 500 `astcti-client` processes (the command line, each its
//! own agent) logged in to the real server, which stands on a MariaDB of this test's own. Then one
//! client's connection goes half-open, the server is restarted, the database freezes for 30 s
//! while everyone logs in again after a second restart — and every client is logged in again within
//! a bound each time, none exits. A client never goes silently offline once it was logged in.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::expected::root;
use common::private_db::{sh, PrivateDb};
use common::*;

const CLIENT: &str = env!("CARGO_BIN_EXE_astcti-client");

/// Agents, one client process each.
const AGENTS: usize = 500;

/// How long every client may take to be logged in again after a fault has ended: the client's
/// longest pause (30 s, plus up to half of it as jitter) and the server's `CTI_CLIENT_TIMEOUT`
/// (below) for the half-open one, with room for a loaded machine.
const AGAIN_WITHIN: Duration = Duration::from_secs(120);

/// The server's silence limit here: how long it keeps a half-open connection's login.
const CLIENT_TIMEOUT: u64 = 15;

fn settings(dir: &Path, port: u16, user: &str) -> PathBuf {
    let path = dir.join("AstCTIClient.config");
    std::fs::write(
        &path,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<LocalAppSettings className="AstCTIClient.LocalAppSettings">
  <Host>127.0.0.1</Host>
  <Port>{port}</Port>
  <SocketTimeout>3000</SocketTimeout>
  <Username>{user}</Username>
  <Password>pw</Password>
  <PhoneExt>SIP/{user}</PhoneExt>
</LocalAppSettings>
"#
        ),
    )
    .unwrap();
    path
}

/// One agent's client; its trace (stdout and stderr) in a file of its own.
struct Agent {
    child: Child,
    trace: PathBuf,
}

impl Agent {
    fn start(dir: &Path, port: u16, user: &str) -> Agent {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = settings(dir, port, user);
        let trace = dir.join("trace.txt");
        let out = std::fs::File::create(&trace).unwrap();
        let child = Command::new(CLIENT)
            .arg("--settings")
            .arg(&cfg)
            .env("XDG_RUNTIME_DIR", dir)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Agent { child, trace }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    fn logins(&self) -> usize {
        self.text().matches("LOGIN    ").count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that no client has exited: a client must never stop by itself once logged in.
fn none_exited(agents: &mut [Agent]) {
    for (i, a) in agents.iter_mut().enumerate() {
        if let Ok(Some(status)) = a.child.try_wait() {
            panic!("client {i} exited ({status}): {}", a.text());
        }
    }
}

/// Waits until every client has logged in at least `n` times; how long that took.
fn all_logged_in(agents: &mut [Agent], n: usize, what: &str, server: &Server) -> Duration {
    let t0 = Instant::now();
    loop {
        none_exited(agents);
        let behind: Vec<usize> = (0..agents.len())
            .filter(|&i| agents[i].logins() < n)
            .collect();
        if behind.is_empty() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < AGAIN_WITHIN,
            "{what}: {} of {} clients not logged in again within {AGAIN_WITHIN:?}; the first: {}\n\
             server: {}",
            behind.len(),
            agents.len(),
            agents[behind[0]].text(),
            server
                .stderr_text()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A TCP relay in front of the server whose connections can be made half-open: once `cut` is
/// called, the connections open then forward nothing more either way and are never closed (a
/// dead NAT entry or an unplugged cable); connections opened later relay as before.
struct Relay {
    port: u16,
    cut_before: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_before = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut, halt) = (cut_before.clone(), stop.clone());
        std::thread::spawn(move || {
            for (n, down) in listener.incoming().enumerate() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(down) = down else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let generation = n as u64 + 1;
                for (from, to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    let (cut, halt) = (cut.clone(), halt.clone());
                    std::thread::spawn(move || pump(from, to, generation, &cut, &halt));
                }
            }
        });
        Relay {
            port,
            cut_before,
            stop,
        }
    }

    /// Every connection open now goes half-open.
    fn cut(&self, connections_so_far: u64) {
        self.cut_before.store(connections_so_far, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either closes, or until this connection is cut: then it holds both
/// sockets open, silent, until the test ends.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    generation: u64,
    cut: &AtomicU64,
    halt: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    while !halt.load(Ordering::SeqCst) {
        if generation <= cut.load(Ordering::SeqCst) {
            // Half-open: nothing passes, nothing is closed.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if generation <= cut.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn five_hundred_clients_survive_restarts_a_frozen_database_and_a_half_open_connection() {
    let db = PrivateDb::start();
    let users: Vec<String> = (0..=AGENTS).map(|i| format!("fleet{i}")).collect();
    let rows: Vec<String> = users
        .iter()
        .map(|u| format!("('{u}', MD5('pw'), NULL, 'SIP/{u}')"))
        .collect();
    let sql = db.dir.join("fleet.sql");
    std::fs::write(&sql, format!("INSERT INTO cti VALUES {};", rows.join(","))).unwrap();
    sh(
        &format!(
            "mariadb_root \"$DB_DIR\" {} < {}",
            common::db().db,
            sql.display()
        ),
        &db.dir,
    );

    // Asterisk: a held replay (no call; it answers the logins and the channel lists).
    let cap =
        Capture::load(&root().join("fixtures/ami/asterisk-22.10.1/a-inbound-100-answered.ami"))
            .unwrap();
    let mut rc = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![cap]);
    rc.held = true;
    let replay = ReplayServer::start(rc).unwrap();
    let port = free_port();
    let start_server = || {
        let s = Server::start_with(Options {
            db_port: Some(db.port),
            manager_port: Some(replay.addr().port()),
            mysql_timeout: Some(2),
            ctiserver: vec![
                ("CTI_SERVER_LISTEN_PORT", port.to_string()),
                ("CTI_CLIENT_TIMEOUT", CLIENT_TIMEOUT.to_string()),
            ],
            ..Options::default()
        });
        assert!(s.wait_log("logged in to Asterisk", Duration::from_secs(30)));
        s
    };
    let mut server = start_server();
    let relay = Relay::start(port);

    let base = temp_dir("fleet");
    let mut agents: Vec<Agent> = users[..AGENTS]
        .iter()
        .enumerate()
        .map(|(i, u)| Agent::start(&base.join(i.to_string()), port, u))
        .collect();
    // The last agent reaches the server through the relay.
    let mut through_relay = vec![Agent::start(
        &base.join("relay"),
        relay.port,
        &users[AGENTS],
    )];
    let took = all_logged_in(&mut agents, 1, "first login", &server);
    all_logged_in(&mut through_relay, 1, "first login", &server);
    eprintln!("{AGENTS} clients logged in within {took:?}");

    // Half-open: the relay's connection forwards nothing more, closes nothing. The client notices
    // the silence (no answer to its NOOPs), connects again; the server still holds the login
    // ("already logged in") until CTI_CLIENT_TIMEOUT of silence; the client keeps trying and is
    // logged in again.
    relay.cut(1);
    let took = all_logged_in(&mut through_relay, 2, "half-open connection", &server);
    let text = through_relay[0].text();
    assert!(text.contains("is already logged in"), "{text}");
    eprintln!("half-open: logged in again within {took:?}");

    // Restart: the server killed and started again on the same port.
    drop(server);
    server = start_server();
    let took = all_logged_in(&mut agents, 2, "server restart", &server);
    eprintln!("restart: every client logged in again within {took:?}");

    // Restarted again, and the database freezes for 30 s right as the new server is up (it needs
    // the database to start): the clients' logins come in during the freeze (their first pause
    // after the restart is about a second) and are refused (after MYSQL_TIMEOUT, then at once),
    // as a wrong password would be; no client gives up.
    drop(server);
    server = start_server();
    db.signal("STOP");
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_secs(30) {
        none_exited(&mut agents);
        std::thread::sleep(Duration::from_millis(500));
    }
    let waiting = agents.iter().filter(|a| a.logins() < 3).count();
    eprintln!("after 30 s of frozen database, {waiting} clients not logged in yet");
    db.signal("CONT");
    let took = all_logged_in(&mut agents, 3, "frozen database", &server);
    eprintln!("frozen database: every client logged in again within {took:?} of the thaw");
    none_exited(&mut agents);
    none_exited(&mut through_relay);
    drop(through_relay);
    drop(agents);
    drop(relay);
    drop(server);
}
