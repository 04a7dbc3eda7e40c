//! Command line and configuration errors of the real binary (no database needed).

mod common;

use std::process::Command;

use common::{temp_dir, BIN};

fn run(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SHIPPED: &str = include_str!("../AstCTIServer.xml");

#[test]
fn help_and_version() {
    let dir = temp_dir("cli");
    let (code, out, _) = run(&["--HELP"], &dir);
    assert_eq!(code, 0);
    assert!(out.starts_with("\nUsage:\n"), "{out}");
    for flag in ["--debug", "--dumpconfig", "--config PATH", "--check-config"] {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }
    let (code, out, _) = run(&["--version"], &dir);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("astcti-server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_flag_is_exit_2() {
    let dir = temp_dir("cli");
    let (code, _, err) = run(&["--frobnicate"], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("unknown argument \"--frobnicate\""), "{err}");
}

#[test]
fn check_config_prints_masked_config_from_the_working_directory() {
    let dir = temp_dir("cli");
    std::fs::write(dir.join("AstCTIServer.xml"), SHIPPED).unwrap();
    let (code, out, _) = run(&["--check-config"], &dir);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "file = {}",
            dir.join("AstCTIServer.xml").display()
        )),
        "{out}"
    );
    assert!(out.contains("MYSQL_PASS = ********"), "{out}");
    assert!(out.contains("MANAGER_PASS = ********"), "{out}");
    assert!(out.contains("CTI_SERVER_LISTEN_PORT = 9000"), "{out}");
    assert!(
        !out.contains("MANAGER_PASS = ctimanager") && !out.contains("MYSQL_PASS = cti"),
        "{out}"
    );
}

#[test]
fn missing_file_is_exit_2_naming_what_was_tried() {
    let dir = temp_dir("cli");
    let (code, _, err) = run(&["--check-config"], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("no configuration file found"), "{err}");
    assert!(err.contains("AstCTIServer.exe.config"), "{err}");
    let (code, _, err) = run(&["--config", "/nonexistent/x.xml"], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.xml: cannot read"), "{err}");
}

#[test]
fn malformed_xml_and_bad_values_are_one_line_exit_2() {
    let dir = temp_dir("cli");
    let path = dir.join("bad.xml");
    std::fs::write(&path, SHIPPED.replace("</manager>", "")).unwrap();
    let (code, _, err) = run(&["--config", path.to_str().unwrap()], &dir);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:", path.display())) && err.contains("malformed XML"),
        "{err}"
    );

    std::fs::write(
        &path,
        SHIPPED.replace(r#"value="5038""#, r#"value="fivethousand""#),
    )
    .unwrap();
    let (code, _, err) = run(&["--config", path.to_str().unwrap()], &dir);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "astcti-server: {}:42:4: MANAGER_PORT: \"fivethousand\" is not a whole number from 1 to 65535",
            path.display()
        )
    );

    std::fs::write(
        &path,
        SHIPPED.replace(r#"<add key="MYSQL_DBMS" value="cti" />"#, ""),
    )
    .unwrap();
    let (code, _, err) = run(&["--config", path.to_str().unwrap()], &dir);
    assert_eq!(code, 2);
    assert!(
        err.contains(":12:3: MYSQL_DBMS: required key missing from <database>"),
        "{err}"
    );
}

#[test]
fn an_existing_installs_exe_config_beside_the_binary_is_used_unchanged() {
    // The original's shipped AstCTIServer.exe.config (docs/ORIGINAL.md §1.6): port 8999, LOG_LEVEL 255.
    let original = SHIPPED
        .replace(r#"value="9000""#, r#"value="8999""#)
        .replace(
            r#"<add key="LOG_LEVEL" value="63"/>"#,
            r#"<add key="LOG_LEVEL" value="255"/>"#,
        );
    let install = temp_dir("install");
    let elsewhere = temp_dir("cwd");
    let bin = install.join("astcti-server");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::write(install.join("AstCTIServer.exe.config"), original).unwrap();
    let out = Command::new(&bin)
        .arg("--check-config")
        .current_dir(&elsewhere)
        .output_retrying_busy();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "file = {}",
            install.join("AstCTIServer.exe.config").display()
        )),
        "{text}"
    );
    assert!(text.contains("CTI_SERVER_LISTEN_PORT = 8999"), "{text}");
    assert!(text.contains("LOG_LEVEL = 255"), "{text}");
    // An AstCTIServer.xml beside the binary wins over it.
    std::fs::write(install.join("AstCTIServer.xml"), SHIPPED).unwrap();
    let out = Command::new(&bin)
        .arg("--check-config")
        .current_dir(&elsewhere)
        .output_retrying_busy();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CTI_SERVER_LISTEN_PORT = 9000"));
    std::fs::remove_dir_all(&install).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

/// `Command::output`, retried while the kernel says "text file busy": a binary copied a moment ago can
/// still be open for writing in a child another test thread was forking at that instant.
trait OutputRetryingBusy {
    fn output_retrying_busy(&mut self) -> std::process::Output;
}

impl OutputRetryingBusy for Command {
    fn output_retrying_busy(&mut self) -> std::process::Output {
        for _ in 0..50 {
            match self.output() {
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
        self.output().unwrap()
    }
}
