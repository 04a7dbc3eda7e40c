//! A MariaDB of one test's own (scripts/mariadb.sh on a free port, data in a temporary directory),
//! for tests that freeze, stop or restart the database: the shared one of scripts/test.sh must stay
//! up for every other test. It holds the `cti` table and the test account of [`super::db`].

use std::path::Path;
use std::process::Command;

use super::{db, temp_dir, TempDir};

/// The database: its directory (data, socket, pid file) and its port.
pub struct PrivateDb {
    pub dir: TempDir,
    pub port: u16,
}

/// Runs `script` in bash with scripts/mariadb.sh's functions loaded and `DB_DIR` set to `dir`.
pub fn sh(script: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". scripts/mariadb.sh && {script}"))
        .env("DB_DIR", dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PrivateDb {
    pub fn start() -> PrivateDb {
        let dir = temp_dir("faultdb");
        // The database is restarted on the same port, so the port must stay free while it is down:
        // below the ephemeral port range, where the many client connections of the other tests
        // cannot be holding it; where in that range depends on the process (mariadb_start takes
        // the next free one from there), so that two runs side by side do not meet.
        let start = below_ephemeral_ports();
        sh(&format!("mariadb_start \"$DB_DIR\" {start}"), &dir);
        let port = std::fs::read_to_string(dir.join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let d = db();
        let sql = format!(
            "CREATE DATABASE {db}; CREATE USER '{u}'@'127.0.0.1' IDENTIFIED BY '{p}'; \
             GRANT SELECT ON {db}.* TO '{u}'@'127.0.0.1';",
            db = d.db,
            u = d.user,
            p = d.pass
        );
        sh(&format!("mariadb_root \"$DB_DIR\" -e \"{sql}\""), &dir);
        sh(
            &format!("mariadb_root \"$DB_DIR\" {} < sql/cti.sql", d.db),
            &dir,
        );
        sh(
            &format!(
                "mariadb_root \"$DB_DIR\" {} -e \"INSERT INTO cti VALUES ('fault', MD5('pw'), NULL, 'SIP/301')\"",
                d.db
            ),
            &dir,
        );
        PrivateDb { dir, port }
    }

    pub fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("mysqld.pid"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        assert!(Command::new("kill")
            .args([format!("-{sig}"), pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for PrivateDb {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("mysqld.pid")) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// A port to start looking from: below the first ephemeral port (32768 on Linux unless configured
/// otherwise), above the well-known and registered services' usual ports, chosen by the process id.
pub fn below_ephemeral_ports() -> u16 {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 20000u16.min(first_ephemeral / 2);
    let span = u32::from(first_ephemeral.saturating_sub(low).saturating_sub(100)).max(1);
    low + (std::process::id() % span) as u16
}
