//! Every recorded AMI stream in tests/fixtures/ami/ decodes to the same frames however the bytes are
//! cut, and to the numbers of messages and events its README counts.

use std::path::{Path, PathBuf};

use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::frame::{Decoder, Frame, Item};

/// (file, messages, events) — copied from the "file:" lines of each folder's README.md (for 1.4: the
/// event counts in the headings; those files hold events only). The READMEs count `Event:` lines and
/// messages independently of this decoder.
const FIXTURES: &[(&str, usize, usize)] = &[
    ("asterisk-1.4/real-call-from-dialplan.ami", 16, 16),
    ("asterisk-1.4/real-call-from-queue.ami", 16, 16),
    ("asterisk-1.4/real-call-from-queue-no-operators.ami", 17, 17),
    (
        "asterisk-1.4/real-call-from-queue-two-operators.ami",
        23,
        23,
    ),
    ("asterisk-1.4/synthetic-demo100.ami", 16, 16),
    (
        "asterisk-1.4/synthetic-unknown-ringing-then-demo100.ami",
        17,
        17,
    ),
    ("asterisk-11.25.3/a-inbound-100-answered.ami", 86, 83),
    (
        "asterisk-11.25.3/a-sip-trunk-inbound-100-answered.ami",
        89,
        87,
    ),
    ("asterisk-11.25.3/b-inbound-101-queue-answered.ami", 82, 79),
    (
        "asterisk-11.25.3/b-sip-trunk-inbound-101-queue-answered.ami",
        83,
        81,
    ),
    ("asterisk-11.25.3/c-agent-outbound-201-to-202.ami", 76, 73),
    ("asterisk-11.25.3/d-busy.ami", 58, 55),
    ("asterisk-11.25.3/d-caller-abandons.ami", 62, 59),
    ("asterisk-20.20.1/a-inbound-100-answered.ami", 115, 112),
    (
        "asterisk-20.20.1/a-sip-trunk-inbound-100-answered.ami",
        105,
        103,
    ),
    (
        "asterisk-20.20.1/b-inbound-101-queue-answered.ami",
        118,
        115,
    ),
    (
        "asterisk-20.20.1/b-sip-trunk-inbound-101-queue-answered.ami",
        105,
        103,
    ),
    ("asterisk-20.20.1/c-agent-outbound-201-to-202.ami", 106, 103),
    ("asterisk-20.20.1/d-busy.ami", 80, 77),
    ("asterisk-20.20.1/d-caller-abandons.ami", 85, 82),
    ("asterisk-20.20.1/d-unreachable.ami", 82, 79),
    ("asterisk-20.20.1/e-two-concurrent-inbound.ami", 220, 216),
    ("asterisk-20.20.1/f-burst-50.ami", 5212, 5160),
    ("asterisk-20.20.1/g-blind-transfer-201-to-202.ami", 179, 175),
    ("asterisk-20.20.1/g-redirect-transfer-to-202.ami", 172, 168),
    (
        "asterisk-20.20.1/i-inbound-102-localq-answered.ami",
        178,
        175,
    ),
    ("asterisk-20.20.1/k-callerid-special-chars.ami", 117, 114),
    ("asterisk-20.20.1/k-callerid-utf8.ami", 117, 114),
    ("asterisk-20.20.1/k-calldata-special-chars.ami", 117, 114),
    ("asterisk-20.20.1/k-calldata-escaped-chars.ami", 117, 114),
    ("asterisk-20.20.1/k-sip-trunk-callerid-utf8.ami", 108, 106),
    (
        "asterisk-20.20.1/k-sip-trunk-callerid-special-chars.ami",
        107,
        105,
    ),
    ("asterisk-20.20.1/l-hold-unhold.ami", 121, 118),
    ("asterisk-20.20.1/l-pickup-202-picks-up-201.ami", 135, 131),
    ("asterisk-20.20.1/m-reconnect-part1.ami", 87, 85),
    ("asterisk-20.20.1/m-reconnect-part2.ami", 38, 35),
    ("asterisk-20.20.1/n-status-two-calls.ami", 246, 238),
    // Asterisk 22.10.1 with chan_pjsip (counts from its README).
    ("asterisk-22.10.1/a-inbound-100-answered.ami", 112, 109),
    (
        "asterisk-22.10.1/f-asterisk-restart-mid-call-part1.ami",
        113,
        111,
    ),
    (
        "asterisk-22.10.1/f-asterisk-restart-mid-call-part2.ami",
        114,
        110,
    ),
    ("asterisk-22.10.1/g-blind-transfer-201-to-202.ami", 168, 164),
    (
        "asterisk-22.10.1/h-attended-transfer-201-to-202.ami",
        239,
        235,
    ),
    (
        "asterisk-22.10.1/h-attended-transfer-201-to-202-rtp.ami",
        249,
        245,
    ),
    ("asterisk-22.10.1/m-ami-drop-mid-call-part1.ami", 83, 81),
    ("asterisk-22.10.1/m-ami-drop-mid-call-part2.ami", 46, 41),
    // Asterisk 22.10.1 with SIP phones (counted with a script of its own: blank-line separated
    // messages after the banner line, those with an `Event:` header).
    (
        "asterisk-22.10.1-phones/e-attended-transfer-dtmf-star2-1.ami",
        218,
        216,
    ),
    (
        "asterisk-22.10.1-phones/e-attended-transfer-dtmf-star2-1.ctimanager.ami",
        203,
        200,
    ),
    (
        "asterisk-22.10.1-phones/e-attended-transfer-refer-replaces-1.ami",
        218,
        216,
    ),
    (
        "asterisk-22.10.1-phones/e-attended-transfer-refer-replaces-1.ctimanager.ami",
        208,
        205,
    ),
    (
        "asterisk-22.10.1-phones/g-ami-down-call-starts-meanwhile.ami",
        106,
        104,
    ),
    (
        "asterisk-22.10.1-phones/g-ami-down-call-starts-meanwhile.ctimanager.ami",
        50,
        44,
    ),
    (
        "asterisk-22.10.1-phones/l-load-25cps-2s.ctimanager.ami",
        4258,
        4255,
    ),
];

/// AMI sessions a capture holds (one banner each): the server's own recording of an AMI link cut
/// and restored has two.
fn sessions(name: &str) -> usize {
    if name.ends_with("g-ami-down-call-starts-meanwhile.ctimanager.ami") {
        2
    } else {
        1
    }
}

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ami")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Item> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        while let Some(item) = d.next_item() {
            out.push(item);
        }
    }
    out
}

fn frames(items: &[Item]) -> Vec<&Frame> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn every_fixture_is_listed() {
    let mut on_disk = Vec::new();
    for dir in [
        "asterisk-1.4",
        "asterisk-11.25.3",
        "asterisk-20.20.1",
        "asterisk-22.10.1",
        "asterisk-22.10.1-phones",
    ] {
        for e in std::fs::read_dir(path(dir)).unwrap().flatten() {
            let name = e.file_name().into_string().unwrap();
            if name.ends_with(".ami") {
                on_disk.push(format!("{dir}/{name}"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|f| f.0.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn whole_files_decode_to_the_counted_messages_and_events() {
    for &(name, messages, events) in FIXTURES {
        let bytes = read(name);
        let items = decode_chunks([bytes.as_slice()]);
        assert!(
            !items.iter().any(|i| matches!(i, Item::Discarded(_))),
            "{name}: discarded"
        );
        let fr = frames(&items);
        assert_eq!(fr.len(), messages, "{name}: messages");
        assert_eq!(
            fr.iter().filter(|f| f.event().is_some()).count(),
            events,
            "{name}: events"
        );
        let banners: Vec<&Item> = items
            .iter()
            .filter(|i| matches!(i, Item::Banner(_)))
            .collect();
        if name.starts_with("asterisk-1.4/") {
            assert!(banners.is_empty(), "{name}");
        } else {
            assert_eq!(banners.len(), sessions(name), "{name}");
            assert!(matches!(items[0], Item::Banner(_)), "{name}: banner first");
        }
    }
}

#[test]
fn banners_and_events_give_the_dialect() {
    for &(name, _, _) in FIXTURES {
        let items = decode_chunks([read(name).as_slice()]);
        let expected = match name.split('/').next().unwrap() {
            "asterisk-1.4" => Dialect::V1_4,
            "asterisk-11.25.3" => Dialect::V1_6To11,
            _ => Dialect::V12Plus,
        };
        for item in &items {
            match item {
                Item::Banner(v) => {
                    assert_eq!(Dialect::from_banner(v), expected, "{name}: banner {v}")
                }
                Item::Frame(f) => {
                    if let Some(d) = Dialect::evidence(f) {
                        assert_eq!(d, expected, "{name}: {:?}", f.event());
                    }
                }
                Item::Discarded(_) => panic!("{name}"),
            }
        }
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_items() {
    for &(name, _, _) in FIXTURES {
        let bytes = read(name);
        let whole = decode_chunks([bytes.as_slice()]);
        assert_eq!(decode_chunks(bytes.chunks(1)), whole, "{name}");
    }
}

#[test]
fn the_recorded_recv_chunks_give_the_same_items() {
    // The server's own recordings (`.ctimanager.ami`) have no timing file.
    for &(name, _, _) in FIXTURES
        .iter()
        .filter(|f| !f.0.starts_with("asterisk-1.4") && !f.0.ends_with(".ctimanager.ami"))
    {
        let bytes = read(name);
        let tsv = std::fs::read_to_string(path(&name.replace(".ami", ".recv-timing.tsv"))).unwrap();
        let mut chunks = Vec::new();
        for row in tsv.lines().skip(1) {
            let cols: Vec<usize> = row
                .split('\t')
                .skip(1)
                .map(|c| c.parse().unwrap())
                .collect();
            chunks.push(&bytes[cols[0]..cols[0] + cols[1]]);
        }
        assert_eq!(
            chunks.iter().map(|c| c.len()).sum::<usize>(),
            bytes.len(),
            "{name}"
        );
        assert_eq!(
            decode_chunks(chunks),
            decode_chunks([bytes.as_slice()]),
            "{name}"
        );
    }
}

/// Byte ranges of the frames, by blank-line ends (independent of the decoder).
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = vec![0];
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if &bytes[i..i + 4] == b"\r\n\r\n" {
            ends.push(i + 4);
            i += 4;
        } else {
            i += 1;
        }
    }
    if *ends.last().unwrap() != bytes.len() {
        ends.push(bytes.len());
    }
    ends
}

#[test]
fn split_at_every_offset_gives_the_same_items() {
    // Small files: the whole file split once at every offset. Larger ones: for every frame, a window
    // from the previous frame's start to this frame's end, split at every offset inside the frame
    // (what is decoded before and after a cut does not depend on bytes further away). f-burst-50
    // (2 MB) is cut at every 31st offset.
    for &(name, _, _) in FIXTURES {
        let bytes = read(name);
        if bytes.len() <= 12_000 {
            let whole = decode_chunks([bytes.as_slice()]);
            for k in 0..=bytes.len() {
                assert_eq!(
                    decode_chunks([&bytes[..k], &bytes[k..]]),
                    whole,
                    "{name} cut at {k}"
                );
            }
            continue;
        }
        let stride = if bytes.len() > 1_000_000 { 31 } else { 1 };
        let ends = frame_ends(&bytes);
        for j in 1..ends.len() {
            let lo = ends[j.saturating_sub(2)];
            let hi = ends[j];
            let window = &bytes[lo..hi];
            let whole = decode_chunks([window]);
            for k in (ends[j - 1] - lo..=ends[j] - lo).step_by(stride) {
                assert_eq!(
                    decode_chunks([&window[..k], &window[k..]]),
                    whole,
                    "{name} cut at {}",
                    lo + k
                );
            }
        }
    }
}

fn find_frame(items: &[Item], pred: impl Fn(&Frame) -> bool) -> &Frame {
    frames(items)
        .into_iter()
        .find(|f| pred(f))
        .expect("frame not found")
}

#[test]
fn real_frames_keep_repeated_keys_and_colons() {
    let items = decode_chunks([read("asterisk-20.20.1/n-status-two-calls.ami").as_slice()]);
    // Status with `Variables: calldata,cdata` lists both as repeated `Variable:` lines.
    let status = find_frame(&items, |f| {
        f.event() == Some("Status")
            && f.action_id() == Some("status-n-2")
            && f.get("Uniqueid") == Some("1795895759.58")
    });
    assert_eq!(
        status.get_all("variable").collect::<Vec<_>>(),
        vec!["calldata=78282?q=O'Brien&x=\"1\"", "cdata=78282"]
    );
    assert_eq!(status.get("CallerIDName"), Some("D\\'Angelo N2"));

    let items = decode_chunks([read("asterisk-20.20.1/k-calldata-special-chars.ami").as_slice()]);
    let set = find_frame(&items, |f| {
        f.event() == Some("Newexten")
            && f.get("Application") == Some("Set")
            && f.get("AppData").is_some_and(|a| a.starts_with("calldata="))
    });
    assert_eq!(set.get("AppData"), Some("calldata=75353:ref=a&b"));
    let varset = find_frame(&items, |f| {
        f.event() == Some("VarSet") && f.get("Variable") == Some("calldata")
    });
    assert_eq!(varset.get("Value"), Some("75353:ref=a&b"));
    // Event timestamps carry colons too.
    let auth = find_frame(&items, |f| f.event() == Some("SuccessfulAuth"));
    assert!(auth
        .get("EventTV")
        .is_some_and(|v| v.matches(':').count() == 2));
}

#[test]
fn utf8_caller_names_survive() {
    let items = decode_chunks([read("asterisk-20.20.1/k-callerid-utf8.ami").as_slice()]);
    let names: Vec<&str> = frames(&items)
        .iter()
        .filter_map(|f| f.get("CallerIDName"))
        .filter(|n| !n.is_ascii())
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| !n.contains('\u{fffd}')), "{names:?}");
}

#[test]
fn the_1_4_trailing_space_of_appdata_is_kept() {
    let items = decode_chunks([read("asterisk-1.4/synthetic-demo100.ami").as_slice()]);
    let answer = find_frame(&items, |f| f.get("Application") == Some("Answer"));
    assert_eq!(answer.get("AppData"), Some(""));
    let set = find_frame(&items, |f| f.get("Application") == Some("Set"));
    assert_eq!(set.get("AppData"), Some("calldata=12345"));
}
