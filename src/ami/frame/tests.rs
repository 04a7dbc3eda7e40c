use super::*;

fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Vec<Item> {
    dec.push(bytes);
    std::iter::from_fn(|| dec.next_item()).collect()
}

fn items(bytes: &[u8]) -> Vec<Item> {
    decode_all(&mut Decoder::default(), bytes)
}

fn frame(headers: &[(&str, &str)]) -> Item {
    Item::Frame(Frame::from_pairs(headers))
}

#[test]
fn banner_then_frames_crlf_and_lf() {
    let got = items(b"Asterisk Call Manager/1.0\r\nResponse: Success\r\nMessage: Authentication accepted\r\n\r\nEvent: X\nA: 1\n\n");
    assert_eq!(
        got,
        vec![
            Item::Banner("1.0".into()),
            frame(&[
                ("Response", "Success"),
                ("Message", "Authentication accepted")
            ]),
            frame(&[("Event", "X"), ("A", "1")]),
        ]
    );
}

#[test]
fn stray_blank_lines_are_ignored_and_partial_frames_wait() {
    let mut d = Decoder::default();
    assert!(decode_all(&mut d, b"\r\n\r\nEvent: A\r\nK: v").is_empty());
    assert_eq!(
        decode_all(&mut d, b"\r\n\r\n\n"),
        vec![frame(&[("Event", "A"), ("K", "v")])]
    );
}

#[test]
fn values_keep_colons_and_only_one_space_is_dropped() {
    let got = items(b"Event: Newexten\r\nAppData: calldata=http://x/y:8080\r\nKey:nospace\r\nTwo:  spaces \r\nEmpty:\r\n\r\n");
    assert_eq!(
        got,
        vec![frame(&[
            ("Event", "Newexten"),
            ("AppData", "calldata=http://x/y:8080"),
            ("Key", "nospace"),
            ("Two", " spaces "),
            ("Empty", ""),
        ])]
    );
}

#[test]
fn keys_are_case_insensitive_and_repeats_are_kept_in_order() {
    let got = items(b"event: Status\r\nChanVariable: a=1\r\nCHANVARIABLE: b=2\r\n\r\n");
    let Item::Frame(f) = &got[0] else { panic!() };
    assert_eq!(f.event(), Some("Status"));
    assert_eq!(f.get("chanvariable"), Some("a=1"));
    assert_eq!(
        f.get_all("ChanVariable").collect::<Vec<_>>(),
        vec!["a=1", "b=2"]
    );
    assert_eq!(f.headers().next().unwrap().0, "event", "original case kept");
}

#[test]
fn follows_body_up_to_end_command() {
    let got = items(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nName: value-looking line\r\n\r\nlast line--END COMMAND--\r\n\r\nEvent: After\r\n\r\n",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    let Item::Frame(f) = &got[0] else { panic!() };
    assert_eq!(f.action_id(), Some("7"));
    assert_eq!(f.get("Name"), None, "output lines are body, not headers");
    assert_eq!(
        f.body().collect::<Vec<_>>(),
        vec!["Name: value-looking line", "", "last line"]
    );
    assert_eq!(got[1], frame(&[("Event", "After")]));
}

#[test]
fn output_lines_of_asterisk_14_are_repeated_headers() {
    let got = items(b"Response: Success\r\nActionID: 1\r\nMessage: Command output follows\r\nOutput: a: b\r\nOutput: c\r\n\r\n");
    let Item::Frame(f) = &got[0] else { panic!() };
    assert_eq!(f.get_all("Output").collect::<Vec<_>>(), vec!["a: b", "c"]);
}

#[test]
fn lines_without_colon_are_body() {
    let got = items(b"Event: X\r\njust text\r\n\r\n");
    let Item::Frame(f) = &got[0] else { panic!() };
    assert_eq!(f.body().collect::<Vec<_>>(), vec!["just text"]);
}

#[test]
fn non_utf8_bytes_are_kept_as_latin1() {
    let got = items(b"Event: X\r\nCallerIDName: Jos\xe9\r\nName: Jos\xc3\xa9\r\n\r\n");
    let Item::Frame(f) = &got[0] else { panic!() };
    assert_eq!(f.get("CallerIDName"), Some("Jos\u{e9}"));
    assert_eq!(f.get("Name"), Some("Jos\u{e9}"));
}

#[test]
fn line_limit_is_exact_and_recovery_skips_to_the_next_blank_line() {
    let limits = Limits {
        max_line: 16,
        max_frame: 1024,
    };
    let mut d = Decoder::new(limits);
    // Exactly 16 bytes: fine.
    assert_eq!(
        decode_all(&mut d, b"Event: 123456789\r\n\r\n"),
        vec![frame(&[("Event", "123456789")])]
    );
    // 17 bytes with its LF in the same push: the frame is dropped, the next one survives.
    let got = decode_all(
        &mut d,
        b"Event: X\r\nK: 12345678901234\r\nMore: 1\r\n\r\nEvent: Next\r\n\r\n",
    );
    assert_eq!(
        got,
        vec![
            Item::Discarded(Discard::LineTooLong),
            frame(&[("Event", "Next")])
        ]
    );
    // A long line arriving in pieces without LF: memory stays bounded.
    let mut d = Decoder::new(limits);
    assert_eq!(decode_all(&mut d, b"Event: X\r\nK: "), vec![]);
    let mut discarded = 0;
    for _ in 0..1000 {
        discarded += decode_all(&mut d, b"0123456789")
            .iter()
            .filter(|i| matches!(i, Item::Discarded(_)))
            .count();
        assert!(d.buffered() <= 16 + 10 + 16, "buffered {}", d.buffered());
    }
    assert_eq!(discarded, 1, "one discard reported for one frame");
    assert_eq!(
        decode_all(&mut d, b"tail\r\nK: v\r\n\r\nEvent: Ok\r\n\r\n"),
        vec![frame(&[("Event", "Ok")])]
    );
    assert_eq!(
        d.stats(),
        DecoderStats {
            frames: 1,
            discarded: 1
        }
    );
}

#[test]
fn frame_limit_is_exact() {
    // Each line costs its length + 2.
    let limits = Limits {
        max_line: 100,
        max_frame: 20,
    };
    let mut d = Decoder::new(limits);
    assert_eq!(
        decode_all(&mut d, b"Event: 1\r\nA: 12345\r\n\r\n"),
        vec![frame(&[("Event", "1"), ("A", "12345")])]
    );
    let got = decode_all(
        &mut d,
        b"Event: 1\r\nA: 123456\r\nB: 2\r\n\r\nEvent: 2\r\n\r\n",
    );
    assert_eq!(
        got,
        vec![
            Item::Discarded(Discard::FrameTooLarge),
            frame(&[("Event", "2")])
        ]
    );
}

#[test]
fn follows_without_end_is_bounded_by_the_frame_limit() {
    let mut d = Decoder::new(Limits {
        max_line: 100,
        max_frame: 200,
    });
    let mut bytes = b"Response: Follows\r\n".to_vec();
    for _ in 0..50 {
        bytes.extend_from_slice(b"output line\r\n\r\n");
    }
    bytes.extend_from_slice(b"Event: Later\r\n\r\n");
    let got = decode_all(&mut d, &bytes);
    assert_eq!(got[0], Item::Discarded(Discard::FrameTooLarge));
    assert_eq!(got.last(), Some(&frame(&[("Event", "Later")])));
}

#[test]
fn garbage_never_panics() {
    // A deterministic pseudo-random byte soup, fed in uneven pieces.
    let mut x: u32 = 12345;
    let mut bytes = Vec::new();
    for _ in 0..200_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let b = (x >> 16) as u8;
        bytes.push(match b % 7 {
            0 => b'\n',
            1 => b'\r',
            2 => b':',
            _ => b,
        });
    }
    let mut d = Decoder::new(Limits {
        max_line: 64,
        max_frame: 512,
    });
    for chunk in bytes.chunks(37) {
        d.push(chunk);
        while d.next_item().is_some() {}
        assert!(d.buffered() < 64 + 512 + 37 + 64);
    }
}

#[test]
fn encode_action_is_crlf_with_action_id() {
    let bytes = encode_action("Ping", "p-1", &[]).unwrap();
    assert_eq!(bytes, b"Action: Ping\r\nActionID: p-1\r\n\r\n");
    let bytes = encode_action("Login", "l-1", &[("Username", "u"), ("Secret", "s:x")]).unwrap();
    assert_eq!(
        bytes,
        b"Action: Login\r\nActionID: l-1\r\nUsername: u\r\nSecret: s:x\r\n\r\n"
    );
}

#[test]
fn encode_action_refuses_injection() {
    for (k, v) in [
        ("Exten", "1\r\nAction: Command"),
        ("Exten", "1\n"),
        ("Exten", "1\0"),
        ("Bad\r\nKey", "x"),
        ("Key:", "x"),
        ("", "x"),
    ] {
        assert!(
            encode_action("Originate", "o-1", &[(k, v)]).is_err(),
            "{k:?} {v:?}"
        );
    }
    assert!(encode_action("Originate", "o\r\n-1", &[]).is_err());
}
