//! Property tests of every parser, bounded and fast (the long runs are the fuzz targets of
//! `scripts/fuzz.sh`): on inputs built from the real captures, mutated and cut at random places,
//! nothing panics, output stays bounded by input, and decoding split at any offset gives the same
//! as decoding whole. A fixed-seed generator makes every failure reproducible.

use std::path::Path;

use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::event::decode;
use astcti_server::ami::frame::{Decoder, Item};
use astcti_server::calls::Tracker;
use astcti_server::config::Config;
use astcti_server::cti::proto::{LineBuffer, OrigRequest, MAX_LINE};
use astcti_server::cti::session::{AgentRow, Env, Session};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

fn captures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ami");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let p = f.path();
            let small = f.metadata().map(|m| m.len() < 200_000).unwrap_or(false);
            if p.extension().and_then(|e| e.to_str()) == Some("ami") && small {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    assert!(out.len() > 30);
    out
}

/// `bytes` with a few random mutations: flipped bytes, CR/LF/NUL/non-UTF-8 inserted, cut.
fn mutate(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..rng.below(8) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len());
        match rng.below(5) {
            0 => b[at] = rng.next() as u8,
            1 => b.insert(at, [b'\r', b'\n', 0, 0xC3, 0xFF, b':'][rng.below(6)]),
            2 => b.truncate(at),
            3 => {
                let n = rng.below(64).min(b.len() - at);
                b.drain(at..at + n);
            }
            _ => {
                let n = rng.below(32);
                let chunk: Vec<u8> = b[at..].iter().take(n).copied().collect();
                b.splice(at..at, chunk);
            }
        }
    }
    b
}

fn decode_in(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<Item> {
    let mut d = Decoder::default();
    let mut items = Vec::new();
    for c in chunks {
        d.push(&c);
        while let Some(i) = d.next_item() {
            items.push(i);
        }
    }
    items
}

#[test]
fn the_frame_decoder_is_split_invariant_and_bounded_on_mutated_captures() {
    let caps = captures();
    let mut rng = Rng(0x5eed_0001);
    for round in 0..300 {
        let input = mutate(&mut rng, &caps[round % caps.len()]);
        let whole = decode_in(std::iter::once(input.clone()));
        // Split at random offsets.
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(700));
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let split = decode_in(chunks.into_iter());
        assert_eq!(split, whole, "round {round}: split != whole");
        // Output bounded by input: at most one item per line.
        let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
        assert!(whole.len() <= lines, "round {round}");
    }
}

#[test]
fn events_and_the_call_tracker_survive_shuffled_and_mutated_sequences() {
    let caps = captures();
    let mut rng = Rng(0x5eed_0002);
    for round in 0..60 {
        let input = mutate(&mut rng, &caps[round % caps.len()]);
        let mut frames: Vec<_> = decode_in(std::iter::once(input))
            .into_iter()
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        // Shuffle a window, drop some, duplicate some: lost and repeated events.
        for _ in 0..rng.below(frames.len().max(1)) {
            let (a, b) = (rng.below(frames.len()), rng.below(frames.len()));
            frames.swap(a, b);
        }
        frames.retain(|_| rng.below(10) != 0);
        let dialect = [Dialect::V1_4, Dialect::V1_6To11, Dialect::V12Plus][round % 3];
        let mut t = Tracker::new();
        let mut notes = 0;
        for (i, f) in frames.iter().enumerate() {
            t.set_now(i as u64);
            notes += t.apply(decode(f, dialect)).len();
            if i % 50 == 0 {
                t.begin_resync();
            }
            if i % 7 == 0 {
                assert!(
                    t.consistent(),
                    "round {round}, frame {i}: the indexes disagree"
                );
            }
        }
        t.set_now(frames.len() as u64 + 1);
        notes += t.expire(0).0.len();
        // Bounded: a few notifications per event at most, and nothing left after expiry.
        assert!(
            notes <= frames.len() * 4 + 4,
            "round {round}: {notes} for {}",
            frames.len()
        );
        assert_eq!(t.legs(), 0);
    }
}

struct FakeEnv {
    originates: usize,
}

impl Env for FakeEnv {
    fn user_logged_in(&mut self, username: &str) -> bool {
        username.len().is_multiple_of(7)
    }
    fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<AgentRow>, String> {
        match secret.len() % 3 {
            0 => Ok(Some(AgentRow {
                username: username.into(),
                ext: secret.len().is_multiple_of(2).then(|| "SIP/1".into()),
            })),
            1 => Ok(None),
            _ => Err("down".into()),
        }
    }
    fn register(&mut self, _: &str, ext: &str) -> bool {
        !ext.is_empty()
    }
    fn originate(&mut self, _: &str, request: OrigRequest) {
        assert!(request.exten.len() <= 80 && !request.exten.chars().any(char::is_control));
        self.originates += 1;
    }
    fn note(&mut self, message: &str) {
        assert!(!message.contains('\n'), "a note with a raw LF: {message:?}");
    }
}

#[test]
fn the_client_line_protocol_and_session_take_any_bytes() {
    let mut rng = Rng(0x5eed_0003);
    let words: [&[u8]; 9] = [
        b"USER ", b"PASS ", b"NOOP", b"HELO", b"QUIT", b"ORIG ", b"|", b"\r\n", b"\n",
    ];
    for round in 0..500 {
        let mut input = Vec::new();
        for _ in 0..rng.below(200) {
            if rng.below(3) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(words[rng.below(words.len())]);
            }
        }
        let mut lines = LineBuffer::new(MAX_LINE);
        let mut session = Session::new();
        let mut env = FakeEnv { originates: 0 };
        let (mut n_lines, mut replies) = (0, 0);
        let mut rest = &input[..];
        'outer: while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            lines.push(&rest[..n]);
            rest = &rest[n..];
            loop {
                match lines.next_line() {
                    Ok(Some(line)) => {
                        n_lines += 1;
                        assert!(line.is_ascii(), "round {round}: lines are ASCII");
                        let step = session.handle(&line, &mut env);
                        replies += usize::from(step.reply.is_some());
                        if step.close {
                            break 'outer;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        assert!(
            replies <= n_lines,
            "round {round}: at most one reply per line"
        );
        assert!(env.originates <= n_lines);
    }
}

#[test]
fn the_config_reader_returns_a_value_or_an_error_for_any_mutation() {
    let shipped =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("AstCTIServer.xml")).unwrap();
    let mut rng = Rng(0x5eed_0004);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let bytes = mutate(&mut rng, &shipped);
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        match Config::from_xml(text, Path::new("f.xml"), Path::new("/app")) {
            Ok(_) => ok += 1,
            Err(e) => {
                err += 1;
                let line = e.to_string();
                assert!(line.starts_with("f.xml:"), "{line}");
                assert!(!line.contains('\n'), "one line: {line:?}");
            }
        }
    }
    assert!(
        ok > 0 && err > 0,
        "{ok} ok, {err} errors: both kinds reached"
    );
}
