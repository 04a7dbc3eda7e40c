//! End to end, for every capture: ami-replay plays it to the real server binary, whose agents are
//! logged in over real sockets with real MariaDB users, and each agent's client must receive exactly
//! the hand-written expected notifications (tests/expected/), byte for byte.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::expected::{by_leg, expected, pairs};
use common::*;
use mysql::prelude::Queryable;

fn username(ext: &str) -> String {
    format!("e2e_{}", ext.replace('/', "_"))
}

/// Gives each agent of the expected files a user whose EXT is that agent, as the original client
/// does before it logs in (UPDATE cti SET EXT=…). The rows go and the extensions are given back to
/// whoever held them when the guards drop, however the test ends (another test binary logs in as
/// docs/INSTALL.md's `alice` on PJSIP/201).
fn prepare_users(agents: &[String]) -> (String, Vec<AgentRow>) {
    let mut rows = Vec::new();
    for ext in agents {
        // A row a killed run of this test left behind.
        admin()
            .exec_drop("DELETE FROM cti WHERE USERNAME = ?", (username(ext),))
            .unwrap();
        rows.push(add_agent_taking(&username(ext), "e2e", ext));
    }
    (format!("{:x}", md5::compute(b"e2e")), rows)
}

/// Reads whole notifications until `n` have arrived (or the time is up).
fn read_notifications(c: &mut Client, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let count = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .matches("</call></event>\n")
            .count()
    };
    while count(&buf) < n && Instant::now() < deadline {
        c.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match c.sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8(buf).expect("the wire is ASCII");
    text.split_inclusive("</call></event>\n")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_capture_end_to_end_to_logged_in_agents() {
    let all: Vec<String> = pairs()
        .iter()
        .flat_map(|(_, e)| expected(e).agents)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (secret, _taken) = prepare_users(&all);
    let mut failures = Vec::new();
    for (ami, exp) in pairs() {
        let e = expected(&exp);
        let mut cfg = ReplayConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![Capture::load(&ami).unwrap()],
        );
        cfg.held = true;
        cfg.pace = Pace::Fast;
        let replay = ReplayServer::start(cfg).unwrap();
        let server = Server::start_with(Options {
            manager_port: Some(replay.addr().port()),
            ..Options::default()
        });
        assert!(
            server.wait_log("logged in to Asterisk", Duration::from_secs(10)),
            "{}",
            server.stderr_text()
        );
        let mut clients: Vec<(String, Client)> = e
            .agents
            .iter()
            .map(|ext| (ext.clone(), server.login(&username(ext), &secret)))
            .collect();
        replay.release();
        assert!(
            replay.wait_for(Duration::from_secs(30), |s| s.replays_done == 1),
            "{}: replay",
            ami.display()
        );
        for (ext, client) in clients.iter_mut() {
            let want: Vec<String> = e
                .wire
                .iter()
                .filter(|(a, _)| a == ext)
                .map(|(_, w)| w.clone())
                .collect();
            let got = read_notifications(client, want.len(), Duration::from_secs(10));
            let extra = client.silent_for(Duration::from_millis(100));
            let same = if e.per_leg {
                by_leg(&got) == by_leg(&want) && got.len() == want.len()
            } else {
                got == want
            };
            if !same || !extra {
                failures.push(format!(
                    "{} to {ext}: got {} notifications, expected {}{}\n  first got: {:?}\n  first expected: {:?}",
                    ami.display(),
                    got.len(),
                    want.len(),
                    if extra { "" } else { ", and more bytes after them" },
                    got.iter().zip(&want).find(|(g, w)| g != w).map(|(g, _)| g),
                    got.iter().zip(&want).find(|(g, w)| g != w).map(|(_, w)| w),
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
