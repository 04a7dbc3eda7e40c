//! `cargo bench --bench server` (part of `scripts/bench.sh`, which starts the test MariaDB first): the
//! real server binary end to end, over loopback sockets, with agents logged in through MariaDB.
//!
//! The fake Asterisk here is a **load generator**, not ami-replay: it pre-renders its whole stream
//! (the 50-call burst captured from Asterisk 20, `f-burst-50.ami`, played round after round with new
//! Uniqueids and, for more than one agent, its calls spread over the agents as `ami-replay --spread`
//! does) and writes it with no pauses: up to 64 KiB per `write`, as fast as the server's socket takes
//! it ("full speed"), or paced at a rate — everything due is written once per millisecond (Asterisk
//! writes each event on its own; one write per millisecond is what a busy Asterisk's events look like
//! after TCP has coalesced them). It answers the server's actions (Login, Ping, CoreShowChannels).
//!
//! What the agents must receive is computed beforehand by the server's own pipeline
//! (`route::Router`, the code behind `astcti-server --replay`) from the same bytes: every agent's
//! notifications, byte for byte, and the frame that causes each. Each agent is a thread reading its
//! socket; a notification that does not arrive is **lost**, one that differs is **wrong** (both counted
//! by the clients). Latency is from the generator's `write` of the chunk holding the triggering frame
//! to the agent thread's `read` returning the notification's last byte. Server CPU is the sum of the
//! server's threads' run time (`/proc/PID/task/*/schedstat`) over a run.
//!
//! Figures, each with its goal: the generator alone into a socket that is read and discarded (how
//! much faster than the server it writes); sustained events/s and notifications/s with zero loss at 1, 100, 1,000
//! and 10,000 agents (the median of RUNS full-speed runs; when a full-speed run loses anything the
//! highest loss-free paced rate is searched, on a fresh server each time); server CPU per event at
//! 1k and 10k events/s and at full speed; p50/p99/p99.9 latency at 1k and 10k events/s with 1,000
//! agents; RSS and threads with 1,000 and 10,000 agents; logins/s with 8 clients logging in at once.
//!
//! The server runs with the test configuration (LOG_LEVEL 63, ACTIVE true: the daily log file is
//! written); `ASTCTI_BENCH_LOG_LEVEL` and `ASTCTI_BENCH_ACTIVE` change them, `ASTCTI_BENCH_SERVER_ENV="K=V …"` adds to the server's
//! environment (a heap profiler's `LD_PRELOAD`, say), and
//! `ASTCTI_BENCH_AGENTS=1,100` (a list) limits the agent counts. docs/PERFORMANCE.md records a run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::frame::{Decoder, Item};
use astcti_server::replay::{self, Capture, Credentials};
use astcti_server::route::Router;
use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use mysql::prelude::Queryable;

const DEVICE: &str = "SIP/201";
/// Agents per play when the calls are spread (each play rings ten agents, five calls each).
const PER_ROUND: u64 = 10;
/// Full-speed runs per agent count (the median is reported).
const RUNS: usize = 3;
/// Plays of the burst per full-speed run (5,212 events each).
const FAST_ROUNDS: u64 = 40;
const BANNER: &[u8] = b"Asterisk Call Manager/9.0.0\r\n";
const SECRET_TEXT: &[u8] = b"bench";
const END: &[u8] = b"</call></event>\n";

fn ext_of(agents: usize, i: usize) -> String {
    if agents == 1 {
        DEVICE.to_string()
    } else {
        format!(
            "{DEVICE}x{}x{}",
            i / PER_ROUND as usize,
            i % PER_ROUND as usize
        )
    }
}

fn user_of(ext: &str) -> String {
    format!("bench_{}", ext.replace('/', "_"))
}

// ---------------------------------------------------------------- the stream and its expectation

struct Stream {
    bytes: Vec<u8>,
    /// End offset in `bytes` of each frame.
    ends: Vec<usize>,
    /// Per agent: the index of the frame that causes each of its notifications, in order.
    causes: Vec<Vec<usize>>,
    /// Per agent: its notifications, concatenated.
    text: Vec<Vec<u8>>,
}

fn render(
    capture: &Capture,
    agents: usize,
    rounds: std::ops::Range<u64>,
    router: &mut Router,
    index: &HashMap<String, usize>,
) -> Stream {
    let groups = (agents as u64 / PER_ROUND).max(1);
    let mut s = Stream {
        bytes: Vec::new(),
        ends: Vec::new(),
        causes: vec![Vec::new(); agents],
        text: vec![Vec::new(); agents],
    };
    let mut d = Decoder::default();
    for round in rounds {
        for f in &capture.frames {
            let b = if agents == 1 {
                replay::rewrite_ids(&f.bytes, round)
            } else {
                let spread = replay::spread_agents(&f.bytes, DEVICE, round % groups, PER_ROUND);
                replay::rewrite_ids(&spread, round)
            };
            d.push(&b);
            while let Some(item) = d.next_item() {
                if let Item::Frame(frame) = item {
                    for (agent, wire) in router.frame(&frame) {
                        if let Some(&i) = index.get(&agent) {
                            s.causes[i].push(s.ends.len());
                            s.text[i].extend_from_slice(wire.as_bytes());
                        }
                    }
                }
            }
            s.bytes.extend_from_slice(&b);
            s.ends.push(s.bytes.len());
        }
    }
    s
}

// ---------------------------------------------------------------- the load generator (fake Asterisk)

struct Job {
    stream: Arc<Stream>,
    /// Events per second, or `None` for full speed.
    rate: Option<f64>,
}

/// (frames written once this write was done, the instant just before it).
type Writes = Vec<(usize, Instant)>;

struct Generator {
    addr: SocketAddr,
    jobs: Sender<Job>,
    done: Receiver<Writes>,
}

impl Generator {
    fn start() -> Generator {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (jobs, job_rx) = unbounded::<Job>();
        let (done_tx, done) = unbounded();
        std::thread::Builder::new()
            .name("gen".into())
            .spawn(move || {
                let Ok((sock, _)) = listener.accept() else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                let (reply_tx, replies) = unbounded::<Vec<u8>>();
                let read_half = sock.try_clone().unwrap();
                std::thread::spawn(move || answer_actions(read_half, reply_tx));
                generate(sock, job_rx, replies, done_tx);
            })
            .unwrap();
        Generator { addr, jobs, done }
    }

    fn play(&self, stream: Arc<Stream>, rate: Option<f64>) -> Writes {
        self.jobs.send(Job { stream, rate }).unwrap();
        self.done.recv().unwrap()
    }
}

fn answer_actions(mut sock: TcpStream, replies: Sender<Vec<u8>>) {
    let mut d = Decoder::default();
    let mut buf = vec![0u8; 8192];
    let creds = Credentials {
        user: "ctimanager",
        secret: "ctimanager",
        answer_ping: true,
        fully_booted: true,
        channels: &[],
    };
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            return;
        }
        d.push(&buf[..n]);
        while let Some(item) = d.next_item() {
            if let Item::Frame(f) = item {
                let reply = replay::answer(&f, &creds);
                if replies.send(reply.bytes).is_err() {
                    return;
                }
            }
        }
    }
}

fn generate(
    mut sock: TcpStream,
    jobs: Receiver<Job>,
    replies: Receiver<Vec<u8>>,
    done: Sender<Writes>,
) {
    if sock.write_all(BANNER).is_err() {
        return;
    }
    loop {
        crossbeam_channel::select! {
            recv(replies) -> r => match r {
                Ok(bytes) => { let _ = sock.write_all(&bytes); }
                Err(_) => return,
            },
            recv(jobs) -> j => {
                let Ok(job) = j else { return };
                let writes = flood(&mut sock, &job, &replies);
                let _ = done.send(writes);
            }
        }
    }
}

fn flood(sock: &mut TcpStream, job: &Job, replies: &Receiver<Vec<u8>>) -> Writes {
    const MAX_WRITE: usize = 64 * 1024;
    const TICK: Duration = Duration::from_millis(1);
    let s = &job.stream;
    let n = s.ends.len();
    let mut writes = Vec::with_capacity(n / 8 + 16);
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        while let Ok(bytes) = replies.try_recv() {
            let _ = sock.write_all(&bytes);
        }
        let due = match job.rate {
            None => n,
            Some(rate) => n.min((start.elapsed().as_secs_f64() * rate) as usize + 1),
        };
        if due <= sent {
            std::thread::sleep(TICK);
            continue;
        }
        let from = if sent == 0 { 0 } else { s.ends[sent - 1] };
        let mut upto = sent + 1;
        while upto < due && s.ends[upto] - from <= MAX_WRITE {
            upto += 1;
        }
        let t = Instant::now();
        if sock.write_all(&s.bytes[from..s.ends[upto - 1]]).is_err() {
            break;
        }
        writes.push((upto, t));
        sent = upto;
    }
    writes
}

// ---------------------------------------------------------------- the agents

struct Expect {
    bytes: usize,
    stop: Arc<AtomicBool>,
}

struct Received {
    agent: usize,
    bytes: Vec<u8>,
    /// (instant the read returned, notifications complete by then).
    arrivals: Vec<(Instant, usize)>,
}

fn agent_thread(
    agent: usize,
    mut sock: TcpStream,
    jobs: Receiver<Expect>,
    results: Sender<Received>,
    total: Arc<AtomicU64>,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(job) = jobs.recv() {
        let mut got = Vec::with_capacity(job.bytes);
        let mut arrivals = Vec::new();
        let mut complete = 0;
        let mut scanned = 0;
        while got.len() < job.bytes && !job.stop.load(Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    let at = Instant::now();
                    got.extend_from_slice(&buf[..k]);
                    let before = complete;
                    while let Some(i) = find(&got[scanned..], END) {
                        scanned += i + END.len();
                        complete += 1;
                    }
                    if complete > before {
                        arrivals.push((at, complete));
                        total.fetch_add((complete - before) as u64, Ordering::Relaxed);
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
        let _ = results.send(Received {
            agent,
            bytes: got,
            arrivals,
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- one server with A agents

struct Session {
    server: Server,
    gen: Generator,
    agents: usize,
    router: Router,
    index: HashMap<String, usize>,
    next_round: u64,
    jobs: Vec<Sender<Expect>>,
    results: Receiver<Received>,
    total: Arc<AtomicU64>,
    login_rate: f64,
    idle: Status,
    logged_in: Status,
}

#[derive(Clone, Copy, Default)]
struct Status {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn status(pid: u32) -> Status {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Status {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// CPU time of all of the process's threads so far.
fn cpu_of(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

struct Run {
    events: usize,
    notifications: usize,
    lost: usize,
    wrong: usize,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }
}

impl Session {
    fn start(agents: usize) -> Session {
        let gen = Generator::start();
        let server = Server::start_with(Options {
            manager_port: Some(gen.addr.port()),
            ctiserver: vec![("CTI_MAX_CLIENTS", "12000".into())],
            log_level: std::env::var("ASTCTI_BENCH_LOG_LEVEL")
                .ok()
                .and_then(|v| v.parse().ok()),
            env: std::env::var("ASTCTI_BENCH_SERVER_ENV")
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (&*String::leak(k.to_string()), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            logging: std::env::var("ASTCTI_BENCH_ACTIVE")
                .ok()
                .map(|v| vec![("ACTIVE", v)])
                .unwrap_or_default(),
            ..Options::default()
        });
        assert!(
            server.wait_log("logged in to Asterisk", Duration::from_secs(10)),
            "the server did not log in to the load generator"
        );
        std::thread::sleep(Duration::from_millis(300));
        let pid = server.child.id();
        let idle = status(pid);
        let secret = format!("{:x}", md5::compute(SECRET_TEXT));
        let exts: Vec<String> = (0..agents).map(|i| ext_of(agents, i)).collect();
        let (clients, login_time) = login_all(&server, &exts, &secret);
        std::thread::sleep(Duration::from_millis(300));
        let logged_in = status(pid);
        let (results_tx, results) = unbounded();
        let total = Arc::new(AtomicU64::new(0));
        let mut jobs = Vec::with_capacity(agents);
        for (i, c) in clients.into_iter().enumerate() {
            let (tx, rx) = unbounded();
            jobs.push(tx);
            let (results_tx, total) = (results_tx.clone(), total.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || agent_thread(i, c.sock, rx, results_tx, total))
                .expect("agent thread");
        }
        let mut router = Router::default();
        router.session(Dialect::from_banner("9.0.0"));
        Session {
            server,
            gen,
            agents,
            router,
            index: exts.into_iter().enumerate().map(|(i, e)| (e, i)).collect(),
            next_round: 0,
            jobs,
            results,
            total,
            login_rate: agents as f64 / login_time.as_secs_f64(),
            idle,
            logged_in,
        }
    }

    fn run(&mut self, capture: &Capture, rounds: u64, rate: Option<f64>) -> Run {
        let r = self.next_round..self.next_round + rounds;
        self.next_round += rounds;
        let stream = Arc::new(render(
            capture,
            self.agents,
            r,
            &mut self.router,
            &self.index,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        for (i, tx) in self.jobs.iter().enumerate() {
            tx.send(Expect {
                bytes: stream.text[i].len(),
                stop: stop.clone(),
            })
            .unwrap();
        }
        let notifications: usize = stream.causes.iter().map(Vec::len).sum();
        let pid = self.server.child.id();
        let received0 = self.total.load(Ordering::Relaxed);
        let cpu0 = cpu_of(pid);
        let writes = self.gen.play(stream.clone(), rate);
        // Wait for every notification, or until nothing has arrived for 3 s.
        let (mut last, mut seen) = (Instant::now(), received0);
        while self.total.load(Ordering::Relaxed) - received0 < notifications as u64 {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.total.load(Ordering::Relaxed);
            if now != seen {
                (seen, last) = (now, Instant::now());
            } else if last.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut got: Vec<Option<Received>> = (0..self.agents).map(|_| None).collect();
        for _ in 0..self.agents {
            let r = self.results.recv().unwrap();
            let i = r.agent;
            got[i] = Some(r);
        }
        let cpu = cpu_of(pid) - cpu0;
        let first = writes.first().map(|w| w.1).unwrap_or_else(Instant::now);
        let mut end = first;
        let (mut lost, mut wrong) = (0, 0);
        let mut latencies = Vec::with_capacity(notifications);
        for (i, g) in got.into_iter().enumerate() {
            let g = g.unwrap();
            let want = &stream.causes[i];
            let have = g.arrivals.last().map_or(0, |a| a.1);
            lost += want.len().saturating_sub(have);
            if g.bytes != stream.text[i][..g.bytes.len().min(stream.text[i].len())] {
                wrong += 1;
            }
            let mut a = 0;
            for (j, &cause) in want.iter().enumerate().take(have) {
                while g.arrivals[a].1 <= j {
                    a += 1;
                }
                let at = g.arrivals[a].0;
                end = end.max(at);
                let w = writes.partition_point(|&(upto, _)| upto <= cause);
                if let Some(&(_, t)) = writes.get(w) {
                    latencies.push(at.saturating_duration_since(t));
                }
            }
        }
        latencies.sort();
        Run {
            events: stream.ends.len(),
            notifications,
            lost,
            wrong,
            wall: end
                .saturating_duration_since(first)
                .max(Duration::from_micros(1)),
            cpu,
            latencies,
        }
    }
}

/// Logs in every agent with 8 clients at a time; the clients and the time it took.
fn login_all(server: &Server, exts: &[String], secret: &str) -> (Vec<Client>, Duration) {
    const AT_ONCE: usize = 8;
    let start = Instant::now();
    let mut parts: Vec<Vec<(usize, Client)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..AT_ONCE)
            .map(|t| {
                s.spawn(move || {
                    (t..exts.len())
                        .step_by(AT_ONCE)
                        .map(|i| (i, server.login(&user_of(&exts[i]), secret)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = start.elapsed();
    let mut all: Vec<(usize, Client)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_by_key(|(i, _)| *i);
    (all.into_iter().map(|(_, c)| c).collect(), took)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::var("ASTCTI_TEST_MYSQL_HOST").is_err() {
        eprintln!("benches/server.rs needs the test MariaDB: run scripts/bench.sh");
        return;
    }
    let counts: Vec<usize> = std::env::var("ASTCTI_BENCH_AGENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 1000, 10_000]);
    let most = counts.iter().copied().max().unwrap_or(1);

    // The agents: SIP/201, and SIP/201xGxN for the spread plays.
    let secret = format!("{:x}", md5::compute(SECRET_TEXT));
    let mut db = admin();
    db.query_drop("DELETE FROM cti WHERE USERNAME LIKE 'bench\\_%' OR EXT LIKE 'SIP/201%'")
        .unwrap();
    let mut exts = vec![DEVICE.to_string()];
    exts.extend((0..most.max(10)).map(|i| ext_of(most.max(10), i)));
    for chunk in exts.chunks(2000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|e| format!("('{}', '{secret}', NULL, '{e}')", user_of(e)))
            .collect();
        db.query_drop(format!(
            "INSERT INTO cti (USERNAME, SECRET, HOST, EXT) VALUES {}",
            values.join(",")
        ))
        .unwrap();
    }
    let capture = Capture::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami/asterisk-20.20.1/f-burst-50.ami"),
    )
    .unwrap();

    let row = |figure: String, value: String, goal: String| {
        println!("| {figure} | {value} | {goal} |");
    };
    println!(
        "astcti-server end to end: load generator → AMI → server → {counts:?} agents over loopback, MariaDB logins"
    );
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    {
        // The generator alone, into a reader that only discards: how much faster than the server
        // it writes.
        let gen = Generator::start();
        let sink = TcpStream::connect(gen.addr).unwrap();
        let closer = sink.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut sink = sink;
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(sink.read(&mut buf), Ok(n) if n > 0) {}
        });
        let mut router = Router::default();
        router.session(Dialect::from_banner("9.0.0"));
        let stream = Arc::new(render(
            &capture,
            1,
            0..FAST_ROUNDS,
            &mut router,
            &HashMap::new(),
        ));
        let mut rates: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                gen.play(stream.clone(), None);
                stream.ends.len() as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        row(
            "load generator alone, into a socket read and discarded".into(),
            format!(
                "{:.0} events/s ({:.0} MB/s), median of {RUNS}",
                rates[RUNS / 2],
                rates[RUNS / 2] * stream.bytes.len() as f64 / stream.ends.len() as f64 / 1e6
            ),
            String::new(),
        );
        drop(gen);
        let _ = closer.shutdown(std::net::Shutdown::Both);
        let _ = drain.join();
    }
    for &agents in &counts {
        let mut s = Session::start(agents);
        let pid = s.server.child.id();
        if agents >= 1000 {
            // The goal is judged on the largest login burst of the run (the longest sample; the
            // smaller ones are shown too).
            row(
                format!("logins/s, {agents} agents, 8 clients logging in at once"),
                format!(
                    "{:.0} logins/s ({agents} logins in {:.2} s)",
                    s.login_rate,
                    agents as f64 / s.login_rate
                ),
                if agents == most {
                    format!("≥ 5,000: {}", met(s.login_rate >= 5000.0))
                } else {
                    String::new()
                },
            );
            let limit = if agents == 1000 { 30.0 } else { 150.0 };
            row(
                format!("memory, {agents} agents logged in, idle"),
                format!(
                    "RSS {:.1} MiB, {} threads (idle server: {:.1} MiB, {} threads; {:.1} KiB per agent)",
                    mib(s.logged_in.rss_kib),
                    s.logged_in.threads,
                    mib(s.idle.rss_kib),
                    s.idle.threads,
                    (s.logged_in.rss_kib.saturating_sub(s.idle.rss_kib)) as f64 / agents as f64
                ),
                format!(
                    "≤ {limit} MB: {}",
                    met(s.logged_in.rss_kib as f64 * 1024.0 <= limit * 1e6)
                ),
            );
        }
        // Full speed, RUNS times; then the highest loss-free rate if any of them lost something.
        let mut fast: Vec<Run> = (0..RUNS)
            .map(|_| s.run(&capture, FAST_ROUNDS, None))
            .collect();
        fast.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let lossy = fast.iter().filter(|r| r.lost + r.wrong > 0).count();
        let m = &fast[RUNS / 2];
        let mut loss_free = if lossy == 0 { Some(m.rate()) } else { None };
        let mut note = format!(
            "full speed: {:.0} events/s, {:.0} notifications/s, {:.2} us server CPU per event; {lossy} of {RUNS} runs lost notifications (median lost {}, wrong {})",
            m.rate(),
            m.notifications as f64 / m.wall.as_secs_f64(),
            m.cpu_per_event_us(),
            m.lost,
            m.wrong
        );
        if agents >= 1000 {
            let after = status(pid);
            note.push_str(&format!(
                "; RSS after: {:.1} MiB (peak {:.1} MiB), {} threads",
                mib(after.rss_kib),
                mib(after.hwm_kib),
                after.threads
            ));
        }
        if loss_free.is_none() {
            let mut rate = m.rate() * 0.8;
            for _ in 0..4 {
                let mut fresh = Session::start(agents);
                let rounds = ((rate * 2.0) as u64 / 5212).max(2);
                let r = fresh.run(&capture, rounds, Some(rate));
                if r.lost + r.wrong == 0 {
                    loss_free = Some(r.rate());
                    break;
                }
                rate *= 0.7;
            }
        }
        let goal = if agents == 1000 {
            format!(
                "≥ 250,000 with zero loss: {}",
                met(loss_free.is_some_and(|r| r >= 250_000.0))
            )
        } else {
            String::new()
        };
        row(
            format!("end to end, {agents} agents: highest loss-free rate"),
            format!(
                "{} ({note})",
                loss_free.map_or("none found".into(), |r| format!("{r:.0} events/s"))
            ),
            goal,
        );
        if agents == 1000 {
            for (rate, secs) in [(1_000.0, 8.0), (10_000.0, 5.0)] {
                let rounds = ((rate * secs) as u64).div_ceil(5212);
                let runs: Vec<Run> = (0..RUNS)
                    .map(|_| s.run(&capture, rounds, Some(rate)))
                    .collect();
                // Each figure is the median over the runs.
                let med = |f: &dyn Fn(&Run) -> f64| {
                    let mut v: Vec<f64> = runs.iter().map(f).collect();
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let cpu = med(&|r| r.cpu_per_event_us());
                let p = |q: f64| med(&|r| us(r.pct(q)));
                let (p50, p99, p999, max) = (p(0.5), p(0.99), p(0.999), p(1.0));
                let lost: usize = runs.iter().map(|r| r.lost + r.wrong).sum();
                let goal = if rate == 10_000.0 {
                    format!(
                        "CPU ≤ 5 us/event: {}; p99 ≤ 1 ms: {}; p99.9 ≤ 2 ms: {}",
                        met(cpu <= 5.0),
                        met(p99 <= 1000.0),
                        met(p999 <= 2000.0)
                    )
                } else {
                    String::new()
                };
                row(
                    format!("{rate:.0} events/s, 1000 agents: server CPU per event, pop latency"),
                    format!(
                        "{RUNS} runs of {:.1} s, {} notifications each, {lost} lost or wrong in all; medians: {:.0} events/s, {cpu:.2} us CPU per event; latency p50 {p50:.0} us, p99 {p99:.0} us, p99.9 {p999:.0} us, max {max:.0} us",
                        med(&|r| r.wall.as_secs_f64()),
                        runs[0].notifications,
                        med(&|r| r.rate()),
                    ),
                    goal,
                );
            }
        }
        drop(s);
    }
    let _ = std::io::stdout().flush();
}
