use super::*;

fn cfg(dumpconfig: bool) -> SessionConfig {
    SessionConfig {
        user: "ctimanager".into(),
        secret: "s3cret".into(),
        idle: Duration::from_secs(10),
        dumpconfig,
    }
}

fn f(h: &[(&str, &str)]) -> Frame {
    Frame::from_pairs(h)
}

fn sent(out: &[Out]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send(b) => Some(String::from_utf8(b.clone()).unwrap()),
            _ => None,
        })
        .collect()
}

fn logged_in(dumpconfig: bool, banner: &str) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(dumpconfig), 3, t0);
    let out = s.on_item(Item::Banner(banner.into()));
    assert_eq!(
        sent(&out),
        vec!["Action: Login\r\nActionID: astcti-login-3\r\nUsername: ctimanager\r\nSecret: s3cret\r\nEvents: on\r\n\r\n"]
    );
    (s, t0)
}

#[test]
fn login_success_is_read_from_the_matching_action_id() {
    let (mut s, _) = logged_in(false, "9.0.0");
    // A response with another ActionID, even "Authentication accepted", is not ours.
    let other = f(&[
        ("Response", "Success"),
        ("ActionID", "login-1"),
        ("Message", "Authentication accepted"),
    ]);
    assert!(s.on_item(Item::Frame(other)).is_empty());
    assert!(!s.logged_in());
    let ours = f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
        ("Message", "Authentication accepted"),
    ]);
    let out = s.on_item(Item::Frame(ours));
    assert_eq!(
        out[0],
        Out::Up {
            dialect: Dialect::V12Plus,
            version: "9.0.0".into()
        }
    );
    // Then the channels already up are asked for, to reconcile the tracker, and their calldata.
    assert_eq!(
        sent(&out[1..]),
        vec![
            "Action: CoreShowChannels\r\nActionID: astcti-channels-3-1\r\n\r\n",
            "Action: Status\r\nActionID: astcti-channels-3-2\r\nVariables: calldata\r\n\r\n"
        ]
    );
    assert_eq!(out.len(), 3);
    assert!(s.logged_in());
}

#[test]
fn on_1_4_the_channel_list_is_status() {
    let (mut s, _) = logged_in(false, "1.0");
    let out = s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    assert_eq!(
        sent(&out),
        vec!["Action: Status\r\nActionID: astcti-channels-3-1\r\nVariables: calldata\r\n\r\n"]
    );
}

#[test]
fn login_failure_carries_asterisks_message() {
    let (mut s, _) = logged_in(false, "1.0");
    let out = s.on_item(Item::Frame(f(&[
        ("Response", "Error"),
        ("ActionID", "astcti-login-3"),
        ("Message", "Authentication failed"),
    ])));
    assert_eq!(
        out,
        vec![Out::LoginFailed(
            "Asterisk refused the login of \"ctimanager\": Authentication failed".into()
        )]
    );
}

#[test]
fn frames_before_a_banner_mean_this_is_not_ami() {
    let mut s = Session::new(cfg(false), 1, Instant::now());
    assert!(matches!(
        s.on_item(Item::Frame(f(&[("HTTP/1.1 400", "x")])))[0],
        Out::NotAmi(_)
    ));
}

#[test]
fn a_silent_peer_without_a_banner_is_not_ami() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(false), 1, t0);
    assert!(s.tick(t0 + Duration::from_secs(5)).is_empty());
    let out = s.tick(t0 + Duration::from_secs(11));
    assert!(
        matches!(&out[..], [Out::NotAmi(m)] if m.contains("no `Asterisk Call Manager/` banner")),
        "{out:?}"
    );
}

#[test]
fn events_are_forwarded_as_they_are() {
    let (mut s, _) = logged_in(false, "1.1");
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let ev = f(&[("Event", "DialBegin"), ("Channel", "x")]);
    // (What dialect the events show is the router's business, not the session's.)
    assert_eq!(s.on_item(Item::Frame(ev.clone())), vec![Out::Frame(ev)]);
    // Unsolicited responses are passed on too; events with a pending ActionID are still events.
    let resp = f(&[("Response", "Success"), ("ActionID", "someone-else")]);
    assert_eq!(s.on_item(Item::Frame(resp.clone())), vec![Out::Frame(resp)]);
}

#[test]
fn ping_after_idle_and_dead_without_pong() {
    let (mut s, t0) = logged_in(false, "1.0");
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    assert!(s.tick(t0 + Duration::from_secs(9)).is_empty());
    let out = s.tick(t0 + Duration::from_secs(10));
    assert_eq!(
        sent(&out),
        vec!["Action: Ping\r\nActionID: astcti-ping-3-2\r\n\r\n"]
    );
    assert!(
        s.tick(t0 + Duration::from_secs(15)).is_empty(),
        "one Ping at a time"
    );
    // Pong (1.4 style `Response: Pong`) clears it.
    s.on_bytes(t0 + Duration::from_secs(16));
    assert!(s
        .on_item(Item::Frame(f(&[
            ("Response", "Pong"),
            ("ActionID", "astcti-ping-3-2")
        ])))
        .is_empty());
    assert!(s.tick(t0 + Duration::from_secs(21)).is_empty());
    let out = s.tick(t0 + Duration::from_secs(26));
    assert_eq!(sent(&out).len(), 1, "next Ping");
    assert!(matches!(
        s.tick(t0 + Duration::from_secs(37))[0],
        Out::Dead(_)
    ));
}

#[test]
fn no_login_answer_in_time_is_dead() {
    let (mut s, t0) = logged_in(false, "1.0");
    assert!(s.tick(t0 + Duration::from_secs(10)).is_empty());
    assert!(matches!(
        s.tick(t0 + Duration::from_secs(11))[0],
        Out::Dead(_)
    ));
}

#[test]
fn originate_has_exactly_the_original_headers_plus_action_id() {
    let (mut s, _) = logged_in(false, "1.0");
    let req = OrigRequest {
        exten: "202".into(),
        context: "astctidemo".into(),
        priority: "1".into(),
    };
    assert!(
        matches!(s.originate("SIP/201", &req)[0], Out::Warn(_)),
        "not logged in: dropped"
    );
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let out = s.originate("SIP/201", &req);
    assert_eq!(
        sent(&out),
        vec!["Action: Originate\r\nActionID: astcti-orig-3-2\r\nChannel: SIP/201\r\nContext: astctidemo\r\nExten: 202\r\nPriority: 1\r\nCallerid: SIP/201\r\nAsync: true\r\n\r\n"]
    );
    let answer = s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-orig-3-2"),
        ("Message", "Originate successfully queued"),
    ])));
    assert_eq!(
        answer,
        vec![Out::Info(
            "Originate SIP/201 -> 202@astctidemo priority 1: Originate successfully queued".into()
        )]
    );
}

#[test]
fn originate_with_control_characters_sends_nothing() {
    let (mut s, _) = logged_in(false, "1.0");
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let req = OrigRequest {
        exten: "202\r\nAction: Command".into(),
        context: "c".into(),
        priority: "1".into(),
    };
    let out = s.originate("SIP/201", &req);
    assert!(sent(&out).is_empty());
}

#[test]
fn dumpconfig_requests_files_and_logs_answers_by_action_id() {
    let (mut s, _) = logged_in(true, "9.0.0");
    let out = s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let requests = sent(&out);
    assert_eq!(requests.len(), 6);
    assert!(requests[0].starts_with("Action: CoreShowChannels\r\n"));
    assert!(requests[1].starts_with("Action: Status\r\n"));
    for (req, file) in
        requests[2..]
            .iter()
            .zip(["extensions.conf", "sip.conf", "pjsip.conf", "queues.conf"])
    {
        assert!(
            req.starts_with("Action: GetConfig\r\n")
                && req.contains(&format!("Filename: {file}\r\n")),
            "{req}"
        );
    }
    // An event in between is processed normally.
    let ev = f(&[("Event", "Newchannel")]);
    assert_eq!(s.on_item(Item::Frame(ev.clone())), vec![Out::Frame(ev)]);
    let answer = f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-getconfig-3-4"),
        ("Category-000000", "general"),
    ]);
    let out = s.on_item(Item::Frame(answer));
    let [Out::Info(text)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(
        text.starts_with("--dumpconfig sip.conf: Success")
            && text.contains("Category-000000: general"),
        "{text}"
    );
}

#[test]
fn dumpconfig_on_1_4_skips_pjsip() {
    let (mut s, _) = logged_in(true, "1.0");
    let out = s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    assert_eq!(sent(&out).len(), 4, "CoreShowChannels and three files");
}

#[test]
fn our_originate_response_events_are_logged_and_passed_on() {
    let (mut s, _) = logged_in(false, "9.0.0");
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let ev = f(&[
        ("Event", "OriginateResponse"),
        ("ActionID", "astcti-orig-3-2"),
        ("Response", "Failure"),
        ("Channel", "SIP/201"),
        ("Context", "astctidemo"),
        ("Exten", "202"),
        ("Reason", "5"),
    ]);
    let out = s.on_item(Item::Frame(ev.clone()));
    assert_eq!(
        out,
        vec![
            Out::Info("OriginateResponse astcti-orig-3-2: Failure (channel SIP/201, exten 202@astctidemo, reason 5)".into()),
            Out::Frame(ev)
        ]
    );
    // Someone else's OriginateResponse is only passed on.
    let other = f(&[
        ("Event", "OriginateResponse"),
        ("ActionID", "orig-a-1"),
        ("Response", "Success"),
    ]);
    assert_eq!(
        s.on_item(Item::Frame(other.clone())),
        vec![Out::Frame(other)]
    );
}

#[test]
fn dumpconfig_answers_never_show_secrets() {
    let answer = f(&[
        ("Response", "Success"),
        ("Line-000000-000000", "type=endpoint"),
        ("Line-000001-000001", "Secret = demo201"),
        ("Line-000001-000002", "password=demo202"),
        ("Line-000001-000003", "md5secret=abc"),
        ("Line-000001-000004", "auth=201"),
        ("Line-000001-000005", "username=201"),
    ]);
    let text = mask_secrets(&answer).to_text();
    for secret in ["demo201", "demo202", "abc"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(
        text.contains("Secret =********") || text.contains("Secret=********"),
        "{text}"
    );
    assert!(text.contains("username=201"), "other options stay: {text}");
    assert!(text.contains("auth=********"), "{text}");
}

#[test]
fn the_ami_trace_masks_secrets_too() {
    let raw = "Response: Success\r\nLine-000001-000001: secret=demo201\r\nLine-000001-000002: type=peer\r\n";
    let t = mask_trace(raw);
    assert!(!t.contains("demo201"), "{t}");
    assert!(t.contains("Line-000001-000001: secret=********\r\n"), "{t}");
    assert!(t.contains("type=peer"));
}

#[test]
fn dumpconfig_masks_every_form_of_secret() {
    let cases = [
        (
            "register=1234:s3cret@sip.provider.example/1234",
            "1234:********@sip.provider.example/1234",
        ),
        (
            "register=user@domain:s3cret:authuser@host",
            "user@domain:********@host",
        ),
        ("md5_cred=0123456789abcdef", "md5_cred=********"),
        (
            "client_uri=sip:user:s3cret@host:5060",
            "client_uri=sip:user:********@host:5060",
        ),
        (
            "outbound_proxy=sips:bob:s3cret@proxy",
            "outbound_proxy=sips:bob:********@proxy",
        ),
        (
            "exten=_X.,1,Dial(IAX2/user:s3cret@host/${EXTEN})",
            "Dial(IAX2/user:********@host/${EXTEN})",
        ),
        (
            "exten=1,1,Authenticate(s3cret,a)",
            "Authenticate(********,a)",
        ),
        (
            "exten=2,1,VMAuthenticate(s3cret)",
            "VMAuthenticate(********)",
        ),
    ];
    for (line, want) in cases {
        let masked = mask_config_value(line).unwrap_or_else(|| panic!("{line}: not masked"));
        assert!(
            !masked.contains("s3cret") && !masked.contains("0123456789"),
            "{masked}"
        );
        assert!(masked.contains(want), "{line} -> {masked}");
    }
    for plain in [
        "exten=_X.,1,Dial(PJSIP/${EXTEN}@trunk)",
        "client_uri=sip:201@pbx.example",
        "contact=sip:201@192.0.2.1:5060",
        "type=endpoint",
        "callerid=\"Caller\" <201>",
    ] {
        assert_eq!(mask_config_value(plain), None, "{plain}");
    }
    let raw = "Line-000001-000001: register=1234:s3cret@host\r\nLine-000001-000002: type=peer\r\n";
    let t = mask_trace(raw);
    assert_eq!(
        t,
        "Line-000001-000001: register=1234:********@host\r\nLine-000001-000002: type=peer\r\n"
    );
}

#[test]
fn an_ext_with_a_line_break_cannot_forge_a_log_line_through_originate() {
    let (mut s, _) = logged_in(false, "1.0");
    s.on_item(Item::Frame(f(&[
        ("Response", "Success"),
        ("ActionID", "astcti-login-3"),
    ])));
    let request = OrigRequest {
        exten: "202".into(),
        context: "astctidemo".into(),
        priority: "1".into(),
    };
    let out = s.originate("SIP/201\r\n2026-01-01 00:00:00 - INFO  : forged", &request);
    let warned: Vec<&String> = out
        .iter()
        .filter_map(|o| match o {
            Out::Warn(w) | Out::Info(w) => Some(w),
            _ => None,
        })
        .collect();
    assert!(!warned.is_empty(), "{out:?}");
    for w in warned {
        assert!(!w.contains('\n') && !w.contains('\r'), "{w:?}");
        assert!(w.contains("SIP/201\\r\\n2026"), "escaped: {w}");
    }
    assert!(
        sent(&out).is_empty(),
        "a CR/LF in the EXT never reaches Asterisk"
    );
}
