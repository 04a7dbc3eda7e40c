//! `cargo bench --bench pipeline`: how fast the AMI side is, on real captures, on this machine.
//!
//! Measures (each the median of RUNS runs, all in one process run so ratios compare like with like):
//! 1. decoding: the frame decoder over every capture in tests/fixtures/ami, in 4 KiB reads — MB/s;
//! 2. the original's way of reading AMI, one byte per read, through the same decoder — and the ratio;
//! 3. the whole dispatcher pipeline (decode, typed events, call tracker, router, notification XML) on
//!    the 50-call burst captured from Asterisk 20 — events per second, and the time per call;
//! 4. the call tracker's cost per event while 0, 1,000, 10,000 and 50,000 other legs are held (calls
//!    whose Hangup never came): the burst's events routed through a router seeded with that many
//!    legs, and the ratio to none held (the goal: at most 1.2).
//!
//! Prints a table; docs/PERFORMANCE.md records one run.

use std::path::Path;
use std::time::{Duration, Instant};

use astcti_server::ami::frame::{Decoder, Item};
use astcti_server::route::Router;

const RUNS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut() -> usize>(mut f: F) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(RUNS);
    let mut out = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        out = std::hint::black_box(f());
        samples.push(t.elapsed());
    }
    (median(samples), out)
}

fn captures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ami");
    let mut files = Vec::new();
    for dir in [
        "asterisk-1.4",
        "asterisk-11.25.3",
        "asterisk-20.20.1",
        "asterisk-22.10.1",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "ami") {
                files.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    files
}

fn decode(bytes: &[u8], chunk: usize) -> usize {
    let mut d = Decoder::default();
    let mut frames = 0;
    for c in bytes.chunks(chunk) {
        d.push(c);
        while let Some(item) = d.next_item() {
            if matches!(item, Item::Frame(_)) {
                frames += 1;
            }
        }
    }
    frames
}

fn main() {
    let all = captures();
    let total: usize = all.iter().map(Vec::len).sum();
    let mb = total as f64 / 1e6;

    let (chunked, frames) = time(|| all.iter().map(|b| decode(b, 4096)).sum());
    let (bytewise, frames_b) = time(|| all.iter().map(|b| decode(b, 1)).sum());
    assert_eq!(frames, frames_b);

    let burst = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami/asterisk-20.20.1/f-burst-50.ami"),
    )
    .unwrap();
    let (pipeline, notifications) = time(|| {
        let mut d = Decoder::default();
        let mut r = Router::default();
        let mut n = 0;
        for c in burst.chunks(4096) {
            d.push(c);
            while let Some(item) = d.next_item() {
                match item {
                    Item::Banner(v) => {
                        r.session(astcti_server::ami::dialect::Dialect::from_banner(&v))
                    }
                    Item::Frame(f) => n += r.frame(&f).len(),
                    Item::Discarded(_) => {}
                }
            }
        }
        n
    });
    let events = 5160.0; // the capture's README: 5160 events, 50 calls

    // 4. Legs held: the burst's frames decoded once, routed through routers seeded with N legs.
    let frames_of_burst: Vec<_> = {
        let mut d = Decoder::default();
        d.push(&burst);
        std::iter::from_fn(|| d.next_item())
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    };
    let mut held_rows = Vec::new();
    for held in [0usize, 1_000, 10_000, 50_000] {
        let mut samples = Vec::new();
        for _ in 0..RUNS.min(7) {
            let mut r = Router::default();
            r.session(astcti_server::ami::dialect::Dialect::V12Plus);
            for i in 0..held {
                let uid = format!("held.{i}");
                let f = astcti_server::ami::frame::Frame::from_pairs(&[
                    ("Event", "Newchannel"),
                    ("Channel", &format!("PJSIP/held{i}-{i:08x}")),
                    ("Uniqueid", &uid),
                    ("Linkedid", &uid),
                ]);
                r.frame(&f);
            }
            let t = Instant::now();
            let mut n = 0;
            for f in &frames_of_burst {
                n += r.frame(f).len();
            }
            samples.push(t.elapsed());
            std::hint::black_box(n);
        }
        held_rows.push((held, median(samples)));
    }

    println!("astcti-server pipeline benchmark ({RUNS} runs each, medians)");
    println!("| measure | input | median | rate |");
    println!("|---|---|---|---|");
    println!(
        "| decode, 4 KiB reads | {} captures, {:.2} MB, {} frames | {:.2} ms | {:.0} MB/s |",
        all.len(),
        mb,
        frames,
        chunked.as_secs_f64() * 1e3,
        mb / chunked.as_secs_f64()
    );
    println!(
        "| decode, 1-byte reads (the original's way) | same | {:.2} ms | {:.0} MB/s |",
        bytewise.as_secs_f64() * 1e3,
        mb / bytewise.as_secs_f64()
    );
    println!(
        "| whole pipeline (decode, track, route, XML) | f-burst-50: 5160 events, 50 calls, {} notifications | {:.2} ms | {:.0} events/s, {:.1} us per call |",
        notifications,
        pipeline.as_secs_f64() * 1e3,
        events / pipeline.as_secs_f64(),
        pipeline.as_secs_f64() * 1e6 / 50.0
    );
    let base = held_rows[0].1.as_secs_f64();
    for (held, d) in &held_rows {
        println!(
            "| tracking with {held} other legs held | f-burst-50 frames, decoded beforehand | {:.2} ms | {:.2} us per frame, {:.2}x the cost with none (goal <= 1.2x) |",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e6 / frames_of_burst.len() as f64,
            d.as_secs_f64() / base
        );
    }
    println!(
        "ratio 1-byte / 4 KiB decoding time: {:.1}x",
        bytewise.as_secs_f64() / chunked.as_secs_f64()
    );
}
