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

/// The longest value (in characters) a placeholder is replaced by; a longer one is cut there. Caller
/// IDs are a few dozen characters and calldata what a caller keys: this bounds what a hostile PBX or
/// caller can make the client build and launch.
pub const MAX_VALUE: usize = 1024;

/// How a placeholder's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As it is.
    Raw,
    /// Percent-encoded (everything but `A-Z a-z 0-9 - _ . ~`).
    Url,
}

/// `template` with each placeholder replaced, in one pass over the template: a value is written once
/// and never scanned again (a caller named `{CALLDATA}` stays `{CALLDATA}`). The original's
/// placeholders, case-sensitive: `{CALLERID}` `{CALLERNAME}` `{CONTEXT}` `{CALLDATA}` `{CHANNEL}`
/// `{UNIQUEID}` (a missing field is empty), written in the `plain` form; `{NAME:url}` always
/// percent-encoded, `{NAME:raw}` always as it is. Values longer than [`MAX_VALUE`] are cut.
pub fn expand(template: &str, r: &Record, plain: Form) -> String {
    let f = |v: &Option<String>| -> String {
        v.as_deref()
            .unwrap_or_default()
            .chars()
            .take(MAX_VALUE)
            .collect()
    };
    let fields = [
        ("CALLERID", f(&r.calleridnum)),
        ("CALLERNAME", f(&r.calleridname)),
        ("CONTEXT", f(&r.context)),
        ("CALLDATA", f(&r.appdata)),
        ("CHANNEL", f(&r.channel)),
        ("UNIQUEID", f(&r.uniqueid)),
    ];
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    // `{` is one byte: every index below is on a character boundary.
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let hit = fields.iter().find_map(|(name, value)| {
            let body = tail[1..].strip_prefix(name)?;
            [("}", plain), (":url}", Form::Url), (":raw}", Form::Raw)]
                .into_iter()
                .find(|(end, _)| body.starts_with(end))
                .map(|(end, form)| (1 + name.len() + end.len(), value, form))
        });
        match hit {
            Some((len, value, Form::Raw)) => {
                out.push_str(value);
                rest = &tail[len..];
            }
            Some((len, value, Form::Url)) => {
                out.push_str(&percent_encode(value));
                rest = &tail[len..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`expand`] with plain placeholders as they are (what a program's arguments get).
pub fn substitute(template: &str, r: &Record) -> String {
    expand(template, r, Form::Raw)
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
            // The server sends no Newstate for Ringing (the popup covers it): the line rings now.
            let mut out = vec![Action::LineState("Ringing".into())];
            if settings.trigger_callerid {
                out.push(Action::Popup {
                    number: r.calleridnum.clone().unwrap_or_default(),
                    name: r.calleridname.clone().unwrap_or_default(),
                    seconds: settings.callerid_timeout,
                });
            }
            out
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

/// The launch of context `c` for `r`. Nothing a caller or the PBX sends can add an argument or a URL
/// parameter: a program's `Parameters` are split into arguments first (as the original's Windows
/// runtime splits them), then each argument's placeholders are replaced inside it — so a
/// placeholder-bearing word is exactly one argument, whatever the value holds (blanks, quotes,
/// dashes; an empty value is an empty argument). A URL's placeholders are percent-encoded unless
/// written `{NAME:raw}`.
fn launch(c: &InboundContext, r: &Record) -> Action {
    if c.internal_browser || c.application.trim().is_empty() {
        let url = expand(c.parameters.trim(), r, Form::Url);
        if url.trim().is_empty() {
            return Action::NoLaunch(format!("{}: no application and no URL", c.display_name));
        }
        return Action::OpenUrl(url.trim().to_string());
    }
    Action::Launch {
        program: c.application.clone(),
        args: split_args(&c.parameters)
            .iter()
            .map(|a| substitute(a, r))
            .collect(),
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
        // Compared as bytes: the input is not sliced where a character may not begin.
        let b = s.as_bytes();
        if b.len() >= scheme.len() && b[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes()) {
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

/// `%XX` → the byte XX, on bytes (a `%` before a multi-byte character is kept as it is); the result
/// decoded lossily.
pub fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
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
    fn a_caller_cannot_add_arguments_url_parameters_or_placeholders() {
        let hostile = Record {
            calleridnum: Some("02 15 --x".into()),
            calleridname: Some(r#"x" --evil "y"#.into()),
            appdata: Some("1&admin=1#{CALLERNAME}".into()),
            context: Some("astctidemo".into()),
            ..record()
        };
        let program = InboundContext {
            context: "astctidemo".into(),
            application: "/usr/bin/crm".into(),
            parameters: r#"--id {CALLERID} "{CALLERNAME}" --data={CALLDATA} {CONTEXT}"#.into(),
            enabled: true,
            ..InboundContext::default()
        };
        // One argument per placeholder-bearing word, the values whole, never expanded again.
        assert_eq!(
            launch(&program, &hostile),
            Action::Launch {
                program: "/usr/bin/crm".into(),
                args: vec![
                    "--id".into(),
                    "02 15 --x".into(),
                    r#"x" --evil "y"#.into(),
                    "--data=1&admin=1#{CALLERNAME}".into(),
                    "astctidemo".into(),
                ]
            }
        );
        // An empty value is an empty argument: the program's arguments never shift.
        let empty = Record {
            appdata: None,
            ..hostile.clone()
        };
        let Action::Launch { args, .. } = launch(
            &InboundContext {
                parameters: "{CALLDATA} {CALLERID}".into(),
                ..program.clone()
            },
            &empty,
        ) else {
            panic!()
        };
        assert_eq!(args, vec!["".to_string(), "02 15 --x".into()]);
        // A URL: every value percent-encoded unless the template says {NAME:raw}.
        let url = InboundContext {
            application: String::new(),
            parameters: "http://crm/?n={CALLERID}&name={CALLERNAME}&d={CALLDATA}&r={CONTEXT:raw}"
                .into(),
            ..program.clone()
        };
        assert_eq!(
            launch(&url, &hostile),
            Action::OpenUrl(
                "http://crm/?n=02%2015%20--x&name=x%22%20--evil%20%22y\
                 &d=1%26admin%3D1%23%7BCALLERNAME%7D&r=astctidemo"
                    .into()
            )
        );
        // Values are bounded: 4 KB fields give MAX_VALUE characters each, not a huge argument.
        let big = Record {
            calleridname: Some("é".repeat(4096)),
            appdata: Some("{CALLERNAME}".repeat(400)),
            ..record()
        };
        let Action::Launch { args, .. } = launch(
            &InboundContext {
                parameters: "{CALLERNAME}{CALLERNAME} {CALLDATA}".into(),
                ..program
            },
            &big,
        ) else {
            panic!()
        };
        assert_eq!(args[0].chars().count(), 2 * MAX_VALUE);
        assert_eq!(args[1].chars().count(), MAX_VALUE);
        assert!(args[1].starts_with("{CALLERNAME}{CALLERNAME}"));
    }

    #[test]
    fn placeholders_are_found_in_one_pass_and_unknown_braces_stay() {
        let r = record();
        assert_eq!(substitute("{{CALLERID}}", &r), "{0215552001}");
        assert_eq!(substitute("{CALLERID", &r), "{CALLERID");
        assert_eq!(substitute("{CALLERID:xyz}", &r), "{CALLERID:xyz}");
        assert_eq!(substitute("é{CONTEXT}ü{", &r), "éastctidemoü{");
        assert_eq!(
            expand(
                "{CALLERNAME}|{CALLERNAME:raw}|{CALLERNAME:url}",
                &r,
                Form::Url
            ),
            "Customer%20P|Customer P|Customer%20P"
        );
    }

    #[test]
    fn links_to_dial_are_decoded_without_panicking_on_any_text() {
        assert_eq!(dial_number("tel:%2B39%2002"), Ok("+3902".into()));
        for bad in [
            "tel:%1é", "tel:%", "tel:%é1", "aéé", "ééé", "sip:é@x", "%", "tel:%zz",
        ] {
            let _ = dial_number(bad);
        }
        assert_eq!(percent_decode("%1é%"), "%1é%");
        assert_eq!(percent_decode("a%41%4"), "aA%4");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        // Every short string over an alphabet of ASCII, %, hex digits and multi-byte characters.
        let alphabet = ['%', '1', 'a', 'F', 'é', '€', ':', 't', 'e', 'l', '😀'];
        let mut n = 0u64;
        for len in 0..=5u32 {
            for mut k in 0..(alphabet.len() as u64).pow(len) {
                let mut s = String::from("tel:");
                for _ in 0..len {
                    s.push(alphabet[(k % alphabet.len() as u64) as usize]);
                    k /= alphabet.len() as u64;
                }
                let _ = dial_number(&s);
                let _ = dial_number(&s[4..]);
                n += 1;
            }
        }
        assert!(n > 100_000);
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
        assert_eq!(
            react(&s, Kind::Newcallerid, &record()),
            vec![Action::LineState("Ringing".into())],
            "TriggerCallerId off: no popup, but the line rings"
        );
        s.trigger_callerid = true;
        assert_eq!(
            react(&s, Kind::Newcallerid, &record()),
            vec![
                Action::LineState("Ringing".into()),
                Action::Popup {
                    number: "0215552001".into(),
                    name: "Customer P".into(),
                    seconds: 3
                }
            ]
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
