//! The real binary's AMI side: `--record-ami`, `--dumpconfig`, and the `ami-replay` binary.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::*;

fn capture(name: &str) -> Capture {
    Capture::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami")
            .join(name),
    )
    .unwrap()
}

fn replay(name: &str) -> ReplayServer {
    ReplayServer::start(ReplayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![capture(name)],
    ))
    .unwrap()
}

#[test]
fn record_ami_round_trip_keeps_every_byte() {
    let mut cfg = ReplayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![capture("asterisk-20.20.1/b-inbound-101-queue-answered.ami")],
    );
    cfg.keep_sent = true;
    let r = ReplayServer::start(cfg).unwrap();
    let dir = temp_dir("rec");
    let file = dir.join("field.ami");
    let server = Server::start_with(Options {
        manager_port: Some(r.addr().port()),
        args: vec!["--record-ami".into(), file.display().to_string()],
        ..Options::default()
    });
    assert!(
        r.wait_for(Duration::from_secs(10), |s| s.replays_done == 1),
        "replay finished"
    );
    let sent = r.stats().sent[0].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let recorded = loop {
        let rec = std::fs::read(&file).unwrap_or_default();
        if rec.len() >= sent.len() || Instant::now() > deadline {
            break rec;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(recorded.len(), sent.len());
    assert!(
        recorded == sent,
        "recorded bytes differ from the bytes ami-replay sent"
    );
    assert!(recorded.starts_with(b"Asterisk Call Manager/9.0.0\r\n"));
    assert!(server.wait_log(
        "logged in to Asterisk (AMI 9.0.0, Asterisk 12+)",
        Duration::from_secs(5)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dumpconfig_logs_each_file_by_action_id() {
    let r = replay("asterisk-20.20.1/a-inbound-100-answered.ami");
    let server = Server::start_with(Options {
        manager_port: Some(r.addr().port()),
        args: vec!["--dumpconfig".into()],
        ..Options::default()
    });
    for file in ["extensions.conf", "sip.conf", "pjsip.conf", "queues.conf"] {
        assert!(
            server.wait_log(
                &format!("--dumpconfig {file}: Success"),
                Duration::from_secs(10)
            ),
            "{file}: {}",
            server.stderr_text()
        );
    }
    let stats = r.stats();
    let files: Vec<&str> = stats
        .actions_named("GetConfig")
        .iter()
        .filter_map(|a| a.get("Filename"))
        .collect();
    assert_eq!(
        files,
        vec!["extensions.conf", "sip.conf", "pjsip.conf", "queues.conf"]
    );
    let logs = std::fs::read_dir(server.dir.join("logs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(logs).unwrap();
    assert!(
        text.contains("Line-000000-000000: replayed-by=ami-replay"),
        "the answer is in the log file"
    );
}

#[test]
fn orig_from_a_logged_in_client_reaches_asterisk() {
    let r = replay("asterisk-1.4/synthetic-demo100.ami");
    let user = unique("orig");
    let ext = unique("SIP/");
    let secret = add_agent(&user, "pw", Some(&ext), None);
    let server = Server::start_with(Options {
        manager_port: Some(r.addr().port()),
        ..Options::default()
    });
    assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
    let mut c = server.login(&user, &secret);
    c.send("ORIG 202|astctidemo|1\n");
    c.expect(b"100 OK\n");
    // Injection attempts: answered 100 OK, nothing sent.
    c.send("ORIG 202\rAction: Command|astctidemo|1\n");
    c.expect(b"100 OK\n");
    c.send(&format!("ORIG {}|astctidemo|1\n", "9".repeat(81)));
    c.expect(b"100 OK\n");
    c.send_bytes(b"ORIG 202\0|astctidemo|1\n");
    c.expect(b"100 OK\n");
    // An LF ends the line: "ORIG 202" alone is malformed (101 ERROR, as the original), the rest is
    // an unknown command; neither reaches Asterisk.
    c.send("ORIG 202\nAction: Command|astctidemo|1\n");
    c.expect(b"101 ERROR\n");
    assert!(r.wait_for(Duration::from_secs(5), |s| !s
        .actions_named("Originate")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let stats = r.stats();
    let origs = stats.actions_named("Originate");
    assert_eq!(origs.len(), 1);
    assert_eq!(origs[0].get("Channel"), Some(ext.as_str()));
    assert_eq!(origs[0].get("Callerid"), Some(ext.as_str()));
    assert_eq!(origs[0].get("Exten"), Some("202"));
    assert!(server.wait_log("Originate successfully queued", Duration::from_secs(5)));
}

/// An agent's client (or whoever has its password) sends 5,000 ORIGs in one write, and numbers
/// holding dialplan syntax: only the agent's burst (`CTI_ORIGINATE_BURST`, 5 by default) becomes
/// calls on the PBX, every ORIG is answered `100 OK` (the original client logs out on a 101), and
/// the refusals are one log line and a summary, not 4,995.
#[test]
fn an_orig_flood_puts_only_the_agents_burst_on_the_pbx_and_dialplan_syntax_nothing() {
    let r = replay("asterisk-1.4/synthetic-demo100.ami");
    let (user, probe) = (unique("flood"), unique("probe"));
    let (ext, probe_ext) = (unique("SIP/"), unique("SIP/"));
    let secret = add_agent(&user, "pw", Some(&ext), None);
    let probe_secret = add_agent(&probe, "pw", Some(&probe_ext), None);
    let server = Server::start_with(Options {
        manager_port: Some(r.addr().port()),
        ..Options::default()
    });
    assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
    let mut c = server.login(&user, &secret);
    let mut flood = String::new();
    for bad in [
        "202&SIP/trunk/0090|astctidemo|1",
        "202,,tTL(1)|astctidemo|1",
        "${SHELL(id)}|astctidemo|1",
        "202|from-trunk,s|1",
    ] {
        flood.push_str(&format!("ORIG {bad}\n"));
    }
    for i in 0..5000 {
        flood.push_str(&format!("ORIG 9{i:04}|astctidemo|1\n"));
    }
    c.send(&flood);
    c.expect("100 OK\n".repeat(5004).as_bytes());
    // Another agent's ORIG after all of those were answered: once it reaches Asterisk, everything
    // the flood let through has (one dispatcher, one AMI connection, in order).
    let mut p = server.login(&probe, &probe_secret);
    p.send("ORIG 777|astctidemo|1\n");
    p.expect(b"100 OK\n");
    assert!(r.wait_for(Duration::from_secs(10), |s| s
        .actions_named("Originate")
        .iter()
        .any(|a| a.get("Exten") == Some("777"))));
    let stats = r.stats();
    let origs: Vec<_> = stats
        .actions_named("Originate")
        .into_iter()
        .filter(|a| a.get("Channel") == Some(ext.as_str()))
        .map(|a| a.get("Exten").unwrap_or_default().to_string())
        .collect();
    assert_eq!(origs, ["90000", "90001", "90002", "90003", "90004"]);
    let log = server.stderr_text();
    assert!(log.contains("exten contains \"&\""), "{log}");
    let refusals = log
        .lines()
        .filter(|l| l.contains("CTI_ORIGINATE_PER_MINUTE"))
        .count();
    assert!(
        (1..=3).contains(&refusals),
        "{refusals} log lines for the refusals"
    );
}

#[test]
fn ami_replay_binary_serves_a_capture_and_refuses_non_loopback() {
    let bin = env!("CARGO_BIN_EXE_ami-replay");
    let out = Command::new(bin)
        .args(["--listen", "0.0.0.0:0", "x.ami"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--rewrite-ids"));

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ami/asterisk-1.4/synthetic-demo100.ami");
    let mut child = Command::new(bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pace",
            "fast",
            "--quiet",
        ])
        .arg(&fixture)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "ami-replay did not listen");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::io::{Read, Write};
    let mut sock = sock;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(
        b"Action: Login\r\nActionID: 1\r\nUsername: ctimanager\r\nSecret: ctimanager\r\n\r\n",
    )
    .unwrap();
    let expected_tail = std::fs::read(&fixture).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(&expected_tail) {
        let n = sock.read(&mut buf).expect("replayed bytes");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"Asterisk Call Manager/1.0\r\nResponse: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"));
    let _ = child.kill();
    let _ = child.wait();
}

/// A fake Asterisk that logs the server in, then sends `frames` (any bytes at all).
fn hostile_asterisk(frames: Vec<u8>) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"Asterisk Call Manager/9.0.0\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut id = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.strip_prefix("ActionID: ") {
                id = v.trim().to_string();
            }
            if line == "\r\n" {
                break;
            }
        }
        let ok = format!(
            "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
        );
        s.write_all(ok.as_bytes()).unwrap();
        let _ = s.write_all(&frames);
        std::thread::sleep(Duration::from_millis(500));
    });
    (addr, t)
}

#[test]
fn hostile_ami_input_never_takes_the_server_down() {
    // Real event names with missing, empty, repeated and absurd headers, a huge line, binary bytes.
    let mut junk = Vec::new();
    let names = [
        "Newstate",
        "DialBegin",
        "DialEnd",
        "BridgeEnter",
        "BridgeLeave",
        "Hangup",
        "Newexten",
        "VarSet",
        "Link",
        "Bridge",
        "Dial",
        "LocalBridge",
        "AgentCalled",
        "Rename",
        "CoreShowChannel",
        "Newchannel",
    ];
    let keys = [
        "Uniqueid",
        "DestUniqueid",
        "Channel",
        "DestChannel",
        "Linkedid",
        "ChannelStateDesc",
        "State",
        "BridgeUniqueid",
        "Uniqueid1",
        "Uniqueid2",
        "Application",
        "AppData",
        "Variable",
        "Value",
        "SubEvent",
        "DialStatus",
        "Newname",
    ];
    let mut x: u32 = 7;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as usize
    };
    for _ in 0..3000 {
        junk.extend_from_slice(format!("Event: {}\r\n", names[next() % names.len()]).as_bytes());
        for _ in 0..next() % 8 {
            let v = match next() % 6 {
                0 => String::new(),
                1 => "Ringing".into(),
                2 => "Set".into(),
                3 => format!("calldata={}", next() % 3),
                4 => format!("SIP/201-{:08x}", next() % 4),
                _ => format!("{}", next() % 5),
            };
            junk.extend_from_slice(format!("{}: {v}\r\n", keys[next() % keys.len()]).as_bytes());
        }
        if next() % 50 == 0 {
            junk.extend_from_slice(&[0xff, 0xfe, 0x00, b':', 0x80, b'\r', b'\n']);
        }
        junk.extend_from_slice(b"\r\n");
    }
    junk.extend_from_slice(&vec![b'A'; 100_000]);
    junk.extend_from_slice(b"\r\n\r\n");
    let (addr, asterisk) = hostile_asterisk(junk);
    let user = unique("calm");
    let secret = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let server = Server::start_with(Options {
        manager_port: Some(addr.port()),
        ..Options::default()
    });
    assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
    asterisk.join().unwrap();
    let mut c = server.login(&user, &secret);
    c.send("NOOP\n");
    c.expect(b"100 OK\n");
    assert!(
        server.wait_log(
            "AMI frame discarded (line too long)",
            Duration::from_secs(5)
        ),
        "{}",
        server.stderr_text()
    );
}
