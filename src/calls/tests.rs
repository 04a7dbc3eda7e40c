use super::*;
use crate::ami::dialect::Dialect;
use crate::ami::event::decode;
use crate::ami::frame::Frame;

/// Frames from `key: value` lines, blank line between frames.
fn frames(text: &str) -> Vec<Frame> {
    let mut d = crate::ami::frame::Decoder::default();
    d.push(text.replace('\n', "\r\n").as_bytes());
    std::iter::from_fn(|| d.next_item())
        .filter_map(|i| match i {
            crate::ami::frame::Item::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// `text` applied to a tracker that has just begun a resynchronisation (a new AMI session's lists).
fn run_resync(dialect: Dialect, text: &str) -> Vec<Notification> {
    let mut t = Tracker::new();
    t.begin_resync();
    frames(text)
        .iter()
        .flat_map(|f| t.apply(decode(f, dialect)))
        .collect()
}

fn run(dialect: Dialect, text: &str) -> Vec<Notification> {
    let mut t = Tracker::new();
    frames(text)
        .iter()
        .flat_map(|f| t.apply(decode(f, dialect)))
        .collect()
}

fn summary(ns: &[Notification]) -> Vec<String> {
    ns.iter()
        .map(|n| {
            let r = &n.record;
            format!(
                "{} {} {} {}/{} {}/{}",
                crate::route::agent_key(&n.channel),
                n.kind.id(),
                r.uniqueid.clone().unwrap_or_default(),
                r.calleridnum.clone().unwrap_or_default(),
                r.calleridname.clone().unwrap_or_default(),
                r.context.clone().unwrap_or_default(),
                r.appdata.clone().unwrap_or_default(),
            )
        })
        .collect()
}

const DEMO_12: &str = "\
Event: Newchannel
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
CallerIDNum: 0215550100
CallerIDName: Customer

Event: Newexten
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
Context: ivr
Application: Set
AppData: calldata=12345

Event: VarSet
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
Variable: calldata
Value: 12345

Event: Newchannel
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1
CallerIDNum: 201
CallerIDName: Agent

Event: DialBegin
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
CallerIDNum: 0215550100
CallerIDName: Customer
DestChannel: PJSIP/201-0000000a
DestUniqueid: a1
DestLinkedid: c1

Event: Newstate
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1
ChannelStateDesc: Ringing
CallerIDNum: 201
CallerIDName: Agent

Event: Newstate
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1
ChannelStateDesc: Up
CallerIDNum: 201
CallerIDName: Agent

Event: DialEnd
Channel: PJSIP/trunk-00000001
Uniqueid: c1
DestChannel: PJSIP/201-0000000a
DestUniqueid: a1
DialStatus: ANSWER

Event: BridgeEnter
BridgeUniqueid: b1
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1

Event: BridgeEnter
BridgeUniqueid: b1
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1

Event: BridgeEnter
BridgeUniqueid: b1
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1

Event: Hangup
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1

Event: Hangup
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1

";

#[test]
fn pjsip_call_on_12_plus_with_link_once() {
    let mut t = Tracker::new();
    let ns: Vec<Notification> = frames(DEMO_12)
        .iter()
        .flat_map(|f| t.apply(decode(f, Dialect::V12Plus)))
        .collect();
    assert_eq!(
        summary(&ns),
        vec![
            "PJSIP/201 Newcallerid a1 0215550100/Customer /",
            "PJSIP/201 Newstate a1 201/Agent /",
            "PJSIP/201 Link a1 0215550100/Customer ivr/12345",
            "PJSIP/201 Hangup a1 0215550100/Customer ivr/12345",
            "PJSIP/trunk Hangup c1 / ivr/12345",
        ]
    );
    assert_eq!(
        (t.legs(), t.calls()),
        (0, 0),
        "the call is forgotten at its last hangup"
    );
}

#[test]
fn calldata_rules() {
    assert_eq!(calldata_of("calldata=12345"), Some("12345"));
    assert_eq!(calldata_of("calldata=a=b:c"), Some("a=b:c"));
    assert_eq!(calldata_of("__calldata=x"), Some("x"));
    assert_eq!(calldata_of("mycalldata=1"), None);
    assert_eq!(calldata_of("calldata2=1"), None);
    assert_eq!(calldata_of("CALLDATA=1"), None);
    assert_eq!(calldata_of("calldata"), None);
    // `mycalldata=1` on the caller leaves the call without calldata.
    let text = DEMO_12
        .replace("AppData: calldata=12345", "AppData: mycalldata=1")
        .replace(
            "Variable: calldata\nValue: 12345",
            "Variable: mycalldata\nValue: 1",
        );
    let ns = run(Dialect::V12Plus, &text);
    assert_eq!(
        summary(&ns)[2],
        "PJSIP/201 Link a1 0215550100/Customer ivr/",
        "no calldata: the context is the caller's dialplan context"
    );
}

#[test]
fn varset_alone_sets_calldata_unescaped_by_the_decoder() {
    let text = DEMO_12
        .replace("Event: Newexten\nChannel: PJSIP/trunk-00000001\nUniqueid: c1\nLinkedid: c1\nContext: ivr\nApplication: Set\nAppData: calldata=12345\n\n", "Event: Newexten\nChannel: PJSIP/trunk-00000001\nUniqueid: c1\nLinkedid: c1\nContext: ivr\nApplication: AGI\nAppData: x.agi\n\n")
        .replace("Value: 12345", "Value: O\\'Brien");
    let ns = run(Dialect::V12Plus, &text);
    assert_eq!(
        summary(&ns)[2],
        "PJSIP/201 Link a1 0215550100/Customer ivr/O'Brien"
    );
}

#[test]
fn two_concurrent_calls_to_two_agents_keep_their_own_calldata() {
    let second = DEMO_12
        .replace("c1", "c2")
        .replace("a1", "a2")
        .replace("b1", "b2")
        .replace("PJSIP/201-0000000a", "PJSIP/202-0000000b")
        .replace("PJSIP/trunk-00000001", "PJSIP/trunk-00000002")
        .replace("12345", "99999")
        .replace("0215550100", "0215550200");
    // Interleave the two calls frame by frame.
    let (f1, f2) = (frames(DEMO_12), frames(&second));
    let mut t = Tracker::new();
    let mut ns = Vec::new();
    for (a, b) in f1.iter().zip(f2.iter()) {
        ns.extend(t.apply(decode(a, Dialect::V12Plus)));
        ns.extend(t.apply(decode(b, Dialect::V12Plus)));
    }
    let s = summary(&ns);
    assert!(
        s.contains(&"PJSIP/201 Link a1 0215550100/Customer ivr/12345".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"PJSIP/202 Link a2 0215550200/Customer ivr/99999".to_string()),
        "{s:?}"
    );
    assert_eq!(s.iter().filter(|l| l.contains(" Link ")).count(), 2);
}

const DEMO_14_LINK_TWICE: &str = "\
Event: Newchannel
Channel: SIP/202-1
Uniqueid: A
CallerIDNum: 202
CallerIDName: Demo 3

Event: Newexten
Channel: SIP/202-1
Uniqueid: A
Context: astctidemo
Application: Set
AppData: calldata=42

Event: Newchannel
Channel: SIP/201-2
Uniqueid: B

Event: Dial
Source: SIP/202-1
Destination: SIP/201-2
CallerID: 202
CallerIDName: Demo 3
SrcUniqueID: A
DestUniqueID: B

Event: Link
Channel1: SIP/202-1
Channel2: SIP/201-2
Uniqueid1: A
Uniqueid2: B

Event: Unlink
Channel1: SIP/202-1
Channel2: SIP/201-2
Uniqueid1: A
Uniqueid2: B

Event: Link
Channel1: SIP/202-1
Channel2: SIP/201-2
Uniqueid1: A
Uniqueid2: B

";

#[test]
fn repeated_link_events_give_one_link() {
    let ns = run(Dialect::V1_4, DEMO_14_LINK_TWICE);
    assert_eq!(
        summary(&ns),
        vec![
            "SIP/201 Newcallerid B 202/Demo 3 /",
            "SIP/201 Link B 202/Demo 3 astctidemo/42"
        ]
    );
}

#[test]
fn hangup_before_answer_and_busy_give_popup_then_hangup() {
    let text = "\
Event: Newchannel\nChannel: SIP/202-1\nUniqueid: A\n\n\
Event: Newchannel\nChannel: SIP/201-2\nUniqueid: B\n\n\
Event: Dial\nSubEvent: Begin\nChannel: SIP/202-1\nDestination: SIP/201-2\nCallerIDNum: 202\nCallerIDName: X\nUniqueID: A\nDestUniqueID: B\n\n\
Event: Newstate\nChannel: SIP/201-2\nUniqueid: B\nChannelStateDesc: Ringing\nCallerIDNum: 201\nCallerIDName: Y\n\n\
Event: Hangup\nChannel: SIP/201-2\nUniqueid: B\n\n\
Event: Dial\nSubEvent: End\nChannel: SIP/202-1\nUniqueID: A\nDialStatus: BUSY\n\n";
    assert_eq!(
        summary(&run(Dialect::V1_6To11, text)),
        vec!["SIP/201 Newcallerid B 202/X /", "SIP/201 Hangup B 202/X /"]
    );
}

#[test]
fn queue_member_in_11_rings_without_dial_and_gets_the_connected_line() {
    let text = "\
Event: Newchannel\nChannel: Local/101@q-1;2\nUniqueid: C\nCallerIDNum: 555\nCallerIDName: Cust\n\n\
Event: Newexten\nChannel: Local/101@q-1;2\nUniqueid: C\nContext: q\nApplication: Set\nAppData: calldata=7\n\n\
Event: VarSet\nChannel: Local/101@q-1;2\nUniqueid: C\nVariable: calldata\nValue: 7\n\n\
Event: Newchannel\nChannel: SIP/201-5\nUniqueid: M\nCallerIDNum: 201\nCallerIDName: Agent\n\n\
Event: AgentCalled\nChannelCalling: Local/101@q-1;2\nDestinationChannel: SIP/201-5\n\n\
Event: Newstate\nChannel: SIP/201-5\nUniqueid: M\nChannelStateDesc: Ringing\nCallerIDNum: 201\nCallerIDName: Agent\nConnectedLineNum: 555\nConnectedLineName: Cust\n\n\
Event: Bridge\nBridgestate: Link\nChannel1: Local/101@q-1;2\nChannel2: SIP/201-5\nUniqueid1: C\nUniqueid2: M\n\n";
    assert_eq!(
        summary(&run(Dialect::V1_6To11, text)),
        vec![
            "SIP/201 Newcallerid M 555/Cust /",
            "SIP/201 Link M 555/Cust q/7"
        ]
    );
}

#[test]
fn calldata_crosses_local_halves_without_linkedid() {
    // 11: calldata on ;2, the agent dialed by ;2, the customer's ;1 paired by LocalBridge.
    let text = "\
Event: Newchannel\nChannel: Local/100@d-1;1\nUniqueid: L1\n\n\
Event: Newchannel\nChannel: Local/100@d-1;2\nUniqueid: L2\n\n\
Event: LocalBridge\nChannel1: Local/100@d-1;1\nChannel2: Local/100@d-1;2\nUniqueid1: L1\nUniqueid2: L2\n\n\
Event: Newexten\nChannel: Local/100@d-1;2\nUniqueid: L2\nContext: d\nApplication: Set\nAppData: calldata=5\n\n\
Event: Newchannel\nChannel: SIP/201-9\nUniqueid: G\n\n\
Event: Dial\nSubEvent: Begin\nChannel: Local/100@d-1;2\nDestination: SIP/201-9\nCallerIDNum: 1\nCallerIDName: N\nUniqueID: L2\nDestUniqueID: G\n\n\
Event: Bridge\nBridgestate: Link\nChannel1: Local/100@d-1;2\nChannel2: SIP/201-9\nUniqueid1: L2\nUniqueid2: G\n\n\
Event: Hangup\nChannel: Local/100@d-1;1\nUniqueid: L1\n\n";
    let s = summary(&run(Dialect::V1_6To11, text));
    assert_eq!(s[1], "SIP/201 Link G 1/N d/5");
    assert_eq!(
        s[2], "Local/100@d Hangup L1 / /",
        "the ;1 half ran no dialplan"
    );
}

#[test]
fn rename_changes_where_notifications_go() {
    let text = "\
Event: Newchannel\nChannel: SIP/201-1\nUniqueid: U\n\n\
Event: Rename\nChannel: SIP/201-1\nNewname: SIP/202-7\nUniqueid: U\n\n\
Event: Hangup\nChannel: SIP/202-7\nUniqueid: U\n\n";
    assert_eq!(
        summary(&run(Dialect::V1_6To11, text)),
        vec!["SIP/202 Hangup U / /"]
    );
}

#[test]
fn ringing_of_an_unknown_channel_is_ignored_and_counted() {
    let mut t = Tracker::new();
    let f = frames("Event: Newstate\nChannel: SIP/201-0000000f\nState: Ringing\nCallerID: 1\nUniqueid: nobody\n\n");
    assert!(t.apply(decode(&f[0], Dialect::V1_4)).is_empty());
    assert_eq!(t.oddities, 1);
    // Other states of unknown channels are still reported, as the original did.
    let f = frames("Event: Newstate\nChannel: SIP/201-0000000f\nState: Up\nCallerID: 1\nCallerIDName: n\nUniqueid: nobody\n\n");
    assert_eq!(
        summary(&t.apply(decode(&f[0], Dialect::V1_4))),
        vec!["SIP/201 Newstate nobody 1/n /"]
    );
}

#[test]
fn clear_forgets_everything() {
    let mut t = Tracker::new();
    for f in frames(DEMO_12).iter().take(5) {
        t.apply(decode(f, Dialect::V12Plus));
    }
    assert!(t.legs() > 0);
    t.clear();
    assert_eq!((t.legs(), t.calls()), (0, 0));
    let hangup = frames("Event: Hangup\nChannel: PJSIP/201-0000000a\nUniqueid: a1\n\n");
    assert!(t.apply(decode(&hangup[0], Dialect::V12Plus)).is_empty());
}

#[test]
fn no_sequence_of_events_panics() {
    // Every prefix-shuffle of the demo's frames, and each frame missing each header.
    let all = frames(DEMO_12);
    let mut t = Tracker::new();
    for start in 0..all.len() {
        for f in all[start..].iter().chain(all[..start].iter()).rev() {
            t.apply(decode(f, Dialect::V12Plus));
            for skip in 0..f.headers().len() {
                let g = f.without_header(skip);
                t.apply(decode(&g, Dialect::V12Plus));
                t.apply(decode(&g, Dialect::V1_4));
            }
        }
    }
}

#[test]
fn a_connected_line_change_relinks_only_after_an_attended_transfer_and_once_per_party() {
    // DEMO_12 up to the Link (the Hangups cut off), then connected-line changes.
    let head = demo_12_head();
    let ncl = |num: &str| {
        format!(
            "\n\nEvent: NewConnectedLine\nChannel: PJSIP/201-0000000a\nUniqueid: a1\nLinkedid: c1\n\
             ConnectedLineNum: {num}\nConnectedLineName: N{num}"
        )
    };
    // Without a transfer: a connected-line update (a re-INVITE, a hold) sends nothing.
    let before = run(Dialect::V12Plus, &format!("{head}\n\n"));
    assert!(summary(&before).last().unwrap().contains(" Link "));
    let plain = run(Dialect::V12Plus, &format!("{head}{}\n\n", ncl("0999")));
    assert_eq!(summary(&plain), summary(&before));
    // After AttendedTransfer: one Link naming the new party, with the call's calldata; the same
    // party again, or an unknown number, sends nothing more.
    let xfer = "\n\nEvent: AttendedTransfer\nResult: Success\nOrigTransfererUniqueid: x9\n\
                TransfereeUniqueid: c1\nTransferTargetUniqueid: a1";
    let after = run(
        Dialect::V12Plus,
        &format!(
            "{head}{xfer}{}{}{}\n\n",
            ncl("0777"),
            ncl("0777"),
            ncl("<unknown>")
        ),
    );
    assert_eq!(after.len(), before.len() + 1, "{:?}", summary(&after));
    assert_eq!(
        summary(&after).last().unwrap(),
        "PJSIP/201 Link a1 0777/N0777 ivr/12345"
    );
}

#[test]
fn a_1_4_rebridge_with_the_same_party_is_silent_and_a_new_party_relinks_with_the_calls_calldata() {
    // 1.4: the customer (Zap/1, calldata 777 set in its dialplan) is answered by SIP/201, who
    // consults SIP/202 (a call of its own, without calldata); the masquerade that completes the
    // attended transfer bridges the customer with 202.
    let text = "\
Event: Newchannel
Channel: Zap/1-1
Uniqueid: cust
CallerIDNum: 0215551234
CallerIDName: Customer

Event: Newexten
Channel: Zap/1-1
Uniqueid: cust
Context: ivr
Application: Set
AppData: calldata=777

Event: Newchannel
Channel: SIP/201-a
Uniqueid: a201
CallerIDNum: 201
CallerIDName: Agent A

Event: Newchannel
Channel: SIP/202-b
Uniqueid: a202
CallerIDNum: 202
CallerIDName: Agent B

Event: Dial
Source: SIP/201-a
Destination: SIP/202-b
CallerID: 201
CallerIDName: Agent A
SrcUniqueID: a201
DestUniqueID: a202

Event: Link
Channel1: SIP/201-a
Channel2: SIP/202-b
Uniqueid1: a201
Uniqueid2: a202

Event: Link
Channel1: SIP/201-a
Channel2: SIP/202-b
Uniqueid1: a201
Uniqueid2: a202

Event: Link
Channel1: Zap/1-1
Channel2: SIP/202-b
Uniqueid1: cust
Uniqueid2: a202

";
    let got = summary(&run(Dialect::V1_4, text));
    let links: Vec<&String> = got.iter().filter(|l| l.contains(" Link ")).collect();
    assert_eq!(links.len(), 2, "{got:?}");
    assert!(
        links[0].starts_with("SIP/202 Link a202 201/Agent A"),
        "{got:?}"
    );
    assert_eq!(links[1], "SIP/202 Link a202 0215551234/Customer ivr/777");
}

/// DEMO_12 up to (not including) its Hangups.
fn demo_12_head() -> String {
    DEMO_12
        .split("\n\n")
        .take_while(|f| !f.starts_with("Event: Hangup"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn ncl(uid: &str, channel: &str, linkedid: &str, num: &str, name: &str) -> String {
    format!(
        "Event: NewConnectedLine\nChannel: {channel}\nUniqueid: {uid}\nLinkedid: {linkedid}\n\
         ConnectedLineNum: {num}\nConnectedLineName: {name}"
    )
}

/// A consultation call of its own (Linkedid k1, no calldata): 201's second leg t1 dials 202 (b1),
/// 202 answers, both bridged. What a desk phone's second dialog is.
const CONSULT: &str = "\
Event: Newchannel
Channel: PJSIP/201-0000000b
Uniqueid: t1
Linkedid: k1
CallerIDNum: 201
CallerIDName: Agent

Event: Newexten
Channel: PJSIP/201-0000000b
Uniqueid: t1
Linkedid: k1
Context: internal
Application: Dial
AppData: PJSIP/202

Event: DialBegin
Channel: PJSIP/201-0000000b
Uniqueid: t1
Linkedid: k1
CallerIDNum: 201
CallerIDName: Agent
DestChannel: PJSIP/202-0000000c
DestUniqueid: b1
DestLinkedid: k1

Event: Newstate
Channel: PJSIP/202-0000000c
Uniqueid: b1
Linkedid: k1
ChannelStateDesc: Up
CallerIDNum: 202
CallerIDName: Agent B

Event: DialEnd
Channel: PJSIP/201-0000000b
Uniqueid: t1
DestChannel: PJSIP/202-0000000c
DestUniqueid: b1
DialStatus: ANSWER

Event: BridgeEnter
BridgeUniqueid: k-bridge
Channel: PJSIP/202-0000000c
Uniqueid: b1
Linkedid: k1

Event: BridgeEnter
BridgeUniqueid: k-bridge
Channel: PJSIP/201-0000000b
Uniqueid: t1
Linkedid: k1";

#[test]
fn an_attended_transfer_gives_one_link_naming_the_customer_with_its_calldata_in_either_order() {
    // REFER with Replaces: the customer (c1, calldata 12345) talks to 201 (a1); 201's second dialog
    // (t1, call k1) talks to 202 (b1). The transfer joins the customer with 202, whose leg belongs
    // to the consultation call.
    let xfer = "Event: AttendedTransfer\nResult: Success\nOrigTransfererUniqueid: a1\n\
                SecondTransfererUniqueid: t1\nTransfereeUniqueid: c1\nTransfereeLinkedid: c1\n\
                TransferTargetUniqueid: b1\nTransferTargetLinkedid: k1\nDestType: Bridge\n\
                DestBridgeUniqueid: k-bridge";
    let to_customer = ncl("b1", "PJSIP/202-0000000c", "k1", "0215550100", "Customer");
    // 201's own connected-line changes before it leaves (it must get nothing from them).
    let a1_to_202 = ncl("a1", "PJSIP/201-0000000a", "c1", "202", "Agent B");
    let hang = |uid: &str, ch: &str, l: &str| {
        format!("Event: Hangup\nChannel: {ch}\nUniqueid: {uid}\nLinkedid: {l}")
    };
    let tail = [
        hang("a1", "PJSIP/201-0000000a", "c1"),
        hang("t1", "PJSIP/201-0000000b", "k1"),
        hang("b1", "PJSIP/202-0000000c", "k1"),
    ]
    .join("\n\n");
    let head = format!("{}\n\n{CONSULT}\n\n{a1_to_202}", demo_12_head());
    let ncl_first = run(
        Dialect::V12Plus,
        &format!("{head}\n\n{to_customer}\n\n{xfer}\n\n{tail}\n\n"),
    );
    let xfer_first = run(
        Dialect::V12Plus,
        &format!("{head}\n\n{xfer}\n\n{to_customer}\n\n{tail}\n\n"),
    );
    let for_202 = |ns: &[Notification]| -> Vec<String> {
        summary(ns)
            .into_iter()
            .filter(|l| l.starts_with("PJSIP/202"))
            .collect()
    };
    assert_eq!(
        for_202(&ncl_first),
        vec![
            "PJSIP/202 Newcallerid b1 201/Agent /",
            "PJSIP/202 Newstate b1 202/Agent B /",
            "PJSIP/202 Link b1 201/Agent internal/",
            "PJSIP/202 Link b1 0215550100/Customer ivr/12345",
            "PJSIP/202 Hangup b1 0215550100/Customer ivr/12345",
        ]
    );
    assert_eq!(summary(&ncl_first), summary(&xfer_first));
    // The transferer: its Link and Hangup with the customer, nothing for 202.
    let a1: Vec<String> = summary(&ncl_first)
        .into_iter()
        .filter(|l| l.contains(" a1 "))
        .collect();
    assert_eq!(
        a1[2..],
        [
            "PJSIP/201 Link a1 0215550100/Customer ivr/12345",
            "PJSIP/201 Hangup a1 0215550100/Customer ivr/12345"
        ]
    );
    // DestType Link: the bridges are not merged but joined by a new Local pair (its halves named,
    // the target not): the same Link, with the customer's calldata.
    let local_pair = "Event: Newchannel\nChannel: Local/202@x-00000001;1\nUniqueid: l1\nLinkedid: c1\n\n\
                      Event: Newchannel\nChannel: Local/202@x-00000001;2\nUniqueid: l2\nLinkedid: c1";
    let by_link = "Event: AttendedTransfer\nResult: Success\nOrigTransfererUniqueid: a1\n\
                   SecondTransfererUniqueid: t1\nTransfereeUniqueid: c1\nDestType: Link\n\
                   LocalOneUniqueid: l1\nLocalTwoUniqueid: l2";
    for order in [[&to_customer, by_link], [by_link, &to_customer]] {
        let ns = run(
            Dialect::V12Plus,
            &format!(
                "{head}\n\n{local_pair}\n\n{}\n\n{}\n\n{tail}\n\n",
                order[0], order[1]
            ),
        );
        assert_eq!(for_202(&ns), for_202(&ncl_first), "{:?}", summary(&ns));
    }
    // A failed transfer changes nothing: 202 keeps its party.
    let failed = xfer.replace("Result: Success", "Result: Fail");
    let ns = run(
        Dialect::V12Plus,
        &format!("{head}\n\n{to_customer}\n\n{failed}\n\n{tail}\n\n"),
    );
    assert_eq!(for_202(&ns).len(), 4, "{:?}", summary(&ns));
}

#[test]
fn a_ringing_before_its_dial_gives_one_popup_with_the_same_caller() {
    // DEMO_12 with the agent's Ringing moved before the DialBegin that dials it (another thread).
    let frames: Vec<&str> = DEMO_12.split("\n\n").collect();
    let dial = frames
        .iter()
        .position(|f| f.starts_with("Event: DialBegin"))
        .unwrap();
    let ring = frames
        .iter()
        .position(|f| f.contains("ChannelStateDesc: Ringing"))
        .unwrap();
    let mut swapped = frames.clone();
    let r = swapped.remove(ring);
    swapped.insert(dial, r);
    // Asterisk's Ringing snapshot carries the connected line it set from the dialer before calling.
    let with_connected = |fs: &[&str]| {
        fs.join("\n\n").replace(
            "ChannelStateDesc: Ringing\n",
            "ChannelStateDesc: Ringing\nConnectedLineNum: 0215550100\nConnectedLineName: Customer\n",
        )
    };
    let recorded = summary(&run(Dialect::V12Plus, &with_connected(&frames)));
    let reordered = summary(&run(Dialect::V12Plus, &with_connected(&swapped)));
    assert_eq!(recorded, reordered);
    assert_eq!(
        recorded
            .iter()
            .filter(|l| l.contains(" Newcallerid "))
            .count(),
        1
    );
}

/// A new AMI session's lists during a call answered while the link was down: the agent's leg
/// `a1` bridged (AppDial) with the customer `c1`, whose Status item names the calldata.
const LATE_LISTS: &str = "\
Event: CoreShowChannel
Channel: PJSIP/201-0000000a
Uniqueid: a1
Linkedid: c1
ChannelStateDesc: Up
CallerIDNum: 201
CallerIDName: Agent
ConnectedLineNum: 0215550100
ConnectedLineName: Customer
Application: AppDial
Context: ivr
BridgeId: b1

Event: CoreShowChannel
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
ChannelStateDesc: Up
CallerIDNum: 0215550100
CallerIDName: Customer
ConnectedLineNum: 201
ConnectedLineName: Agent
Application: Dial
Context: ivr
BridgeId: b1

Event: CoreShowChannelsComplete

Event: Status
Channel: PJSIP/trunk-00000001
Uniqueid: c1
Linkedid: c1
CallerIDNum: 0215550100
CallerIDName: Customer
Variable: calldata=12345
Context: ivr

Event: StatusComplete";

#[test]
fn a_call_answered_while_the_link_was_down_pops_when_the_last_list_completes() {
    // The agent's leg rang before the link went down (popup sent), was answered meanwhile; the new
    // session's lists show it bridged (AppDial) with the customer, the Status list names calldata.
    let ringing: String = DEMO_12
        .split("\n\n")
        .take_while(|f| !f.contains("ChannelStateDesc: Up"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let lists = LATE_LISTS;
    let mut t = Tracker::new();
    let mut before = Vec::new();
    for f in frames(&format!("{ringing}\n\n")) {
        before.extend(t.apply(decode(&f, Dialect::V12Plus)));
    }
    assert_eq!(
        summary(&before),
        ["PJSIP/201 Newcallerid a1 0215550100/Customer /"]
    );
    t.begin_resync();
    let mut after = Vec::new();
    let mut at_first_end = None;
    for f in frames(&format!("{lists}\n\n")) {
        after.extend(t.apply(decode(&f, Dialect::V12Plus)));
        if f.event() == Some("CoreShowChannelsComplete") {
            at_first_end = Some(after.len());
        }
    }
    assert_eq!(
        at_first_end,
        Some(0),
        "not before the Status list's calldata"
    );
    assert_eq!(
        summary(&after),
        ["PJSIP/201 Link a1 0215550100/Customer ivr/12345"]
    );
    // The same lists again (another reconnect): the agent was told; nothing more.
    t.begin_resync();
    let again: Vec<Notification> = frames(&format!("{lists}\n\n"))
        .iter()
        .flat_map(|f| t.apply(decode(f, Dialect::V12Plus)))
        .collect();
    assert!(again.is_empty(), "{:?}", summary(&again));
    // A server started during the call: the agent's leg gets its Link; the customer's own leg
    // (Application Dial: nothing dialed it) none.
    let ns = run_resync(Dialect::V12Plus, &format!("{lists}\n\n"));
    assert_eq!(
        summary(&ns),
        ["PJSIP/201 Link a1 0215550100/Customer ivr/12345"]
    );
}

#[test]
fn a_list_item_of_a_channel_already_hung_up_brings_nothing_back() {
    // Asterisk took the lists' snapshot before the call ended but wrote the Hangups first (or a
    // replay answered with an older list): the legs stay gone, no Link after their Hangup.
    // (The demo's own two Hangups: the agent's leg a1 and the customer's c1.)
    let hangups = DEMO_12
        .split("\n\n")
        .filter(|f| f.starts_with("Event: Hangup"))
        .collect::<Vec<_>>()
        .join("\n\n");
    assert_eq!(hangups.matches("Event: Hangup").count(), 2);
    let ns = run_resync(Dialect::V12Plus, &format!("{hangups}\n\n{LATE_LISTS}\n\n"));
    assert!(ns.is_empty(), "{:?}", summary(&ns));
    // The same lists without the Hangups before them: the late Link (the guard is what stopped it).
    let ns = run_resync(Dialect::V12Plus, &format!("{LATE_LISTS}\n\n"));
    assert_eq!(
        summary(&ns),
        ["PJSIP/201 Link a1 0215550100/Customer ivr/12345"]
    );
    // Once the lists are over, the guard is gone: a later Newchannel of any id is taken as new.
    let mut t = Tracker::new();
    t.begin_resync();
    for f in frames(&format!("{hangups}\n\n{LATE_LISTS}\n\n")) {
        t.apply(decode(&f, Dialect::V12Plus));
    }
    assert!(t.ended_while_listing.is_none());
    assert_eq!(t.legs.len(), 0);
}

#[test]
fn a_1_6_to_11_channel_list_gives_the_late_pop_too_and_1_4_names_no_application() {
    // Asterisk 11's CoreShowChannel: `UniqueID`, `BridgedChannel`/`BridgedUniqueID`, Application
    // AppDial for the dialed agent leg; the Status list then names the caller's calldata.
    let lists = "\
Event: CoreShowChannel
Channel: SIP/201-00000007
UniqueID: 1795.7
ChannelStateDesc: Up
Application: AppDial
ConnectedLineNum: 0215550100
ConnectedLineName: Customer
Context: astctidemo
BridgedChannel: SIP/trunk-00000006
BridgedUniqueID: 1795.6

Event: CoreShowChannel
Channel: SIP/trunk-00000006
UniqueID: 1795.6
ChannelStateDesc: Up
Application: Dial
ConnectedLineNum: 201
ConnectedLineName: Agent
Context: astctidemo
BridgedChannel: SIP/201-00000007
BridgedUniqueID: 1795.7

Event: CoreShowChannelsComplete

Event: Status
Channel: SIP/trunk-00000006
Uniqueid: 1795.6
Variable: calldata=777
Context: astctidemo

Event: StatusComplete

";
    let ns = run_resync(Dialect::V1_6To11, lists);
    // No Linkedid in 11: the list's BridgedUniqueID makes the two legs one call, so the trunk's
    // calldata (and the context it was set in) reach 201's late Link.
    assert_eq!(
        summary(&ns),
        ["SIP/201 Link 1795.7 0215550100/Customer astctidemo/777"]
    );
    // 1.4's Status names no application: a bridged channel may be the customer's own; no late pop.
    let old = "\
Event: Status
Channel: SIP/201-0a
Uniqueid: 14.7
CallerIDNum: 201
State: Up
Link: SIP/trunk-0b
Context: astctidemo

Event: StatusComplete

";
    let ns = run_resync(Dialect::V1_4, old);
    assert!(ns.is_empty(), "{:?}", summary(&ns));
}

/// 100,000 channels that never end (a flood, or lost Hangups) hold at most `MANAGER_MAX_LEGS`
/// legs: the oldest are hung up (an agent's gets its Hangup), counted; the newest stay.
#[test]
fn legs_are_bounded_in_count_the_oldest_going_first() {
    let mut t = Tracker::new();
    t.set_max_legs(1000);
    for i in 0..100_000u64 {
        t.set_now(i);
        let f = frames(&format!(
            "Event: Newchannel\nChannel: PJSIP/201-{i:08x}\nUniqueid: u{i}\nLinkedid: u{i}\n\
             CallerIDNum: 0215552001\nChannelStateDesc: Ring\n\n"
        ));
        t.apply(decode(&f[0], Dialect::V12Plus));
        assert!(t.legs() <= 1000, "{} legs", t.legs());
    }
    assert!(t.legs() >= 990, "{}", t.legs());
    assert_eq!(t.evicted, 100_000 - t.legs() as u64);
    assert!(t.consistent());
    // The newest is still known (its Hangup ends it); the oldest is gone.
    let before = t.legs();
    let h = frames("Event: Hangup\nChannel: PJSIP/201-0001869f\nUniqueid: u99999\n\n");
    t.apply(decode(&h[0], Dialect::V12Plus));
    assert_eq!(t.legs(), before - 1);
    let h = frames("Event: Hangup\nChannel: PJSIP/201-00000000\nUniqueid: u0\n\n");
    t.apply(decode(&h[0], Dialect::V12Plus));
    assert_eq!(t.legs(), before - 1);
}
