//! `ami-replay`: plays Asterisk for tests and for the demo, from recorded `.ami` captures.
//!
//! This module is the pure core: splitting a capture into its banner and raw event frames (bytes kept
//! exactly as recorded), their send times (from the capture's `.recv-timing.tsv`, when it has one),
//! rewriting Uniqueid/Linkedid values so that repeated plays stay distinct calls, and the answers to
//! the actions a CTI server sends (Login, Ping, Originate, GetConfig, CoreShowChannels, Status,
//! Logoff). The sockets and threads are in [`server`].

pub mod server;

use std::path::Path;
use std::time::Duration;

use crate::ami::frame::Frame;

/// One recorded event, as bytes, with its offset in time from the start of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub bytes: Vec<u8>,
    pub at: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The version from `Asterisk Call Manager/<version>`, if the capture starts with a banner.
    pub banner: Option<String>,
    /// Event frames only (responses to the recording client's own actions are left out).
    pub frames: Vec<RawFrame>,
}

impl Capture {
    /// The index of the first frame at or after `from` that contains every one of `needles` (for
    /// tests that step through a capture: [`server::ReplayServer::play_through`]).
    pub fn frame_with(&self, from: usize, needles: &[&str]) -> Option<usize> {
        let has = |f: &RawFrame, n: &str| {
            n.is_empty() || f.bytes.windows(n.len()).any(|w| w == n.as_bytes())
        };
        (from..self.frames.len()).find(|&i| needles.iter().all(|n| has(&self.frames[i], n)))
    }
}

const BANNER: &[u8] = b"Asterisk Call Manager/";

/// Splits bytes into lines including their LF (the last one may lack it).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        let start = pos;
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(bytes.len());
        pos = end;
        Some((start, &bytes[start..end]))
    })
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b'\r' || b == b'\n')
}

fn is_event(frame: &[u8]) -> bool {
    lines(frame).any(|(_, l)| l.len() >= 6 && l[..6].eq_ignore_ascii_case(b"Event:"))
}

/// Parses `.recv-timing.tsv` (`t_seconds offset bytes` per recv): (end offset, seconds) pairs.
pub fn parse_timing(text: &str) -> Result<Vec<(usize, f64)>, String> {
    let mut out = Vec::new();
    for (n, row) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let parse = || -> Option<(usize, f64)> {
            let t = cols.first()?.parse::<f64>().ok()?;
            let off = cols.get(1)?.parse::<usize>().ok()?;
            let len = cols.get(2)?.parse::<usize>().ok()?;
            Some((off + len, t))
        };
        out.push(parse().ok_or_else(|| format!("timing line {}: {row:?}", n + 1))?);
    }
    Ok(out)
}

impl Capture {
    /// Splits a capture. `timing` (from [`parse_timing`]) gives each frame the time its last byte
    /// was received.
    pub fn parse(bytes: &[u8], timing: Option<&[(usize, f64)]>) -> Capture {
        let mut cap = Capture::default();
        let mut body = bytes;
        let mut base = 0;
        if bytes.starts_with(BANNER) {
            let (_, first) = lines(bytes).next().unwrap_or((0, bytes));
            let text = String::from_utf8_lossy(&first[BANNER.len()..]);
            cap.banner = Some(text.trim().to_string());
            base = first.len();
            body = &bytes[base..];
        }
        let time_at = |end: usize| {
            timing.and_then(|t| {
                t.iter()
                    .find(|(chunk_end, _)| *chunk_end >= end)
                    .map(|(_, s)| Duration::from_secs_f64(*s))
            })
        };
        let mut start: Option<usize> = None;
        for (off, line) in lines(body) {
            if is_blank(line) {
                if let Some(s) = start.take() {
                    let frame = &body[s..off + line.len()];
                    if is_event(frame) {
                        cap.frames.push(RawFrame {
                            bytes: frame.to_vec(),
                            at: time_at(base + off + line.len()),
                        });
                    }
                }
            } else if start.is_none() {
                start = Some(off);
            }
        }
        cap
    }

    /// Reads `path` and, if present, `path` with `.ami` replaced by `.recv-timing.tsv`.
    pub fn load(path: &Path) -> Result<Capture, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let timing_path = path.with_extension("recv-timing.tsv");
        let timing = match std::fs::read_to_string(&timing_path) {
            Ok(text) => {
                Some(parse_timing(&text).map_err(|e| format!("{}: {e}", timing_path.display()))?)
            }
            Err(_) => None,
        };
        Ok(Capture::parse(&bytes, timing.as_deref()))
    }
}

/// Whether a header names a channel or call id whose value must change between plays.
fn is_id_key(key: &[u8]) -> bool {
    let k = String::from_utf8_lossy(key).to_ascii_lowercase();
    k.contains("uniqueid") || k.contains("linkedid")
}

/// For play number `round` (0 = as recorded), adds `round * 100000` to the number after the last
/// `.` of every Uniqueid/Linkedid-like value (`1795893656.0` → `1795893656.100000`).
/// Spreads the calls of `device` over many agents: in round `round`, every channel name
/// `DEVICE-HEX` becomes `DEVICExROUNDxN-HEX` with `N` = HEX mod `per_round`, so that a capture
/// answered by one phone is answered by `per_round` distinct agents per play, and by new ones in
/// every play (load tests with many agents). Everything else is left byte for byte.
pub fn spread_agents(frame: &[u8], device: &str, round: u64, per_round: u64) -> Vec<u8> {
    let pat = format!("{device}-");
    let pat = pat.as_bytes();
    let mut out = Vec::with_capacity(frame.len() + 64);
    let mut i = 0;
    while i < frame.len() {
        if frame[i..].starts_with(pat) {
            let hex_start = i + pat.len();
            let hex_len = frame[hex_start..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            let hex = std::str::from_utf8(&frame[hex_start..hex_start + hex_len]).unwrap_or("");
            if let (true, Ok(n)) = (hex_len > 0, u64::from_str_radix(hex, 16)) {
                let n = n % per_round.max(1);
                out.extend_from_slice(format!("{device}x{round}x{n}-{hex}").as_bytes());
                i = hex_start + hex_len;
                continue;
            }
        }
        out.push(frame[i]);
        i += 1;
    }
    out
}

pub fn rewrite_ids(frame: &[u8], round: u64) -> Vec<u8> {
    if round == 0 {
        return frame.to_vec();
    }
    let mut out = Vec::with_capacity(frame.len() + 32);
    for (_, line) in lines(frame) {
        let rewritten = line
            .iter()
            .position(|&b| b == b':')
            .filter(|&colon| is_id_key(&line[..colon]))
            .and_then(|colon| {
                let text = std::str::from_utf8(&line[colon + 1..]).ok()?;
                let value = text.trim_end_matches(['\r', '\n']).trim();
                let (head, num) = value.rsplit_once('.')?;
                let n: u64 = num.parse().ok()?;
                let ending = &text[text.trim_end_matches(['\r', '\n']).len()..];
                Some(format!(
                    "{}: {head}.{}{ending}",
                    String::from_utf8_lossy(&line[..colon]),
                    n + round * 100_000
                ))
            });
        match rewritten {
            Some(l) => out.extend_from_slice(l.as_bytes()),
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// What the replayer does with one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Logged in: start the replay.
    pub login_ok: bool,
    /// Close the connection after the reply.
    pub close: bool,
}

pub struct Credentials<'a> {
    pub user: &'a str,
    pub secret: &'a str,
    pub answer_ping: bool,
    /// Send `FullyBooted` after a login (Asterisk 1.6+).
    pub fully_booted: bool,
    /// `CoreShowChannel` and `Status` events to answer those actions with (empty lists otherwise).
    pub channels: &'a [Frame],
}

/// The decoded `CoreShowChannel` and `Status` list items of a capture (for `--channels`).
pub fn channel_list(capture: &Capture) -> Vec<Frame> {
    let mut d = crate::ami::frame::Decoder::default();
    for f in &capture.frames {
        d.push(&f.bytes);
    }
    std::iter::from_fn(|| d.next_item())
        .filter_map(|i| match i {
            crate::ami::frame::Item::Frame(f)
                if matches!(f.event(), Some("CoreShowChannel") | Some("Status")) =>
            {
                Some(f)
            }
            _ => None,
        })
        .collect()
}

/// The list items of `event`, re-labelled with `id`, and how many there are.
fn list_items(channels: &[Frame], event: &str, id: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    for f in channels.iter().filter(|f| f.event() == Some(event)) {
        let f = f.map_values(|k, _| k.eq_ignore_ascii_case("ActionID").then(|| id.to_string()));
        out.extend_from_slice(f.to_text().as_bytes());
        out.extend_from_slice(b"\r\n");
        n += 1;
    }
    (out, n)
}

fn response(lines: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in lines {
        if !v.is_empty() || *k == "ActionID" {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Asterisk's answer to `action` (a frame with `Action:`).
pub fn answer(action: &Frame, creds: &Credentials<'_>) -> Reply {
    let id = action.action_id().unwrap_or("");
    let name = action
        .get("Action")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let plain = |bytes| Reply {
        bytes,
        login_ok: false,
        close: false,
    };
    match name.as_str() {
        "login" => {
            let ok = action.get("Username") == Some(creds.user)
                && action.get("Secret") == Some(creds.secret);
            if ok {
                let mut bytes = response(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("Message", "Authentication accepted"),
                ]);
                if creds.fully_booted {
                    bytes.extend_from_slice(
                        b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1\r\nStatus: Fully Booted\r\n\r\n",
                    );
                }
                Reply {
                    bytes,
                    login_ok: true,
                    close: false,
                }
            } else {
                Reply {
                    bytes: response(&[
                        ("Response", "Error"),
                        ("ActionID", id),
                        ("Message", "Authentication failed"),
                    ]),
                    login_ok: false,
                    close: true,
                }
            }
        }
        "ping" if creds.answer_ping => plain(response(&[
            ("Response", "Success"),
            ("ActionID", id),
            ("Ping", "Pong"),
            ("Timestamp", "0.000000"),
        ])),
        "ping" => plain(Vec::new()),
        "originate" => plain(response(&[
            ("Response", "Success"),
            ("ActionID", id),
            ("Message", "Originate successfully queued"),
        ])),
        "getconfig" => plain(response(&[
            ("Response", "Success"),
            ("ActionID", id),
            ("Category-000000", "general"),
            ("Line-000000-000000", "replayed-by=ami-replay"),
        ])),
        "coreshowchannels" => {
            let mut b = response(&[
                ("Response", "Success"),
                ("ActionID", id),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ]);
            let (items, n) = list_items(creds.channels, "CoreShowChannel", id);
            b.extend(items);
            b.extend(response(&[
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", id),
                ("EventList", "Complete"),
                ("ListItems", &n.to_string()),
            ]));
            plain(b)
        }
        "status" => {
            let mut b = response(&[
                ("Response", "Success"),
                ("ActionID", id),
                ("EventList", "start"),
                ("Message", "Channel status will follow"),
            ]);
            let (items, n) = list_items(creds.channels, "Status", id);
            b.extend(items);
            let n = n.to_string();
            b.extend(response(&[
                ("Event", "StatusComplete"),
                ("ActionID", id),
                ("EventList", "Complete"),
                ("ListItems", &n),
                ("Items", &n),
            ]));
            plain(b)
        }
        "logoff" => Reply {
            bytes: response(&[
                ("Response", "Goodbye"),
                ("ActionID", id),
                ("Message", "Thanks for all the fish."),
            ]),
            login_ok: false,
            close: true,
        },
        _ => plain(response(&[
            ("Response", "Error"),
            ("ActionID", id),
            ("Message", "Invalid/unknown command"),
        ])),
    }
}

#[cfg(test)]
mod tests;
