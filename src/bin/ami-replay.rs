//! `ami-replay`: plays Asterisk's Manager Interface from recorded `.ami` captures, for tests and for
//! the demo. Listens on a loopback address only. See `astcti_server::replay` and docs/AMI.md.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer};
use astcti_server::replay::{channel_list, Capture};

const USAGE: &str = "\
Usage: ami-replay [options] FILE.ami...
  --listen ADDR      address to listen on (default 127.0.0.1:5038); loopback addresses only
  --banner VERSION   banner version (default: the capture's, else 1.0)
  --user NAME        accepted Username (default ctimanager)
  --secret SECRET    accepted Secret (default ctimanager); other logins get Asterisk's error
  --pace P           recorded (the capture's .recv-timing.tsv), fast, or N frames per second
                     (default recorded)
  --times N          plays of the files per connection, 0 = forever (default 1)
  --rewrite-ids      give every play its own Uniqueid/Linkedid values
  --spread DEVICE:N  channels DEVICE-HEX become DEVICExPLAYxM-HEX (M = HEX mod N): the calls of
                     one phone reach N distinct agents per play, new ones in every play
  --drop-after BYTES close the first connection after BYTES replayed bytes
  --no-pong          never answer Ping
  --channels FILE    answer CoreShowChannels and Status with the CoreShowChannel and Status
                     events of this capture (default: empty lists)
  --quiet            do not print the actions received
";

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn parse(args: &[String]) -> Result<ReplayConfig, String> {
    let mut listen: SocketAddr = "127.0.0.1:5038".parse().map_err(|_| "address")?;
    let mut files = Vec::new();
    let mut banner = None;
    let mut user = None;
    let mut secret = None;
    let mut pace = Pace::Recorded;
    let mut times = 1;
    let mut rewrite = false;
    let mut spread = None;
    let mut drop_after = None;
    let mut pong = true;
    let mut verbose = true;
    let mut channels = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => return Err(String::new()),
            "--listen" => {
                listen = value(&mut it, a)?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?;
            }
            "--banner" => {
                let v = value(&mut it, a)?;
                banner = Some(v.trim_start_matches("Asterisk Call Manager/").to_string());
            }
            "--user" => user = Some(value(&mut it, a)?.clone()),
            "--secret" => secret = Some(value(&mut it, a)?.clone()),
            "--pace" => {
                pace = match value(&mut it, a)?.as_str() {
                    "recorded" => Pace::Recorded,
                    "fast" => Pace::Fast,
                    n => Pace::Rate(
                        n.parse::<f64>()
                            .ok()
                            .filter(|r| *r > 0.0)
                            .ok_or(format!("--pace: {n:?} is not recorded, fast or a rate"))?,
                    ),
                }
            }
            "--times" => {
                times = value(&mut it, a)?
                    .parse()
                    .map_err(|e| format!("--times: {e}"))?
            }
            "--rewrite-ids" => rewrite = true,
            "--spread" => {
                let v = value(&mut it, a)?;
                let (device, n) = v
                    .rsplit_once(':')
                    .and_then(|(d, n)| Some((d.to_string(), n.parse::<u64>().ok()?)))
                    .filter(|(d, n)| !d.is_empty() && *n > 0)
                    .ok_or(format!("--spread: {v:?} is not DEVICE:N"))?;
                spread = Some((device, n));
            }
            "--drop-after" => {
                drop_after = Some(
                    value(&mut it, a)?
                        .parse()
                        .map_err(|e| format!("--drop-after: {e}"))?,
                )
            }
            "--no-pong" => pong = false,
            "--channels" => {
                channels = channel_list(&Capture::load(&PathBuf::from(value(&mut it, a)?))?)
            }
            "--quiet" => verbose = false,
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            f => files.push(PathBuf::from(f)),
        }
    }
    if !listen.ip().is_loopback() {
        return Err(format!(
            "--listen {listen}: only loopback addresses are allowed"
        ));
    }
    if files.is_empty() {
        return Err("no capture file given".into());
    }
    let captures = files
        .iter()
        .map(|f| Capture::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cfg = ReplayConfig::new(listen, captures);
    if let Some(b) = banner {
        cfg.banner = b;
    }
    if let Some(u) = user {
        cfg.user = u;
    }
    if let Some(s) = secret {
        cfg.secret = s;
    }
    cfg.pace = pace;
    cfg.times = times;
    cfg.rewrite_ids = rewrite;
    cfg.spread = spread;
    cfg.drop_after = drop_after;
    cfg.answer_ping = pong;
    cfg.verbose = verbose;
    cfg.channels = channels;
    Ok(cfg)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("ami-replay: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let frames: usize = cfg.captures.iter().map(|c| c.frames.len()).sum();
    let mut server = match ReplayServer::start(cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ami-replay: cannot listen on {}: {e}", cfg.listen);
            std::process::exit(1);
        }
    };
    eprintln!(
        "ami-replay: listening on {} (banner {}, {} frames per play, {} plays)",
        server.addr(),
        cfg.banner,
        frames,
        if cfg.times == 0 {
            "endless".to_string()
        } else {
            cfg.times.to_string()
        }
    );
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    if ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })
    .is_err()
    {
        eprintln!("ami-replay: cannot install the signal handler");
    }
    let _ = rx.recv();
    server.stop();
}
