//! Every capture's hand-written expected notifications (tests/expected/) against `--replay`'s code
//! path and against the real binary's `--replay` output.

mod common;

use std::collections::BTreeMap;

use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::frame::{Decoder, Frame, Item};
use astcti_server::offline;
use astcti_server::route::Router;
use common::expected::{by_leg, expected, pairs, root};
use common::rng::Rng;

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

/// How far an event may move from where it was recorded.
const WINDOW: usize = 4;
/// Reorderings per capture.
const SEEDS: u64 = 48;

/// The channels a frame is ordered with. An event about one channel (12+'s snapshots, `Newstate`,
/// `Hangup`, … and `DialBegin`, `AttendedTransfer`, raised by the thread of the channel its
/// `Uniqueid` (or first header naming a Uniqueid) names: the order of its other channels' events around it is
/// not fixed, as the real captures show) is ordered with that channel; 1.4/1.6–11's `Dial`, `Link`,
/// `Bridge` and the `LocalBridge` of any version are raised with both channels locked, after what
/// made them (the answer, the dial), and are ordered with every channel they name. Events about no
/// channel (`BridgeCreate`, …) are ordered with nothing. Answers to the server's actions (`ActionID`:
/// the channel lists and their ends) and frames without `Event` are `Err`: they stay where they are.
fn channels(frame: &Frame) -> Result<Vec<String>, ()> {
    let Some(event) = frame.event() else {
        return Err(());
    };
    if frame.action_id().is_some() {
        return Err(());
    }
    let uids = frame
        .headers()
        .filter(|(k, _)| {
            // `Uniqueid1` (1.4 `Link`), `SrcUniqueID`, `DestUniqueid`, `TransfereeUniqueid`, …
            k.to_ascii_lowercase().contains("uniqueid") && !k.eq_ignore_ascii_case("BridgeUniqueid")
        })
        .map(|(_, v)| v.trim().to_string());
    if matches!(event, "Dial" | "Link" | "Unlink" | "Bridge" | "LocalBridge") {
        return Ok(uids.collect());
    }
    if let Some(u) = frame.get("Uniqueid") {
        return Ok(vec![u.trim().to_string()]);
    }
    Ok(uids.take(1).collect())
}

/// A reordering Asterisk may produce: random adjacent swaps of events raised by different
/// channels (never two of one channel, whose order Asterisk keeps), each event at most `WINDOW`
/// places from where it was recorded, banners and list answers fixed.
fn reorder(items: &[Item], seed: u64) -> Vec<Item> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let owners: Vec<Result<Vec<String>, ()>> = items
        .iter()
        .map(|i| match i {
            Item::Frame(f) => channels(f),
            _ => Err(()),
        })
        .collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    for _ in 0..WINDOW {
        for i in 0..order.len().saturating_sub(1) {
            let (a, b) = (order[i], order[i + 1]);
            let movable = match (&owners[a], &owners[b]) {
                (Ok(x), Ok(y)) => !x.iter().any(|u| y.contains(u)),
                _ => false,
            };
            // After the swap a sits at i + 1 and b at i.
            let within = (i + 1).abs_diff(a) <= WINDOW && i.abs_diff(b) <= WINDOW;
            if movable && within && rng.next().is_multiple_of(3) {
                order.swap(i, i + 1);
            }
        }
    }
    order.into_iter().map(|i| items[i].clone()).collect()
}

/// What `--replay` does, on decoded items: (agent, wire) per notification.
fn notifications(items: &[Item], agents: &[String]) -> Vec<(String, String)> {
    let mut router = Router::default();
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Banner(v) => router.session(Dialect::from_banner(v)),
            Item::Frame(f) => out.extend(
                router
                    .frame(f)
                    .into_iter()
                    .filter(|(a, _)| agents.contains(a)),
            ),
            Item::Discarded(_) => {}
        }
    }
    out
}

/// Each agent's notifications, leg by leg (in order within each leg). The contract fixes the order
/// of one leg's notifications; between two legs of one agent (two calls at once, a transferring
/// agent's second dialog) it follows Asterisk's order of their channels' events, which is not fixed.
fn per_agent(ns: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (agent, wire) in ns {
        map.entry(agent.clone()).or_default().push(wire.clone());
    }
    for v in map.values_mut() {
        *v = by_leg(v).into_values().flatten().collect();
    }
    map
}

#[test]
fn every_reordering_of_events_from_different_channels_gives_each_agent_the_same_notifications() {
    let mut failures = Vec::new();
    let mut reorders = 0usize;
    for (ami, exp) in pairs() {
        let e = expected(&exp);
        let mut d = Decoder::default();
        d.push(&std::fs::read(&ami).unwrap());
        let items: Vec<Item> = std::iter::from_fn(|| d.next_item()).collect();
        let recorded = per_agent(&notifications(&items, &e.agents));
        // Seeds that do not move anything count for nothing: the test says how many did.
        for seed in 0..SEEDS {
            let shuffled = reorder(&items, seed);
            if shuffled == items {
                continue;
            }
            reorders += 1;
            let got = per_agent(&notifications(&shuffled, &e.agents));
            if got != recorded {
                let agent = recorded
                    .keys()
                    .chain(got.keys())
                    .find(|a| recorded.get(*a) != got.get(*a))
                    .cloned()
                    .unwrap_or_default();
                let show = |m: &BTreeMap<String, Vec<String>>| {
                    m.get(&agent)
                        .map(|v| {
                            v.iter()
                                .map(|w| summary(w))
                                .collect::<Vec<_>>()
                                .join("\n      ")
                        })
                        .unwrap_or_default()
                };
                failures.push(format!(
                    "{} seed {seed}, agent {agent}:\n    recorded:\n      {}\n    reordered:\n      {}",
                    ami.display(),
                    show(&recorded),
                    show(&got)
                ));
                break;
            }
        }
    }
    assert!(
        reorders > 1000,
        "only {reorders} reorderings moved anything"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One notification, shortened for a failure message.
fn summary(wire: &str) -> String {
    let field = |name: &str| {
        wire.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{name}>")).next())
            .unwrap_or("")
            .to_string()
    };
    format!(
        "{} {} {}/{} {}/{}",
        wire.split('"').nth(1).unwrap_or(""),
        field("uniqueid"),
        field("calleridnum"),
        field("calleridname"),
        field("context"),
        field("appdata")
    )
}
