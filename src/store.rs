//! The agents' store: the original `cti` table in MySQL/MariaDB (spec §2). The only module with SQL.
//!
//! Shell. Called from `client-N` reader threads (each login) and from `main` at startup, never from the
//! AMI link or the dispatcher. A connection pool (health-checked on checkout) replaces the original's
//! single shared connection and its ping thread: after the database restarts, the next login simply
//! gets a fresh connection.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::config::DatabaseConfig;
use crate::cti::session::AgentRow;

/// Looks agents up by credentials.
pub trait Store: Send + Sync {
    /// The row whose USERNAME and SECRET match (comparison done by the database, so its collation
    /// applies as in the original); `Err` is a loggable reason without secrets.
    fn authenticate(&self, username: &str, secret: &str) -> Result<Option<AgentRow>, String>;
}

/// The most connections the pool opens at once; logins beyond that wait for one.
const POOL_MAX: usize = 8;

pub struct MysqlStore {
    pool: Pool,
    checkout_timeout: Duration,
}

impl MysqlStore {
    /// Builds the pool without connecting.
    pub fn new(config: &DatabaseConfig) -> Result<Self, String> {
        let constraints = PoolConstraints::new(0, POOL_MAX)
            .ok_or_else(|| "invalid pool constraints".to_string())?;
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(config.host.clone()))
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(Some(config.pass.clone()))
            .db_name(Some(config.dbms.clone()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(config.timeout))
            .read_timeout(Some(config.timeout))
            .write_timeout(Some(config.timeout))
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        let pool = Pool::new(opts).map_err(|e| format!("database options: {e}"))?;
        Ok(MysqlStore {
            pool,
            checkout_timeout: config.timeout,
        })
    }

    fn conn(&self) -> Result<mysql::PooledConn, String> {
        self.pool
            .try_get_conn(self.checkout_timeout)
            .map_err(|e| format!("database unreachable: {e}"))
    }

    /// Startup check (`SELECT VERSION()`, `wait_timeout`); returns the server version.
    pub fn check(&self) -> Result<String, String> {
        let mut conn = self.conn()?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| format!("SELECT VERSION() failed: {e}"))?;
        let table: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM cti")
            .map_err(|e| format!("the cti table cannot be read: {e}"))?;
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
        let mut conn = self.conn()?;
        let row: Option<(Option<String>, Option<String>)> = conn
            .exec_first(
                "SELECT USERNAME, EXT FROM cti WHERE USERNAME=? AND SECRET=?",
                (username, secret),
            )
            .map_err(|e| format!("login query failed: {e}"))?;
        Ok(row.map(|(name, ext)| AgentRow {
            username: name.unwrap_or_else(|| username.to_string()),
            ext,
        }))
    }
}
