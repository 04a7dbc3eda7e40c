//! What the client does with each notification (docs/ORIGINAL.md §6.3–§6.5, improved where the
//! original was poor): the line-state label, the caller-ID popup (number **and** name), and on
//! `Link` which context applies and what to launch — a program with its arguments (split as
//! Windows' `Process.Start` hands them to the program) or a URL. Also the number to dial. Pure core.

use super::settings::{InboundContext, Settings};
use crate::calls::{Kind, Record};

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The line-state label (`On Hook`, `Ringing`, `Off Hook`, `Connected`, `Hangup`, or raw).
    LineState(String),
    /// The caller-ID popup / desktop notification, for `seconds`.
    Popup {
        number: String,
        name: String,
        seconds: u64,
    },
    /// Start `program` with `args`, without a shell.
    Launch { program: String, args: Vec<String> },
    /// Open `url` with the desktop's default handler.
    OpenUrl(String),
    /// A `Link` with nothing to launch, and why (logged).
    NoLaunch(String),
    /// Dialling allowed again (`Hangup`) or not (`Link`).
    DialEnabled(bool),
}

/// The label of a `Newstate` state, as the original showed it.
pub fn state_label(state: Option<&str>) -> String {
    match state {
        Some("Up") => "Off Hook".into(),
        Some("Ringing") => "Ringing".into(),
        Some("Down") => "On Hook".into(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The first enabled context whose name is exactly `context`, else the first enabled catch-all.
pub fn choose<'a>(contexts: &'a [InboundContext], context: &str) -> Option<&'a InboundContext> {
    contexts
        .iter()
        .find(|c| c.enabled && c.context == context)
        .or_else(|| contexts.iter().find(|c| c.enabled && c.catch_all))
}

fn percent_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The original's placeholders, replaced exactly (case-sensitive, in this order, no encoding, a
/// missing field as the empty string); `{NAME:url}` is the same value URL-encoded (new).
pub fn substitute(template: &str, r: &Record) -> String {
    let f = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        ("CALLERID", f(&r.calleridnum)),
        ("CALLERNAME", f(&r.calleridname)),
        ("CONTEXT", f(&r.context)),
        ("CALLDATA", f(&r.appdata)),
        ("CHANNEL", f(&r.channel)),
        ("UNIQUEID", f(&r.uniqueid)),
    ];
    let mut out = template.to_string();
    for (name, value) in &fields {
        out = out.replace(&format!("{{{name}:url}}"), &percent_encode(value));
    }
    for (name, value) in &fields {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// A command line split into arguments as a Windows program's C runtime splits the string
/// `Process.Start(app, parameters)` gives it: blanks separate, `"` groups, `\` escapes a `"` only
/// (2n backslashes + `"` → n backslashes and a quote that toggles; 2n+1 → n and a literal `"`).
pub fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let (mut in_quotes, mut have) = (false, false);
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let n = chars[i..].iter().take_while(|&&c| c == '\\').count();
            if chars.get(i + n) == Some(&'"') {
                cur.extend(std::iter::repeat_n('\\', n / 2));
                if n % 2 == 1 {
                    cur.push('"');
                    i += n + 1;
                } else {
                    i += n;
                }
            } else {
                cur.extend(std::iter::repeat_n('\\', n));
                i += n;
            }
            have = true;
            continue;
        }
        match c {
            '"' => {
                if in_quotes && chars.get(i + 1) == Some(&'"') {
                    cur.push('"');
                    i += 1;
                } else {
                    in_quotes = !in_quotes;
                }
                have = true;
            }
            ' ' | '\t' if !in_quotes => {
                if have {
                    args.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
        i += 1;
    }
    if have {
        args.push(cur);
    }
    args
}

/// What a notification means for this agent.
pub fn react(settings: &Settings, kind: Kind, r: &Record) -> Vec<Action> {
    match kind {
        Kind::Newcallerid => {
            if !settings.trigger_callerid {
                return vec![];
            }
            vec![Action::Popup {
                number: r.calleridnum.clone().unwrap_or_default(),
                name: r.calleridname.clone().unwrap_or_default(),
                seconds: settings.callerid_timeout,
            }]
        }
        Kind::Newstate => vec![Action::LineState(state_label(r.state.as_deref()))],
        Kind::Hangup => vec![
            Action::LineState("Hangup".into()),
            Action::DialEnabled(true),
        ],
        Kind::Link => {
            let mut out = vec![
                Action::DialEnabled(false),
                Action::LineState("Connected".into()),
            ];
            let context = r.context.as_deref().unwrap_or("");
            out.push(match choose(&settings.contexts, context) {
                None => Action::NoLaunch(format!(
                    "no enabled context {context:?} and no enabled catch-all context"
                )),
                Some(c) => launch(c, r),
            });
            out
        }
    }
}

fn launch(c: &InboundContext, r: &Record) -> Action {
    let parameters = substitute(&c.parameters, r);
    if c.internal_browser || c.application.trim().is_empty() {
        if parameters.trim().is_empty() {
            return Action::NoLaunch(format!("{}: no application and no URL", c.display_name));
        }
        return Action::OpenUrl(parameters.trim().to_string());
    }
    Action::Launch {
        program: c.application.clone(),
        args: split_args(&parameters),
    }
}

/// The longest number accepted for dialling.
pub const MAX_NUMBER: usize = 40;

/// A number to dial from what an agent typed or a `tel:`, `callto:` or `sip:` link: separators
/// (blanks, `-`, `.`, `(`, `)`, `/`) removed; only digits, `+`, `*`, `#` accepted; at most
/// [`MAX_NUMBER`] characters.
pub fn dial_number(input: &str) -> Result<String, String> {
    let mut s = input.trim().to_string();
    for scheme in ["tel:", "callto:", "sip:", "sips:"] {
        if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
            s = s[scheme.len()..].trim_start_matches('/').to_string();
            s = s.split(['?', ';']).next().unwrap_or("").to_string();
            if scheme.starts_with("sip") {
                s = s.split('@').next().unwrap_or("").to_string();
            }
            s = percent_decode(&s);
            break;
        }
    }
    let number: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '.' | '(' | ')' | '/'))
        .collect();
    if number.is_empty() {
        return Err(format!("{input:?} has no number in it"));
    }
    if let Some(bad) = number
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | '*' | '#')))
    {
        return Err(format!(
            "{input:?}: {bad:?} cannot be dialled (digits, +, * and # only)"
        ));
    }
    if number.len() > MAX_NUMBER {
        return Err(format!("{input:?} is longer than {MAX_NUMBER} characters"));
    }
    Ok(number)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ORIG number|context|priority` for `number` in `context` (default: the first outbound one).
pub fn orig_line(s: &Settings, number: &str, context: Option<&str>) -> Result<String, String> {
    let n = dial_number(number)?;
    let c =
        match context {
            Some(c) => s.outbound.iter().find(|o| o.context == c).ok_or_else(|| {
                format!("{c:?} is not one of the outbound contexts in the settings")
            })?,
            None => s
                .outbound
                .first()
                .ok_or("the settings have no outbound context (<CTIOutboundContextes>)")?,
        };
    Ok(format!("ORIG {n}|{}|{}\n", c.context, c.priority))
}

/// A dial request as the dial channel and standard input carry it: `dial NUMBER [CONTEXT]`.
pub fn dial_request(number: &str, context: Option<&str>) -> String {
    match context {
        Some(c) => format!("dial {number} {c}\n"),
        None => format!("dial {number}\n"),
    }
}

/// `dial NUMBER [CONTEXT]` → the `ORIG` line, checked against the running client's own settings.
pub fn parse_dial_request(s: &Settings, line: &str) -> Result<String, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.chars().any(char::is_control) {
        return Err("a dial request is one line without control characters".into());
    }
    let mut w = line.split_whitespace();
    if w.next() != Some("dial") {
        return Err("unknown command (expected: dial NUMBER [CONTEXT])".into());
    }
    let number = w.next().ok_or("dial needs a number")?;
    let context = w.next();
    if w.next().is_some() {
        return Err("too many words (expected: dial NUMBER [CONTEXT])".into());
    }
    orig_line(s, number, context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            uniqueid: Some("1796112089.2".into()),
            channel: Some("PJSIP/201-00000000".into()),
            calleridnum: Some("0215552001".into()),
            calleridname: Some("Customer P".into()),
            context: Some("astctidemo".into()),
            appdata: Some("40401".into()),
            state: None,
        }
    }

    #[test]
    fn placeholders_as_the_original_plus_url_forms() {
        let r = record();
        assert_eq!(
            substitute(
                "{CALLERID} {CALLERNAME} {CONTEXT} {CALLDATA} {CHANNEL} {UNIQUEID} {callerid}",
                &r
            ),
            "0215552001 Customer P astctidemo 40401 PJSIP/201-00000000 1796112089.2 {callerid}"
        );
        assert_eq!(
            substitute("{CALLERNAME:url}&{CHANNEL:url}", &r),
            "Customer%20P&PJSIP%2F201-00000000"
        );
        assert_eq!(
            substitute("{CALLDATA}", &Record::default()),
            "",
            "missing = empty"
        );
    }

    #[test]
    fn arguments_split_as_the_windows_runtime_splits_them() {
        assert_eq!(
            split_args(r#"a b  "c d" e"f g"h"#),
            vec!["a", "b", "c d", "ef gh"]
        );
        assert_eq!(
            split_args(r#"\\a\\ "x\"y" "z\\" """#),
            vec![r"\\a\\", r#"x"y"#, r"z\", ""]
        );
        assert_eq!(
            split_args(r#"http://x/?a=1&b="2 3""#),
            vec!["http://x/?a=1&b=2 3"]
        );
        assert!(split_args("  ").is_empty());
    }

    #[test]
    fn the_context_is_the_first_exact_enabled_one_else_the_first_enabled_catch_all() {
        let c = |name: &str, enabled, catch_all| InboundContext {
            context: name.into(),
            enabled,
            catch_all,
            ..InboundContext::default()
        };
        let list = vec![
            c("astctidemo", false, false),
            c("other", true, true),
            c("astctidemo", true, false),
            c("x", true, true),
        ];
        assert_eq!(
            choose(&list, "astctidemo").map(|c| &c.context),
            Some(&"astctidemo".into())
        );
        assert!(choose(&list, "astctidemo").unwrap().enabled);
        assert_eq!(
            choose(&list, "nope").map(|c| c.context.as_str()),
            Some("other")
        );
        assert_eq!(
            choose(&list, "Astctidemo").map(|c| c.context.as_str()),
            Some("other"),
            "case-sensitive"
        );
        assert!(choose(&[c("a", true, false)], "b").is_none());
    }

    #[test]
    fn reactions_follow_the_original() {
        let mut s = Settings::default();
        assert!(
            react(&s, Kind::Newcallerid, &record()).is_empty(),
            "TriggerCallerId off"
        );
        s.trigger_callerid = true;
        assert_eq!(
            react(&s, Kind::Newcallerid, &record()),
            vec![Action::Popup {
                number: "0215552001".into(),
                name: "Customer P".into(),
                seconds: 3
            }]
        );
        let mut r = record();
        r.state = Some("Up".into());
        assert_eq!(
            react(&s, Kind::Newstate, &r),
            vec![Action::LineState("Off Hook".into())]
        );
        assert!(matches!(
            react(&s, Kind::Link, &record()).last(),
            Some(Action::NoLaunch(_))
        ));
        s.contexts.push(InboundContext {
            context: "astctidemo".into(),
            application: "/usr/bin/stand-in".into(),
            parameters: "--id {CALLERID} \"{CALLERNAME}\" {CALLDATA}".into(),
            enabled: true,
            display_name: "Context astctidemo".into(),
            ..InboundContext::default()
        });
        assert_eq!(
            react(&s, Kind::Link, &record()).last(),
            Some(&Action::Launch {
                program: "/usr/bin/stand-in".into(),
                args: vec![
                    "--id".into(),
                    "0215552001".into(),
                    "Customer P".into(),
                    "40401".into()
                ]
            })
        );
        assert_eq!(
            react(&s, Kind::Hangup, &record()).last(),
            Some(&Action::DialEnabled(true))
        );
    }

    #[test]
    fn dial_requests_become_orig_lines_only_for_configured_contexts() {
        let mut s = Settings::default();
        s.outbound.push(crate::client::settings::OutboundContext {
            context: "astctidemo".into(),
            priority: 1,
        });
        s.outbound.push(crate::client::settings::OutboundContext {
            context: "internal".into(),
            priority: 3,
        });
        assert_eq!(
            parse_dial_request(&s, &dial_request("tel:+39-02-555", None)),
            Ok("ORIG +3902555|astctidemo|1\n".into())
        );
        assert_eq!(
            parse_dial_request(&s, &dial_request("202", Some("internal"))),
            Ok("ORIG 202|internal|3\n".into())
        );
        assert_eq!(
            parse_dial_request(&s, "dial 202\r\n"),
            Ok("ORIG 202|astctidemo|1\n".into())
        );
        for bad in [
            "dial 202 from-internal\n",
            "ORIG 202|astctidemo|1\n",
            "dial 02155\rAction: Command\n",
            "dial\n",
            "dial 202 internal extra\n",
            "dial 20x2\n",
        ] {
            assert!(parse_dial_request(&s, bad).is_err(), "{bad:?}");
        }
        assert!(orig_line(&Settings::default(), "202", None)
            .unwrap_err()
            .contains("no outbound context"));
    }

    #[test]
    fn numbers_are_normalised_and_validated() {
        assert_eq!(dial_number(" 021 555-20.01 ").unwrap(), "0215552001");
        assert_eq!(dial_number("tel:+39-02-555-2001").unwrap(), "+39025552001");
        assert_eq!(dial_number("callto://0215552001").unwrap(), "0215552001");
        assert_eq!(
            dial_number("sip:202@pbx.example;transport=udp").unwrap(),
            "202"
        );
        assert_eq!(dial_number("TEL:%2B3902").unwrap(), "+3902");
        assert_eq!(dial_number("*72#").unwrap(), "*72#");
        for bad in [
            "",
            "abc",
            "202\r\nAction: Command",
            "1".repeat(41).as_str(),
            "tel:",
        ] {
            assert!(dial_number(bad).is_err(), "{bad:?}");
        }
    }
}
