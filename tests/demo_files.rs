//! The demo's Asterisk configurations, sound, web page and service definitions: syntax and the facts
//! the CTI depends on (calldata, permissions, names matching AstCTIServer.xml).

use std::collections::HashMap;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An Asterisk .conf: section → ordered (key, value) lines. `=>` and `=` both separate; `;` starts a
/// comment; `[name](template)` sections keep their name. Panics on a line it cannot read.
fn conf(path: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (n, raw) in read(path).lines().enumerate() {
        let line = raw.split(';').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .split(']')
                .next()
                .unwrap_or_else(|| panic!("{path}:{}: bad section", n + 1));
            assert!(rest.contains(']'), "{path}:{}: unclosed section", n + 1);
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once("=>")
            .or_else(|| line.split_once('='))
            .unwrap_or_else(|| panic!("{path}:{}: not key = value: {raw:?}", n + 1));
        let section = out
            .last_mut()
            .unwrap_or_else(|| panic!("{path}:{}: key outside a section", n + 1));
        section.1.push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn section<'a>(c: &'a [(String, Vec<(String, String)>)], name: &str) -> Vec<&'a (String, String)> {
    c.iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, kv)| kv.iter())
        .collect()
}

fn value<'a>(kv: &[&'a (String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn classes(v: &str) -> Vec<&str> {
    v.split(',').map(str::trim).collect()
}

/// The shipped AstCTIServer.xml's manager user and secret.
fn shipped_manager() -> (String, String) {
    let xml = read("AstCTIServer.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let get = |key: &str| {
        doc.descendants()
            .find(|n| n.attribute("key") == Some(key))
            .and_then(|n| n.attribute("value"))
            .unwrap()
            .to_string()
    };
    (get("MANAGER_USER"), get("MANAGER_PASS"))
}

/// The applications of one extension, in priority order (`same => n,…` or `exten => X,N,…`).
fn dialplan(path: &str, context: &str) -> HashMap<String, Vec<String>> {
    let c = conf(path);
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = String::new();
    for (k, v) in section(&c, context) {
        match k.as_str() {
            "exten" => {
                let mut parts = v.splitn(3, ',');
                current = parts.next().unwrap().to_string();
                parts.next();
                map.entry(current.clone())
                    .or_default()
                    .push(parts.next().unwrap_or("").to_string());
            }
            "same" => {
                let app = v.split_once(',').map(|(_, a)| a).unwrap_or("");
                map.entry(current.clone())
                    .or_default()
                    .push(app.to_string());
            }
            _ => {}
        }
    }
    map
}

#[test]
fn modern_manager_user_has_exactly_the_needed_permissions_and_matches_the_config() {
    let c = conf("demo/asterisk/manager.conf");
    let (user, pass) = shipped_manager();
    let u = section(&c, &user);
    assert!(!u.is_empty(), "no [{user}] section");
    assert_eq!(value(&u, "secret"), Some(pass.as_str()));
    assert_eq!(
        classes(value(&u, "read").unwrap()),
        vec!["call", "dialplan", "agent", "user", "system"]
    );
    assert_eq!(
        classes(value(&u, "write").unwrap()),
        vec!["originate", "system"]
    );
    assert_eq!(value(&section(&c, "general"), "port"), Some("5038"));
}

#[test]
fn modern_dialplan_sets_calldata_before_reaching_the_agent() {
    let d = dialplan("demo/asterisk/extensions.conf", "astctidemo");
    let e100 = &d["100"];
    assert_eq!(e100[0], "Answer()");
    assert!(
        e100[1].starts_with("Read(cdata,astctidemo/enter_five_digits,5"),
        "{e100:?}"
    );
    assert_eq!(e100[2], "Set(calldata=${cdata})");
    // The agent may transfer (features.conf's keys), on 100, the queue 101 and outbound calls.
    assert_eq!(e100[3], "Dial(PJSIP/201,,t)");
    let e101 = &d["101"];
    assert_eq!(e101[2], "Set(calldata=${cdata})");
    assert!(e101[3].starts_with("Queue(astcti,"), "{e101:?}");
    assert!(e101[3].starts_with("Queue(astcti,t,"), "{e101:?}");
    assert_eq!(d["_2XX"][0], "Dial(PJSIP/${EXTEN},20,rtT)");
    assert!(
        !read("demo/asterisk/extensions.conf")
            .lines()
            .any(|l| !l.trim_start().starts_with(';') && l.contains('|')),
        "1.6+ separates arguments with ','"
    );
}

#[test]
fn the_agents_can_transfer_by_dtmf() {
    // Asterisk ships no attended-transfer key: without it neither *2 nor the AMI Atxfer transfers.
    let f = conf("demo/asterisk/features.conf");
    let map = section(&f, "featuremap");
    assert_eq!(value(&map, "atxfer"), Some("*2"));
    assert_eq!(value(&map, "blindxfer"), Some("#"));
    let readme = read("demo/README.md");
    for needle in ["features.conf", "*2", "REFER", "Atxfer"] {
        assert!(
            readme.contains(needle),
            "demo/README.md says how to transfer: {needle}"
        );
    }
}

#[test]
fn modern_phones_and_queue() {
    let c = conf("demo/asterisk/pjsip.conf");
    let raw = read("demo/asterisk/pjsip.conf");
    for phone in ["200", "201", "202"] {
        // An endpoint, its auth and its aor, from the three templates.
        for template in ["phone", "auth", "aor"] {
            assert!(
                raw.contains(&format!("[{phone}]({template})")),
                "{phone} {template}"
            );
        }
        let s = section(&c, phone);
        assert!(
            value(&s, "callerid").is_some_and(|v| v.ends_with(&format!("<{phone}>"))),
            "{phone}"
        );
        assert_eq!(value(&s, "username"), Some(phone));
        assert_eq!(value(&s, "aors"), Some(phone));
    }
    let templates = section(&c, "phone");
    assert_eq!(value(&templates, "type"), Some("endpoint"));
    assert_eq!(value(&templates, "context"), Some("astctidemo"));
    let q = conf("demo/asterisk/queues.conf");
    let astcti = section(&q, "astcti");
    assert!(value(&astcti, "member").unwrap().starts_with("PJSIP/201"));
}

#[test]
fn asterisk_1_4_demo_keeps_the_original_syntax_with_corrected_permissions() {
    let d = dialplan("demo/asterisk-1.4/extensions.conf", "astctidemo");
    assert_eq!(d["100"][2], "Set(calldata=${cdata})");
    assert_eq!(d["100"][3], "Dial(SIP/201)");
    assert!(
        d["100"][1].starts_with("Read(cdata|"),
        "1.4 separates arguments with '|'"
    );
    assert!(d["101"][3].starts_with("Queue(astcti|"));
    let c = conf("demo/asterisk-1.4/manager.conf");
    let (user, pass) = shipped_manager();
    let u = section(&c, &user);
    assert_eq!(value(&u, "secret"), Some(pass.as_str()));
    let read = classes(value(&u, "read").unwrap());
    for class in ["call", "agent", "user", "system"] {
        assert!(read.contains(&class), "read {class}");
    }
    let write = classes(value(&u, "write").unwrap());
    assert!(
        write.contains(&"call") && write.contains(&"config"),
        "{write:?}"
    );
    let sip = conf("demo/asterisk-1.4/sip.conf");
    for phone in ["200", "201", "202"] {
        assert_eq!(
            value(&section(&sip, phone), "context"),
            Some("astctidemo"),
            "{phone}"
        );
    }
    assert_eq!(
        value(
            &section(&conf("demo/asterisk-1.4/queues.conf"), "astcti"),
            "member"
        ),
        Some("SIP/201")
    );
}

#[test]
fn the_prompt_is_8khz_mono_16bit_pcm() {
    let wav = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/sounds/astctidemo/enter_five_digits.wav"),
    )
    .unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(&wav[12..16], b"fmt ");
    let u16_at = |i: usize| u16::from_le_bytes([wav[i], wav[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([wav[i], wav[i + 1], wav[i + 2], wav[i + 3]]);
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 1, "mono");
    assert_eq!(u32_at(24), 8000, "8 kHz");
    assert_eq!(u16_at(34), 16, "16-bit");
    assert!(wav.len() > 8000, "about a second of speech or more");
}

#[test]
fn the_web_page_shows_the_five_parameters_as_text() {
    let html = read("demo/web/index.html");
    for p in ["callerid", "callername", "calldata", "channel", "uniqueid"] {
        assert!(html.contains(&format!("id=\"{p}\"")), "{p}");
        assert!(html.contains(&format!("\"{p}\"")), "{p}");
    }
    assert!(
        html.contains("textContent") && !html.contains("innerHTML"),
        "values must not be parsed as HTML"
    );
}

#[test]
fn systemd_unit_runs_the_server_from_its_directory_and_restarts_it() {
    let unit = read("demo/systemd/astcti-server.service");
    let kv: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split_once('=').unwrap())
        .collect();
    let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("Type"), Some("simple"));
    assert_eq!(get("Restart"), Some("on-failure"));
    assert_eq!(get("KillSignal"), Some("SIGTERM"));
    assert_eq!(
        get("RestartPreventExitStatus"),
        Some("2"),
        "bad configuration: no restart loop"
    );
    let dir = get("WorkingDirectory").unwrap();
    assert_eq!(
        get("ExecStart"),
        Some(format!("{dir}/astcti-server").as_str())
    );
    assert!(get("User").is_some_and(|u| u != "root"));
    // The shipped DIRECTORY is {APPLICATION_DIR}/logs/: the one place the unit lets it write.
    assert_eq!(get("ReadWritePaths"), Some(format!("{dir}/logs").as_str()));
    assert_eq!(get("ProtectSystem"), Some("strict"));
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.contains(section), "{section}");
    }
}

#[test]
fn windows_task_is_valid_xml_with_what_a_service_needs() {
    let xml = read("demo/windows/astcti-server-task.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Task");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://schemas.microsoft.com/windows/2004/02/mit/task")
    );
    let text = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
    };
    assert!(text("Command").unwrap().ends_with("astcti-server.exe"));
    assert!(text("WorkingDirectory").is_some());
    assert_eq!(
        text("ExecutionTimeLimit"),
        Some("PT0S"),
        "never stopped for running long"
    );
    assert!(doc
        .descendants()
        .any(|n| n.tag_name().name() == "BootTrigger"));
    assert!(doc
        .descendants()
        .any(|n| n.tag_name().name() == "RestartOnFailure"));
    assert!(xml.is_ascii());
}

#[test]
fn the_demo_agent_is_the_demo_phone_and_the_check_never_uses_a_stray_pbx() {
    let pj = conf("demo/asterisk/pjsip.conf");
    let bind = value(&section(&pj, "transport-udp"), "bind").unwrap();
    assert!(
        !bind.starts_with("0.0.0.0"),
        "binds every interface: {bind}"
    );
    assert_eq!(value(&section(&pj, "aor"), "max_contacts"), Some("1"));
    assert!(pj.iter().any(|(n, _)| n == "201"), "endpoint 201");
    let run = read("demo/run.sh");
    assert!(
        run.contains("agent_ext=\"${ext_arg:-PJSIP/201}\""),
        "PJSIP/201 by default"
    );
    assert!(
        run.contains("asterisk-22.10.1/a-inbound-100-answered.ami"),
        "the recorded call rings PJSIP/201"
    );
    // A real PBX only when asked for (--asterisk), never by probing 127.0.0.1:5038.
    assert!(!run.contains("--probe-ami 127.0.0.1:5038"));
    assert!(run.contains("--probe-ami \"$asterisk\""));
    let sql = read("sql/cti.sql");
    assert!(!sql.to_uppercase().contains("DROP TABLE"));
    assert!(!sql
        .lines()
        .any(|l| !l.trim_start().starts_with("--") && l.to_uppercase().contains("INSERT")));
}
