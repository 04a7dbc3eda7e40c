//! Every capture's hand-written expected notifications (tests/expected/) against `--replay`'s code
//! path and against the real binary's `--replay` output.

mod common;

use astcti_server::offline;
use common::expected::{by_leg, expected, pairs, root};

#[test]
fn every_fixture_gives_exactly_the_expected_notifications() {
    let mut failures = Vec::new();
    for (ami, exp) in pairs() {
        if !exp.exists() {
            failures.push(format!("{}: no expected file", exp.display()));
            continue;
        }
        let e = expected(&exp);
        let got = offline::replay(&std::fs::read(&ami).unwrap(), &e.agents);
        let got: Vec<&str> = got.lines().collect();
        if e.per_leg {
            if got.len() != e.lines.len() || by_leg(&got) != by_leg(&e.lines) {
                failures.push(format!(
                    "{}: per-leg comparison failed ({} lines, {} expected)",
                    ami.display(),
                    got.len(),
                    e.lines.len()
                ));
            }
            continue;
        }
        if got != e.lines {
            let mut diff = format!("{}:\n", ami.display());
            for i in 0..got.len().max(e.lines.len()) {
                let (g, x) = (
                    got.get(i).copied().unwrap_or("(none)"),
                    e.lines.get(i).map(String::as_str).unwrap_or("(none)"),
                );
                if g != x {
                    diff += &format!("  line {}:\n    got      {g}\n    expected {x}\n", i + 1);
                }
            }
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_binary_replay_flag_prints_the_same() {
    let (ami, exp) = pairs()
        .into_iter()
        .find(|(a, _)| a.ends_with("asterisk-1.4/synthetic-demo100.ami"))
        .unwrap();
    let e = expected(&exp);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_astcti-server"));
    cmd.arg("--replay").arg(&ami);
    for a in &e.agents {
        cmd.arg("--agent").arg(a);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), e.lines);
    // Without --agent every agent key is listed, the Local channels' too.
    let all = std::process::Command::new(env!("CARGO_BIN_EXE_astcti-server"))
        .arg("--replay")
        .arg(root().join("fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.ami"))
        .output()
        .unwrap();
    let text = String::from_utf8(all.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("SIP/201\t")));
    assert!(text
        .lines()
        .any(|l| l.starts_with("Local/100@astctidemo\t")));
}

#[test]
fn the_spec_examples_come_out_byte_for_byte() {
    // docs/ORIGINAL.md §4.1 (the layout), as C strings, for the synthetic demo (the same values).
    let got = offline::replay(
        &std::fs::read(root().join("fixtures/ami/asterisk-1.4/synthetic-demo100.ami")).unwrap(),
        &["SIP/201".to_string()],
    );
    let link = "SIP/201\t<event id=\"Link\">\\n<call>\\t<uniqueid>1194001092.75</uniqueid>\\n\\t<channel>SIP/201-0821bb20</channel>\\n\\t<calleridnum>202</calleridnum>\\n\\t<calleridname>Demo 3</calleridname>\\n\\t<context>astctidemo</context>\\n\\t<appdata>12345</appdata>\\n</call></event>\\n";
    assert_eq!(got.lines().nth(2), Some(link));
    let newcallerid = "SIP/201\t<event id=\"Newcallerid\">\\n<call>\\t<uniqueid>1194001092.75</uniqueid>\\n\\t<channel>SIP/201-0821bb20</channel>\\n\\t<calleridnum>202</calleridnum>\\n\\t<calleridname>Demo 3</calleridname>\\n</call></event>\\n";
    assert_eq!(got.lines().next(), Some(newcallerid));
}
