//! How much log one call writes at each LOG_LEVEL (docs/UPGRADING.md quotes the run):
//! `scripts/test.sh --bench --bench logvolume`. The real server, one agent logged in, ami-replay
//! playing the Asterisk 22 demo call (112 AMI messages, 4 notifications) 20 times; the day's file and
//! stderr are measured (stderr as on a console; under journald it stops at Info).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use astcti_server::replay::server::{Pace, ReplayConfig, ReplayServer};
use astcti_server::replay::Capture;
use common::*;

const CALLS: u64 = 20;

fn main() {
    if std::env::var("ASTCTI_TEST_MYSQL_HOST").is_err() {
        eprintln!("benches/logvolume.rs needs the test MariaDB: run scripts/test.sh --bench --bench logvolume");
        return;
    }
    let capture = Capture::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami/asterisk-22.10.1/a-inbound-100-answered.ami"),
    )
    .unwrap();
    // The capture rings PJSIP/201: borrow that EXT (unique in the table) for the run, give it back.
    use mysql::prelude::Queryable;
    let mut db = admin();
    let holders: Vec<String> = db
        .query("SELECT USERNAME FROM cti WHERE EXT = 'PJSIP/201'")
        .unwrap();
    db.query_drop("UPDATE cti SET EXT = NULL WHERE EXT = 'PJSIP/201'")
        .unwrap();
    let user = unique("vol");
    let secret = add_agent(&user, "pw", Some("PJSIP/201"), None);
    println!("| LOG_LEVEL | file bytes per call | stderr bytes per call |");
    println!("|---|---|---|");
    for level in [31u32, 63, 127, 255] {
        let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![capture.clone()]);
        cfg.pace = Pace::Fast;
        cfg.times = CALLS;
        cfg.rewrite_ids = true;
        cfg.held = true;
        let replay = ReplayServer::start(cfg).unwrap();
        let server = Server::start_with(Options {
            manager_port: Some(replay.addr().port()),
            log_level: Some(level),
            ..Options::default()
        });
        assert!(server.wait_log("logged in to Asterisk", Duration::from_secs(10)));
        let _c = server.login(&user, &secret);
        let before = size(&server);
        let err_before = server.stderr_text().len();
        replay.release();
        assert!(replay.wait_for(Duration::from_secs(30), |s| s.replays_done == 1));
        std::thread::sleep(Duration::from_millis(500));
        let file = size(&server) - before;
        let err = server.stderr_text().len() - err_before;
        println!(
            "| {level} | {} | {} |",
            file / CALLS as usize,
            err / CALLS as usize
        );
    }
    db.exec_drop("DELETE FROM cti WHERE USERNAME = ?", (&user,))
        .unwrap();
    for h in holders {
        db.exec_drop("UPDATE cti SET EXT = 'PJSIP/201' WHERE USERNAME = ?", (h,))
            .unwrap();
    }
}

fn size(server: &Server) -> usize {
    std::fs::read_dir(server.dir.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map(|m| m.len() as usize).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}
