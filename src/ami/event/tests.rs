use super::*;

fn f(h: &[(&str, &str)]) -> Frame {
    Frame::from_pairs(h)
}

#[test]
fn unescape_undoes_asterisk_12_escapes() {
    assert_eq!(
        unescape(r#"O\'Brien \"1\" a\?b c\\d"#),
        r#"O'Brien "1" a?b c\d"#
    );
    assert_eq!(unescape("plain"), "plain");
    assert_eq!(unescape("trailing\\"), "trailing\\");
}

#[test]
fn newstate_of_each_dialect() {
    let old = f(&[
        ("Event", "Newstate"),
        ("Channel", "SIP/201-1"),
        ("State", "Up"),
        ("CallerID", "100"),
        ("CallerIDName", "<unknown>"),
        ("Uniqueid", "u1"),
    ]);
    let Event::Newstate {
        chan,
        state,
        connected,
    } = decode(&old, Dialect::V1_4)
    else {
        panic!()
    };
    assert_eq!((chan.uid.as_str(), state.as_str()), ("u1", "Up"));
    assert_eq!(
        chan.cid,
        Some(Cid {
            num: "100".into(),
            name: "<unknown>".into()
        })
    );
    assert_eq!(connected, None);
    let new = f(&[
        ("Event", "Newstate"),
        ("Channel", "SIP/201-1"),
        ("ChannelState", "5"),
        ("ChannelStateDesc", "Ringing"),
        ("CallerIDNum", "201"),
        ("CallerIDName", "O\\'Brien"),
        ("ConnectedLineNum", "555"),
        ("ConnectedLineName", "A"),
        ("Uniqueid", "u2"),
        ("Linkedid", "l"),
    ]);
    let Event::Newstate {
        chan,
        state,
        connected,
    } = decode(&new, Dialect::V12Plus)
    else {
        panic!()
    };
    assert_eq!(state, "Ringing");
    assert_eq!(chan.linkedid.as_deref(), Some("l"));
    assert_eq!(chan.cid.unwrap().name, "O'Brien");
    assert_eq!(
        connected,
        Some(Cid {
            num: "555".into(),
            name: "A".into()
        })
    );
    // Without a state header it is nothing (the original crashed here).
    assert_eq!(
        decode(
            &f(&[("Event", "Newstate"), ("Uniqueid", "u")]),
            Dialect::V1_4
        ),
        Event::Other
    );
}

#[test]
fn dial_of_each_dialect() {
    let d14 = f(&[
        ("Event", "Dial"),
        ("Source", "SIP/202-1"),
        ("Destination", "SIP/201-2"),
        ("CallerID", "202"),
        ("CallerIDName", "Demo 3"),
        ("SrcUniqueID", "a"),
        ("DestUniqueID", "b"),
    ]);
    let Event::DialBegin { caller, dest, cid } = decode(&d14, Dialect::V1_4) else {
        panic!()
    };
    assert_eq!(caller.unwrap().uid, "a");
    assert_eq!(
        (dest.uid.as_str(), dest.channel.as_str()),
        ("b", "SIP/201-2")
    );
    assert_eq!(
        cid,
        Cid {
            num: "202".into(),
            name: "Demo 3".into()
        }
    );
    let d11 = f(&[
        ("Event", "Dial"),
        ("SubEvent", "Begin"),
        ("Channel", "L;2"),
        ("Destination", "SIP/201-0"),
        ("CallerIDNum", "0215"),
        ("CallerIDName", "C"),
        ("UniqueID", "a"),
        ("DestUniqueID", "b"),
    ]);
    assert!(matches!(
        decode(&d11, Dialect::V1_6To11),
        Event::DialBegin {
            caller: Some(_),
            ..
        }
    ));
    assert_eq!(
        decode(
            &f(&[("Event", "Dial"), ("SubEvent", "End"), ("UniqueID", "a")]),
            Dialect::V1_6To11
        ),
        Event::Other
    );
    let orig = f(&[
        ("Event", "DialBegin"),
        ("DestChannel", "SIP/201-0"),
        ("DestUniqueid", "b"),
        ("DestLinkedid", "b"),
    ]);
    let Event::DialBegin { caller, dest, .. } = decode(&orig, Dialect::V12Plus) else {
        panic!()
    };
    assert!(caller.is_none(), "an Originate's own dial has no caller");
    assert_eq!(dest.linkedid.as_deref(), Some("b"));
}

#[test]
fn bridges_links_and_calldata_events() {
    let b11 = f(&[
        ("Event", "Bridge"),
        ("Bridgestate", "Link"),
        ("Channel1", "A"),
        ("Channel2", "B"),
        ("Uniqueid1", "1"),
        ("Uniqueid2", "2"),
    ]);
    assert!(matches!(
        decode(&b11, Dialect::V1_6To11),
        Event::Link { .. }
    ));
    let unlink = f(&[
        ("Event", "Bridge"),
        ("Bridgestate", "Unlink"),
        ("Uniqueid1", "1"),
        ("Uniqueid2", "2"),
    ]);
    assert_eq!(decode(&unlink, Dialect::V1_6To11), Event::Other);
    let lb = f(&[
        ("Event", "LocalBridge"),
        ("LocalOneUniqueid", "1"),
        ("LocalTwoUniqueid", "2"),
    ]);
    assert_eq!(
        decode(&lb, Dialect::V12Plus),
        Event::LocalBridge {
            uid1: "1".into(),
            uid2: "2".into()
        }
    );
    let vs = f(&[
        ("Event", "VarSet"),
        ("Channel", "L;2"),
        ("Uniqueid", "u"),
        ("Variable", "calldata"),
        ("Value", "a\\?b"),
    ]);
    let Event::VarSet { value, .. } = decode(&vs, Dialect::V12Plus) else {
        panic!()
    };
    assert_eq!(value, "a?b");
    let Event::VarSet { value, .. } = decode(&vs, Dialect::V1_6To11) else {
        panic!()
    };
    assert_eq!(value, "a\\?b", "only 12+ escapes");
    let ex = f(&[
        ("Event", "Newexten"),
        ("Channel", "L;2"),
        ("Uniqueid", "u"),
        ("Context", "astctidemo"),
        ("Application", "Set"),
        ("AppData", "calldata=1:2=3"),
    ]);
    let Event::Newexten {
        appdata, context, ..
    } = decode(&ex, Dialect::V12Plus)
    else {
        panic!()
    };
    assert_eq!(
        (appdata.as_str(), context.as_str()),
        ("calldata=1:2=3", "astctidemo")
    );
}

#[test]
fn frames_missing_what_an_event_needs_are_other() {
    for ev in [
        "Newchannel",
        "Hangup",
        "Newexten",
        "VarSet",
        "BridgeEnter",
        "DialBegin",
        "DialEnd",
        "Link",
        "Rename",
        "AgentCalled",
        "LocalBridge",
    ] {
        assert_eq!(
            decode(&f(&[("Event", ev)]), Dialect::V12Plus),
            Event::Other,
            "{ev}"
        );
    }
    assert_eq!(
        decode(&f(&[("Response", "Success")]), Dialect::V12Plus),
        Event::Other
    );
}

#[test]
fn an_attended_transfer_names_its_channels_by_role_and_a_failed_one_is_other() {
    let ok = f(&[
        ("Event", "AttendedTransfer"),
        ("Result", "Success"),
        ("OrigTransfererUniqueid", "a1"),
        ("OrigBridgeUniqueid", "br1"),
        ("SecondTransfererUniqueid", " t1 "),
        ("TransfereeUniqueid", "c1"),
        ("TransfereeLinkedid", "c1"),
        ("TransferTargetUniqueid", "b1"),
        ("DestType", "Link"),
        ("LocalOneUniqueid", "l1"),
        ("LocalTwoUniqueid", ""),
        // Keys that are not ASCII, or shorter than the suffix, are passed over (never sliced).
        ("ÜÜÜÜniqueid", "x"),
        ("éuniqueid", "y"),
        ("id", "z"),
    ]);
    assert_eq!(
        decode(&ok, Dialect::V12Plus),
        Event::AttendedTransfer {
            transferers: vec!["a1".into(), "t1".into()],
            transferee: Some("c1".into()),
            others: vec!["b1".into(), "l1".into(), "y".into()],
        }
    );
    for result in ["Fail", "Invalid", "Not Permitted", ""] {
        let failed = f(&[
            ("Event", "AttendedTransfer"),
            ("Result", result),
            ("TransfereeUniqueid", "c1"),
        ]);
        assert_eq!(decode(&failed, Dialect::V12Plus), Event::Other, "{result}");
    }
    let no_result = f(&[("Event", "AttendedTransfer"), ("TransfereeUniqueid", "c1")]);
    assert_eq!(decode(&no_result, Dialect::V12Plus), Event::Other);
}
