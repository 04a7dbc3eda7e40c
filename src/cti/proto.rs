//! The client line protocol (docs/ORIGINAL.md §3): framing of what clients send, parsing of commands, and the exact
//! bytes of every server reply.
//!
//! Pure core, used by each `client-N` reader thread. Framing fixes docs/ORIGINAL.md bug 13: lines are
//! buffered across reads (a command split over two TCP segments is one command), one trailing CR is
//! tolerated, and a line longer than [`MAX_LINE`] is an error (the worker disconnects). Bytes ≥ 0x80
//! become `?`, as the original's .NET ASCII decoding did.

/// The longest command line accepted, in bytes, without its LF.
pub const MAX_LINE: usize = 4096;

/// First bytes on every connection.
pub const WELCOME: &[u8] = b"100 CTISERVER WELCOME\n";
pub const OK: &[u8] = b"100 OK\n";
pub const ERROR: &[u8] = b"101 ERROR\n";
pub const KO: &[u8] = b"101 KO\n";
pub const LOGGED_IN: &[u8] = b"102 OK\n";
pub const BYE: &[u8] = b"900 BYE\n";

/// A client sent a line longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    pub limit: usize,
}

/// Accumulates bytes and yields complete LF-terminated lines.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for LF.
    scanned: usize,
    limit: usize,
}

impl LineBuffer {
    pub fn new(limit: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            scanned: 0,
            limit,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (LF and one trailing CR removed), `Ok(None)` if more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<String>, LineTooLong> {
        let too_long = LineTooLong { limit: self.limit };
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.limit {
                    return Err(too_long);
                }
                Ok(None)
            }
            Some(i) => {
                let end = self.scanned + i;
                let mut line = &self.buf[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > self.limit {
                    return Err(too_long);
                }
                let text: String = line
                    .iter()
                    .map(|&b| if b < 0x80 { b as char } else { '?' })
                    .collect();
                self.buf.drain(..=end);
                self.scanned = 0;
                Ok(Some(text))
            }
        }
    }
}

/// A parsed command line. Parameters are everything after the first space, untrimmed (as the original).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Noop,
    Helo,
    Quit,
    Orig(String),
    /// `EXT`: this login's registered EXT (new; see [`ext_line`]).
    Ext,
    /// Anything else: the original silently ignores it.
    Unknown(String),
}

/// Parses one line (already without LF/CR). The command word is case-insensitive.
pub fn parse_command(line: &str) -> Command {
    let (word, params) = match line.split_once(' ') {
        Some((w, p)) => (w, p.to_string()),
        None => (line, String::new()),
    };
    match word.trim().to_ascii_uppercase().as_str() {
        "USER" => Command::User(params),
        "PASS" => Command::Pass(params),
        "NOOP" => Command::Noop,
        "HELO" => Command::Helo,
        "QUIT" => Command::Quit,
        "ORIG" => Command::Orig(params),
        "EXT" => Command::Ext,
        _ => Command::Unknown(word.to_string()),
    }
}

/// The reply to `EXT`: `100 EXT <ext>\n`, the EXT from the `cti` table with any control
/// character (a line break above all) replaced by `?`, so that it stays one line.
pub fn ext_line(ext: &str) -> Vec<u8> {
    let shown: String = ext
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("100 EXT {shown}\n").into_bytes()
}

pub use crate::ami::OrigRequest;

/// The longest exten, context or priority accepted from ORIG.
pub const MAX_ORIG_FIELD: usize = 80;

/// Why an ORIG gets no AMI action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrigError {
    /// Empty parameters or fewer than three `|` fields: the original answers `101 ERROR`.
    Malformed,
    /// Well-formed but unsafe or invalid: answered `100 OK` (the original client logs out on any 101),
    /// logged, and never sent to Asterisk.
    Refused(String),
}

/// Parses `exten|context|priority` (extra fields ignored; empty context → `default`, empty
/// priority → `1`) and rejects values that could inject AMI headers.
pub fn parse_orig(params: &str) -> Result<OrigRequest, OrigError> {
    if params.is_empty() {
        return Err(OrigError::Malformed);
    }
    let fields: Vec<&str> = params.split('|').collect();
    if fields.len() < 3 {
        return Err(OrigError::Malformed);
    }
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let req = OrigRequest {
        exten: fields[0].to_string(),
        context: or(fields[1], "default"),
        priority: or(fields[2], "1"),
    };
    for (name, value) in [
        ("exten", &req.exten),
        ("context", &req.context),
        ("priority", &req.priority),
    ] {
        if value.trim().is_empty() {
            return Err(OrigError::Refused(format!("empty {name}")));
        }
        if value.len() > MAX_ORIG_FIELD {
            return Err(OrigError::Refused(format!(
                "{name} longer than {MAX_ORIG_FIELD} bytes"
            )));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(OrigError::Refused(format!("control character in {name}")));
        }
        // What a dialplan extension, context or priority can be, and nothing that the dialplan
        // reading `${EXTEN}` would take for syntax: `&` (another channel for Dial), `,` (another
        // argument), `(` `$` `{` (functions and variables), `@` `/` `:` (another host, technology
        // or URI), blanks, quotes.
        if let Some(bad) = value.chars().find(|&c| !orig_char_allowed(name, c)) {
            return Err(OrigError::Refused(format!(
                "{name} contains {}: {}",
                crate::logging::quote(&bad.to_string()),
                match name {
                    "exten" => "only digits, letters and * # + - . are dialled",
                    "context" => "a context is letters, digits and - _ .",
                    _ => "a priority is a number or a label of letters, digits and - _",
                }
            )));
        }
    }
    Ok(req)
}

/// The characters ORIG's `exten`, `context` and `priority` may hold (ASCII only).
fn orig_char_allowed(field: &str, c: char) -> bool {
    c.is_ascii_alphanumeric()
        || match field {
            "exten" => matches!(c, '*' | '#' | '+' | '-' | '.'),
            "context" => matches!(c, '-' | '_' | '.'),
            _ => matches!(c, '-' | '_'),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(buf: &mut LineBuffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = buf.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn lines_are_buffered_across_pushes_and_cr_is_dropped() {
        let mut b = LineBuffer::new(MAX_LINE);
        b.push(b"US");
        assert!(lines(&mut b).is_empty());
        b.push(b"ER test\r\nPASS x\nNO");
        assert_eq!(lines(&mut b), vec!["USER test", "PASS x"]);
        b.push(b"OP\n\n");
        assert_eq!(lines(&mut b), vec!["NOOP", ""]);
    }

    #[test]
    fn non_ascii_bytes_become_question_marks() {
        let mut b = LineBuffer::new(MAX_LINE);
        b.push("USER jos\u{e9}\n".as_bytes());
        assert_eq!(lines(&mut b), vec!["USER jos??"]);
    }

    #[test]
    fn limit_is_exact() {
        let mut b = LineBuffer::new(8);
        b.push(b"12345678\n");
        assert_eq!(lines(&mut b), vec!["12345678"]);
        b.push(b"12345678\r\n");
        assert_eq!(lines(&mut b), vec!["12345678"], "the CR does not count");
        b.push(b"12345678");
        assert_eq!(b.next_line(), Ok(None));
        b.push(b"9");
        assert_eq!(b.next_line(), Err(LineTooLong { limit: 8 }));
        let mut b = LineBuffer::new(8);
        b.push(b"123456789\n");
        assert_eq!(b.next_line(), Err(LineTooLong { limit: 8 }));
    }

    #[test]
    fn commands_parse_like_the_original() {
        assert_eq!(parse_command("USER test"), Command::User("test".into()));
        assert_eq!(parse_command("user  a b "), Command::User(" a b ".into()));
        assert_eq!(parse_command("USER"), Command::User(String::new()));
        assert_eq!(parse_command("PASS abc"), Command::Pass("abc".into()));
        assert_eq!(parse_command("noop"), Command::Noop);
        assert_eq!(parse_command("NOOP extra"), Command::Noop);
        assert_eq!(parse_command("HELO"), Command::Helo);
        assert_eq!(parse_command("QUIT"), Command::Quit);
        assert_eq!(parse_command("ORIG 1|2|3"), Command::Orig("1|2|3".into()));
        assert_eq!(parse_command("LIST"), Command::Unknown("LIST".into()));
        assert_eq!(parse_command(""), Command::Unknown(String::new()));
    }

    #[test]
    fn orig_fields_and_defaults() {
        assert_eq!(parse_orig(""), Err(OrigError::Malformed));
        assert_eq!(parse_orig("202|ctx"), Err(OrigError::Malformed));
        assert_eq!(
            parse_orig("202||"),
            Ok(OrigRequest {
                exten: "202".into(),
                context: "default".into(),
                priority: "1".into()
            })
        );
        assert_eq!(
            parse_orig("202|astctidemo|2|extra"),
            Ok(OrigRequest {
                exten: "202".into(),
                context: "astctidemo".into(),
                priority: "2".into()
            })
        );
    }

    #[test]
    fn orig_injection_attempts_are_refused() {
        for bad in [
            "202\r\nAction: Command|ctx|1",
            "202|ctx\rEvil: x|1",
            "202|ctx|1\0",
            "|ctx|1",
            " |ctx|1",
        ] {
            assert!(
                matches!(parse_orig(bad), Err(OrigError::Refused(_))),
                "{bad:?}"
            );
        }
        let long = "9".repeat(MAX_ORIG_FIELD + 1);
        assert!(matches!(
            parse_orig(&format!("{long}|ctx|1")),
            Err(OrigError::Refused(_))
        ));
        let max = "9".repeat(MAX_ORIG_FIELD);
        assert!(parse_orig(&format!("{max}|ctx|1")).is_ok());
    }

    /// Dialplan syntax in a number (issue 22): another channel for Dial, more Dial options, a
    /// function, a variable, another host, blanks — refused, saying which character and why.
    #[test]
    fn orig_refuses_dialplan_syntax_and_names_the_character() {
        for (bad, why) in [
            ("202&SIP/trunk/0090|astctidemo|1", "exten contains \"&\""),
            ("202,,tTL(1)|astctidemo|1", "exten contains \",\""),
            ("${SHELL(id)}|astctidemo|1", "exten contains \"$\""),
            ("{EXTEN}|astctidemo|1", "exten contains \"{\""),
            ("202@evil.example|astctidemo|1", "exten contains \"@\""),
            ("sip:202|astctidemo|1", "exten contains \":\""),
            ("02 15|astctidemo|1", "exten contains \" \""),
            ("202|from-trunk,s|1", "context contains \",\""),
            ("202|ctx(x)|1", "context contains \"(\""),
            ("202|astctidemo|1,2", "priority contains \",\""),
            ("202|astctidemo|n+1", "priority contains \"+\""),
            ("20\u{e9}|astctidemo|1", "exten contains \"\u{e9}\""),
        ] {
            match parse_orig(bad) {
                Err(OrigError::Refused(r)) => assert!(r.starts_with(why), "{bad:?}: {r}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for good in [
            "0215552001|astctidemo|1",
            "+390215552001|from-internal|1",
            "*72|astcti_demo.v2|start",
            "#31#555-1234|a-b|my_label",
            "john.doe|default|1",
        ] {
            assert!(parse_orig(good).is_ok(), "{good:?}");
        }
    }
}
