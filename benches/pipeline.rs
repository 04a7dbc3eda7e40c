//! `cargo bench --bench pipeline` (part of `scripts/bench.sh`): the AMI side of the server on real
//! captures, in this process, on this machine. No sockets, no database.
//!
//! Every figure is the median of RUNS runs, all in one process run (ratios compare like with like),
//! and is measured in **CPU time of the measuring thread** (`/proc/thread-self/schedstat`), so that
//! another process on the shared machine slows the wall clock but not the figure:
//! 1. decoding, per Asterisk generation (the captures of tests/fixtures/ami/asterisk-*/), 64 KiB reads
//!    as the AMI link does them — frames/s and MB/s of one core (goal: ≥ 2,000,000 frames/s on the
//!    Asterisk 20 mix); also one-byte reads, the original's way, for the ratio;
//! 2. `--replay` (decode, typed events, call tracker, router, notification XML; `offline::replay`, the
//!    code behind `astcti-server --replay`) on the 50-call burst from Asterisk 20 — events per CPU-second
//!    (goal: ≥ 1,000,000);
//! 3. CPU per event while 0, 1,000, 10,000 and 50,000 other legs are held (calls whose Hangup never
//!    came): the burst's frames routed through a router seeded with that many legs, and the ratio to
//!    none held (goal: ≤ 1.2).
//!
//! Prints a table with each goal beside its figure; docs/PERFORMANCE.md records a run.

use std::path::Path;
use std::time::Duration;

use astcti_server::ami::frame::{Decoder, Frame, Item};
use astcti_server::route::Router;

const RUNS: usize = 15;

/// CPU time this thread has run (ns precision), or wall time where schedstat is missing.
fn cpu_now() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    match text.split_whitespace().next().and_then(|v| v.parse().ok()) {
        Some(ns) => Duration::from_nanos(ns),
        None => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed()
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Shortest CPU time of one sample: the kernel updates a running thread's CPU time at its clock
/// ticks (4 ms here), so a sample repeats the work until it is many ticks long.
const SAMPLE: Duration = Duration::from_millis(80);

/// Median CPU time of one call of `f` over `runs` samples, and its last result.
fn time<F: FnMut() -> usize>(runs: usize, mut f: F) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(runs);
    let mut out = 0;
    for _ in 0..runs {
        let t = cpu_now();
        let mut reps = 0u32;
        while reps == 0 || cpu_now() - t < SAMPLE {
            out = std::hint::black_box(f());
            reps += 1;
        }
        samples.push((cpu_now() - t) / reps);
    }
    (median(samples), out)
}

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ami")
}

/// Every capture of one generation's folder.
fn captures(dir: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ami"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
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

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn main() {
    println!("astcti-server pipeline benchmark: {RUNS} runs each, medians of the measuring thread's CPU time");
    println!("| figure | input | median | goal |");
    println!("|---|---|---|---|");

    // 1. Decoding per generation.
    let mut all = Vec::new();
    for dir in [
        "asterisk-1.4",
        "asterisk-11.25.3",
        "asterisk-20.20.1",
        "asterisk-22.10.1",
        "asterisk-22.10.1-phones",
    ] {
        let files = captures(dir);
        let bytes: usize = files.iter().map(Vec::len).sum();
        let (cpu, frames) = time(RUNS, || files.iter().map(|b| decode(b, 65536)).sum());
        let rate = frames as f64 / cpu.as_secs_f64();
        let goal = if dir == "asterisk-20.20.1" {
            format!("≥ 2,000,000 frames/s: {}", met(rate >= 2e6))
        } else {
            String::new()
        };
        println!(
            "| decode, 64 KiB reads | {dir}: {} captures, {:.2} MB, {frames} frames | {:.0} frames/s, {:.0} MB/s | {goal} |",
            files.len(),
            bytes as f64 / 1e6,
            rate,
            bytes as f64 / 1e6 / cpu.as_secs_f64()
        );
        all.extend(files);
    }
    let total: usize = all.iter().map(Vec::len).sum();
    let (chunked, frames) = time(RUNS, || all.iter().map(|b| decode(b, 65536)).sum());
    let (bytewise, frames_b) = time(5, || all.iter().map(|b| decode(b, 1)).sum());
    assert_eq!(frames, frames_b);
    println!(
        "| decode, 1-byte reads (the original's way) | all {} captures, {:.2} MB | {:.0} MB/s, {:.1}x the CPU of 64 KiB reads | |",
        all.len(),
        total as f64 / 1e6,
        total as f64 / 1e6 / bytewise.as_secs_f64(),
        bytewise.as_secs_f64() / chunked.as_secs_f64()
    );

    // 2. --replay.
    let burst = std::fs::read(root().join("asterisk-20.20.1/f-burst-50.ami")).unwrap();
    let events = decode(&burst, 65536);
    let (replay, lines) = time(RUNS, || {
        astcti_server::offline::replay(&burst, &[]).lines().count()
    });
    let rate = events as f64 / replay.as_secs_f64();
    println!(
        "| --replay (decode, track, route, XML) | f-burst-50: {events} events, 50 calls, {lines} notifications | {:.0} events per CPU-second, {:.2} us per event | ≥ 1,000,000: {} |",
        rate,
        replay.as_secs_f64() * 1e6 / events as f64,
        met(rate >= 1e6)
    );

    // 3. Legs held: the burst's frames, in ROUNDS plays with their own Uniqueids (as ami-replay
    // --rewrite-ids makes them), decoded once, routed through routers seeded with N legs.
    const ROUNDS: u64 = 8;
    let capture = astcti_server::replay::Capture::parse(&burst, None);
    let plays: Vec<Vec<Frame>> = (0..ROUNDS)
        .map(|round| {
            let mut d = Decoder::default();
            for f in &capture.frames {
                d.push(&astcti_server::replay::rewrite_ids(&f.bytes, round));
            }
            std::iter::from_fn(|| d.next_item())
                .filter_map(|i| match i {
                    Item::Frame(f) => Some(f),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let per_play = plays[0].len();
    let mut held_rows = Vec::new();
    for held in [0usize, 1_000, 10_000, 50_000] {
        let mut r = Router::default();
        r.session(astcti_server::ami::dialect::Dialect::V12Plus);
        for i in 0..held {
            let uid = format!("held.{i}");
            let f = Frame::from_pairs(&[
                ("Event", "Newchannel"),
                ("Channel", &format!("PJSIP/held{i}-{i:08x}")),
                ("Uniqueid", &uid),
                ("Linkedid", &uid),
            ]);
            r.frame(&f);
        }
        // Every play of the burst ends all its calls, so each one meets the same N held legs.
        let legs = r.tracker().legs();
        // The first play right after seeding, wall time (one sample: informative only).
        let t = std::time::Instant::now();
        std::hint::black_box(plays[0].iter().map(|f| r.frame(f).len()).sum::<usize>());
        let first = t.elapsed();
        let mut round = 0;
        let (cpu, n) = time(RUNS, || {
            round = (round + 1) % plays.len();
            plays[round].iter().map(|f| r.frame(f).len()).sum()
        });
        assert_eq!(r.tracker().legs(), legs, "the burst leaves no leg behind");
        std::hint::black_box(n);
        held_rows.push((held, cpu, first));
    }
    let base = held_rows[0].1.as_secs_f64();
    for (held, d, first) in &held_rows {
        let ratio = d.as_secs_f64() / base;
        println!(
            "| CPU per event with {held} other legs held | f-burst-50 frames ({ROUNDS} plays, own Uniqueids), decoded beforehand | {:.3} us per event, {:.2}x the cost with none (the first play after seeding: {:.3} us per event, wall time) | ≤ 1.2x: {} |",
            d.as_secs_f64() * 1e6 / per_play as f64,
            ratio,
            first.as_secs_f64() * 1e6 / per_play as f64,
            met(ratio <= 1.2)
        );
    }
}
