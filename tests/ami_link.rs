//! The `ami-link` thread against `ami-replay` playing real captures on 127.0.0.1.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::frame::{Decoder, Frame, Item};
use astcti_server::ami::link::{self, AmiCommand, AmiInput, Backlog, LinkChannels, LinkConfig};
use astcti_server::ami::session::SessionConfig;
use astcti_server::ami::OrigRequest;
use astcti_server::replay::server::{ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ami")
        .join(name)
}

fn capture(name: &str) -> Capture {
    Capture::load(&fixture(name)).unwrap()
}

fn replay(cfg: ReplayConfig) -> ReplayServer {
    ReplayServer::start(cfg).expect("start ami-replay")
}

fn replay_of(name: &str) -> ReplayServer {
    replay(ReplayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![capture(name)],
    ))
}

/// What the link's one ordered channel said, with session numbers counted from its `Up`s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AmiStatus {
    Up {
        session: u64,
        dialect: Dialect,
        version: String,
    },
    Down {
        session: u64,
    },
}

#[derive(Default)]
struct Demux {
    session: u64,
    statuses: VecDeque<AmiStatus>,
    frames: VecDeque<(u64, Frame)>,
}

struct Link {
    input: Receiver<AmiInput>,
    backlog: Backlog,
    seen: RefCell<Demux>,
    commands: Sender<AmiCommand>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    fn start(addr: SocketAddr, secret: &str, idle: Duration) -> Link {
        Self::start_host(&addr.ip().to_string(), addr.port(), secret, idle)
    }

    fn start_host(host: &str, port: u16, secret: &str, idle: Duration) -> Link {
        Self::start_bounded(host, port, secret, idle, 1 << 30)
    }

    fn start_bounded(
        host: &str,
        port: u16,
        secret: &str,
        idle: Duration,
        queue_bytes: usize,
    ) -> Link {
        let (input_tx, input) = unbounded();
        let backlog = Backlog::default();
        let (commands, commands_rx) = bounded(16);
        let (stop, stop_rx) = bounded(0);
        let mut cfg = LinkConfig::new(
            host,
            port,
            SessionConfig {
                user: "ctimanager".into(),
                secret: secret.into(),
                idle,
                dumpconfig: false,
            },
        );
        cfg.backoff_min = Duration::from_millis(300);
        let ch = LinkChannels {
            input: input_tx,
            backlog: backlog.clone(),
            queue_bytes,
            counters: Default::default(),
            commands: commands_rx,
            shutdown: stop_rx,
            record: None,
        };
        let thread = std::thread::spawn(move || link::run(cfg, ch));
        Link {
            input,
            backlog,
            seen: RefCell::default(),
            commands,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Takes one input from the link (false: none within `wait`).
    fn pump(&self, wait: Duration) -> bool {
        let Ok(input) = self.input.recv_timeout(wait) else {
            return false;
        };
        let mut d = self.seen.borrow_mut();
        let session = d.session;
        match input {
            AmiInput::Up { dialect, version } => {
                d.session += 1;
                let session = d.session;
                d.statuses.push_back(AmiStatus::Up {
                    session,
                    dialect,
                    version,
                });
            }
            AmiInput::Down => d.statuses.push_back(AmiStatus::Down { session }),
            AmiInput::Lost { frames } => panic!("{frames} frames lost"),
            AmiInput::Frames { frames, cost } => {
                self.backlog.done(cost, Vec::new());
                d.frames.extend(frames.into_iter().map(|f| (session, f)));
            }
        }
        true
    }

    fn try_status(&self, timeout: Duration) -> Option<AmiStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.seen.borrow_mut().statuses.pop_front() {
                return Some(s);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.pump(left) && Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn next_status(&self, timeout: Duration) -> AmiStatus {
        self.try_status(timeout).expect("no AMI status in time")
    }

    /// Frames of `session` until `n` have arrived.
    fn frames_of(&self, session: u64, n: usize, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let next = self.seen.borrow_mut().frames.pop_front();
            match next {
                // The list that answers the link's own CoreShowChannels is not part of the capture.
                Some((_, f))
                    if f.action_id()
                        .is_some_and(|id| id.starts_with("astcti-channels")) => {}
                Some((s, f)) if s == session => out.push(f),
                Some(_) => {}
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.pump(left) && Instant::now() >= deadline {
                        panic!("only {} of {n} frames arrived", out.len());
                    }
                }
            }
        }
        out
    }

    /// Frames of `session` that arrive within `wait` (after what was already taken).
    fn more_frames_of(&self, session: u64, wait: Duration) -> usize {
        while self.pump(wait) {}
        self.seen
            .borrow()
            .frames
            .iter()
            .filter(|(s, _)| *s == session)
            .count()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The capture's events as the decoder sees them.
fn events_of(name: &str) -> Vec<Frame> {
    let mut d = Decoder::default();
    d.push(&std::fs::read(fixture(name)).unwrap());
    std::iter::from_fn(|| d.next_item())
        .filter_map(|i| match i {
            Item::Frame(f) if f.event().is_some() => Some(f),
            _ => None,
        })
        .collect()
}

const T: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);

#[test]
fn login_ok_then_every_event_in_order() {
    let name = "asterisk-20.20.1/a-inbound-100-answered.ami";
    let r = replay_of(name);
    let link = Link::start(r.addr(), "ctimanager", IDLE);
    assert_eq!(
        link.next_status(T),
        AmiStatus::Up {
            session: 1,
            dialect: Dialect::V12Plus,
            version: "9.0.0".into()
        }
    );
    let expected = events_of(name);
    assert_eq!(expected.len(), 112);
    // The replayer's own FullyBooted after the login, then the capture's 112 events.
    let got = link.frames_of(1, 113, T);
    assert_eq!(got[0].event(), Some("FullyBooted"));
    assert_eq!(&got[1..], expected.as_slice());
    let login = &r.stats().actions[0].1;
    assert_eq!(login.get("Action"), Some("Login"));
    assert_eq!(login.action_id(), Some("astcti-login-1"));
    assert_eq!(r.stats().sessions, 1);
}

#[test]
fn banner_versions_give_the_dialect() {
    for (banner, dialect) in [
        ("1.0", Dialect::V1_4),
        ("1.1", Dialect::V1_6To11),
        ("1.3", Dialect::V1_6To11),
        ("2.10.6", Dialect::V12Plus),
    ] {
        let mut cfg = ReplayConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![capture("asterisk-1.4/synthetic-demo100.ami")],
        );
        cfg.banner = banner.into();
        cfg.times = 0;
        cfg.pace = astcti_server::replay::server::Pace::Rate(5.0);
        let r = replay(cfg);
        let link = Link::start(r.addr(), "ctimanager", IDLE);
        assert_eq!(
            link.next_status(T),
            AmiStatus::Up {
                session: 1,
                dialect,
                version: banner.into()
            }
        );
        // (The events that follow correct a wrong claim in the router, not here: see route.rs.)
    }
}

#[test]
fn failed_login_logs_asterisks_answer_and_backs_off() {
    let r = replay_of("asterisk-20.20.1/a-inbound-100-answered.ami");
    let start = Instant::now();
    let link = Link::start(r.addr(), "wrong", IDLE);
    assert_eq!(
        link.try_status(Duration::from_millis(2500)),
        None,
        "never Up"
    );
    let failed = r.stats().logins_failed;
    // Backoff 0.3 s, 0.6 s, 1.2 s: attempts at about 0, 0.3, 0.9, 2.1 s.
    assert!(
        (2..=4).contains(&failed),
        "{failed} attempts in {:?}",
        start.elapsed()
    );
    assert_eq!(r.stats().logins_ok, 0);
    drop(link);
}

#[test]
fn drop_in_the_middle_of_a_frame_then_exactly_one_new_session() {
    let name = "asterisk-11.25.3/a-inbound-100-answered.ami";
    let expected = events_of(name);
    let cap = capture(name);
    // Cut 10 bytes into the 6th replayed frame.
    let cut: usize = cap.frames[..5].iter().map(|f| f.bytes.len()).sum::<usize>() + 10;
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![cap]);
    cfg.drop_after = Some(cut);
    let r = replay(cfg);
    let link = Link::start(r.addr(), "ctimanager", IDLE);
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up { session: 1, .. }
    ));
    let first = link.frames_of(1, 6, T);
    assert_eq!(first[0].event(), Some("FullyBooted"), "the replayer's");
    assert_eq!(
        &first[1..],
        &expected[..5],
        "the complete frames before the cut, nothing of the cut one"
    );
    assert_eq!(link.next_status(T), AmiStatus::Down { session: 1 });
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up { session: 2, .. }
    ));
    let second = link.frames_of(2, expected.len() + 1, T);
    assert_eq!(&second[1..], expected.as_slice());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(r.stats().sessions, 2, "exactly one new session");
    assert_eq!(
        link.more_frames_of(1, Duration::from_millis(100)),
        0,
        "no half frame from session 1 ever arrives"
    );
}

#[test]
fn asterisk_not_running_at_startup() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let link = Link::start(addr, "ctimanager", IDLE);
    assert_eq!(link.try_status(Duration::from_millis(1000)), None);
    let mut cfg = ReplayConfig::new(addr, vec![capture("asterisk-1.4/real-call-from-queue.ami")]);
    cfg.times = 1;
    let r = replay(cfg);
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up {
            session: 1,
            dialect: Dialect::V1_4,
            ..
        }
    ));
    assert_eq!(link.frames_of(1, 16, T).len(), 16);
    assert_eq!(r.stats().sessions, 1);
}

#[test]
fn missing_pong_is_a_dead_link() {
    let mut cfg = ReplayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![capture("asterisk-1.4/synthetic-demo100.ami")],
    );
    cfg.answer_ping = false;
    let r = replay(cfg);
    let start = Instant::now();
    let link = Link::start(r.addr(), "ctimanager", Duration::from_secs(1));
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up { session: 1, .. }
    ));
    assert_eq!(link.next_status(T), AmiStatus::Down { session: 1 });
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "{took:?}: Ping after 1 s idle, 1 s for the Pong"
    );
    let pings = r.stats().actions_named("Ping").len();
    assert_eq!(pings, 1);
    assert!(
        matches!(link.next_status(T), AmiStatus::Up { session: 2, .. }),
        "reconnects"
    );
}

#[test]
fn answered_pings_keep_the_link_up() {
    let r = replay_of("asterisk-1.4/synthetic-demo100.ami");
    let link = Link::start(r.addr(), "ctimanager", Duration::from_millis(1000));
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up { session: 1, .. }
    ));
    assert_eq!(
        link.try_status(Duration::from_millis(3500)),
        None,
        "stays up"
    );
    let pings = r.stats().actions_named("Ping").len();
    assert!(pings >= 2, "{pings}");
}

#[test]
fn originate_commands_reach_asterisk_with_the_original_headers() {
    let r = replay_of("asterisk-1.4/synthetic-demo100.ami");
    let link = Link::start(r.addr(), "ctimanager", IDLE);
    assert!(matches!(link.next_status(T), AmiStatus::Up { .. }));
    link.commands
        .send(AmiCommand::Originate {
            ext: "SIP/201".into(),
            request: OrigRequest {
                exten: "202".into(),
                context: "astctidemo".into(),
                priority: "1".into(),
            },
        })
        .unwrap();
    assert!(r.wait_for(T, |s| !s.actions_named("Originate").is_empty()));
    let stats = r.stats();
    let orig = stats.actions_named("Originate")[0];
    let keys: Vec<(&str, &str)> = orig.headers().collect();
    assert_eq!(
        keys,
        vec![
            ("Action", "Originate"),
            ("ActionID", "astcti-orig-1-2"),
            ("Channel", "SIP/201"),
            ("Context", "astctidemo"),
            ("Exten", "202"),
            ("Priority", "1"),
            ("Callerid", "SIP/201"),
            ("Async", "true"),
        ]
    );
}

#[test]
fn host_names_are_resolved_and_every_address_tried() {
    // "localhost" may resolve to ::1 first; the replayer listens on 127.0.0.1 only.
    let r = replay_of("asterisk-1.4/synthetic-demo100.ami");
    let link = Link::start_host("localhost", r.addr().port(), "ctimanager", IDLE);
    assert!(matches!(
        link.next_status(T),
        AmiStatus::Up { session: 1, .. }
    ));
}

/// Plays the 2 MB burst at full speed into a link with a `queue_bytes` bound while the "dispatcher"
/// (this test) reads nothing, then drains everything. Returns (frames delivered, frames reported
/// lost, number of Lost inputs, CoreShowChannels actions Asterisk received).
fn burst_into_a_stalled_dispatcher(queue_bytes: usize) -> (u64, u64, usize, usize) {
    let name = "asterisk-20.20.1/f-burst-50.ami";
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![capture(name)]);
    cfg.pace = astcti_server::replay::server::Pace::Fast;
    let r = replay(cfg);
    let addr = r.addr();
    let link = Link::start_bounded(
        &addr.ip().to_string(),
        addr.port(),
        "ctimanager",
        IDLE,
        queue_bytes,
    );
    assert!(r.wait_for(T, |s| s.replays_done == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        link.backlog.get() <= queue_bytes.max(64 * 1024) * 2,
        "bounded: {}",
        link.backlog.get()
    );
    let (mut frames, mut lost, mut losts) = (0u64, 0u64, 0usize);
    while let Ok(input) = link.input.recv_timeout(Duration::from_secs(1)) {
        match input {
            AmiInput::Frames { frames: f, cost } => {
                // The answers to the link's own channel lists are not part of the capture.
                frames += f
                    .iter()
                    .filter(|f| {
                        !f.action_id()
                            .is_some_and(|id| id.starts_with("astcti-channels"))
                    })
                    .count() as u64;
                link.backlog.done(cost, f);
            }
            AmiInput::Lost { frames: n } => {
                lost += n;
                losts += 1;
            }
            _ => {}
        }
    }
    assert_eq!(link.backlog.get(), 0);
    std::thread::sleep(Duration::from_millis(200));
    let lists = r.stats().actions_named("CoreShowChannels").len();
    (frames, lost, losts, lists)
}

#[test]
fn frames_past_the_byte_bound_are_dropped_counted_and_followed_by_lost_and_a_channel_list() {
    // The oracle: with room for everything, nothing is lost.
    let (all, lost, losts, lists) = burst_into_a_stalled_dispatcher(1 << 30);
    assert_eq!((lost, losts, lists), (0, 0, 1), "one list, after the login");
    assert!(all > 5160, "{all}");
    // With 64 KiB: every frame is either delivered or counted lost, and each Lost asked for a list.
    let (frames, lost, losts, lists) = burst_into_a_stalled_dispatcher(65536);
    assert!(losts >= 1 && lost > 0, "{losts} Lost, {lost} frames");
    // (Lost frames may include the two frames that answer each channel list: its response and its
    // CoreShowChannelsComplete, which the delivered count leaves out.)
    assert_eq!(lists, 1 + losts);
    let sum = frames + lost;
    assert!(
        (all..=all + 2 * lists as u64).contains(&sum),
        "{frames} delivered + {lost} lost, of {all}"
    );
}
