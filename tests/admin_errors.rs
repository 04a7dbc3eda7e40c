//! Errors an administrator must be able to act on, through the real binary: each names what to fix
//! in words (the key, the SQL, the XML escape), never a Rust debug structure.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `--check-config` on a file that must be refused (exit code 2): its stderr.
fn check_config_fails(config: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

fn run_with(opts: &Options, args: &[&str]) -> (Option<i32>, String) {
    let dir = temp_dir("adm");
    let config = write_config(&dir, opts);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_database_password_names_the_keys_to_check() {
    let (code, err) = run_with(
        &Options {
            mysql_pass: Some("wrong".into()),
            ..Options::default()
        },
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Access denied for user"), "{err}");
    assert!(err.contains("check MYSQL_USER/MYSQL_PASS"), "{err}");
    assert!(!err.contains("MySqlError"), "no debug syntax: {err}");
}

#[test]
fn a_database_port_where_nothing_listens_names_host_and_port() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let (code, err) = run_with(
        &Options {
            db_port: Some(port),
            ..Options::default()
        },
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("nothing accepts connections on 127.0.0.1:{port}"))
            && err.contains("check MYSQL_HOST/MYSQL_PORT"),
        "{err}"
    );
}

#[test]
fn a_misspelt_key_and_an_ampersand_are_explained() {
    let dir = temp_dir("adm");
    let config = write_config(&dir, &Options::default());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("MANAGER_PORT", "MANAGER_PROT")).unwrap();
    let err = check_config_fails(&config);
    assert!(
        err.contains("MANAGER_PROT: unknown key; did you mean MANAGER_PORT?"),
        "{err}"
    );
    std::fs::write(&config, text.replace("ctimanager\" />", "p&ss\" />")).unwrap();
    let err = check_config_fails(&config);
    assert!(err.contains("&amp;"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_service_that_is_not_asterisk_on_the_manager_port_is_named_and_retried_slowly() {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = accepts.clone();
    std::thread::spawn(move || {
        for s in peer.incoming().flatten() {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let server = Server::start_with(Options {
        manager_port: Some(port),
        ..Options::default()
    });
    assert!(
        server.wait_log(
            &format!("127.0.0.1:{port} is not an Asterisk manager port: it sent something else"),
            Duration::from_secs(5)
        ),
        "{}",
        server.stderr_text()
    );
    assert!(server
        .stderr_text()
        .contains("check MANAGER_HOST/MANAGER_PORT"));
    assert!(server.stderr_text().contains("trying again in 30 s"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        accepts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no second attempt within 2 s"
    );
    assert!(!server.stderr_text().contains("logged in to Asterisk"));
}

#[test]
fn check_config_connect_says_which_login_works() {
    use astcti_server::replay::server::{ReplayConfig, ReplayServer};
    use astcti_server::replay::Capture;
    let capture = Capture::load(
        &common::expected::root().join("fixtures/ami/asterisk-22.10.1/a-inbound-100-answered.ami"),
    )
    .unwrap();
    let mut cfg = ReplayConfig::new("127.0.0.1:0".parse().unwrap(), vec![capture]);
    cfg.held = true;
    let replay = ReplayServer::start(cfg).unwrap();
    let dir = temp_dir("connect");
    let config = write_config(
        &dir,
        &Options {
            manager_port: Some(replay.addr().port()),
            ..Options::default()
        },
    );
    let run = |config: &std::path::Path| {
        let out = Command::new(BIN)
            .args(["--check-config", "--connect", "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&config);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("database: OK: logged in as"), "{text}");
    assert!(
        text.contains("asterisk: OK: logged in to 127.0.0.1:")
            && text.contains("(AMI 11.0.0, Asterisk 12+)"),
        "{text}"
    );
    // A wrong manager secret: the database still OK, Asterisk's answer quoted, exit 1.
    let text_cfg = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_cfg.replace(
            "<add key=\"MANAGER_PASS\" value=\"ctimanager\" />",
            "<add key=\"MANAGER_PASS\" value=\"wrong\" />",
        ),
    )
    .unwrap();
    let (code, text) = run(&config);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("database: OK"), "{text}");
    assert!(
        text.contains("asterisk: FAILED: Asterisk refused the login"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_saved_as_latin1_says_to_save_it_as_utf8() {
    let dir = temp_dir("latin1");
    let config = write_config(&dir, &Options::default());
    let mut bytes = std::fs::read(&config).unwrap();
    // A comment with "é" as Latin-1 (0xE9), as a Windows editor saving "ANSI" writes it.
    let at = bytes.windows(11).position(|w| w == b"<ctiserver>").unwrap() + 11;
    bytes.splice(at..at, b"<!-- caf\xe9 -->".iter().copied());
    std::fs::write(&config, bytes).unwrap();
    let err = check_config_fails(&config);
    assert!(err.contains("not UTF-8: save it as UTF-8"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-of-a-kind thread that dies (here the dispatcher, killed by a test-only failpoint when an
/// agent logs in) ends the process with status 70 and a line saying so, instead of leaving a
/// server that accepts connections and pops nothing: the unit's `Restart=on-failure` starts it
/// again.
#[test]
fn a_dead_dispatcher_ends_the_process_so_that_the_service_manager_restarts_it() {
    let mut server = Server::start_with(Options {
        env: vec![("ASTCTI_FAILPOINT", "dispatcher-register".into())],
        ..Options::default()
    });
    let user = unique("vital");
    let row = add_agent(&user, "pw", Some(&unique("SIP/")), None);
    let mut c = server.connect();
    c.expect(b"100 CTISERVER WELCOME\n");
    c.send(&format!("USER {user}\nPASS {}\n", row.secret));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70), "{}", server.stderr_text());
    assert!(
        server.wait_log("thread dispatcher died", Duration::from_secs(5)),
        "{}",
        server.stderr_text()
    );
}
