//! Call notifications on the client wire (docs/ORIGINAL.md §4.1): `<event id="…">` + `<call>` with up to seven
//! fields, in the original's exact byte layout, made safe for the original client's XML parser.
//!
//! Pure core, used by the dispatcher (and `--replay`). Escaping: in `calleridnum`/`calleridname` every
//! `<` and `>` is removed first, as the original did (`<unknown>` → `unknown`); then every field has
//! `&`, `<`, `>`, `"`, `'` written as entities, non-ASCII characters as numeric character references
//! (the client decodes them; raw UTF-8 would show as `?`), and control characters as spaces (XML 1.0
//! cannot carry them, and a line break inside a value could give the client a 1–2 character line).

use std::fmt::Write;

pub use crate::calls::{Kind, Record};

fn escape_into(out: &mut String, value: &str, strip_angles: bool) {
    for c in value.chars() {
        match c {
            '<' | '>' if strip_angles => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "&#{};", c as u32);
            }
        }
    }
}

/// The exact bytes sent to the client, final LF included.
pub fn to_wire(kind: Kind, record: &Record) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<event id=\"");
    out.push_str(kind.id());
    out.push_str("\">\n<call>");
    let fields = [
        ("uniqueid", &record.uniqueid, false),
        ("channel", &record.channel, false),
        ("calleridnum", &record.calleridnum, true),
        ("calleridname", &record.calleridname, true),
        ("context", &record.context, false),
        ("appdata", &record.appdata, false),
        ("state", &record.state, false),
    ];
    for (name, value, strip) in fields {
        if let Some(v) = value {
            out.push('\t');
            out.push('<');
            out.push_str(name);
            out.push('>');
            escape_into(&mut out, v, strip);
            out.push_str("</");
            out.push_str(name);
            out.push_str(">\n");
        }
    }
    out.push_str("</call></event>\n");
    out
}

/// The client's side of the same format: one whole notification (`<event id=…>` … `</event>`) back
/// into its kind and fields, with the escapes undone. None for anything else (unknown ids are
/// ignored by the original client too). Used by `astcti-client`.
pub fn parse(wire: &str) -> Option<(Kind, Record)> {
    let rest = wire.trim_start().strip_prefix("<event id=\"")?;
    let (id, rest) = rest.split_once('"')?;
    let kind = match id {
        "Newcallerid" => Kind::Newcallerid,
        "Newstate" => Kind::Newstate,
        "Link" => Kind::Link,
        "Hangup" => Kind::Hangup,
        _ => return None,
    };
    let body = rest.split_once("<call>")?.1.split_once("</call>")?.0;
    let mut r = Record::default();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let (name, after) = after.split_once('>')?;
        let close = format!("</{name}>");
        let (value, tail) = after.split_once(close.as_str())?;
        let value = Some(unescape(value));
        match name {
            "uniqueid" => r.uniqueid = value,
            "channel" => r.channel = value,
            "calleridnum" => r.calleridnum = value,
            "calleridname" => r.calleridname = value,
            "context" => r.context = value,
            "appdata" => r.appdata = value,
            "state" => r.state = value,
            _ => {}
        }
        rest = tail;
    }
    Some((kind, r))
}

/// Undoes the five XML escapes and numeric character references (`&#233;`, `&#xE9;`).
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';').filter(|&e| e <= 12) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| e.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_writes_the_client_reads_back() {
        let r = rec([
            Some("1796112089.2"),
            Some("PJSIP/201-00000000"),
            Some("0215552001"),
            Some("Jos\u{e9} \"Tom & Jerry\" O'Brien"),
            Some("astctidemo"),
            Some("a=1&b=<2>"),
            None,
        ]);
        for kind in [Kind::Newcallerid, Kind::Newstate, Kind::Link, Kind::Hangup] {
            let wire = to_wire(kind, &r);
            let (k, back) = parse(&wire).unwrap();
            assert_eq!(k, kind);
            assert_eq!(back, r, "{wire}");
        }
        let empty = parse("<event id=\"Hangup\">\n<call></call></event>\n").unwrap();
        assert_eq!(empty, (Kind::Hangup, Record::default()));
        assert_eq!(parse("<event id=\"Other\">\n<call></call></event>\n"), None);
        assert_eq!(parse("100 OK"), None);
        assert_eq!(
            unescape("a &bogus; &#xE9;&#233; &"),
            "a &bogus; \u{e9}\u{e9} &"
        );
    }

    fn rec(fields: [Option<&str>; 7]) -> Record {
        let s = |i: usize| fields[i].map(str::to_string);
        Record {
            uniqueid: s(0),
            channel: s(1),
            calleridnum: s(2),
            calleridname: s(3),
            context: s(4),
            appdata: s(5),
            state: s(6),
        }
    }

    #[test]
    fn the_spec_link_example_byte_for_byte() {
        let r = rec([
            Some("1194001092.75"),
            Some("SIP/201-0821bb20"),
            Some("202"),
            Some("Demo 3"),
            Some("astctidemo"),
            Some("12345"),
            None,
        ]);
        assert_eq!(
            to_wire(Kind::Link, &r),
            "<event id=\"Link\">\n<call>\t<uniqueid>1194001092.75</uniqueid>\n\t<channel>SIP/201-0821bb20</channel>\n\t<calleridnum>202</calleridnum>\n\t<calleridname>Demo 3</calleridname>\n\t<context>astctidemo</context>\n\t<appdata>12345</appdata>\n</call></event>\n"
        );
    }

    #[test]
    fn empty_and_absent_fields() {
        assert_eq!(
            to_wire(Kind::Hangup, &Record::default()),
            "<event id=\"Hangup\">\n<call></call></event>\n"
        );
        let r = rec([Some("u"), None, None, Some(""), None, None, Some("Up")]);
        assert_eq!(
            to_wire(Kind::Newstate, &r),
            "<event id=\"Newstate\">\n<call>\t<uniqueid>u</uniqueid>\n\t<calleridname></calleridname>\n\t<state>Up</state>\n</call></event>\n"
        );
    }

    #[test]
    fn escaping_rules() {
        let r = rec([
            None,
            None,
            Some("<unknown>"),
            Some("\"Tom & Jerry\" <0215> O'Brien"),
            Some("a<b>&c"),
            Some("x=1&y=\"2\"\r\nz\t"),
            None,
        ]);
        assert_eq!(
            to_wire(Kind::Newcallerid, &r),
            "<event id=\"Newcallerid\">\n<call>\t<calleridnum>unknown</calleridnum>\n\t<calleridname>&quot;Tom &amp; Jerry&quot; 0215 O&apos;Brien</calleridname>\n\t<context>a&lt;b&gt;&amp;c</context>\n\t<appdata>x=1&amp;y=&quot;2&quot;  z </appdata>\n</call></event>\n"
        );
    }

    #[test]
    fn non_ascii_becomes_character_references() {
        let r = rec([
            None,
            None,
            None,
            Some("Jos\u{e9} \u{5f20}\u{1f600}"),
            None,
            None,
            None,
        ]);
        assert_eq!(
            to_wire(Kind::Newcallerid, &r),
            "<event id=\"Newcallerid\">\n<call>\t<calleridname>Jos&#233; &#24352;&#128512;</calleridname>\n</call></event>\n"
        );
        assert!(to_wire(Kind::Newcallerid, &r).is_ascii());
    }
}
