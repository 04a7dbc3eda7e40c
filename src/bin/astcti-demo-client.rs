//! `astcti-demo-client`: a small terminal stand-in for the original AstCTIClient, for the demo.
//!
//! It speaks the original protocol exactly as AstCTIClient does (USER, PASS with the MD5 of the
//! password, NOOP every 1.5 s), prints every notification it receives, and on `Link` prints the URL the
//! original client would open for the caller's context (placeholders `{CALLERID}`, `{CALLERNAME}`,
//! `{CONTEXT}`, `{CALLDATA}`, `{CHANNEL}`, `{UNIQUEID}`; this client URL-encodes the values, the
//! original did not). It does not write `cti.EXT` itself (the original client does, through MySQL):
//! the demo's agent row already holds it.
//!
//! `--probe-ami HOST:PORT USER SECRET` instead checks whether an Asterisk AMI there accepts that login
//! (exit 0) or not (exit 1); `demo/run.sh` uses it to choose between a real Asterisk and `ami-replay`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const USAGE: &str = "\
Usage: astcti-demo-client [--server HOST:PORT] [--user NAME] [--password PW] [--url TEMPLATE]
                          [--until-link CALLDATA] [--timeout SECONDS]
       astcti-demo-client --probe-ami HOST:PORT USER SECRET
  --server      the CTI server (default 127.0.0.1:9000)
  --user        login name (default test); --password (default test)
  --url         the CTI application's URL template for the caller's context
  --until-link  exit 0 as soon as a Link carrying this calldata arrives (the demo's --check)
  --timeout     give up after this many seconds (exit 1); default: run until Ctrl-C
";

struct Options {
    server: String,
    user: String,
    password: String,
    url: String,
    until_link: Option<String>,
    timeout: Option<Duration>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        server: "127.0.0.1:9000".into(),
        user: "test".into(),
        password: "test".into(),
        url: "http://localhost/demo_page.php?callerid={CALLERID}&callername={CALLERNAME}&calldata={CALLDATA}&channel={CHANNEL}&uniqueid={UNIQUEID}".into(),
        until_link: None,
        timeout: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--server" => o.server = v()?,
            "--user" => o.user = v()?,
            "--password" => o.password = v()?,
            "--url" => o.url = v()?,
            "--until-link" => o.until_link = Some(v()?),
            "--timeout" => {
                let s: u64 = v()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                o.timeout = Some(Duration::from_secs(s));
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// Decodes the entities the server writes (`&amp;` … and `&#N;`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

fn field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(unescape(&xml[start..end]))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn url_for(template: &str, xml: &str) -> String {
    let f = |n| url_encode(&field(xml, n).unwrap_or_default());
    template
        .replace("{CALLERID}", &f("calleridnum"))
        .replace("{CALLERNAME}", &f("calleridname"))
        .replace("{CONTEXT}", &f("context"))
        .replace("{CALLDATA}", &f("appdata"))
        .replace("{CHANNEL}", &f("channel"))
        .replace("{UNIQUEID}", &f("uniqueid"))
}

fn describe(id: &str, xml: &str) -> String {
    let g = |n| field(xml, n).unwrap_or_default();
    match id {
        "Newcallerid" => format!(
            "RINGING  call from {} ({}) on {}",
            g("calleridnum"),
            g("calleridname"),
            g("channel")
        ),
        "Newstate" => format!("STATE    {} is {}", g("channel"), g("state")),
        "Link" => format!(
            "ANSWERED {} ({}) on {}: context {}, calldata {}",
            g("calleridnum"),
            g("calleridname"),
            g("channel"),
            g("context"),
            g("appdata")
        ),
        "Hangup" => format!("HANGUP   {}", g("channel")),
        other => format!("{other} (unknown notification)"),
    }
}

fn connect(addr: &str) -> Result<TcpStream, String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    let mut last = format!("{addr}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

fn probe_ami(addr: &str, user: &str, secret: &str) -> bool {
    let Ok(mut s) = connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return false,
    });
    let mut banner = String::new();
    if r.read_line(&mut banner).is_err() || !banner.starts_with("Asterisk Call Manager/") {
        return false;
    }
    let login = format!("Action: Login\r\nActionID: probe\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: off\r\n\r\n");
    if s.write_all(login.as_bytes()).is_err() {
        return false;
    }
    let mut ok = false;
    for _ in 0..20 {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => ok |= line.trim() == "Response: Success",
        }
    }
    let _ = s.write_all(b"Action: Logoff\r\nActionID: probe-bye\r\n\r\n");
    ok
}

fn run(o: &Options) -> Result<(), String> {
    if let Some(t) = o.timeout {
        let what = match &o.until_link {
            Some(c) => format!("no Link with calldata {c} within {} s", t.as_secs()),
            None => format!("stopped after {} s", t.as_secs()),
        };
        std::thread::spawn(move || {
            std::thread::sleep(t);
            eprintln!("astcti-demo-client: {what}");
            std::process::exit(1);
        });
    }
    let sock = connect(&o.server)?;
    let mut w = sock.try_clone().map_err(|e| e.to_string())?;
    let secret = format!("{:x}", md5::compute(o.password.as_bytes()));
    // The original client's NOOP timer (1.5 s), from the moment the connection is up.
    let mut noop = w.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(1500));
        if noop.write_all(b"NOOP\n").is_err() {
            return;
        }
    });
    let mut r = BufReader::new(sock);
    let mut state = "unknown";
    let mut xml = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let text = line.trim_end_matches('\n');
        if !xml.is_empty() || text.starts_with('<') {
            xml.push_str(text);
            if xml.contains("</event>") {
                let id = xml
                    .split("id=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string();
                println!("{}", describe(&id, &xml));
                if id == "Link" {
                    println!(
                        "         the CTI application opens: {}",
                        url_for(&o.url, &xml)
                    );
                    if o.until_link
                        .as_deref()
                        .is_some_and(|c| field(&xml, "appdata").as_deref() == Some(c))
                    {
                        return Ok(());
                    }
                }
                let _ = std::io::stdout().flush();
                xml.clear();
            }
            continue;
        }
        match (state, &text[..text.len().min(3)]) {
            ("unknown", "100") => {
                w.write_all(format!("USER {}\n", o.user).as_bytes())
                    .map_err(|e| e.to_string())?;
                state = "user";
            }
            ("user", "100") => {
                w.write_all(format!("PASS {secret}\n").as_bytes())
                    .map_err(|e| e.to_string())?;
                state = "pass";
            }
            ("pass", "102") => {
                println!(
                    "logged in to {} as {}; waiting for calls (Ctrl-C stops)",
                    o.server, o.user
                );
                let _ = std::io::stdout().flush();
                state = "in";
            }
            (_, "101") => {
                let _ = w.write_all(b"QUIT\n");
                return Err(format!("the server refused the login ({text})"));
            }
            _ => {}
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--probe-ami") {
        let [_, addr, user, secret] = args.as_slice() else {
            eprint!("{USAGE}");
            std::process::exit(2);
        };
        std::process::exit(if probe_ami(addr, user, secret) { 0 } else { 1 });
    }
    if args.iter().any(|a| a == "--help") {
        print!("{USAGE}");
        return;
    }
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("astcti-demo-client: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("astcti-demo-client: {e}");
        std::process::exit(1);
    }
}
