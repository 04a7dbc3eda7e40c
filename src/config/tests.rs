use super::*;

const SHIPPED: &str = include_str!("../../AstCTIServer.xml");

fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    Config::from_xml(text, Path::new("test.xml"), Path::new("/opt/astcti"))
}

/// A minimal valid file whose sections are given verbatim (`{db}` etc. are replaced).
fn file(db: &str, logging: &str, manager: &str, cti: &str) -> String {
    format!(
        "<configuration>\n<globalsettings>\n<database>\n{db}\n</database>\n<logging>\n{logging}\n</logging>\n\
         <manager>\n{manager}\n</manager>\n<ctiserver>\n{cti}\n</ctiserver>\n</globalsettings>\n</configuration>\n"
    )
}

const DB: &str = r#"<add key="MYSQL_HOST" value="127.0.0.1"/><add key="MYSQL_USER" value="cti"/><add key="MYSQL_PASS" value="pw"/><add key="MYSQL_DBMS" value="cti"/>"#;
const LOG: &str = r#"<add key="DIRECTORY" value="logs/"/>"#;
const MGR: &str = r#"<add key="MANAGER_HOST" value="localhost"/><add key="MANAGER_PORT" value="5038"/><add key="MANAGER_USER" value="u"/><add key="MANAGER_PASS" value="p"/>"#;
const CTI: &str = r#"<add key="CTI_SERVER_LISTEN_IP" value="0.0.0.0"/><add key="CTI_SERVER_LISTEN_PORT" value="9000"/>"#;

fn err_of(text: &str) -> ConfigError {
    parse(text).expect_err("expected a configuration error")
}

#[test]
fn shipped_file_parses_with_original_values() {
    let (c, warnings) = parse(SHIPPED).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.database.host, "127.0.0.1");
    assert_eq!(c.database.user, "cti");
    assert_eq!(c.database.pass, "cti");
    assert_eq!(c.database.dbms, "cti");
    assert_eq!(c.database.port, 3306);
    assert_eq!(c.database.timeout, Duration::from_secs(30));
    assert_eq!(c.database.retry_times, 0);
    assert_eq!(c.database.retry_wait, Duration::from_secs(10));
    assert!(c.logging.active, "the shipped file writes the log files");
    assert_eq!(c.logging.directory, PathBuf::from("/opt/astcti//logs/"));
    assert_eq!(c.logging.level, 63);
    assert_eq!(c.manager.socket_timeout, Duration::from_secs(120));
    assert_eq!(c.manager.host, "127.0.0.1");
    assert_eq!(c.manager.port, 5038);
    assert_eq!(c.manager.user, "ctimanager");
    assert_eq!(c.manager.pass, "ctimanager");
    assert_eq!(c.cti.client_timeout, Duration::from_secs(60));
    assert_eq!(c.cti.keepalive, 30);
    assert_eq!(c.cti.listen_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(c.cti.listen_port, 9000);
    assert_eq!(c.cti.max_clients, 2000);
    assert_eq!(c.cti.login_timeout, Duration::from_secs(30));
    assert!(c.cti.originate_contexts.is_empty());
}

#[test]
fn the_original_csharp_file_parses_unchanged() {
    // The shipped AstCTIServer.exe.config of the original (docs/ORIGINAL.md §1.6): LOG_LEVEL 255, port 8999.
    let original = SHIPPED
        .replace(r#"value="9000""#, r#"value="8999""#)
        .replace(
            r#"<add key="LOG_LEVEL" value="63"/>"#,
            r#"<add key="LOG_LEVEL" value="255"/>"#,
        );
    let (c, _) = parse(&original).unwrap();
    assert_eq!(c.cti.listen_port, 8999);
    assert_eq!(c.logging.level, 255);
}

#[test]
fn keys_are_case_insensitive_and_last_add_wins() {
    let db =
        format!(r#"{DB}<add key="mysql_host" value="db1"/><add key="Mysql_Host" value="db2"/>"#);
    let (c, _) = parse(&file(&db, LOG, MGR, CTI)).unwrap();
    assert_eq!(c.database.host, "db2");
}

#[test]
fn remove_and_clear_are_honoured() {
    let db = format!(r#"<add key="MYSQL_PORT" value="3307"/><clear/>{DB}"#);
    let (c, _) = parse(&file(&db, LOG, MGR, CTI)).unwrap();
    assert_eq!(
        c.database.port, 3306,
        "clear dropped the earlier MYSQL_PORT"
    );

    let db = format!(r#"{DB}<remove key="mysql_host"/>"#);
    let e = err_of(&file(&db, LOG, MGR, CTI));
    assert_eq!(e.key.as_deref(), Some("MYSQL_HOST"));
    assert!(e.message.contains("required key missing"), "{e}");
}

#[test]
fn comments_and_config_sections_are_ignored() {
    let text = file(&format!("<!-- {DB} -->{DB}<!-- x -->"), LOG, MGR, CTI).replace(
        "<configuration>",
        "<configuration><configSections><sectionGroup name=\"globalsettings\"/></configSections>",
    );
    let (c, w) = parse(&text).unwrap();
    assert_eq!(c.database.pass, "pw");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn new_optional_keys_are_read() {
    let db = format!(r#"{DB}<add key="MYSQL_PORT" value="3307"/>"#);
    let cti = format!(
        r#"{CTI}<add key="CTI_MAX_CLIENTS" value="5"/><add key="CTI_LOGIN_TIMEOUT" value="7"/><add key="CTI_ORIGINATE_CONTEXTS" value=" a, b ,,c"/>"#
    );
    let (c, _) = parse(&file(&db, LOG, MGR, &cti)).unwrap();
    assert_eq!(c.database.port, 3307);
    assert_eq!(c.cti.max_clients, 5);
    assert_eq!(c.cti.login_timeout, Duration::from_secs(7));
    assert_eq!(c.cti.originate_contexts, vec!["a", "b", "c"]);
}

#[test]
fn path_placeholders_are_expanded_anywhere() {
    let log = r#"<add key="DIRECTORY" value="{APPLICATION_DIR}{FILE_SEPARATOR}x"/>"#;
    let (c, _) = parse(&file(DB, log, MGR, CTI)).unwrap();
    assert_eq!(c.logging.directory, PathBuf::from("/opt/astcti/x"));
    let log = r#"<add key="DIRECTORY" value="/var/log/astcti{FILE_SEPARATOR}"/>"#;
    let (c, _) = parse(&file(DB, log, MGR, CTI)).unwrap();
    assert_eq!(c.logging.directory, PathBuf::from("/var/log/astcti/"));
}

#[test]
fn unknown_keys_and_elements_are_warnings() {
    let db = format!(r#"{DB}<add key="MYSQL_COLOUR" value="blue"/><frobnicate/>"#);
    let (_, w) = parse(&file(&db, LOG, MGR, CTI)).unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("MYSQL_COLOUR") && w[0].starts_with("test.xml:"),
        "{w:?}"
    );
    assert!(w[1].contains("frobnicate"), "{w:?}");
}

#[test]
fn malformed_xml_names_file_line_and_column() {
    let e = err_of("<configuration>\n<globalsettings>\n<database>\n<add key=\"x\" value=\"1\">\n</globalsettings>");
    assert_eq!(e.file, "test.xml");
    assert!(e.pos.line >= 4, "{e}");
    assert!(e.to_string().starts_with("test.xml:"), "{e}");
    assert!(e.message.contains("malformed XML"), "{e}");
}

#[test]
fn empty_file_is_an_error() {
    let e = err_of("");
    assert!(e.message.contains("malformed XML"), "{e}");
}

#[test]
fn wrong_root_is_an_error() {
    let e = err_of("<settings/>");
    assert!(e.message.contains("expected <configuration>"), "{e}");
}

#[test]
fn missing_globalsettings_is_an_error() {
    let e = err_of("<configuration>\n</configuration>");
    assert!(e.message.contains("no <globalsettings>"), "{e}");
    assert_eq!(e.pos, Pos { line: 1, col: 1 });
}

#[test]
fn duplicate_globalsettings_or_section_is_an_error() {
    let e = err_of("<configuration><globalsettings/><globalsettings/></configuration>");
    assert!(e.message.contains("appears twice"), "{e}");
    let text = file(DB, LOG, MGR, CTI).replace("<logging>", "<database/><logging>");
    let e = err_of(&text);
    assert!(e.message.contains("<database> appears twice"), "{e}");
}

#[test]
fn missing_section_names_the_first_required_key() {
    let text = file(DB, LOG, MGR, CTI)
        .replace("<manager>", "<managerx>")
        .replace("</manager>", "</managerx>");
    let e = err_of(&text);
    assert_eq!(e.key.as_deref(), Some("MANAGER_HOST"));
    assert!(e.message.contains("section <manager> missing"), "{e}");
}

#[test]
fn missing_required_key_names_key_and_section_position() {
    let e = err_of(&file(
        DB,
        LOG,
        MGR,
        r#"<add key="CTI_SERVER_LISTEN_IP" value="0.0.0.0"/>"#,
    ));
    assert_eq!(e.key.as_deref(), Some("CTI_SERVER_LISTEN_PORT"));
    assert_eq!(e.pos.line, 12, "the <ctiserver> element's line: {e}");
    assert_eq!(
        e.to_string(),
        "test.xml:12:1: CTI_SERVER_LISTEN_PORT: required key missing from <ctiserver>"
    );
}

#[test]
fn every_required_key_is_required() {
    let required = [
        ("database", "MYSQL_HOST"),
        ("database", "MYSQL_USER"),
        ("database", "MYSQL_PASS"),
        ("database", "MYSQL_DBMS"),
        ("logging", "DIRECTORY"),
        ("manager", "MANAGER_HOST"),
        ("manager", "MANAGER_PORT"),
        ("manager", "MANAGER_USER"),
        ("manager", "MANAGER_PASS"),
        ("ctiserver", "CTI_SERVER_LISTEN_IP"),
        ("ctiserver", "CTI_SERVER_LISTEN_PORT"),
    ];
    for (section, key) in required {
        let text = file(DB, LOG, MGR, CTI)
            .replace(&format!("<add key=\"{key}\""), "<add key=\"X_REMOVED\"");
        let e = err_of(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{section}: {e}");
    }
}

#[test]
fn empty_required_value_is_an_error() {
    let text = file(DB, LOG, MGR, CTI).replace(r#"value="localhost""#, r#"value="  ""#);
    let e = err_of(&text);
    assert_eq!(e.key.as_deref(), Some("MANAGER_HOST"));
    assert!(e.message.contains("must not be empty"), "{e}");
}

#[test]
fn bad_numbers_name_key_and_line() {
    let cases = [
        ("MANAGER_PORT", r#"value="5038""#, r#"value="50x38""#),
        ("MANAGER_PORT", r#"value="5038""#, r#"value="0""#),
        ("MANAGER_PORT", r#"value="5038""#, r#"value="65536""#),
        ("CTI_SERVER_LISTEN_PORT", r#"value="9000""#, r#"value="-1""#),
    ];
    for (key, from, to) in cases {
        let e = err_of(&file(DB, LOG, MGR, CTI).replace(from, to));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains("is not a whole number"), "{e}");
    }
    let db = format!(r#"{DB}<add key="MYSQL_TIMEOUT" value="0"/>"#);
    let e = err_of(&file(&db, LOG, MGR, CTI));
    assert_eq!(e.key.as_deref(), Some("MYSQL_TIMEOUT"));
    assert_eq!(e.pos.line, 4);
    let log = format!(r#"{LOG}<add key="LOG_LEVEL" value="256"/>"#);
    assert_eq!(
        err_of(&file(DB, &log, MGR, CTI)).key.as_deref(),
        Some("LOG_LEVEL")
    );
    let cti = format!(r#"{CTI}<add key="CTI_MAX_CLIENTS" value="0"/>"#);
    assert_eq!(
        err_of(&file(DB, LOG, MGR, &cti)).key.as_deref(),
        Some("CTI_MAX_CLIENTS")
    );
}

#[test]
fn a_bad_ip_is_an_error_but_the_ignored_active_takes_any_value() {
    let e = err_of(&file(DB, LOG, MGR, CTI).replace(r#"value="0.0.0.0""#, r#"value="localhost""#));
    assert_eq!(e.key.as_deref(), Some("CTI_SERVER_LISTEN_IP"));
    assert!(e.message.contains("not an IPv4 or IPv6 address"), "{e}");
    // ACTIVE switches the log files: "yes", "on", "1" are true, anything else false, and no value
    // ever stops the server.
    for v in ["yes", "on", "1", "nope", ""] {
        let log = format!(r#"{LOG}<add key="ACTIVE" value="{v}"/>"#);
        let (c, _) = Config::from_xml(
            &file(DB, &log, MGR, CTI),
            Path::new("t.xml"),
            Path::new("/"),
        )
        .unwrap_or_else(|e| panic!("ACTIVE={v}: {e}"));
        assert_eq!(c.logging.active, ["yes", "on", "1"].contains(&v), "{v}");
    }
}

#[test]
fn a_misspelt_key_is_named_where_it_is_with_the_right_name() {
    // MANAGER_PROT instead of MANAGER_PORT: the error points at the misspelling.
    let mgr = MGR.replace("MANAGER_PORT", "MANAGER_PROT");
    let text = file(DB, LOG, &mgr, CTI);
    let e = err_of(&text);
    assert_eq!(e.key.as_deref(), Some("MANAGER_PROT"));
    assert!(e.message.contains("did you mean MANAGER_PORT?"), "{e}");
    let line = text
        .lines()
        .position(|l| l.contains("MANAGER_PROT"))
        .unwrap()
        + 1;
    assert_eq!(e.pos.line as usize, line, "{e}");
    // An optional key misspelt is a warning with the nearest known key.
    let cti = format!(r#"{CTI}<add key="CTI_MAX_CLIENST" value="5"/>"#);
    let (_, warnings) = Config::from_xml(
        &file(DB, LOG, MGR, &cti),
        Path::new("t.xml"),
        Path::new("/"),
    )
    .unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("CTI_MAX_CLIENST") && w.contains("did you mean CTI_MAX_CLIENTS?")),
        "{warnings:?}"
    );
}

#[test]
fn an_ampersand_in_a_value_gets_a_hint() {
    let db = DB.replace(r#"value="pw""#, r#"value="p&ss""#);
    let e = err_of(&file(&db, LOG, MGR, CTI));
    assert!(e.message.contains("&amp;"), "{e}");
}

#[test]
fn add_without_key_or_value_and_remove_without_key_are_errors() {
    let e = err_of(&file(&format!(r#"{DB}<add value="1"/>"#), LOG, MGR, CTI));
    assert!(e.message.contains("has no key attribute"), "{e}");
    let e = err_of(&file(
        &format!(r#"{DB}<add key="MYSQL_PORT"/>"#),
        LOG,
        MGR,
        CTI,
    ));
    assert_eq!(e.key.as_deref(), Some("MYSQL_PORT"));
    assert!(e.message.contains("no value attribute"), "{e}");
    let e = err_of(&file(&format!(r#"{DB}<remove/>"#), LOG, MGR, CTI));
    assert!(
        e.message.contains("<remove> in <database> has no key"),
        "{e}"
    );
}

#[test]
fn ipv6_listen_address_is_accepted() {
    let (c, _) = parse(&file(DB, LOG, MGR, &CTI.replace("0.0.0.0", "::1"))).unwrap();
    assert_eq!(c.cti.listen_ip, "::1".parse::<IpAddr>().unwrap());
}

#[test]
fn describe_masks_passwords() {
    let (c, _) = parse(SHIPPED).unwrap();
    let text = c.describe();
    assert!(text.contains("MYSQL_PASS = ********"), "{text}");
    assert!(text.contains("MANAGER_PASS = ********"), "{text}");
    assert!(
        !text.contains("= cti\nMYSQL_DBMS") && !text.contains("ctimanager\n[ctiserver]"),
        "{text}"
    );
    assert!(text.contains("CTI_SERVER_LISTEN_PORT = 9000"), "{text}");
}

#[test]
fn locate_prefers_explicit_then_exe_dir_then_cwd_then_exe_config() {
    let base = std::env::temp_dir().join(format!("astcti-locate-{}", std::process::id()));
    let exe = base.join("exe");
    let cwd = base.join("cwd");
    std::fs::create_dir_all(&exe).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let explicit = Path::new("/nowhere/x.xml");
    assert_eq!(locate(Some(explicit), &exe, &cwd).unwrap(), explicit);
    let err = locate(None, &exe, &cwd).unwrap_err();
    assert!(err.contains("AstCTIServer.exe.config"), "{err}");
    std::fs::write(exe.join("AstCTIServer.exe.config"), "x").unwrap();
    assert_eq!(
        locate(None, &exe, &cwd).unwrap(),
        exe.join("AstCTIServer.exe.config")
    );
    std::fs::write(cwd.join("AstCTIServer.xml"), "x").unwrap();
    assert_eq!(
        locate(None, &exe, &cwd).unwrap(),
        cwd.join("AstCTIServer.xml")
    );
    std::fs::write(exe.join("AstCTIServer.xml"), "x").unwrap();
    assert_eq!(
        locate(None, &exe, &cwd).unwrap(),
        exe.join("AstCTIServer.xml")
    );
    std::fs::remove_dir_all(&base).unwrap();
}
