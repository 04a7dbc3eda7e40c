//! Reconnect = reconcile, through the real binary: `ami-replay` plays one capture per AMI session
//! (an AMI drop or an Asterisk restart between them), each session answering the server's channel
//! list as that Asterisk would, and the agent's client must get exactly the expected notifications.
//!
//! The expected notifications come from the hand-written files of each part (tests/expected/) and one
//! rule of docs/PROTOCOL.md: a leg the agent was told about that is gone after the reconnect gets one
//! `Hangup` with the fields of its last `Link`; a leg that lives on keeps its fields (and calldata).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer, SessionPlan};
use astcti_server::replay::{channel_list, Capture};
use common::expected::{expected, root};
use common::*;

fn capture(name: &str) -> Capture {
    Capture::load(&root().join("fixtures/ami").join(format!("{name}.ami"))).unwrap()
}

/// The expected wire notifications of one part for `agent`.
fn wire(name: &str, agent: &str) -> Vec<String> {
    expected(
        // `NAME.ctimanager` → `NAME.ctimanager.expected`
        &root().join("expected").join(format!("{name}.expected")),
    )
    .wire
    .into_iter()
    .filter(|(a, _)| a == agent)
    .map(|(_, w)| w)
    .collect()
}

/// The `Hangup` a leg gets when it is gone: the fields of its last `Link`.
fn hangup_after(link: &str) -> String {
    assert!(link.starts_with("<event id=\"Link\">"), "{link}");
    link.replacen("<event id=\"Link\">", "<event id=\"Hangup\">", 1)
}

fn read_all(c: &mut Client, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    let ends = |b: &[u8]| b.windows(16).filter(|w| w == b"</call></event>\n").count();
    while ends(&bytes) < n && Instant::now() < deadline {
        c.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(k) = c.sock.read(&mut buf) {
            if k == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..k]);
        }
    }
    c.sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let text = String::from_utf8(bytes).expect("notifications are UTF-8");
    text.split_inclusive("</call></event>\n")
        .map(str::to_string)
        .collect()
}

/// Plays `parts` as consecutive AMI sessions; session N answers the channel list with the list items
/// of `lists[N]` (None: an empty list, a freshly booted Asterisk). Returns what `agent` received.
fn play(parts: &[&str], lists: &[Option<&str>], agent: &str, want: usize) -> (Vec<String>, Server) {
    let plans: Vec<SessionPlan> = parts
        .iter()
        .zip(lists)
        .map(|(p, l)| SessionPlan {
            captures: vec![capture(p)],
            channels: l.map(|l| channel_list(&capture(l))).unwrap_or_default(),
            ..SessionPlan::default()
        })
        .collect();
    play_plans(plans, agent, want)
}

/// Plays one AMI session per plan; returns what `agent` received.
fn play_plans(plans: Vec<SessionPlan>, agent: &str, want: usize) -> (Vec<String>, Server) {
    let sessions = plans.len() as u64;
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), plans[0].captures.clone());
    cfg.sessions = plans;
    cfg.pace = Pace::Fast;
    cfg.held = true;
    let replay = ReplayServer::start(cfg).unwrap();
    let server = Server::start_with(Options {
        manager_port: Some(replay.addr().port()),
        ..Options::default()
    });
    assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
    let user = unique("recon");
    let row = add_agent_taking(&user, "recon", agent);
    let mut c = server.login(&user, &row);
    replay.release();
    let got = read_all(&mut c, want);
    assert!(
        c.silent_for(Duration::from_millis(500)),
        "nothing more: {}",
        server.stderr_text()
    );
    assert!(replay.stats().sessions >= sessions);
    drop(row);
    (got, server)
}

static EXTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exts() -> std::sync::MutexGuard<'static, ()> {
    EXTS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn check(got: &[String], want: &[String], server: &Server) {
    assert_eq!(
        got,
        want,
        "{}",
        server
            .stderr_text()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn ami_drop_while_asterisk_stays_up_22_pjsip() {
    let _g = exts();
    let (p1, p2) = (
        "asterisk-22.10.1/m-ami-drop-mid-call-part1",
        "asterisk-22.10.1/m-ami-drop-mid-call-part2",
    );
    let first = wire(p1, "PJSIP/201");
    // The call goes on: its Hangup (part 2 #39) carries part 1's Link fields, calldata included;
    // nothing is sent twice.
    let mut want = first.clone();
    want.push(hangup_after(first.last().unwrap()));
    assert_eq!(
        want.last(),
        wire(p2, "PJSIP/201").last(),
        "the same as part 2's file"
    );
    let (got, server) = play(&[p1, p2], &[None, Some(p2)], "PJSIP/201", want.len());
    check(&got, &want, &server);
}

#[test]
fn ami_drop_while_asterisk_stays_up_20() {
    let _g = exts();
    let (p1, p2) = (
        "asterisk-20.20.1/m-reconnect-part1",
        "asterisk-20.20.1/m-reconnect-part2",
    );
    let first = wire(p1, "SIP/201");
    let link = first
        .iter()
        .rev()
        .find(|w| w.starts_with("<event id=\"Link\">"));
    let mut want = first.clone();
    want.push(hangup_after(link.unwrap()));
    let (got, server) = play(&[p1, p2], &[None, Some(p2)], "SIP/201", want.len());
    check(&got, &want, &server);
}

#[test]
fn asterisk_killed_mid_call_then_a_fresh_one_with_no_channels() {
    let _g = exts();
    let (p1, p2) = (
        "asterisk-22.10.1/m-ami-drop-mid-call-part1",
        "asterisk-22.10.1/f-asterisk-restart-mid-call-part2",
    );
    let first = wire(p1, "PJSIP/201");
    // The dead leg's Hangup right after the new session's (empty) list, then the new call as usual.
    let mut want = first.clone();
    want.push(hangup_after(first.last().unwrap()));
    want.extend(wire(p2, "PJSIP/201"));
    let (got, server) = play(&[p1, p2], &[None, None], "PJSIP/201", want.len());
    check(&got, &want, &server);
}

#[test]
fn graceful_restart_sends_no_second_hangup() {
    let _g = exts();
    let (p1, p2) = (
        "asterisk-22.10.1/f-asterisk-restart-mid-call-part1",
        "asterisk-22.10.1/f-asterisk-restart-mid-call-part2",
    );
    let mut want = wire(p1, "PJSIP/201");
    want.extend(wire(p2, "PJSIP/201"));
    let (got, server) = play(&[p1, p2], &[None, None], "PJSIP/201", want.len());
    check(&got, &want, &server);
}

/// A recording of several AMI sessions (the server's own `--record-ami` across a reconnect), one
/// capture per banner.
fn sessions_of(name: &str) -> Vec<Capture> {
    let bytes = std::fs::read(root().join("fixtures/ami").join(format!("{name}.ami"))).unwrap();
    let banner = b"Asterisk Call Manager/";
    let mut starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i..].starts_with(banner) && (i == 0 || bytes[i - 1] == b'\n'))
        .collect();
    starts.push(bytes.len());
    starts
        .windows(2)
        .map(|w| Capture::parse(&bytes[w[0]..w[1]], None))
        .collect()
}

#[test]
fn a_call_answered_while_the_link_was_down_pops_right_after_the_reconnect() {
    let _g = exts();
    // The server's own recording: session 1 (before the cut) saw nothing of the call; session 2's
    // lists show 201 bridged with the customer (calldata in the Status list), then the hangup.
    let name = "asterisk-22.10.1-phones/g-ami-down-call-starts-meanwhile.ctimanager";
    let plans: Vec<SessionPlan> = sessions_of(name)
        .into_iter()
        .map(|c| SessionPlan {
            channels: channel_list(&c),
            captures: vec![c],
            // As recorded: the lists were answered before the events (the Hangup) came; played
            // the other way round the list would be stale and the call would not pop at all.
            lists_first: true,
        })
        .collect();
    assert_eq!(plans.len(), 2);
    assert!(plans[0].channels.is_empty() && !plans[1].channels.is_empty());
    // The late Link (party, context, calldata) as soon as the lists complete, then the Hangup.
    let want = wire(name, "PJSIP/201");
    assert_eq!(want.len(), 2);
    assert!(want[0].starts_with("<event id=\"Link\">") && want[0].contains("31033"));
    let (got, server) = play_plans(plans, "PJSIP/201", want.len());
    check(&got, &want, &server);
}
