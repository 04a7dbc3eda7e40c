//! Shared test harness: the real MariaDB prepared by `scripts/test.sh`, the real `astcti-server`
//! binary started with a temporary configuration, and clients speaking the protocol over real
//! loopback sockets. Every wait is bounded.
#![allow(dead_code)]

pub mod expected;
pub mod private_db;
pub mod rng;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

pub const BIN: &str = env!("CARGO_BIN_EXE_astcti-server");
/// MD5("test"), the original example secret.
pub const TEST_SECRET: &str = "098f6bcd4621d373cade4e832627b4f6";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts MariaDB")
    })
}

pub struct Db {
    pub host: String,
    pub port: u16,
    pub db: String,
    pub user: String,
    pub pass: String,
}

pub fn db() -> Db {
    Db {
        host: env("ASTCTI_TEST_MYSQL_HOST"),
        port: env("ASTCTI_TEST_MYSQL_PORT").parse().expect("port"),
        db: env("ASTCTI_TEST_MYSQL_DB"),
        user: env("ASTCTI_TEST_MYSQL_USER"),
        pass: env("ASTCTI_TEST_MYSQL_PASS"),
    }
}

/// An administrative connection to the test database.
pub fn admin() -> mysql::PooledConn {
    let d = db();
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(d.host))
        .tcp_port(d.port)
        .user(Some(env("ASTCTI_TEST_MYSQL_ADMIN_USER")))
        .pass(Some(env("ASTCTI_TEST_MYSQL_ADMIN_PASS")))
        .db_name(Some(d.db))
        .prefer_socket(false);
    mysql::Pool::new(opts)
        .and_then(|p| p.get_conn())
        .expect("admin connection to the test MariaDB")
}

/// A name unique to this test process and call, for users and extensions.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// An agent row this test inserted ([`add_agent`]); deleted when dropped, however the test ends.
/// Derefs to the MD5 secret the client sends.
#[must_use = "the row is deleted when this is dropped"]
pub struct AgentRow {
    pub username: String,
    pub secret: String,
    /// The extension this row took from other rows ([`add_agent_taking`]), given back after the
    /// row is deleted (fields drop after `drop`).
    taken: Option<TakenExt>,
}

impl std::ops::Deref for AgentRow {
    type Target = str;
    fn deref(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Display for AgentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.secret)
    }
}

impl Drop for AgentRow {
    fn drop(&mut self) {
        let _ = admin().exec_drop("DELETE FROM cti WHERE USERNAME = ?", (&self.username,));
    }
}

/// Inserts an agent whose password is `password`; the row (deleted on drop) gives the MD5 secret
/// the client sends. `EXT` is unique in the `cti` table: to put an agent on an extension another
/// row may hold, use [`add_agent_taking`].
pub fn add_agent(
    username: &str,
    password: &str,
    ext: Option<&str>,
    host: Option<&str>,
) -> AgentRow {
    let secret = format!("{:x}", md5::compute(password.as_bytes()));
    admin()
        .exec_drop(
            "INSERT INTO cti (USERNAME, SECRET, HOST, EXT) VALUES (?, ?, ?, ?)",
            (username, &secret, host, ext),
        )
        .expect("insert agent");
    AgentRow {
        username: username.to_string(),
        secret,
        taken: None,
    }
}

/// [`add_agent`] on `ext`, taken first from whichever rows hold it ([`take_ext`]); they get it back
/// when the row is dropped.
pub fn add_agent_taking(username: &str, password: &str, ext: &str) -> AgentRow {
    let taken = take_ext(ext);
    let mut row = add_agent(username, password, Some(ext), None);
    row.taken = Some(taken);
    row
}

/// An extension taken from the rows that held it (`EXT` is unique), given back to them when
/// dropped, however the test ends: docs/INSTALL.md's `alice` holds `PJSIP/201`, and another test
/// binary logs in with her. Drop it after the rows the test put on the extension.
#[must_use = "the extension is given back when this is dropped"]
pub struct TakenExt {
    ext: String,
    holders: Vec<String>,
}

pub fn take_ext(ext: &str) -> TakenExt {
    let mut db = admin();
    let holders: Vec<String> = db
        .exec("SELECT USERNAME FROM cti WHERE EXT = ?", (ext,))
        .expect("holders of the extension");
    db.exec_drop("UPDATE cti SET EXT = NULL WHERE EXT = ?", (ext,))
        .expect("take the extension");
    TakenExt {
        ext: ext.to_string(),
        holders,
    }
}

impl Drop for TakenExt {
    fn drop(&mut self) {
        let mut db = admin();
        for h in &self.holders {
            let _ = db.exec_drop("UPDATE cti SET EXT = NULL WHERE EXT = ?", (&self.ext,));
            let _ = db.exec_drop("UPDATE cti SET EXT = ? WHERE USERNAME = ?", (&self.ext, h));
        }
    }
}

#[derive(Default)]
pub struct Options {
    pub ctiserver: Vec<(&'static str, String)>,
    pub db_port: Option<u16>,
    pub manager_port: Option<u16>,
    pub args: Vec<String>,
    /// LOG_LEVEL (default 63).
    pub log_level: Option<u32>,
    /// STATS_INTERVAL (default: the server's).
    pub stats_interval: Option<u32>,
    /// MYSQL_TIMEOUT (default 5).
    pub mysql_timeout: Option<u32>,
    /// MYSQL_PASS (default: the test account's).
    pub mysql_pass: Option<String>,
    /// More keys for the logging section.
    pub logging: Vec<(&'static str, String)>,
    /// Extra environment variables for the server process.
    pub env: Vec<(&'static str, String)>,
    /// Files to create in the log directory before the server starts (name, contents).
    pub log_files: Vec<(String, String)>,
}

/// A loopback port free a moment ago (for a server that must be started on a port of its own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new directory under the system's temporary directory, removed with its contents when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(unique(&format!("astcti-{tag}-")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// A configuration file in the original format for the test database.
pub fn write_config(dir: &std::path::Path, opts: &Options) -> PathBuf {
    let d = db();
    // A client idle for CTI_CLIENT_TIMEOUT is cut: tests that check that set their own (1 s); the
    // others' clients may wait minutes for a burst on a busy machine.
    let mut cti = vec![
        ("CTI_CLIENT_TIMEOUT", "600".to_string()),
        ("CTI_CLIENT_KEEPALIVE", "30".to_string()),
        ("CTI_SERVER_LISTEN_IP", "127.0.0.1".to_string()),
        ("CTI_SERVER_LISTEN_PORT", "0".to_string()),
    ];
    cti.extend(opts.ctiserver.iter().cloned());
    let adds = |kv: &[(&str, String)]| {
        kv.iter()
            .map(|(k, v)| format!("\t\t\t<add key=\"{k}\" value=\"{v}\" />\n"))
            .collect::<String>()
    };
    let database = [
        ("MYSQL_HOST", d.host.clone()),
        ("MYSQL_PORT", opts.db_port.unwrap_or(d.port).to_string()),
        ("MYSQL_USER", d.user.clone()),
        (
            "MYSQL_PASS",
            opts.mysql_pass.clone().unwrap_or(d.pass.clone()),
        ),
        ("MYSQL_DBMS", d.db.clone()),
        ("MYSQL_TIMEOUT", opts.mysql_timeout.unwrap_or(5).to_string()),
    ];
    let mut logging = vec![("DIRECTORY", format!("{}/logs/", dir.display()))];
    if !opts.logging.iter().any(|(k, _)| *k == "ACTIVE") {
        logging.insert(0, ("ACTIVE", "true".to_string()));
    }
    logging.push(("LOG_LEVEL", opts.log_level.unwrap_or(63).to_string()));
    if let Some(s) = opts.stats_interval {
        logging.push(("STATS_INTERVAL", s.to_string()));
    }
    logging.extend(opts.logging.iter().cloned());
    let manager = [
        ("SOCKET_TIMEOUT", "120".to_string()),
        ("MANAGER_HOST", "127.0.0.1".to_string()),
        ("MANAGER_PORT", opts.manager_port.unwrap_or(1).to_string()),
        ("MANAGER_USER", "ctimanager".to_string()),
        ("MANAGER_PASS", "ctimanager".to_string()),
    ];
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<configuration>\n\t<globalsettings>\n\
         \t\t<database>\n{}\t\t</database>\n\t\t<logging>\n{}\t\t</logging>\n\
         \t\t<manager>\n{}\t\t</manager>\n\t\t<ctiserver>\n{}\t\t</ctiserver>\n\
         \t</globalsettings>\n</configuration>\n",
        adds(&database),
        adds(&logging),
        adds(&manager),
        adds(&cti)
    );
    let path = dir.join("AstCTIServer.xml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The real server binary, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Server {
    pub fn start() -> Server {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Server {
        let dir = temp_dir("srv");
        let config = write_config(&dir, &opts);
        if !opts.log_files.is_empty() {
            let logs = dir.join("logs");
            std::fs::create_dir_all(&logs).expect("log dir");
            for (name, text) in &opts.log_files {
                std::fs::write(logs.join(name), text).expect("log file");
            }
        }
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(&opts.args)
            .envs(opts.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start astcti-server");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("CTI server listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; stderr:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child,
            addr,
            dir,
            stderr: lines,
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A client that received the welcome and logged in.
    pub fn login(&self, user: &str, secret: &str) -> Client {
        let mut c = self.connect();
        c.expect(b"100 CTISERVER WELCOME\n");
        c.send(&format!("USER {user}\n"));
        c.expect(b"100 OK\n");
        c.send(&format!("PASS {secret}\n"));
        c.expect(b"102 OK\n");
        c
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until stderr has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub sock: TcpStream,
}

pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        Client { sock }
    }

    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send");
    }

    /// Reads exactly `expected.len()` bytes and compares them.
    pub fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        if let Err(e) = self.sock.read_exact(&mut got) {
            panic!(
                "expected {:?}, read failed: {e}",
                String::from_utf8_lossy(expected)
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// What one read within `wait` sees: `Some(true)` closed (EOF or reset), `Some(false)` nothing
    /// arrived; bytes are a test failure.
    fn read_within(&mut self, wait: Duration, expecting: &str) -> Option<bool> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 64];
        let r = self.sock.read(&mut b);
        self.sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match r {
            Ok(0) => Some(true),
            Ok(n) => panic!(
                "expected {expecting}, got {:?}",
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) => match e.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    Some(true)
                }
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Some(false),
                _ => None,
            },
        }
    }

    /// True if the server closes the connection (EOF or reset) within `timeout`, with no bytes first.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.read_within(timeout, "close") == Some(true)
    }

    /// True if nothing arrives, and the connection stays open, for `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        self.read_within(wait, "silence") == Some(false)
    }
}
