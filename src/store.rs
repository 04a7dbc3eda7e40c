//! The agents' store: the original `cti` table in MySQL/MariaDB (docs/ORIGINAL.md §2). The only module with SQL.
//!
//! Shell. Queried by the `db-N` login threads ([`Logins`]) and by `main` at startup, never by the AMI
//! link or the dispatcher. A few connections, kept idle between logins, replace the original's
//! single shared connection and its ping thread: a login takes one (or opens one), and a query that
//! fails on a kept connection is tried once more on a fresh one, so after the database restarts the
//! next login simply works.
//!
//! Memory: the driver gives every connection a 4 MiB read buffer that it consumes from the front and
//! compacts only when it runs out, so each answer makes a few hundred more bytes of it resident. A
//! connection is therefore closed and replaced after [`USES_PER_CONNECTION`] queries: what is
//! resident stays a fraction of a MiB per connection instead of creeping to 4 MiB (the soak in
//! docs/PERFORMANCE.md).
//!
//! Deadlines: every connection has connect, read and write timeouts of `MYSQL_TIMEOUT`; a client
//! thread waits for its answer at most until its own deadline (the login timeout, and never longer
//! than `MYSQL_TIMEOUT`) and then answers `101 KO`; a request whose client gave up is skipped. While
//! the database is known to be down (the last query failed), logins fail at once, except one probe
//! per [`PROBE_EVERY`], so recovery needs no restart and a dead database never builds a queue.
//!
//! Demand: `MYSQL_POOL_SIZE` login threads to start with; when their queue is full (a restart
//! brings a thousand agents back at once) another thread starts, up to [`pool_limit`], and a login
//! that still finds the queue full waits for room until its own deadline — it is never refused
//! just because the others came at the same moment.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};

use crate::oneshot::{oneshot, Reply};
use crate::stats::{self, Counters};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

use crate::config::DatabaseConfig;

/// An agent row from the `cti` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub username: String,
    pub ext: Option<String>,
}

/// Looks agents up by credentials.
pub trait Store: Send + Sync {
    /// The row whose USERNAME and SECRET match (comparison done by the database, so its collation
    /// applies as in the original); `Err` is a loggable reason without secrets.
    fn authenticate(&self, username: &str, secret: &str) -> Result<Option<AgentRow>, String>;
}

/// While the database is down, one login per this interval tries it; the others fail at once.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Login requests waiting for a `db-N` thread, per thread.
const QUEUE_PER_THREAD: usize = 4;
/// Queries after which a connection is closed and replaced (see the module's "Memory").
pub const USES_PER_CONNECTION: u32 = 1000;

/// A connection kept for the next query, and how many queries it has answered.
struct Kept {
    conn: Conn,
    uses: u32,
}

pub struct MysqlStore {
    opts: Opts,
    /// Idle connections, most recently used last; at most `MYSQL_POOL_SIZE` are kept.
    idle: Mutex<Vec<Kept>>,
    keep: usize,
    uses_per_connection: u32,
    /// `user@host:port/db`, the keys' values for the error messages.
    cfg: DatabaseConfig,
}

/// The names of the settings that fix a database error, as the reader of the message knows them.
pub struct DbKeys {
    pub host_port: &'static str,
    pub user_pass: &'static str,
    pub dbms: &'static str,
    pub timeout: &'static str,
}

/// The server's own keys (AstCTIServer.xml).
pub const SERVER_KEYS: DbKeys = DbKeys {
    host_port: "MYSQL_HOST/MYSQL_PORT",
    user_pass: "MYSQL_USER/MYSQL_PASS",
    dbms: "MYSQL_DBMS",
    timeout: "MYSQL_TIMEOUT",
};

/// A database error in words, with the configuration keys (or the SQL) that fix it.
pub fn explain(e: &mysql::Error, cfg: &DatabaseConfig) -> String {
    let at = format!("{}:{}", cfg.host, cfg.port);
    explain_for(e, &at, cfg.timeout, &cfg.dbms, &SERVER_KEYS)
}

/// [`explain`] for any program: `at` is `host:port`, `keys` name its settings.
pub fn explain_for(
    e: &mysql::Error,
    at: &str,
    timeout: Duration,
    dbms: &str,
    keys: &DbKeys,
) -> String {
    use mysql::{DriverError, Error};
    let io = |k: std::io::ErrorKind, what: &str| match k {
        std::io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections on {at} — check {} and that MariaDB/MySQL runs",
            keys.host_port
        ),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
            "no answer from {at} within {} ({} s) — is the database frozen or firewalled?",
            keys.timeout,
            timeout.as_secs()
        ),
        _ => format!(
            "cannot talk to the database at {at}: {what} — check {}",
            keys.host_port
        ),
    };
    match e {
        Error::MySqlError(m) => match m.code {
            1045 => format!("{} — check {}", m.message, keys.user_pass),
            1044 | 1049 => format!(
                "{} — check {} ({dbms:?}) and the account's GRANT (docs/INSTALL.md)",
                m.message, keys.dbms
            ),
            1146 => format!(
                "{} — load sql/cti.sql into {} ({dbms:?})",
                m.message, keys.dbms
            ),
            1142 => format!(
                "{} — the account needs GRANT SELECT ON {dbms}.cti (docs/INSTALL.md)",
                m.message
            ),
            1040 | 1203 => format!("{} — the database has no connection left", m.message),
            _ => format!("the database answered error {}: {}", m.code, m.message),
        },
        Error::IoError(err) => io(err.kind(), &err.to_string()),
        Error::DriverError(DriverError::ConnectTimeout)
        | Error::DriverError(DriverError::Timeout) => io(std::io::ErrorKind::TimedOut, ""),
        Error::DriverError(DriverError::CouldNotConnect(Some((_, what, kind)))) => io(*kind, what),
        Error::DriverError(d) => format!("database driver: {d}"),
        other => other.to_string(),
    }
}

impl MysqlStore {
    /// Sets the store up without connecting.
    pub fn new(config: &DatabaseConfig) -> Result<Self, String> {
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(config.host.clone()))
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(Some(config.pass.clone()))
            .db_name(Some(config.dbms.clone()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(config.timeout))
            .read_timeout(Some(config.timeout))
            .write_timeout(Some(config.timeout));
        Ok(MysqlStore {
            opts: opts.into(),
            idle: Mutex::new(Vec::new()),
            keep: config.pool_size.max(1),
            uses_per_connection: USES_PER_CONNECTION,
            cfg: config.clone(),
        })
    }

    /// Runs `query` on a kept connection, or on a new one; a kept connection that fails (closed by
    /// a restart or `wait_timeout`) is dropped and the query tried once on a new connection. A
    /// connection goes back to the idle list after success, unless it has reached its quota.
    fn with_conn<T>(
        &self,
        query: impl Fn(&mut Conn) -> Result<T, mysql::Error>,
    ) -> Result<T, mysql::Error> {
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (result, kept) = match kept {
            Some(mut k) => match query(&mut k.conn) {
                Err(e) if is_gone(&e) => {
                    log::debug!("a kept database connection failed ({e}); trying a new one");
                    drop(k);
                    self.on_new_conn(&query)
                }
                r => (r, Some(k)),
            },
            None => self.on_new_conn(&query),
        };
        if let (Ok(_), Some(mut k)) = (&result, kept) {
            k.uses += 1;
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if k.uses < self.uses_per_connection && idle.len() < self.keep {
                idle.push(k);
            }
        }
        result
    }

    fn on_new_conn<T>(
        &self,
        query: &impl Fn(&mut Conn) -> Result<T, mysql::Error>,
    ) -> (Result<T, mysql::Error>, Option<Kept>) {
        match Conn::new(self.opts.clone()) {
            Ok(mut conn) => {
                let r = query(&mut conn);
                (r, Some(Kept { conn, uses: 0 }))
            }
            Err(e) => (Err(e), None),
        }
    }

    /// Startup check (`SELECT VERSION()`, `wait_timeout`); returns the server version.
    pub fn check(&self) -> Result<String, String> {
        let version: Option<String> = self
            .with_conn(|c| c.query_first("SELECT VERSION()"))
            .map_err(|e| explain(&e, &self.cfg))?;
        let table: Option<u64> = self
            .with_conn(|c| c.query_first("SELECT COUNT(*) FROM cti"))
            .map_err(|e| format!("the cti table cannot be read: {}", explain(&e, &self.cfg)))?;
        log::debug!("cti table holds {} rows", table.unwrap_or(0));
        Ok(version.unwrap_or_default())
    }

    /// Connects at startup, retrying `retry_times` more times `retry_wait` apart.
    pub fn connect(config: &DatabaseConfig) -> Result<(Self, String), String> {
        let store = Self::new(config)?;
        let mut attempt = 0;
        loop {
            match store.check() {
                Ok(version) => return Ok((store, version)),
                Err(e) if attempt < config.retry_times => {
                    attempt += 1;
                    log::warn!(
                        "{e}; trying again in {} s (attempt {attempt} of {})",
                        config.retry_wait.as_secs(),
                        config.retry_times
                    );
                    std::thread::sleep(config.retry_wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Store for MysqlStore {
    fn authenticate(&self, username: &str, secret: &str) -> Result<Option<AgentRow>, String> {
        let row: Option<(Option<String>, Option<String>)> = self
            .with_conn(|c| {
                c.exec_first(
                    "SELECT USERNAME, EXT FROM cti WHERE USERNAME=? AND SECRET=?",
                    (username, secret),
                )
            })
            .map_err(|e| format!("login query failed: {}", explain(&e, &self.cfg)))?;
        Ok(row.map(|(name, ext)| AgentRow {
            username: name.unwrap_or_else(|| username.to_string()),
            ext,
        }))
    }
}

/// Has the connection itself gone (closed by a restart, by `wait_timeout`, reset), so that a new
/// one may well work? Not for a read or write that hit `MYSQL_TIMEOUT`: the database is slow or
/// frozen, and a new connection would only double the wait; not for an error the server answered
/// on a working connection, except "disconnected" (1053 shutdown, 4031 inactivity).
fn is_gone(e: &mysql::Error) -> bool {
    use mysql::{DriverError, Error};
    match e {
        Error::IoError(err) => !matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        Error::DriverError(DriverError::ConnectTimeout | DriverError::Timeout) => false,
        Error::DriverError(_) | Error::CodecError(_) => true,
        Error::MySqlError(m) => matches!(m.code, 1053 | 4031),
        _ => false,
    }
}

type Answer = Result<Option<AgentRow>, String>;

struct Request {
    username: String,
    secret: String,
    deadline: Instant,
    reply: Reply<Answer>,
}

#[derive(Debug, Default)]
struct Health {
    /// The last error, while the database is considered down.
    down: Option<String>,
    last_probe: Option<Instant>,
}

impl Health {
    /// May a login try the database now? Err = fail fast, with the reason.
    fn admit(&mut self, now: Instant) -> Result<(), String> {
        let Some(error) = &self.down else {
            return Ok(());
        };
        if self
            .last_probe
            .is_some_and(|t| now.duration_since(t) < PROBE_EVERY)
        {
            return Err(format!("the database is down ({error}); failing fast"));
        }
        self.last_probe = Some(now);
        Ok(())
    }
}

/// The client threads' handle on the `db-N` login threads; cheap to clone.
#[derive(Clone)]
pub struct Logins {
    tx: Sender<Request>,
    health: Arc<Mutex<Health>>,
    timeout: Duration,
    pool: Arc<Mutex<Pool>>,
}

/// What starting one more login thread takes.
struct Pool {
    rx: Receiver<Request>,
    store: Arc<dyn Store>,
    health: Arc<Mutex<Health>>,
    counters: Arc<Counters>,
    started: usize,
    limit: usize,
}

/// The most login threads (and so database connections at once) `MYSQL_POOL_SIZE` grows to under
/// demand: four times it, at most 64 (never fewer than it).
pub fn pool_limit(pool_size: usize) -> usize {
    pool_size.max((pool_size * 4).min(64))
}

impl Pool {
    /// One more login thread, if the limit allows (and the system gives a thread).
    fn grow(&mut self) {
        if self.started >= self.limit {
            return;
        }
        let n = self.started + 1;
        let (rx, store, health, counters) = (
            self.rx.clone(),
            self.store.clone(),
            self.health.clone(),
            self.counters.clone(),
        );
        match crate::vital::spawn(&format!("db-{n}"), move || {
            login_thread(rx, store.as_ref(), &health, &counters)
        }) {
            Ok(_) => {
                self.started = n;
                log::info!(
                    "logins are queueing: {n} database login threads now (MYSQL_POOL_SIZE grows \
                     with demand up to {})",
                    self.limit
                );
            }
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// Starts `threads` login threads over `store`; they end when every [`Logins`] clone is dropped.
pub fn start_logins(
    store: Arc<dyn Store>,
    threads: usize,
    timeout: Duration,
    counters: Arc<Counters>,
) -> Result<(Logins, Vec<JoinHandle<()>>), String> {
    let threads = threads.max(1);
    let (tx, rx) = bounded::<Request>(threads * QUEUE_PER_THREAD);
    let health = Arc::new(Mutex::new(Health::default()));
    let mut handles = Vec::new();
    for n in 1..=threads {
        let (rx, store, health, counters) =
            (rx.clone(), store.clone(), health.clone(), counters.clone());
        // A dead login thread would leave logins waiting on a smaller pool: it ends the process.
        let h = crate::vital::spawn(&format!("db-{n}"), move || {
            login_thread(rx, store.as_ref(), &health, &counters)
        })?;
        handles.push(h);
    }
    let pool = Pool {
        rx,
        store,
        health: health.clone(),
        counters,
        started: threads,
        limit: pool_limit(threads),
    };
    Ok((
        Logins {
            tx,
            health,
            timeout,
            pool: Arc::new(Mutex::new(pool)),
        },
        handles,
    ))
}

fn login_thread(rx: Receiver<Request>, store: &dyn Store, health: &Mutex<Health>, c: &Counters) {
    for req in rx.iter() {
        if Instant::now() >= req.deadline {
            continue; // its client has already been answered
        }
        let answer = store.authenticate(&req.username, &req.secret);
        {
            let mut h = health.lock().unwrap_or_else(PoisonError::into_inner);
            match &answer {
                Err(e) => {
                    stats::add(&c.db_errors, 1);
                    if h.down.is_none() {
                        log::error!("database error: {e}; logins fail fast until it answers again");
                    }
                    h.down = Some(e.clone());
                    h.last_probe = Some(Instant::now());
                }
                Ok(_) => {
                    if h.down.take().is_some() {
                        log::info!("the database answers again");
                    }
                }
            }
        }
        req.reply.send(answer);
    }
}

impl Logins {
    /// Checks the credentials, answering by `deadline` at the latest (and within `MYSQL_TIMEOUT`).
    pub fn authenticate(&self, username: &str, secret: &str, deadline: Instant) -> Answer {
        let now = Instant::now();
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now)?;
        let deadline = deadline.min(now + self.timeout);
        let (reply, answer) = oneshot();
        let req = Request {
            username: username.to_string(),
            secret: secret.to_string(),
            deadline,
            reply,
        };
        match self.tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) => {
                // Demand: one more thread (up to the limit), then a wait for room in the queue
                // until this login's deadline.
                self.pool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .grow();
                match self.tx.send_deadline(req, deadline) {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => {
                        return Err(format!(
                            "every database login thread stayed busy for {:.1} s \
                             (MYSQL_POOL_SIZE, MYSQL_TIMEOUT)",
                            deadline.saturating_duration_since(now).as_secs_f32()
                        ))
                    }
                    Err(SendTimeoutError::Disconnected(_)) => {
                        return Err("the server is stopping".into())
                    }
                }
            }
            Err(TrySendError::Disconnected(_)) => return Err("the server is stopping".into()),
        }
        let waited_full = deadline == now + self.timeout;
        answer.recv_deadline(deadline).unwrap_or_else(|| {
            let why = format!(
                "no answer from the database within {:.1} s (MYSQL_TIMEOUT or the login timeout)",
                deadline.saturating_duration_since(now).as_secs_f32()
            );
            if waited_full {
                // A whole MYSQL_TIMEOUT without an answer: the database is down (frozen, say), even
                // before the query itself times out; the next logins fail fast.
                let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
                if h.down.is_none() {
                    log::error!("{why}; logins fail fast until it answers again");
                }
                h.down = Some(why.clone());
                h.last_probe = Some(Instant::now());
            }
            Err(why)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    /// A database under the test's control: each query counts itself and then waits until the
    /// test opens the gate (no sleeps: the test decides when the database answers).
    #[derive(Default)]
    struct Gated {
        state: Mutex<(u32, bool)>,
        changed: Condvar,
    }

    impl Gated {
        fn open(&self) {
            self.state.lock().unwrap().1 = true;
            self.changed.notify_all();
        }
        fn calls(&self) -> u32 {
            self.state.lock().unwrap().0
        }
        /// Waits (bounded) until `n` queries have reached the database.
        fn wait_calls(&self, n: u32) {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut s = self.state.lock().unwrap();
            while s.0 < n {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{} of {n} queries reached the database",
                    s.0
                );
                s = self.changed.wait_timeout(s, left).unwrap().0;
            }
        }
    }

    impl Store for Gated {
        fn authenticate(&self, username: &str, _: &str) -> Result<Option<AgentRow>, String> {
            let mut s = self.state.lock().unwrap();
            s.0 += 1;
            self.changed.notify_all();
            while !s.1 {
                s = self.changed.wait(s).unwrap();
            }
            if username == "down" {
                return Err("refused".into());
            }
            Ok(Some(AgentRow {
                username: username.into(),
                ext: Some("SIP/1".into()),
            }))
        }
    }

    fn logins_over(store: &Arc<Gated>) -> Logins {
        start_logins(
            store.clone(),
            1,
            Duration::from_secs(60),
            Arc::new(Counters::default()),
        )
        .unwrap()
        .0
    }

    /// A generous bound for "at once" and "by the deadline": far below the waits the code under
    /// test would otherwise make (a closed gate never answers), far above any scheduling delay.
    const PROMPT: Duration = Duration::from_secs(5);

    #[test]
    fn a_slow_database_answers_by_the_deadline_and_a_down_one_fails_fast() {
        let store = Arc::new(Gated::default());
        let logins = logins_over(&store);
        // The gate is closed: only the deadline can answer.
        let t = Instant::now();
        let r = logins.authenticate("a", "s", t + Duration::from_millis(100));
        assert!(r.is_err(), "answered at the deadline: {r:?}");
        assert!(t.elapsed() < PROMPT, "{:?}", t.elapsed());
        store.open();
        let far = || Instant::now() + Duration::from_secs(60);
        let r = logins.authenticate("a", "s", far());
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
        // The database fails once: the next login within PROBE_EVERY does not reach it. (The last
        // probe is put in the future, so no scheduling delay can make PROBE_EVERY pass here.)
        assert!(logins.authenticate("down", "s", far()).is_err());
        let calls = store.calls();
        logins.health.lock().unwrap().last_probe = Some(Instant::now() + Duration::from_secs(3600));
        let t = Instant::now();
        let r = logins.authenticate("a", "s", far());
        assert!(r.unwrap_err().contains("failing fast"));
        assert!(t.elapsed() < PROMPT, "{:?}", t.elapsed());
        assert_eq!(store.calls(), calls, "no database call");
        // Once PROBE_EVERY has passed, one login probes, succeeds, and the database counts as up.
        logins.health.lock().unwrap().last_probe = Instant::now().checked_sub(PROBE_EVERY * 2);
        let r = logins.authenticate("a", "s", far());
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
        assert_eq!(store.calls(), calls + 1);
        assert!(logins.health.lock().unwrap().down.is_none());
        let r = logins.authenticate("b", "s", far());
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
    }

    #[test]
    fn while_down_one_login_per_probe_interval_tries_the_database() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(h.admit(t0).is_ok(), "up: every login");
        assert!(h.admit(t0).is_ok());
        h.down = Some("refused".into());
        h.last_probe = Some(t0);
        let err = h.admit(t0 + PROBE_EVERY / 2).unwrap_err();
        assert!(
            err.contains("refused") && err.contains("failing fast"),
            "{err}"
        );
        assert!(h.admit(t0 + PROBE_EVERY).is_ok(), "the probe");
        assert!(h.admit(t0 + PROBE_EVERY).is_err(), "one probe per interval");
        assert!(h.admit(t0 + PROBE_EVERY * 2).is_ok(), "the next probe");
    }

    #[test]
    fn a_full_queue_grows_the_pool_to_its_limit_then_waits_until_the_deadline() {
        let store = Arc::new(Gated::default());
        let logins = logins_over(&store);
        let limit = pool_limit(1);
        assert_eq!(limit, 4);
        let login = |l: &Logins| {
            let l = l.clone();
            std::thread::spawn(move || {
                l.authenticate("a", "s", Instant::now() + Duration::from_secs(60))
            })
        };
        // The gate is closed: every thread's query waits at the database. One thread and a full
        // queue; then each login beyond starts one more thread, until the limit.
        let mut waiting = vec![login(&logins)];
        store.wait_calls(1);
        waiting.extend((0..QUEUE_PER_THREAD).map(|_| login(&logins)));
        let full = |l: &Logins| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while l.tx.len() < QUEUE_PER_THREAD {
                assert!(Instant::now() < deadline, "{} queued", l.tx.len());
                std::thread::yield_now();
            }
        };
        full(&logins);
        for n in 2..=limit {
            waiting.push(login(&logins));
            store.wait_calls(n as u32);
            // The new thread took one from the queue; the login that started it took its place.
            full(&logins);
        }
        assert_eq!(logins.pool.lock().unwrap().started, limit);
        // At the limit, with the queue full: a login waits for room until its deadline, and says
        // why; it is not refused at once.
        let t = Instant::now();
        let r = logins.authenticate("a", "s", t + Duration::from_millis(300));
        assert!(r.unwrap_err().contains("stayed busy"));
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(t.elapsed() < PROMPT, "{:?}", t.elapsed());
        // More logins wait for room; the database answers; every one is logged in.
        waiting.extend((0..10).map(|_| login(&logins)));
        store.open();
        for w in waiting {
            assert!(matches!(w.join().unwrap(), Ok(Some(_))));
        }
        assert_eq!(
            store.calls(),
            (1 + QUEUE_PER_THREAD + (limit - 1) + 10) as u32
        );
    }
}
