//! What the agent's program takes from outside, on arbitrary bytes: the server's lines (bounded,
//! lossy), its notifications, the launch templates filled with hostile values, dial requests and
//! `tel:` links. Nothing panics; a launch has one argument per word of its template; values are
//! bounded.
#![no_main]
use astcti_server::calls::{Kind, Record};
use astcti_server::client::lines::{read_line, Line};
use astcti_server::client::react::{
    dial_number, expand, parse_dial_request, percent_decode, react, split_args, Action, Form,
    MAX_VALUE,
};
use astcti_server::client::settings::{InboundContext, Settings};
use astcti_server::cti::notify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server's lines, read with a small bound so that long ones are exercised.
    let mut r = std::io::BufReader::with_capacity(7, data);
    let mut kept = 0;
    loop {
        match read_line(&mut r, 64) {
            Ok(Line::Eof) => break,
            Ok(Line::Text(t)) => {
                assert!(t.len() <= 64 * 3);
                kept += 1;
                let _ = notify::parse(&t);
            }
            Ok(Line::TooLong) => {}
            Err(_) => unreachable!("a slice never fails"),
        }
        assert!(kept <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    let _ = notify::parse(&text);
    let _ = dial_number(&text);
    let _ = percent_decode(&text);
    let _ = parse_dial_request(&Settings::default(), &text);
    // The bytes as a caller's values, in the templates an admin writes.
    let mut parts = text.split('\u{0}');
    let mut next = || parts.next().map(str::to_string);
    let record = Record {
        calleridnum: next(),
        calleridname: next(),
        context: next(),
        appdata: next(),
        channel: next(),
        uniqueid: next(),
        state: None,
    };
    let template = r#"--id {CALLERID} "{CALLERNAME}" --data={CALLDATA} {CONTEXT}{CHANNEL:url} {UNIQUEID:raw}"#;
    let words = split_args(template).len();
    let settings = Settings {
        contexts: vec![InboundContext {
            context: record.context.clone().unwrap_or_default(),
            application: "/usr/bin/crm".into(),
            parameters: template.into(),
            enabled: true,
            catch_all: true,
            ..InboundContext::default()
        }],
        ..Settings::default()
    };
    for action in react(&settings, Kind::Link, &record) {
        if let Action::Launch { args, .. } = action {
            assert_eq!(args.len(), words);
            for a in &args {
                // Two placeholders at most per word; a character URL-encodes to 12 at most.
                assert!(a.chars().count() <= 13 * MAX_VALUE + template.len());
            }
        }
    }
    let url = expand("http://crm/?a={CALLERID}&b={CALLDATA}", &record, Form::Url);
    assert!(!url.contains(' ') && url.matches('&').count() == 1 && !url.contains('#'));
});
