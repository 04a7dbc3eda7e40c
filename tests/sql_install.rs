//! `sql/cti.sql` as an administrator loads it (the `mariadb` client, the real MariaDB): on a new
//! database it creates the table and adds no account; on a database that holds agents, loading it
//! again (an upgrade, or by mistake) keeps every agent.

mod common;

use std::process::{Command, Stdio};

use common::*;
use mysql::prelude::Queryable;

fn load(database: &str) {
    let d = db();
    let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/cti.sql")).unwrap();
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            &d.host,
            "-P",
            &d.port.to_string(),
            "-u",
            &std::env::var("ASTCTI_TEST_MYSQL_ADMIN_USER").unwrap(),
            &format!(
                "-p{}",
                std::env::var("ASTCTI_TEST_MYSQL_ADMIN_PASS").unwrap()
            ),
            database,
        ])
        .stdin(Stdio::from(file))
        .output()
        .expect("the mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn loading_cti_sql_twice_keeps_the_agents_and_adds_no_account() {
    let name = format!("astcti_sql_{}", std::process::id());
    let mut a = admin();
    a.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    a.query_drop(format!("CREATE DATABASE {name}")).unwrap();
    load(&name);
    let rows: Vec<String> = a.query(format!("SELECT USERNAME FROM {name}.cti")).unwrap();
    assert!(rows.is_empty(), "no well-known account: {rows:?}");
    a.query_drop(format!(
        "INSERT INTO {name}.cti VALUES ('alice', MD5('a'), NULL, 'PJSIP/201'), \
         ('bob', MD5('b'), '0.0.0.0', 'SIP/202')"
    ))
    .unwrap();
    load(&name);
    let rows: Vec<(String, String)> = a
        .query(format!(
            "SELECT USERNAME, EXT FROM {name}.cti ORDER BY USERNAME"
        ))
        .unwrap();
    assert_eq!(
        rows,
        vec![
            ("alice".to_string(), "PJSIP/201".to_string()),
            ("bob".to_string(), "SIP/202".to_string())
        ]
    );
    a.query_drop(format!("DROP DATABASE {name}")).unwrap();
}
