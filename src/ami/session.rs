//! One AMI session, as a pure state machine: banner → `Login` → logged in; action IDs, `Ping` on
//! idle, matching of responses (login, ping, originate, `--dumpconfig`'s `GetConfig`).
//!
//! Pure core (time is passed in), driven by the `ami-link` thread (`ami::link`), which owns the
//! socket and carries out the [`Out`]puts in order. Success of the login is read from the response
//! carrying the login's ActionID — never from a substring (docs/ORIGINAL.md bug 6).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::dialect::Dialect;
use super::frame::{encode_action, Frame, Item};
use super::OrigRequest;

/// What the link must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Bytes to write to Asterisk.
    Send(Vec<u8>),
    /// Logged in: the dialect and the banner's version.
    Up {
        dialect: Dialect,
        version: String,
    },
    /// A frame for the dispatcher (events and unsolicited responses).
    Frame(Frame),
    Debug(String),
    Info(String),
    Warn(String),
    /// Asterisk refused the login: close and back off.
    LoginFailed(String),
    /// The session is unusable (Pong missing, no login answer): close and reconnect.
    Dead(String),
    /// The peer is not an Asterisk manager (no `Asterisk Call Manager/` banner): close and retry
    /// slowly.
    NotAmi(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Ping,
    Originate(String),
    GetConfig(String),
    ChannelList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitBanner,
    AwaitLogin,
    LoggedIn,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub user: String,
    pub secret: String,
    /// Silence after which a `Ping` is sent; the `Pong` must come within the same time.
    pub idle: Duration,
    pub dumpconfig: bool,
}

pub struct Session {
    config: SessionConfig,
    number: u64,
    phase: Phase,
    next_id: u64,
    login_id: String,
    dialect: Dialect,
    version: String,
    pending: HashMap<String, Pending>,
    last_rx: Instant,
    started: Instant,
    ping_deadline: Option<Instant>,
}

impl Session {
    /// Session `number` (1, 2, … per connection), started at `now`.
    pub fn new(config: SessionConfig, number: u64, now: Instant) -> Self {
        Session {
            config,
            number,
            phase: Phase::AwaitBanner,
            next_id: 0,
            login_id: format!("astcti-login-{number}"),
            dialect: Dialect::Unknown,
            version: String::new(),
            pending: HashMap::new(),
            last_rx: now,
            started: now,
            ping_deadline: None,
        }
    }

    pub fn logged_in(&self) -> bool {
        self.phase == Phase::LoggedIn
    }

    fn action_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("astcti-{kind}-{}-{}", self.number, self.next_id)
    }

    /// Something arrived from the socket (call once per read, before `on_item`).
    pub fn on_bytes(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub fn on_item(&mut self, item: Item) -> Vec<Out> {
        match item {
            Item::Banner(version) => self.banner(version),
            Item::Discarded(why) => vec![Out::Warn(format!(
                "AMI frame discarded ({why}); skipped to the next blank line"
            ))],
            Item::Frame(frame) => self.frame(frame),
        }
    }

    fn banner(&mut self, version: String) -> Vec<Out> {
        if self.phase != Phase::AwaitBanner {
            return vec![Out::Warn(format!(
                "unexpected second banner {version:?} ignored"
            ))];
        }
        self.dialect = Dialect::from_banner(&version);
        self.version = version;
        self.phase = Phase::AwaitLogin;
        let login = encode_action(
            "Login",
            &self.login_id,
            &[
                ("Username", &self.config.user),
                ("Secret", &self.config.secret),
                ("Events", "on"),
            ],
        );
        match login {
            Ok(bytes) => vec![Out::Send(bytes)],
            Err(e) => vec![Out::LoginFailed(format!(
                "MANAGER_USER or MANAGER_PASS cannot be sent: {e}"
            ))],
        }
    }

    /// Asks for the channels Asterisk has: `CoreShowChannels` (1.6.2+; `Status` on 1.4, which has
    /// no `CoreShowChannels`), then `Status` with `Variables: calldata`, so that calls already up
    /// are rebuilt with their calldata. Each item and the end of each list arrive as events; the
    /// first list's end is the one the call tracker reconciles at.
    pub fn list_channels(&mut self) -> Vec<Out> {
        let mut lists = vec![("Status", vec![("Variables", "calldata")])];
        if self.dialect != Dialect::V1_4 {
            lists.insert(0, ("CoreShowChannels", vec![]));
        }
        let mut out = Vec::new();
        for (action, headers) in lists {
            let id = self.action_id("channels");
            if let Ok(bytes) = encode_action(action, &id, &headers) {
                self.pending.insert(id, Pending::ChannelList);
                out.push(Out::Send(bytes));
            }
        }
        out
    }

    fn frame(&mut self, frame: Frame) -> Vec<Out> {
        match self.phase {
            Phase::AwaitBanner => {
                // No banner: not an AMI port, or something unexpected in front of it.
                vec![Out::NotAmi(
                    "it sent something else than the `Asterisk Call Manager/` banner".into(),
                )]
            }
            Phase::AwaitLogin => {
                if frame.action_id() != Some(self.login_id.as_str()) {
                    return vec![];
                }
                let message = frame.get("Message").unwrap_or("").to_string();
                if frame.response() == Some("Success") {
                    self.phase = Phase::LoggedIn;
                    let mut out = vec![Out::Up {
                        dialect: self.dialect,
                        version: self.version.clone(),
                    }];
                    // Calls already up: their list items seed the tracker.
                    out.extend(self.list_channels());
                    if self.config.dumpconfig {
                        out.extend(self.dumpconfig_requests());
                    }
                    out
                } else {
                    vec![Out::LoginFailed(format!(
                        "Asterisk refused the login of {:?}: {}",
                        self.config.user,
                        if message.is_empty() {
                            "(no message)"
                        } else {
                            &message
                        }
                    ))]
                }
            }
            Phase::LoggedIn => self.logged_in_frame(frame),
        }
    }

    fn logged_in_frame(&mut self, frame: Frame) -> Vec<Out> {
        if frame.event().is_none() {
            if let Some(pending) = frame.action_id().and_then(|id| self.pending.remove(id)) {
                return self.answer(pending, &frame);
            }
        }
        let mut out = Vec::new();
        if frame.event() == Some("OriginateResponse")
            && frame
                .action_id()
                .is_some_and(|id| id.starts_with("astcti-orig-"))
        {
            let g = |k| frame.get(k).unwrap_or("");
            out.push(Out::Info(format!(
                "OriginateResponse {}: {} (channel {}, exten {}@{}, reason {})",
                frame.action_id().unwrap_or(""),
                g("Response"),
                g("Channel"),
                g("Exten"),
                g("Context"),
                g("Reason")
            )));
        }
        out.push(Out::Frame(frame));
        out
    }

    fn answer(&mut self, pending: Pending, frame: &Frame) -> Vec<Out> {
        let response = frame.response().unwrap_or("");
        let message = frame.get("Message").unwrap_or("");
        match pending {
            Pending::Ping => {
                self.ping_deadline = None;
                vec![]
            }
            Pending::Originate(what) if response == "Success" => {
                vec![Out::Info(format!("Originate {what}: {message}"))]
            }
            Pending::Originate(what) => vec![Out::Warn(format!(
                "Originate {what} refused by Asterisk: {response} {message}"
            ))],
            Pending::ChannelList if response == "Success" => vec![],
            Pending::ChannelList => vec![Out::Debug(format!(
                "CoreShowChannels not available: {response} {message}"
            ))],
            Pending::GetConfig(file) => vec![Out::Info(format!(
                "--dumpconfig {file}: {response} {message}\n{}",
                mask_secrets(frame).to_text()
            ))],
        }
    }

    fn dumpconfig_requests(&mut self) -> Vec<Out> {
        let mut files = vec!["extensions.conf", "sip.conf"];
        if self.dialect == Dialect::V12Plus {
            files.push("pjsip.conf");
        }
        files.push("queues.conf");
        let mut out = Vec::new();
        for file in files {
            let id = self.action_id("getconfig");
            if let Ok(bytes) = encode_action("GetConfig", &id, &[("Filename", file)]) {
                self.pending
                    .insert(id, Pending::GetConfig(file.to_string()));
                out.push(Out::Send(bytes));
            }
        }
        out
    }

    /// An agent's `ORIG` (docs/ORIGINAL.md §5.5): Channel and Callerid are the agent's EXT.
    pub fn originate(&mut self, ext: &str, request: &OrigRequest) -> Vec<Out> {
        // The EXT comes from the database (anyone who can write the `cti` table): escaped, as
        // every value in a log line.
        let e = crate::logging::escape;
        let what = format!(
            "{} -> {}@{} priority {}",
            e(ext),
            e(&request.exten),
            e(&request.context),
            e(&request.priority)
        );
        if !self.logged_in() {
            return vec![Out::Warn(format!(
                "Originate {what} dropped: not logged in to Asterisk"
            ))];
        }
        let id = self.action_id("orig");
        let headers = [
            ("Channel", ext),
            ("Context", request.context.as_str()),
            ("Exten", request.exten.as_str()),
            ("Priority", request.priority.as_str()),
            ("Callerid", ext),
            ("Async", "true"),
        ];
        match encode_action("Originate", &id, &headers) {
            Ok(bytes) => {
                self.pending.insert(id, Pending::Originate(what.clone()));
                vec![
                    Out::Send(bytes),
                    Out::Info(format!("Originate {what} sent")),
                ]
            }
            Err(e) => vec![Out::Warn(format!("Originate {what} not sent: {e}"))],
        }
    }

    /// Time passes: sends `Ping` after `idle` of silence; declares the session dead when the `Pong`
    /// is late or the banner/login never comes.
    pub fn tick(&mut self, now: Instant) -> Vec<Out> {
        let idle = self.config.idle;
        if self.phase != Phase::LoggedIn {
            let wait = idle.max(Duration::from_secs(5));
            if now.duration_since(self.started) > wait {
                if self.phase == Phase::AwaitBanner {
                    return vec![Out::NotAmi(format!(
                        "it sent no `Asterisk Call Manager/` banner within {} s",
                        wait.as_secs()
                    ))];
                }
                return vec![Out::Dead("no answer to the login in time".into())];
            }
            return vec![];
        }
        if let Some(deadline) = self.ping_deadline {
            if now > deadline {
                return vec![Out::Dead(format!(
                    "no answer to Ping within {} s",
                    idle.as_secs_f32()
                ))];
            }
            return vec![];
        }
        if now.duration_since(self.last_rx) >= idle {
            let id = self.action_id("ping");
            if let Ok(bytes) = encode_action("Ping", &id, &[]) {
                self.pending.insert(id, Pending::Ping);
                self.ping_deadline = Some(now + idle);
                return vec![Out::Send(bytes)];
            }
        }
        vec![]
    }

    /// Bytes that end the session politely.
    pub fn logoff(&mut self) -> Option<Vec<u8>> {
        if !self.logged_in() {
            return None;
        }
        let id = self.action_id("logoff");
        encode_action("Logoff", &id, &[]).ok()
    }
}

/// The option names whose values `--dumpconfig` never shows (`secret=`, `password=`, …).
const SECRET_OPTIONS: [&str; 8] = [
    "secret",
    "password",
    "md5secret",
    "md5_cred",
    "auth",
    "remotesecret",
    "dbsecret",
    "outboundproxy_password",
];

/// A configuration line's `key=value` with every secret in it replaced by `********`, or None when
/// it holds none: a secret option's whole value; a password in a user part anywhere in the value
/// (`register => user:secret@host`, `sip:user:secret@host`, `Dial(IAX2/user:secret@host/…)`); the
/// code of a dialplan `Authenticate(…)` / `VMAuthenticate(…)`.
pub fn mask_config_value(v: &str) -> Option<String> {
    let (key, value) = v.split_once('=')?;
    let k = key.trim().to_ascii_lowercase();
    if SECRET_OPTIONS.contains(&k.as_str()) {
        return Some(format!("{key}=********"));
    }
    let masked = mask_authenticate(&mask_userinfo(value));
    (masked != value).then(|| format!("{key}={masked}"))
}

/// Characters that end a URI's user part when looking back from its `@`.
fn ends_userinfo(c: char) -> bool {
    c.is_whitespace() || "@/,;()<>|'\"=&".contains(c)
}

/// `user:secret@` → `user:********@`, with or without a URI scheme (`sip:`, `sips:`, `iax2:` …).
fn mask_userinfo(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('@') {
        let before = &rest[..at];
        // The user part: back from the `@` to the first character that cannot be in it.
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| ends_userinfo(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let info = &before[start..];
        let lower = info.to_ascii_lowercase();
        let scheme = ["sips:", "sip:", "iax2:", "iax:", "h323:", "pjsip:"]
            .iter()
            .find(|s| lower.starts_with(*s))
            .map_or(0, |s| s.len());
        out.push_str(&before[..start]);
        match info[scheme..].find(':') {
            Some(colon) => {
                out.push_str(&info[..scheme + colon + 1]);
                out.push_str("********");
            }
            None => out.push_str(info),
        }
        out.push('@');
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

/// `Authenticate(1234,…)` and `VMAuthenticate(…)` → the code as `********`.
fn mask_authenticate(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let Some(i) = lower.find("authenticate(") else {
        return value.to_string();
    };
    let open = i + "authenticate(".len();
    let end = value[open..]
        .find([',', ')'])
        .map_or(value.len(), |e| open + e);
    if end == open {
        return value.to_string();
    }
    format!("{}********{}", &value[..open], &value[end..])
}

/// A `GetConfig` answer with every secret value replaced by `********` (its `Line-…: key=value`
/// lines, any case, spaces around `=` allowed): [`mask_config_value`].
pub fn mask_secrets(frame: &Frame) -> Frame {
    frame.map_values(|_, v| mask_config_value(v))
}

/// Raw AMI text for the DebugSocket trace, with the same secrets masked line by line (a
/// `GetConfig` answer passes through here before it is a frame).
pub fn mask_trace(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let Some((head, value)) = line.split_once(": ") else {
                return line.to_string();
            };
            let end = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            match mask_config_value(value.trim_end_matches(['\r', '\n'])) {
                Some(masked) => format!("{head}: {masked}{end}"),
                None => line.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
