//! `astcti-client`, the agent's program (docs/CLIENT.md): logs in to astcti-server (or the original
//! AstCTIServer) with the agent's existing `AstCTIClient.config`, shows the caller's number and name,
//! opens the CRM page or program on answer, dials out, and reconnects by itself.
//!
//! Shell around `astcti_server::client` (settings, reactions) and `astcti_server::cti` (the wire
//! format the server writes). One thread reads the server; the main thread sends `NOOP`s and what
//! the dial channel (a per-user Unix socket) and standard input ask for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astcti_server::client::react::{dial_number, react, Action};
use astcti_server::client::settings::{self, Settings};
use astcti_server::cti::{notify, proto};

const USAGE: &str = "\
Usage:
  astcti-client [--settings FILE] [--password-file FILE] [--foreground]
  astcti-client dial NUMBER|tel:URL [--context CONTEXT] [--settings FILE] [--password-file FILE]
  astcti-client --version | --help

  --settings FILE       the original AstCTIClient.config (default: AstCTIClient.config beside the
                        program, then $XDG_CONFIG_HOME/astcti-client/AstCTIClient.config)
  --password-file FILE  the CTI password (first line), instead of <Password> (or ASTCTI_PASSWORD)
  --foreground          one line per event on stdout (the default when stdout is a terminal)
  dial NUMBER           dial from the agent's phone: handed to the running client, or a one-shot
                        login when none runs; NUMBER may be a tel:, callto: or sip: URL
  --context CONTEXT     the outbound context (default: the first of <CTIOutboundContextes>)
On standard input the running client also takes `dial NUMBER [CONTEXT]`.
Exit codes: 0 stopped, 1 the server cannot be reached (dial), 2 bad arguments or settings,
3 the server refused the login (wrong user name or password, or already logged in).
";

struct Opts {
    settings: Option<PathBuf>,
    password_file: Option<PathBuf>,
    dial: Option<String>,
    context: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        settings: None,
        password_file: None,
        dial: None,
        context: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("astcti-client {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--settings" => o.settings = Some(value("--settings")?.into()),
            "--password-file" => o.password_file = Some(value("--password-file")?.into()),
            "--context" => o.context = Some(value("--context")?),
            "--foreground" => {}
            "dial" => o.dial = Some(value("dial")?),
            // A tel:/callto:/sip: URL handed over by the desktop.
            url if ["tel:", "callto:", "sip:"]
                .iter()
                .any(|s| url.to_ascii_lowercase().starts_with(s)) =>
            {
                o.dial = Some(url.to_string())
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Some(o))
}

fn settings_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("AstCTIClient.config")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return p;
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("astcti-client").join("AstCTIClient.config")
}

fn load(o: &Opts) -> Result<Settings, String> {
    let path = settings_path(o.settings.as_deref());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read the settings: {e}", path.display()))?;
    let s = settings::parse(&text, &path.display().to_string())?;
    let pw = match &o.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?,
        ),
        None => None,
    };
    let s = s.with_secrets(pw.as_deref(), &|k| std::env::var(k).ok());
    s.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(s)
}

/// The per-user dial channel (and single-instance lock).
fn dial_socket() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let user = std::env::var("USER").unwrap_or_else(|_| "agent".into());
    dir.join(format!("astcti-client-{user}.sock"))
}

enum LoginError {
    /// The server answered 101: retrying will not help.
    Refused(String),
    /// No server, or the connection broke: retry.
    Unreachable(String),
}

fn read_line(r: &mut impl BufRead) -> Result<String, LoginError> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err(LoginError::Unreachable(
            "the server closed the connection".into(),
        )),
        Ok(_) => Ok(line),
        Err(e) => Err(LoginError::Unreachable(format!(
            "no answer from the server: {e}"
        ))),
    }
}

/// Writes the agent's EXT into the cti table, as the original client does before every login.
fn register_ext(s: &Settings) -> Result<(), String> {
    use mysql::prelude::Queryable;
    let Some(db) = &s.database else {
        return Ok(());
    };
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(db.host.clone()))
        .tcp_port(db.port)
        .user(Some(db.user.clone()))
        .pass(Some(db.password.clone()))
        .db_name(Some(db.database.clone()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(5)));
    let mut conn = mysql::Conn::new(opts).map_err(|e| format!("database: {e}"))?;
    conn.exec_drop(
        "UPDATE cti SET EXT=? WHERE USERNAME=?",
        (&s.phone_ext, &s.username),
    )
    .map_err(|e| format!("database: {e}"))
}

/// Connects and logs in; the connected socket and its reader.
fn login(s: &Settings) -> Result<(TcpStream, BufReader<TcpStream>), LoginError> {
    register_ext(s).map_err(LoginError::Unreachable)?;
    let addr = (s.host.as_str(), s.port)
        .to_socket_addrs()
        .map_err(|e| LoginError::Unreachable(format!("cannot resolve {}: {e}", s.host)))?
        .next()
        .ok_or_else(|| LoginError::Unreachable(format!("{} has no address", s.host)))?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| LoginError::Unreachable(format!("cannot connect to {addr}: {e}")))?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = sock.set_nodelay(true);
    let mut r = BufReader::new(
        sock.try_clone()
            .map_err(|e| LoginError::Unreachable(e.to_string()))?,
    );
    let mut w = &sock;
    let welcome = read_line(&mut r)?;
    if welcome.as_bytes() != proto::WELCOME {
        return Err(LoginError::Unreachable(format!(
            "{addr} is not an AstCTI server (it said {:?})",
            welcome.trim_end()
        )));
    }
    let send = |w: &mut &TcpStream, line: String| {
        w.write_all(line.as_bytes())
            .map_err(|e| LoginError::Unreachable(format!("write failed: {e}")))
    };
    send(&mut w, format!("USER {}\n", s.username))?;
    match read_line(&mut r)?.as_bytes() {
        b if b == proto::OK => {}
        b if b == proto::KO => {
            return Err(LoginError::Refused(format!(
                "the server refused user {:?}: it is already logged in",
                s.username
            )))
        }
        b => {
            return Err(LoginError::Refused(format!(
                "the server refused the user name: {:?}",
                String::from_utf8_lossy(b).trim_end()
            )))
        }
    }
    let md5 = format!("{:x}", md5::compute(s.password.as_bytes()));
    send(&mut w, format!("PASS {md5}\n"))?;
    match read_line(&mut r)?.as_bytes() {
        b if b == proto::LOGGED_IN => Ok((sock, r)),
        _ => Err(LoginError::Refused(format!(
            "the server refused the login of {:?}: wrong user name or password, or PhoneExt {:?} \
             not in the cti table",
            s.username, s.phone_ext
        ))),
    }
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Carries out one reaction.
fn perform(action: Action) {
    match action {
        Action::LineState(l) if !l.is_empty() => say(&format!("STATE    {l}")),
        Action::LineState(_) | Action::DialEnabled(_) => {}
        Action::Popup {
            number,
            name,
            seconds,
        } => {
            say(&format!("RINGING  {number} ({name})"));
            // The freedesktop notification, where the desktop has the tool for it.
            let _ = Command::new("notify-send")
                .args([
                    "-t",
                    &(seconds * 1000).to_string(),
                    "AstCTI: call from",
                    &format!("{number} {name}"),
                ])
                .spawn();
        }
        Action::Launch { program, args } => {
            say(&format!("LAUNCH   {program} {args:?}"));
            if let Err(e) = Command::new(&program).args(&args).spawn() {
                say(&format!("ERROR    cannot start {program}: {e}"));
            }
        }
        Action::OpenUrl(url) => {
            say(&format!("OPEN     {url}"));
            let opener = if cfg!(target_os = "macos") {
                ("open", vec![url.clone()])
            } else if cfg!(windows) {
                ("explorer", vec![url.clone()])
            } else {
                ("xdg-open", vec![url.clone()])
            };
            if let Err(e) = Command::new(opener.0).args(&opener.1).spawn() {
                say(&format!(
                    "ERROR    cannot open {url} with {}: {e}",
                    opener.0
                ));
            }
        }
        Action::NoLaunch(why) => say(&format!("NOLAUNCH {why}")),
    }
}

/// `ORIG number|context|priority` for `number` in `context` (default: the first outbound one).
fn orig_line(s: &Settings, number: &str, context: Option<&str>) -> Result<String, String> {
    let n = dial_number(number)?;
    let c =
        match context {
            Some(c) => s.outbound.iter().find(|o| o.context == c).ok_or_else(|| {
                format!("{c:?} is not one of the outbound contexts in the settings")
            })?,
            None => s
                .outbound
                .first()
                .ok_or("the settings have no outbound context (<CTIOutboundContextes>)")?,
        };
    Ok(format!("ORIG {n}|{}|{}\n", c.context, c.priority))
}

/// `dial`: to the running client over the dial channel, else a one-shot login.
fn dial(s: &Settings, number: &str, context: Option<&str>) -> i32 {
    let line = match orig_line(s, number, context) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("astcti-client: {e}");
            return 2;
        }
    };
    #[cfg(unix)]
    if let Ok(mut c) = std::os::unix::net::UnixStream::connect(dial_socket()) {
        let _ = c.write_all(line.as_bytes());
        let mut answer = String::new();
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = c.read_to_string(&mut answer);
        println!("{}", answer.trim_end());
        return if answer.starts_with("ok") { 0 } else { 1 };
    }
    match login(s) {
        Ok((sock, mut r)) => {
            let mut w = &sock;
            let _ = w.write_all(line.as_bytes());
            let _ = read_line(&mut r);
            let _ = w.write_all(b"QUIT\n");
            let _ = read_line(&mut r);
            println!("ok: dialled {}", line.trim_end());
            0
        }
        Err(LoginError::Refused(e)) => {
            eprintln!("astcti-client: {e}");
            3
        }
        Err(LoginError::Unreachable(e)) => {
            eprintln!("astcti-client: {e}");
            1
        }
    }
}

/// Serves the dial channel: each connection sends one ORIG line, forwarded to the server.
#[cfg(unix)]
fn dial_channel(out: crossbeam_channel::Sender<String>) -> Result<(), String> {
    let path = dial_socket();
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(format!(
            "another astcti-client runs for this user ({} answers)",
            path.display()
        ));
    }
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(&c).read_line(&mut line);
            let ok =
                line.starts_with("ORIG ") && !line.contains('\r') && out.send(line.clone()).is_ok();
            let _ = c.write_all(if ok {
                b"ok: handed to the running client\n"
            } else {
                b"error\n"
            });
        }
    });
    Ok(())
}

fn run(s: Settings) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let _ = ctrlc::set_handler(move || st.store(true, Ordering::SeqCst));
    let (dial_tx, dial_rx) = crossbeam_channel::unbounded::<String>();
    #[cfg(unix)]
    if let Err(e) = dial_channel(dial_tx.clone()) {
        eprintln!("astcti-client: {e}");
        return 2;
    }
    // `dial NUMBER [CONTEXT]` on standard input.
    let (s2, tx2) = (s.clone(), dial_tx);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let mut w = line.split_whitespace();
            if w.next() == Some("dial") {
                match w.next().map(|n| orig_line(&s2, n, w.next())) {
                    Some(Ok(l)) => {
                        let _ = tx2.send(l);
                    }
                    Some(Err(e)) => say(&format!("ERROR    {e}")),
                    None => say("ERROR    dial needs a number"),
                }
            }
        }
    });
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        match login(&s) {
            Ok((sock, r)) => {
                backoff = Duration::from_secs(1);
                say(&format!(
                    "LOGIN    {} on {} at {}:{}",
                    s.username, s.phone_ext, s.host, s.port
                ));
                session(&s, sock, r, &stop, &dial_rx);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                say("LOST     the connection to the server; logging in again");
            }
            Err(LoginError::Refused(e)) => {
                eprintln!("astcti-client: {e}");
                return 3;
            }
            Err(LoginError::Unreachable(e)) => {
                say(&format!(
                    "WAIT     {e}; trying again in {} s",
                    backoff.as_secs()
                ));
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    #[cfg(unix)]
    let _ = std::fs::remove_file(dial_socket());
    0
}

/// One logged-in session: NOOPs, dial requests, notifications, until it breaks or Ctrl-C.
fn session(
    s: &Settings,
    sock: TcpStream,
    mut r: BufReader<TcpStream>,
    stop: &AtomicBool,
    dials: &crossbeam_channel::Receiver<String>,
) {
    let (tx, rx) = crossbeam_channel::unbounded::<Option<String>>();
    let _ = r.get_ref().set_read_timeout(None);
    std::thread::spawn(move || {
        let mut buf = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {}
            }
            if line.starts_with("<event") || !buf.is_empty() {
                buf.push_str(&line);
                if buf.len() > 64 * 1024 {
                    buf.clear();
                }
                if line.ends_with("</call></event>\n") {
                    let _ = tx.send(Some(std::mem::take(&mut buf)));
                }
            }
        }
    });
    let mut w = &sock;
    let mut next_noop = Instant::now() + Duration::from_millis(s.noop_ms);
    loop {
        if stop.load(Ordering::SeqCst) {
            let _ = w.write_all(b"QUIT\n");
            return;
        }
        while let Ok(line) = dials.try_recv() {
            say(&format!("DIAL     {}", line.trim_end()));
            if w.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
        if Instant::now() >= next_noop {
            next_noop = Instant::now() + Duration::from_millis(s.noop_ms);
            if w.write_all(b"NOOP\n").is_err() {
                return;
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(event)) => {
                if let Some((kind, record)) = notify::parse(&event) {
                    for a in react(s, kind, &record) {
                        perform(a);
                    }
                }
            }
            Ok(None) => return,
            Err(_) => {}
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            eprintln!("astcti-client: {e}");
            std::process::exit(2);
        }
    };
    let s = match load(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("astcti-client: {e}");
            std::process::exit(2);
        }
    };
    let code = match &opts.dial {
        Some(number) => dial(&s, number, opts.context.as_deref()),
        None => run(s),
    };
    std::process::exit(code);
}
