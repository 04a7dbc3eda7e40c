//! `astcti-client`, the agent's program (docs/CLIENT.md): logs in to astcti-server (or the original
//! AstCTIServer) with the agent's existing `AstCTIClient.config`, shows the caller's number and name,
//! opens the CRM page or program on answer, dials out, and reconnects by itself.
//!
//! Shell around `astcti_server::client` (settings, reactions) and `astcti_server::cti` (the wire
//! format the server writes). One thread reads the server; the main thread sends `NOOP`s and what
//! the dial channel and standard input ask for; one thread does the desktop's part (notifications,
//! launches, URLs).
//!
//! Desktop integration (feature `client`, docs/DEPENDENCIES.md): `notify-rust` for the caller-ID
//! notification (the freedesktop service on Linux and BSD, the native ones on macOS and Windows),
//! `open` for a URL in the desktop's default handler, `interprocess` for the per-user dial channel
//! (a Unix socket readable only by the user, a named pipe on Windows).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{ListenerOptions, Name, Stream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astcti_server::client::lines::{self, Line};
use astcti_server::client::react::{dial_request, orig_line, parse_dial_request, react, Action};
use astcti_server::client::settings::{self, Settings};
use astcti_server::cti::{notify, proto};

const USAGE: &str = "\
Usage:
  astcti-client [--settings FILE] [--password-file FILE] [--foreground] [--gui]
  astcti-client dial NUMBER|tel:URL [--context CONTEXT] [--settings FILE] [--password-file FILE]
  astcti-client --version | --help

  --settings FILE       the original AstCTIClient.config (default: AstCTIClient.config beside the
                        program, then astcti-client/AstCTIClient.config in the platform's config
                        directory: $XDG_CONFIG_HOME or ~/.config, ~/Library/Application Support,
                        %APPDATA%)
  --host HOST, --port PORT, --username NAME, --phone-ext EXT
                        instead of <Host>, <Port>, <Username>, <PhoneExt> in the settings
  --password-file FILE  the CTI password (first line), instead of <Password> (or ASTCTI_PASSWORD)
  --foreground          one line per event on stdout (the default when stdout is a terminal)
  --gui                 the agent's window: line state, caller-ID popup, dial box, settings
                        (when built with the cargo feature gui)
  dial NUMBER           dial from the agent's phone: handed to the running client, or a one-shot
                        login when none runs; NUMBER may be a tel:, callto: or sip: URL
  --context CONTEXT     the outbound context (default: the first of <CTIOutboundContextes>)
On standard input the running client also takes `dial NUMBER [CONTEXT]`.
Exit codes: 0 stopped, 1 the server cannot be reached (dial), 2 bad arguments or settings,
3 the server refused the login (wrong user name or password, or already logged in).
";

#[derive(Default)]
struct Opts {
    settings: Option<PathBuf>,
    password_file: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    phone_ext: Option<String>,
    gui: bool,
    dial: Option<String>,
    context: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts::default();
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
            "--host" => o.host = Some(value("--host")?),
            "--port" => {
                let v = value("--port")?;
                o.port = Some(
                    v.parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("--port {v:?} is not a port (1-65535)"))?,
                )
            }
            "--username" => o.username = Some(value("--username")?),
            "--phone-ext" => o.phone_ext = Some(value("--phone-ext")?),
            "--foreground" => {}
            "--gui" => o.gui = true,
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
    config_dir()
        .join("astcti-client")
        .join("AstCTIClient.config")
}

/// The platform's directory for a user's settings.
fn config_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return var("APPDATA")
            .or_else(|| var("USERPROFILE").map(|h| h.join("AppData").join("Roaming")))
            .unwrap_or_else(|| PathBuf::from("."));
    }
    if cfg!(target_os = "macos") {
        if let Some(h) = var("HOME") {
            return h.join("Library").join("Application Support");
        }
    }
    var("XDG_CONFIG_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn load(o: &Opts) -> Result<Settings, String> {
    let path = settings_path(o.settings.as_deref());
    let from_flags = o.settings.is_none() && o.username.is_some() && o.phone_ext.is_some();
    let s = match std::fs::read_to_string(&path) {
        Ok(text) => settings::parse(&text, &path.display().to_string())?,
        // No file, but the flags say who and where: the original's defaults for the rest.
        Err(e) if from_flags && e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
        Err(e) => {
            return Err(format!(
                "{}: cannot read the settings: {e} (give --settings FILE, or put \
                 AstCTIClient.config beside the program or there)",
                path.display()
            ))
        }
    };
    let pw = match &o.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?,
        ),
        None => None,
    };
    let mut s = s.with_secrets(pw.as_deref(), &|k| std::env::var(k).ok());
    if let Some(v) = &o.host {
        s.host = v.clone();
    }
    if let Some(v) = o.port {
        s.port = v;
    }
    if let Some(v) = &o.username {
        s.username = v.clone();
    }
    if let Some(v) = &o.phone_ext {
        s.phone_ext = v.clone();
    }
    s.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(s)
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "agent".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The per-user dial channel (and single-instance lock): a Unix socket in `$XDG_RUNTIME_DIR` (private
/// to the user by the XDG specification), else in `TMP/astcti-client-USER/` (see
/// [`private_dir`]); the named pipe `\\.\pipe\astcti-client-USER` on Windows.
#[cfg(not(windows))]
fn dial_channel_path() -> std::io::Result<PathBuf> {
    let name = format!("astcti-client-{}.sock", user_name());
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(name));
    }
    let dir = std::env::temp_dir().join(format!("astcti-client-{}", user_name()));
    private_dir(&dir)?;
    Ok(dir.join(name))
}

/// Makes `dir` (mode 0700) or accepts it only if it is a real directory of this user that nobody
/// else may enter: in a shared temporary directory another local user could otherwise create the
/// socket first and receive the numbers the agent dials.
#[cfg(all(unix, not(windows)))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let m = std::fs::symlink_metadata(dir)?;
    let why = if !m.file_type().is_dir() {
        "it is not a directory (a link?)"
    } else if m.uid() != own_uid()? {
        "another user owns it"
    } else if m.permissions().mode() & 0o077 != 0 {
        "other users may enter it"
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{}: {why}; remove it, or set XDG_RUNTIME_DIR to a directory of yours",
            dir.display()
        ),
    ))
}

/// This process's user id: the owner of a file it creates (no `libc`, no `unsafe`).
#[cfg(all(unix, not(windows)))]
fn own_uid() -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe =
        std::env::temp_dir().join(format!(".astcti-client-uid-{}-{nanos}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    let uid = f.metadata().map(|m| m.uid());
    drop(f);
    let _ = std::fs::remove_file(&probe);
    uid
}

fn dial_channel_name() -> std::io::Result<Name<'static>> {
    #[cfg(windows)]
    {
        use interprocess::local_socket::GenericNamespaced;
        format!("astcti-client-{}", user_name()).to_ns_name::<GenericNamespaced>()
    }
    #[cfg(not(windows))]
    {
        use interprocess::local_socket::GenericFilePath;
        dial_channel_path()?.to_fs_name::<GenericFilePath>()
    }
}

fn dial_channel_shown() -> String {
    #[cfg(windows)]
    return format!("\\\\.\\pipe\\astcti-client-{}", user_name());
    #[cfg(not(windows))]
    return match dial_channel_path() {
        Ok(p) => p.display().to_string(),
        Err(e) => format!("(no dial channel: {e})"),
    };
}

/// What the session tells the window (nothing is told on the command line).
#[cfg_attr(not(feature = "gui"), allow(dead_code))]
pub enum UiEvent {
    /// Logged in, as `PhoneExt`.
    Online { ext: String },
    /// The EXT the server registered the login under (astcti-server's answer to `EXT`).
    Registered(String),
    /// Not logged in (the link broke, the server cannot be reached, or stopped), and why.
    Offline(String),
    /// The server refused the login; the session has stopped.
    Refused(String),
    /// One notification, and the reactions it gave.
    Event {
        kind: notify::Kind,
        record: notify::Record,
        actions: Vec<Action>,
    },
    /// Sent to the server.
    Dialled(String),
}

pub trait Ui: Send + Sync {
    fn update(&self, event: UiEvent);
}

/// The command line's window: none.
struct NoUi;

impl Ui for NoUi {
    fn update(&self, _: UiEvent) {}
}

/// The handles the window shares with one running session loop ([`run`]).
pub struct Core {
    /// Ends the loop (Ctrl-C, quitting the window, new settings).
    pub stop: Arc<AtomicBool>,
    /// Logged in now: dial requests are taken.
    pub online: Arc<AtomicBool>,
    pub dial_tx: crossbeam_channel::Sender<String>,
    dial_rx: crossbeam_channel::Receiver<String>,
    pub desktop: crossbeam_channel::Sender<Desktop>,
    /// Whether `Newcallerid` raises a desktop notification (the window may show its own popup).
    pub notify_desktop: bool,
}

impl Core {
    fn new(desktop: crossbeam_channel::Sender<Desktop>, online: Arc<AtomicBool>) -> Core {
        let (dial_tx, dial_rx) = crossbeam_channel::bounded::<String>(64);
        Core {
            stop: Arc::new(AtomicBool::new(false)),
            online,
            dial_tx,
            dial_rx,
            desktop,
            notify_desktop: true,
        }
    }
}

enum LoginError {
    /// The server answered 101 to the password: a wrong password — or, for an agent it logged in
    /// before, most likely a passing refusal (a restarting server, a busy database).
    Refused(String),
    /// No server, or the connection broke: retry.
    Unreachable(String),
}

/// One line of the login dialogue, bounded and decoded lossily (`client::lines`).
fn read_line(r: &mut impl BufRead) -> Result<String, LoginError> {
    match lines::read_line(r, lines::MAX_LINE) {
        Ok(Line::Eof) => Err(LoginError::Unreachable(
            "the server closed the connection".into(),
        )),
        Ok(Line::Text(line)) => Ok(line),
        Ok(Line::TooLong) => Err(LoginError::Unreachable(format!(
            "the server sent a line longer than {} bytes",
            lines::MAX_LINE
        ))),
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
    // In words, naming the settings dialog's fields (DATABASE), never the driver's debug form.
    const KEYS: astcti_server::store::DbKeys = astcti_server::store::DbKeys {
        host_port: "the DATABASE settings' MySQL host and port",
        user_pass: "the DATABASE settings' MySQL user and password",
        dbms: "the DATABASE settings' MySQL database",
        timeout: "the client's database timeout",
    };
    let words = |e: mysql::Error| {
        let at = format!("{}:{}", db.host, db.port);
        let why =
            astcti_server::store::explain_for(&e, &at, Duration::from_secs(5), &db.database, &KEYS);
        format!("cannot write PhoneExt into the cti table: {why}")
    };
    let mut conn = mysql::Conn::new(opts).map_err(words)?;
    conn.exec_drop(
        "UPDATE cti SET EXT=? WHERE USERNAME=?",
        (&s.phone_ext, &s.username),
    )
    .map_err(words)
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
            // An earlier connection of this agent the server has not closed yet (a half-open
            // one ends within its timeouts): always worth another try.
            return Err(LoginError::Unreachable(format!(
                "the server says user {:?} is already logged in (an earlier connection it has not \
                 closed yet)",
                s.username
            )));
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

/// What the desktop thread does for the session.
#[derive(Clone)]
pub enum Desktop {
    /// The caller-ID notification.
    Popup {
        number: String,
        name: String,
        seconds: u64,
    },
    /// The CRM program, started without a shell.
    Launch { program: String, args: Vec<String> },
    /// A URL in the desktop's default handler.
    Open(String),
}

/// Where the window shows what the desktop could not do (set once by the window; the command line
/// has only its trace).
pub static DESKTOP_FAILED: std::sync::OnceLock<FailureShown> = std::sync::OnceLock::new();

pub type FailureShown = Box<dyn Fn(&str) + Send + Sync>;

/// A launch or URL that failed: in the trace, and in the window if there is one.
fn desktop_failed(what: &str) {
    say(&format!("ERROR    {what}"));
    if let Some(show) = DESKTOP_FAILED.get() {
        show(what);
    }
}

/// Starts the desktop thread: notifications, launches and URLs one after another, so a slow or
/// absent notification service or URL handler never delays the session (at most a few wait; more
/// are dropped, and said so). It also reaps the programs it started, so none is left a zombie.
pub fn start_desktop() -> crossbeam_channel::Sender<Desktop> {
    let (tx, rx) = crossbeam_channel::bounded::<Desktop>(8);
    std::thread::spawn(move || {
        let mut failing = false;
        let mut children: Vec<std::process::Child> = Vec::new();
        loop {
            let job = rx.recv_timeout(Duration::from_secs(1));
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            match job {
                Ok(Desktop::Popup {
                    number,
                    name,
                    seconds,
                }) => {
                    let shown = notify_rust::Notification::new()
                        .appname("astcti-client")
                        .summary("AstCTI: call from")
                        .body(&format!("{number} {name}"))
                        .timeout(notify_rust::Timeout::Milliseconds(
                            u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX),
                        ))
                        .show();
                    match shown {
                        Ok(_) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            say(&format!("ERROR    no desktop notification: {e}"));
                        }
                        Err(_) => {}
                    }
                }
                Ok(Desktop::Launch { program, args }) => {
                    match Command::new(&program).args(&args).spawn() {
                        Ok(child) => children.push(child),
                        Err(e) => desktop_failed(&format!("cannot start {program}: {e}")),
                    }
                }
                Ok(Desktop::Open(url)) => {
                    if let Err(e) = open::that_detached(&url) {
                        desktop_failed(&format!(
                            "cannot open {url} with the desktop's default handler: {e}"
                        ));
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    });
    tx
}

/// Carries out one reaction: the trace line here, the desktop's part on the desktop thread.
fn perform(action: Action, core: &Core) {
    let job = match action {
        Action::LineState(l) if !l.is_empty() => {
            say(&format!("STATE    {l}"));
            return;
        }
        Action::LineState(_) | Action::DialEnabled(_) => return,
        Action::Popup {
            number,
            name,
            seconds,
        } => {
            say(&format!("RINGING  {number} ({name})"));
            if !core.notify_desktop {
                return;
            }
            Desktop::Popup {
                number,
                name,
                seconds,
            }
        }
        Action::Launch { program, args } => {
            say(&format!("LAUNCH   {program} {args:?}"));
            Desktop::Launch { program, args }
        }
        Action::OpenUrl(url) => {
            say(&format!("OPEN     {url}"));
            Desktop::Open(url)
        }
        Action::NoLaunch(why) => {
            say(&format!("NOLAUNCH {why}"));
            return;
        }
    };
    desktop_job(&core.desktop, job);
}

/// Hands one job to the desktop thread, or says why not.
pub fn desktop_job(desktop: &crossbeam_channel::Sender<Desktop>, job: Desktop) {
    if desktop.try_send(job).is_err() {
        say("ERROR    dropped: the desktop has not finished the previous notifications and launches");
    }
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
    let channel = dial_channel_name()
        .inspect_err(|e| eprintln!("astcti-client: the dial channel is not used: {e}"))
        .ok();
    if let Some(mut c) = channel.and_then(|n| Stream::connect(n).ok()) {
        let _ = c.set_recv_timeout(Some(Duration::from_secs(5)));
        let _ = c.set_send_timeout(Some(Duration::from_secs(5)));
        let _ = c.write_all(dial_request(number, context).as_bytes());
        let mut answer = String::new();
        let _ = BufReader::new(c).take(1024).read_line(&mut answer);
        let answer = answer.trim_end();
        return match answer.strip_prefix("ok: ") {
            Some(_) => {
                println!("{answer}");
                0
            }
            None if answer.is_empty() => {
                eprintln!("astcti-client: the running client did not answer the dial request");
                1
            }
            None => {
                eprintln!("astcti-client: the running client refused: {answer}");
                2
            }
        };
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

/// Serves the dial channel: each connection sends one `dial NUMBER [CONTEXT]` line (at most 256
/// bytes, within 2 s), checked against these settings and forwarded to the session as `ORIG`.
/// Also the single-instance lock: a second client finds the channel answering and stops.
fn dial_channel(
    settings: Arc<Mutex<Settings>>,
    out: Arc<Mutex<crossbeam_channel::Sender<String>>>,
    online: Arc<AtomicBool>,
) -> Result<(), String> {
    let name = dial_channel_name().map_err(|e| format!("cannot open the dial channel: {e}"))?;
    let shown = dial_channel_shown();
    if Stream::connect(name.clone()).is_ok() {
        return Err(format!(
            "another astcti-client runs for this user ({shown} answers)"
        ));
    }
    let options = ListenerOptions::new().name(name).try_overwrite(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o600)
    };
    let listener = options
        .create_sync()
        .map_err(|e| format!("{shown}: cannot open the dial channel: {e}"))?;
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(c) = c else { continue };
            let _ = c.set_recv_timeout(Some(Duration::from_secs(2)));
            let _ = c.set_send_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let mut r = BufReader::new(c);
            let read = (&mut r).take(256).read_line(&mut line);
            let answer = match read {
                Ok(_) if line.ends_with('\n') => {
                    match parse_dial_request(&lock(&settings), &line) {
                        Ok(_) if !online.load(Ordering::SeqCst) => {
                            "error: the running client is not logged in to the server now".into()
                        }
                        Ok(orig) => match lock(&out).try_send(orig) {
                            Ok(()) => "ok: handed to the running client".into(),
                            Err(_) => "error: the running client is busy; try again".to_string(),
                        },
                        Err(e) => format!("error: {e}"),
                    }
                }
                _ => "error: expected one line, dial NUMBER [CONTEXT]".into(),
            };
            let _ = r.get_mut().write_all(format!("{answer}\n").as_bytes());
        }
    });
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one process of the agent's program shares between its session loops: the settings (the
/// window edits them), the dial channel (opened once: it is also the single-instance lock) and
/// standard input, both forwarding to the current loop's [`Core`].
pub struct Shared {
    pub settings: Arc<Mutex<Settings>>,
    pub online: Arc<AtomicBool>,
    pub desktop: crossbeam_channel::Sender<Desktop>,
    dial_to: Arc<Mutex<crossbeam_channel::Sender<String>>>,
}

impl Shared {
    /// Opens the dial channel and starts the desktop thread and the standard-input reader.
    fn start(s: Settings) -> Result<Shared, String> {
        let settings = Arc::new(Mutex::new(s));
        let online = Arc::new(AtomicBool::new(false));
        let (nobody, _) = crossbeam_channel::bounded::<String>(1);
        let dial_to = Arc::new(Mutex::new(nobody));
        dial_channel(settings.clone(), dial_to.clone(), online.clone())?;
        let (s2, tx2, online2) = (settings.clone(), dial_to.clone(), online.clone());
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line.trim().is_empty() {
                    continue;
                }
                match parse_dial_request(&lock(&s2), &line) {
                    Ok(_) if !online2.load(Ordering::SeqCst) => {
                        say("ERROR    not logged in to the server now; not dialled")
                    }
                    Ok(l) => {
                        if lock(&tx2).try_send(l).is_err() {
                            say("ERROR    busy; not dialled");
                        }
                    }
                    Err(e) => say(&format!("ERROR    {e}")),
                }
            }
        });
        Ok(Shared {
            settings,
            online,
            desktop: start_desktop(),
            dial_to,
        })
    }

    /// A core for the next session loop; dial requests now go to it.
    pub fn core(&self) -> Core {
        let core = Core::new(self.desktop.clone(), self.online.clone());
        *lock(&self.dial_to) = core.dial_tx.clone();
        core
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        #[cfg(not(windows))]
        if let Ok(p) = dial_channel_path() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The command line: the session loop until Ctrl-C.
fn run_cli(s: Settings) -> i32 {
    let shared = match Shared::start(s.clone()) {
        Ok(sh) => sh,
        Err(e) => {
            eprintln!("astcti-client: {e}");
            return 2;
        }
    };
    let core = shared.core();
    let st = core.stop.clone();
    let _ = ctrlc::set_handler(move || st.store(true, Ordering::SeqCst));
    run(&s, &core, &NoUi)
}

/// A pause of `backoff` plus up to half as much again, so that many clients of one restarted
/// server do not all come back in the same instant (no random crate: the clock and the process id).
fn with_jitter(backoff: Duration) -> Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20);
    let half = backoff.as_millis() as u64 / 2;
    let extra = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % (half + 1);
    backoff + Duration::from_millis(extra)
}

/// Logs in, runs the session, logs in again after it breaks (backoff 1 s … 30 s, with jitter),
/// until `core.stop`. It stops by itself only when the server refuses the very first login (a wrong
/// password, for a person to correct): 3. Once this agent has been logged in, a refusal is taken
/// for a passing one and retried like a lost connection.
pub fn run(s: &Settings, core: &Core, ui: &dyn Ui) -> i32 {
    let stop = &core.stop;
    let mut backoff = Duration::from_secs(1);
    let mut logged_in_once = false;
    while !stop.load(Ordering::SeqCst) {
        match login(s) {
            Ok((sock, r)) => {
                logged_in_once = true;
                backoff = Duration::from_secs(1);
                say(&format!(
                    "LOGIN    {} on {} at {}:{}",
                    s.username, s.phone_ext, s.host, s.port
                ));
                core.online.store(true, Ordering::SeqCst);
                ui.update(UiEvent::Online {
                    ext: s.phone_ext.clone(),
                });
                session(s, sock, r, core, ui);
                core.online.store(false, Ordering::SeqCst);
                // What was asked while the link broke is not dialled minutes later.
                while core.dial_rx.try_recv().is_ok() {}
                if stop.load(Ordering::SeqCst) {
                    ui.update(UiEvent::Offline("stopped".into()));
                    break;
                }
                say("LOST     the connection to the server; logging in again");
                ui.update(UiEvent::Offline(
                    "the connection to the server broke; logging in again".into(),
                ));
            }
            Err(LoginError::Refused(e)) if !logged_in_once => {
                eprintln!("astcti-client: {e}");
                ui.update(UiEvent::Refused(e));
                return 3;
            }
            Err(e) => {
                let e = match e {
                    LoginError::Refused(e) => format!(
                        "{e} (this agent was logged in before: a restarting server or a busy \
                         database refuses for a while)"
                    ),
                    LoginError::Unreachable(e) => e,
                };
                let pause = with_jitter(backoff);
                let shown = format!("{:.1}", pause.as_secs_f64());
                say(&format!("WAIT     {e}; trying again in {shown} s"));
                ui.update(UiEvent::Offline(format!("{e}; trying again in {shown} s")));
                let until = Instant::now() + pause;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    0
}

/// One logged-in session: NOOPs, dial requests, notifications, until it breaks or Ctrl-C.
fn session(s: &Settings, sock: TcpStream, mut r: BufReader<TcpStream>, core: &Core, ui: &dyn Ui) {
    let (stop, dials) = (&core.stop, &core.dial_rx);
    // Bounded: a server faster than the agent's desktop waits in its socket, not in memory here.
    let (tx, rx) = crossbeam_channel::bounded::<Option<String>>(256);
    let _ = r.get_ref().set_read_timeout(None);
    // When the server last said anything (milliseconds from `t0`): it answers every NOOP, so a
    // long silence is a dead link (a half-open connection: an unplugged cable, a NAT that forgot
    // it), which no read or write would ever report.
    let t0 = Instant::now();
    let heard = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let heard_by_reader = heard.clone();
    // Whatever ends the session closes the socket, so the reader below ends too.
    struct Shut<'a>(&'a TcpStream);
    impl Drop for Shut<'_> {
        fn drop(&mut self) {
            let _ = self.0.shutdown(std::net::Shutdown::Both);
        }
    }
    let _shut = Shut(&sock);
    std::thread::spawn(move || {
        let mut buf = String::new();
        loop {
            // Each line bounded before it is held, bytes that are not UTF-8 replaced: a broken or
            // hostile server costs at most one notification, never the session or the memory.
            let line = lines::read_line(&mut r, lines::MAX_LINE);
            heard_by_reader.store(
                u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
            let line = match line {
                Ok(Line::Text(line)) => line,
                Ok(Line::TooLong) => {
                    say(&format!(
                        "ERROR    a line longer than {} bytes from the server was dropped",
                        lines::MAX_LINE
                    ));
                    buf.clear();
                    continue;
                }
                Ok(Line::Eof) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
            };
            if buf.is_empty() && line.starts_with(EXT_REPLY) {
                // The answer to `EXT` (below), handed on as it is.
                let _ = tx.send(Some(line));
                continue;
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
    // Which EXT did the server register this login under? The cti table decides, not PhoneExt
    // (they differ when the client has no MySQL settings). astcti-server answers `100 EXT …`; the
    // original AstCTIServer ignores the command, and PhoneExt stays what is shown.
    if w.write_all(b"EXT\n").is_err() {
        return;
    }
    let mut next_noop = Instant::now() + Duration::from_millis(s.noop_ms);
    let silence = silence_limit(s.noop_ms);
    loop {
        let quiet = t0
            .elapsed()
            .saturating_sub(Duration::from_millis(heard.load(Ordering::SeqCst)));
        if quiet > silence {
            say(&format!(
                "LOST     the server has not answered for {} s (a dead connection); connecting again",
                quiet.as_secs()
            ));
            return;
        }
        if stop.load(Ordering::SeqCst) {
            // Wait (at most 2 s) for the server to close the connection: by then it has logged
            // the agent out, so a session started right after is not refused as a second login.
            if w.write_all(b"QUIT\n").is_ok() {
                let until = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(_)) = rx.recv_deadline(until) {}
            }
            return;
        }
        while let Ok(line) = dials.try_recv() {
            say(&format!("DIAL     {}", line.trim_end()));
            if w.write_all(line.as_bytes()).is_err() {
                return;
            }
            ui.update(UiEvent::Dialled(line.trim_end().to_string()));
        }
        if Instant::now() >= next_noop {
            next_noop = Instant::now() + Duration::from_millis(s.noop_ms);
            if w.write_all(b"NOOP\n").is_err() {
                return;
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(reply)) if reply.starts_with(EXT_REPLY) => {
                let ext = reply
                    .strip_prefix(EXT_REPLY)
                    .unwrap_or_default()
                    .trim()
                    .chars()
                    // A server's value for the trace and the window: no control characters.
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect::<String>();
                if ext != s.phone_ext {
                    say(&format!(
                        "EXT      the server registered this login as {ext} (its cti table; \
                         PhoneExt says {})",
                        s.phone_ext
                    ));
                }
                ui.update(UiEvent::Registered(ext));
            }
            Ok(Some(event)) => {
                if let Some((kind, record)) = notify::parse(&event) {
                    let actions = react(s, kind, &record);
                    for a in actions.iter().cloned() {
                        perform(a, core);
                    }
                    ui.update(UiEvent::Event {
                        kind,
                        record,
                        actions,
                    });
                }
            }
            Ok(None) => return,
            Err(_) => {}
        }
    }
}

/// The start of astcti-server's answer to `EXT`.
const EXT_REPLY: &str = "100 EXT ";

/// How long the server may stay silent before the connection is taken for dead: three NOOP
/// intervals (each NOOP is answered), at least 10 s.
fn silence_limit(noop_ms: u64) -> Duration {
    Duration::from_millis(noop_ms.saturating_mul(3)).max(Duration::from_secs(10))
}

#[cfg(feature = "gui")]
mod gui;

/// The window; `problem`: the settings could not be read (said in the window, no login).
#[cfg(feature = "gui")]
fn gui_main(s: Settings, path: PathBuf, problem: Option<String>) -> i32 {
    match Shared::start(s) {
        Ok(shared) => gui::main(shared, path, problem),
        Err(e) => {
            eprintln!("astcti-client: {e}");
            2
        }
    }
}

#[cfg(not(feature = "gui"))]
fn gui_main(_: Settings, _: PathBuf, _: Option<String>) -> i32 {
    eprintln!("astcti-client: this build has no window: build it with `cargo build --release --features gui`");
    2
}

#[cfg_attr(not(feature = "gui"), allow(dead_code))]
fn main() {
    main_as(Start::Terminal);
}

/// What the program does when no command is given: `astcti-client` runs in the terminal (the
/// window with `--gui`); `astcti-client-window` (Windows' console-less build, the Start menu's and
/// autostart's) opens the window.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Terminal,
    #[cfg_attr(not(feature = "gui"), allow(dead_code))]
    Window,
}

pub fn main_as(start: Start) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            eprintln!("astcti-client: {e}");
            std::process::exit(2);
        }
    };
    opts.gui |= start == Start::Window;
    let path = settings_path(opts.settings.as_deref());
    let s = match load(&opts) {
        Ok(s) => s,
        // The window says what is wrong itself (no terminal may be there to read stderr), and
        // without a settings file it opens the settings dialog to write one.
        Err(e) if opts.gui && opts.dial.is_none() => {
            eprintln!("astcti-client: {e}");
            std::process::exit(gui_main(Settings::default(), path, Some(e)));
        }
        Err(e) => {
            eprintln!("astcti-client: {e}");
            std::process::exit(2);
        }
    };
    let code = match &opts.dial {
        Some(number) => dial(&s, number, opts.context.as_deref()),
        None if opts.gui => gui_main(s, path, None),
        None => run_cli(s),
    };
    std::process::exit(code);
}
