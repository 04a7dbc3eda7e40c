//! The program: arguments → configuration → logging → database → server → wait for a signal → stop.
//!
//! Shell, run on the main thread. Exit codes: 0 normal stop, 1 the database or the listener is
//! unavailable (a service manager restarts us), 2 bad arguments or configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{self, Options};
use crate::config::{self, Config};
use crate::server::{RunOptions, Server};
use crate::store::MysqlStore;

pub const EXIT_OK: i32 = 0;
pub const EXIT_UNAVAILABLE: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds, reads and validates the configuration; the error is the one line to print.
pub fn load_config(opts: &Options) -> Result<(Config, Vec<String>), String> {
    let app_dir = exe_dir();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let path = config::locate(opts.config.as_deref(), &app_dir, &cwd)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::InvalidData {
            " (the file is not UTF-8: save it as UTF-8 — a Windows editor may have saved it as \
             ANSI/Latin-1)"
        } else {
            ""
        };
        format!(
            "{}: cannot read the configuration: {e}{hint}",
            path.display()
        )
    })?;
    Config::from_xml(&text, &path, &app_dir).map_err(|e| e.to_string())
}

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("astcti-server: {e}");
            return EXIT_CONFIG;
        }
    };
    if opts.help {
        print!("{}", cli::USAGE);
        return EXIT_OK;
    }
    if opts.version {
        println!("astcti-server {}", env!("CARGO_PKG_VERSION"));
        return EXIT_OK;
    }
    if let Some(path) = &opts.replay {
        return match std::fs::read(path) {
            Ok(bytes) => {
                print!("{}", crate::offline::replay(&bytes, &opts.agents));
                EXIT_OK
            }
            Err(e) => {
                eprintln!("astcti-server: --replay {}: {e}", path.display());
                EXIT_CONFIG
            }
        };
    }
    let (config, warnings) = match load_config(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("astcti-server: {e}");
            return EXIT_CONFIG;
        }
    };
    if opts.check_config {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        print!("{}", config.describe());
        if opts.connect {
            return check_connections(&config);
        }
        return EXIT_OK;
    }
    if let Err(e) = crate::logging::init(
        config
            .logging
            .active
            .then_some(config.logging.directory.as_path()),
        config.logging.level,
        opts.debug,
        config.logging.keep_days,
    ) {
        eprintln!("astcti-server: {} (DIRECTORY): {e}", config.file.display());
        return EXIT_CONFIG;
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    if !config.logging.active {
        log::info!(
            "no log files: ACTIVE is false in {} (set it to true for the daily files in {})",
            config.file.display(),
            config.logging.directory.display()
        );
    }
    let open_record = |path: &Path| {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        // The recording holds callers' numbers and names, like the log.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o640);
        o.open(path)
    };
    let record = match &opts.record_ami {
        Some(path) => match open_record(path) {
            Ok(f) => {
                log::info!("recording every AMI byte to {}", path.display());
                Some(f)
            }
            Err(e) => {
                log::error!("--record-ami {}: {e}", path.display());
                return EXIT_CONFIG;
            }
        },
        None => None,
    };
    run(
        &config,
        &opts,
        RunOptions {
            dumpconfig: opts.dumpconfig,
            record,
        },
    )
}

/// `--check-config --connect`: logs in to the database and to Asterisk once each and says which works.
fn check_connections(config: &Config) -> i32 {
    let d = &config.database;
    let mut db = d.clone();
    db.retry_times = 0;
    let db_ok = match MysqlStore::connect(&db) {
        Ok((_, version)) => {
            println!(
                "database: OK: logged in as {}@{}:{} to {} (version {version}), the cti table is readable",
                d.user, d.host, d.port, d.dbms
            );
            true
        }
        Err(e) => {
            println!("database: FAILED: {e}");
            false
        }
    };
    let m = &config.manager;
    let link = crate::ami::link::LinkConfig::new(
        &m.host,
        m.port,
        crate::ami::session::SessionConfig {
            user: m.user.clone(),
            secret: m.pass.clone(),
            idle: m.socket_timeout,
            dumpconfig: false,
        },
    );
    let ami_ok = match crate::ami::link::try_login(&link, std::time::Duration::from_secs(10)) {
        Ok((version, dialect)) => {
            println!(
                "asterisk: OK: logged in to {}:{} as {} (AMI {version}, {dialect})",
                m.host, m.port, m.user
            );
            true
        }
        Err(e) => {
            println!(
                "asterisk: FAILED: {e} (check MANAGER_HOST/MANAGER_PORT/MANAGER_USER/MANAGER_PASS and \
                 manager.conf)"
            );
            false
        }
    };
    if db_ok && ami_ok {
        EXIT_OK
    } else {
        EXIT_UNAVAILABLE
    }
}

/// Fits `CTI_MAX_CLIENTS` (plus `CTI_MAX_PENDING`) into the descriptor limit, saying so.
fn fit_to_descriptors(config: &Config, limit: Option<u64>) -> Config {
    let mut config = config.clone();
    let Some(limit) = limit else {
        return config;
    };
    let c = &mut config.cti;
    let capacity = crate::fdlimit::client_capacity(limit, config.database.pool_size as u64);
    let wanted = c.max_clients + c.max_pending;
    if wanted <= capacity {
        log::info!(
            "descriptor limit {limit}: room for {capacity} client connections \
             (CTI_MAX_CLIENTS {} + CTI_MAX_PENDING {})",
            c.max_clients,
            c.max_pending
        );
        return config;
    }
    // Keep the pending pool at most a quarter of what fits, give the rest to agents.
    let pending = c.max_pending.min(capacity / 4).max(1);
    let clients = capacity.saturating_sub(pending).max(1);
    log::warn!(
        "descriptor limit {limit} (RLIMIT_NOFILE, LimitNOFILE= in systemd) holds {capacity} client \
         connections, not CTI_MAX_CLIENTS {} + CTI_MAX_PENDING {}: serving {clients} clients and \
         {pending} pending connections; raise the limit to serve more",
        c.max_clients,
        c.max_pending
    );
    c.max_clients = clients;
    c.max_pending = pending;
    c.max_pending_per_ip = c.max_pending_per_ip.min(pending);
    config
}

/// SIGHUP: reopens the log file, reads the file again and applies what can change without a
/// restart; says what changed and what needs a restart. A broken file changes nothing.
fn reload(cli: &Options, running: &mut Config, server: &Server, limit: Option<u64>) {
    crate::logging::reopen();
    log::info!(
        "reload (SIGHUP): log file reopened; reading {}",
        running.file.display()
    );
    let new = match load_config(cli) {
        Ok((c, warnings)) => {
            for w in &warnings {
                log::warn!("reload (SIGHUP): {w}");
            }
            fit_to_descriptors(&c, limit)
        }
        Err(e) => {
            log::error!("reload (SIGHUP): {e}; the running configuration is kept");
            return;
        }
    };
    let changes = running.changes(&new);
    if changes.is_empty() {
        log::info!("reload (SIGHUP): no setting changed");
        return;
    }
    for c in &changes {
        if c.reloadable {
            log::info!("reload (SIGHUP): {} {} -> {}", c.key, c.old, c.new);
        } else {
            log::warn!(
                "reload (SIGHUP): {} changed in the file ({} -> {}) but takes effect only after a \
                 restart; still {}",
                c.key,
                c.old,
                c.new,
                c.old
            );
        }
    }
    // Only the reloadable settings (config::RELOADABLE) are taken from the new file.
    let mut applied = running.clone();
    applied.logging.level = new.logging.level;
    let (a, n) = (&mut applied.cti, &new.cti);
    a.client_timeout = n.client_timeout;
    a.keepalive = n.keepalive;
    a.login_timeout = n.login_timeout;
    a.originate_contexts = n.originate_contexts.clone();
    a.originate_rate = n.originate_rate;
    a.client_queue_bytes = n.client_queue_bytes;
    a.client_write_timeout = n.client_write_timeout;
    a.max_clients = n.max_clients;
    a.max_pending = n.max_pending;
    a.max_pending_per_ip = n.max_pending_per_ip;
    a.allowed_networks = n.allowed_networks.clone();
    a.login_throttle = n.login_throttle;
    crate::logging::set_mask(applied.logging.level);
    server.apply(&applied);
    *running = applied;
}

fn run(config: &Config, cli: &Options, opts: RunOptions) -> i32 {
    log::info!(
        "astcti-server {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        config.file.display()
    );
    let signals = match crate::signals::install() {
        Ok(rx) => rx,
        Err(e) => {
            log::error!("{e}");
            return EXIT_UNAVAILABLE;
        }
    };
    let db = &config.database;
    let store = match MysqlStore::connect(db) {
        Ok((store, version)) => {
            log::info!(
                "database {}@{}:{}/{} is up (version {version})",
                db.user,
                db.host,
                db.port,
                db.dbms
            );
            store
        }
        Err(e) => {
            log::error!(
                "database connection is not available ({}@{}:{}/{}): {e}. Exiting",
                db.user,
                db.host,
                db.port,
                db.dbms
            );
            return EXIT_UNAVAILABLE;
        }
    };
    let limit = crate::fdlimit::raise();
    let mut config = fit_to_descriptors(config, limit);
    let server = match Server::start(&config, Arc::new(store), opts) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return EXIT_UNAVAILABLE;
        }
    };
    while let Ok(crate::signals::Signal::Reload) = signals.recv() {
        reload(cli, &mut config, &server, limit);
    }
    log::info!("signal received: shutting down");
    server.stop();
    log::info!("astcti-server stopped");
    log::logger().flush();
    EXIT_OK
}
