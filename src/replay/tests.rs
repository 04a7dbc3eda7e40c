use super::*;

const A20: &[u8] =
    include_bytes!("../../tests/fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.ami");
const A20_TIMING: &str = include_str!(
    "../../tests/fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.recv-timing.tsv"
);
const DEMO14: &[u8] = include_bytes!("../../tests/fixtures/ami/asterisk-1.4/synthetic-demo100.ami");

fn frame(text: &str) -> Frame {
    let mut d = crate::ami::frame::Decoder::default();
    d.push(text.as_bytes());
    match d.next_item() {
        Some(crate::ami::frame::Item::Frame(f)) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn capture_keeps_banner_and_event_frames_byte_for_byte() {
    let timing = parse_timing(A20_TIMING).unwrap();
    let cap = Capture::parse(A20, Some(&timing));
    assert_eq!(cap.banner.as_deref(), Some("9.0.0"));
    // README: 115 messages = 3 responses + 112 events.
    assert_eq!(cap.frames.len(), 112);
    assert!(cap.frames[0].bytes.starts_with(b"Event: FullyBooted\r\n"));
    assert!(cap.frames.iter().all(|f| f.bytes.ends_with(b"\r\n\r\n")));
    let total: usize = cap.frames.iter().map(|f| f.bytes.len()).sum();
    assert!(total < A20.len());
    // Every frame is a verbatim slice of the capture.
    for f in &cap.frames {
        assert!(A20.windows(f.bytes.len()).any(|w| w == f.bytes.as_slice()));
    }
    // Times rise and end near the last recv.
    let times: Vec<Duration> = cap.frames.iter().map(|f| f.at.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert!(times.last().unwrap().as_secs_f64() <= timing.last().unwrap().1);
}

#[test]
fn capture_without_banner_or_timing() {
    let cap = Capture::parse(DEMO14, None);
    assert_eq!(cap.banner, None);
    assert_eq!(cap.frames.len(), 16);
    assert!(cap.frames.iter().all(|f| f.at.is_none()));
    let joined: Vec<u8> = cap.frames.iter().flat_map(|f| f.bytes.clone()).collect();
    assert_eq!(
        joined, DEMO14,
        "a 1.4 capture is events only: nothing is left out"
    );
}

#[test]
fn timing_errors_name_the_line() {
    assert!(parse_timing("t\toffset\tbytes\n0.1\tx\t3\n")
        .unwrap_err()
        .contains("line 2"));
}

#[test]
fn rewrite_ids_changes_only_id_values() {
    let f = b"Event: Dial\r\nChannel: SIP/201-0a\r\nUniqueid: 1795893656.0\r\nDestUniqueid: 1795893660.2\r\nLinkedid: 1795893656.0\r\nSrcUniqueID: asterisk-1231258664.8\r\nExten: 100.5\r\n\r\n";
    assert_eq!(rewrite_ids(f, 0), f.to_vec());
    let out = String::from_utf8(rewrite_ids(f, 2)).unwrap();
    assert_eq!(
        out,
        "Event: Dial\r\nChannel: SIP/201-0a\r\nUniqueid: 1795893656.200000\r\nDestUniqueid: 1795893660.200002\r\nLinkedid: 1795893656.200000\r\nSrcUniqueID: asterisk-1231258664.200008\r\nExten: 100.5\r\n\r\n"
    );
}

fn creds() -> Credentials<'static> {
    Credentials {
        user: "u",
        secret: "s",
        answer_ping: true,
        fully_booted: true,
        channels: &[],
    }
}

#[test]
fn login_ok_and_failed_use_asterisks_words() {
    let ok = answer(
        &frame("Action: Login\r\nActionID: 1\r\nUsername: u\r\nSecret: s\r\n\r\n"),
        &creds(),
    );
    assert!(ok.login_ok && !ok.close);
    assert!(String::from_utf8_lossy(&ok.bytes).starts_with("Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\n"));
    let bad = answer(
        &frame("Action: Login\r\nActionID: 2\r\nUsername: u\r\nSecret: x\r\n\r\n"),
        &creds(),
    );
    assert!(!bad.login_ok && bad.close);
    assert_eq!(
        bad.bytes,
        b"Response: Error\r\nActionID: 2\r\nMessage: Authentication failed\r\n\r\n"
    );
}

#[test]
fn other_actions() {
    let r = |t: &str| String::from_utf8(answer(&frame(t), &creds()).bytes).unwrap();
    assert_eq!(
        r("Action: Ping\r\nActionID: p\r\n\r\n"),
        "Response: Success\r\nActionID: p\r\nPing: Pong\r\nTimestamp: 0.000000\r\n\r\n"
    );
    assert_eq!(
        r("Action: Originate\r\nActionID: o\r\nChannel: SIP/201\r\n\r\n"),
        "Response: Success\r\nActionID: o\r\nMessage: Originate successfully queued\r\n\r\n"
    );
    assert!(r("Action: CoreShowChannels\r\nActionID: c\r\n\r\n").contains("Event: CoreShowChannelsComplete\r\nActionID: c\r\nEventList: Complete\r\nListItems: 0\r\n"));
    assert!(r("Action: Status\r\nActionID: s\r\n\r\n").contains("Event: StatusComplete\r\n"));
    assert!(
        r("Action: GetConfig\r\nActionID: g\r\nFilename: sip.conf\r\n\r\n")
            .starts_with("Response: Success\r\nActionID: g\r\nCategory-000000: general\r\n")
    );
    assert_eq!(
        r("Action: Frob\r\nActionID: f\r\n\r\n"),
        "Response: Error\r\nActionID: f\r\nMessage: Invalid/unknown command\r\n\r\n"
    );
    let bye = answer(&frame("Action: Logoff\r\nActionID: l\r\n\r\n"), &creds());
    assert!(bye.close);
    let silent = Credentials {
        answer_ping: false,
        ..creds()
    };
    assert!(
        answer(&frame("Action: Ping\r\nActionID: p\r\n\r\n"), &silent)
            .bytes
            .is_empty()
    );
}

#[test]
fn channel_lists_come_from_a_capture() {
    let cap = Capture::parse(
        include_bytes!("../../tests/fixtures/ami/asterisk-20.20.1/n-status-two-calls.ami"),
        None,
    );
    let channels = channel_list(&cap);
    // README of n-status-two-calls, "event types": Status 8 (6 channels, then one for each of two
    // single-channel queries), CoreShowChannel 6.
    assert_eq!(
        channels
            .iter()
            .filter(|f| f.event() == Some("Status"))
            .count(),
        8
    );
    let core = channels
        .iter()
        .filter(|f| f.event() == Some("CoreShowChannel"))
        .count();
    assert_eq!(core, 6);
    let c = Credentials {
        channels: &channels,
        ..creds()
    };
    let text = String::from_utf8(
        answer(
            &frame("Action: CoreShowChannels\r\nActionID: z\r\n\r\n"),
            &c,
        )
        .bytes,
    )
    .unwrap();
    assert_eq!(
        text.matches("Event: CoreShowChannel\r\nActionID: z\r\n")
            .count(),
        core
    );
    assert!(text.ends_with(&format!("Event: CoreShowChannelsComplete\r\nActionID: z\r\nEventList: Complete\r\nListItems: {core}\r\n\r\n")));
    let mut d = crate::ami::frame::Decoder::default();
    d.push(text.as_bytes());
    let n = std::iter::from_fn(|| d.next_item()).count();
    assert_eq!(n, core + 2, "every item is a well-formed frame");
}

#[test]
fn spread_agents_renames_one_phone_into_many() {
    use super::spread_agents;
    let f = b"Event: BridgeEnter\r\nChannel: SIP/201-00000013\r\nDevice: SIP/201\r\nCallerIDNum: 201\r\n\r\n";
    let got = String::from_utf8(spread_agents(f, "SIP/201", 7, 10)).unwrap();
    assert_eq!(
        got,
        "Event: BridgeEnter\r\nChannel: SIP/201x7x9-00000013\r\nDevice: SIP/201\r\nCallerIDNum: 201\r\n\r\n"
    );
    assert_eq!(
        spread_agents(b"SIP/2010-1", "SIP/201", 1, 10),
        b"SIP/2010-1"
    );
}

#[test]
fn a_held_replay_plays_step_by_step() {
    use std::io::{Read, Write};
    let cap = Capture::parse(DEMO14, None);
    let dial = cap.frame_with(0, &["Event: Dial"]).expect("a Dial event");
    assert!(cap.frames[dial].bytes.starts_with(b"Event: Dial"));
    assert_eq!(
        cap.frame_with(dial + 1, &["Event: Dial", "no such text"]),
        None
    );
    let mut cfg = server::ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![cap.clone()]);
    cfg.held = true;
    let replay = server::ReplayServer::start(cfg).unwrap();
    let mut sock = std::net::TcpStream::connect(replay.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(b"Action: Login\r\nUsername: ctimanager\r\nSecret: ctimanager\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut read_until = |got: &mut Vec<u8>, n: usize| {
        let mut buf = [0u8; 4096];
        while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < n {
            let k = sock.read(&mut buf).expect("the replay writes");
            assert!(k > 0, "closed");
            got.extend_from_slice(&buf[..k]);
        }
    };
    // The login's answer, then nothing while held; then exactly the frames before the Dial.
    read_until(&mut got, 1);
    assert!(replay.play_through(dial as u64, Duration::from_secs(30)));
    assert_eq!(
        replay.stats().frames_sent,
        dial as u64,
        "no frame past the step"
    );
    read_until(&mut got, 1 + dial);
    let played: Vec<u8> = cap.frames[..dial]
        .iter()
        .flat_map(|f| f.bytes.clone())
        .collect();
    assert!(got.ends_with(&played));
    // Released: the rest.
    replay.release();
    read_until(&mut got, 1 + cap.frames.len());
    let all: Vec<u8> = cap.frames.iter().flat_map(|f| f.bytes.clone()).collect();
    assert!(got.ends_with(&all));
}
