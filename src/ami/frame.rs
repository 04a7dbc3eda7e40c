//! AMI frame codec: the byte stream from Asterisk → banner and key/value frames; actions → bytes.
//!
//! Pure core, run by the `ami-link` thread (and by `--replay` and the tests on recorded streams).
//! [`Decoder::push`] takes bytes as they come off the socket, [`Decoder::next_item`] yields what is
//! complete and `None` when it needs more. It handles: the banner line (`Asterisk Call Manager/x.y`, no
//! blank line after it); LF or CRLF; frames ended by a blank line; stray blank lines; keys kept in order
//! with their case, looked up case-insensitively; repeated keys (`ChanVariable`, `Output`, `Variable`);
//! values containing `:` (split at the first `:`, one optional space dropped); `Response: Follows`
//! bodies ending in `--END COMMAND--` (Asterisk ≤ 13); non-UTF-8 bytes (decoded as Latin-1, losslessly).
//!
//! Bounds: a line longer than [`Limits::max_line`] or a frame larger than [`Limits::max_frame`] is
//! discarded up to the next blank line and reported as [`Item::Discarded`], so a broken or hostile peer
//! cannot grow memory beyond about `max_line + max_frame` plus one socket read.

use std::fmt;

/// One AMI message: headers in arrival order, plus body lines (command output, lines without `:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub body: Vec<String>,
}

impl Frame {
    /// A frame with these headers, in order (tests and tools build frames this way).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Frame {
        Frame {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// Approximate bytes of memory the frame holds: what queue bounds count.
    pub fn cost(&self) -> usize {
        const PER_STRING: usize = 24;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2 * PER_STRING)
            .sum();
        let body: usize = self.body.iter().map(|l| l.len() + PER_STRING).sum();
        headers + body + 2 * PER_STRING
    }

    /// The first value of `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn event(&self) -> Option<&str> {
        self.get("Event").map(str::trim)
    }

    pub fn response(&self) -> Option<&str> {
        self.get("Response").map(str::trim)
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID").map(str::trim)
    }

    /// The frame as AMI text (CRLF), for logs.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        for line in &self.body {
            s.push_str(line);
            s.push_str("\r\n");
        }
        s
    }
}

/// Why bytes were thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    LineTooLong,
    FrameTooLarge,
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Discard::LineTooLong => "line too long",
            Discard::FrameTooLarge => "frame too large",
        })
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `Asterisk Call Manager/<version>`: the version part.
    Banner(String),
    Frame(Frame),
    /// A frame was dropped up to the next blank line.
    Discarded(Discard),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, without its line end.
    pub max_line: usize,
    /// Largest frame: the sum of its line lengths.
    pub max_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_frame: 4 * 1024 * 1024,
        }
    }
}

const BANNER: &str = "Asterisk Call Manager/";
const END_COMMAND: &str = "--END COMMAND--";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Headers,
    /// Inside a `Response: Follows` body.
    Follows,
    /// Throwing lines away until a blank line.
    Skipping,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub frames: u64,
    pub discarded: u64,
}

#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// Bytes after `start` already searched for LF.
    scanned: usize,
    /// Dropping an over-long line until its LF.
    in_long_line: bool,
    state: State,
    frame: Frame,
    frame_size: usize,
    limits: Limits,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Decodes a line's bytes: UTF-8 when valid, else Latin-1 (every byte kept as one char).
fn decode_line(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            in_long_line: false,
            state: State::Headers,
            frame: Frame::default(),
            frame_size: 0,
            limits,
            stats: DecoderStats::default(),
        }
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held (buffered input plus the frame under construction), for tests of the bounds.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.frame_size
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete item, or `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Option<Item> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(i) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = pending.len();
                if pending.len() > self.limits.max_line {
                    // Keep nothing of it; drop the rest when its LF comes.
                    self.start = self.buf.len();
                    self.scanned = 0;
                    let first = !self.in_long_line;
                    self.in_long_line = true;
                    if first {
                        if let Some(item) = self.discard(Discard::LineTooLong) {
                            return Some(item);
                        }
                    }
                }
                return None;
            };
            let end = self.scanned + i;
            let mut line = &pending[..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let too_long = line.len() > self.limits.max_line;
            let was_long = std::mem::take(&mut self.in_long_line);
            let text = if too_long || was_long {
                None
            } else {
                Some(decode_line(line))
            };
            self.start += end + 1;
            self.scanned = 0;
            match text {
                None if was_long => continue,
                None => {
                    if let Some(item) = self.discard(Discard::LineTooLong) {
                        return Some(item);
                    }
                }
                Some(text) => {
                    if let Some(item) = self.line(text) {
                        return Some(item);
                    }
                }
            }
        }
    }

    /// Drops the frame under construction and skips to the next blank line.
    fn discard(&mut self, why: Discard) -> Option<Item> {
        self.frame = Frame::default();
        self.frame_size = 0;
        if self.state == State::Skipping {
            return None;
        }
        self.state = State::Skipping;
        self.stats.discarded += 1;
        Some(Item::Discarded(why))
    }

    fn finish(&mut self) -> Option<Item> {
        self.state = State::Headers;
        self.frame_size = 0;
        let frame = std::mem::take(&mut self.frame);
        if frame.headers.is_empty() && frame.body.is_empty() {
            return None;
        }
        self.stats.frames += 1;
        Some(Item::Frame(frame))
    }

    fn line(&mut self, text: String) -> Option<Item> {
        if self.state == State::Skipping {
            if text.is_empty() {
                self.state = State::Headers;
            }
            return None;
        }
        if text.is_empty() && self.state == State::Headers {
            return self.finish();
        }
        if self.frame.headers.is_empty() && self.frame.body.is_empty() {
            if let Some(version) = text.strip_prefix(BANNER) {
                return Some(Item::Banner(version.trim().to_string()));
            }
        }
        self.frame_size += text.len() + 2;
        if self.frame_size > self.limits.max_frame {
            return self.discard(Discard::FrameTooLarge);
        }
        if self.state == State::Follows {
            self.follows_line(text);
            return None;
        }
        match text.find(':') {
            Some(colon) => {
                // The line's own string becomes the value (its few key bytes moved out of the way);
                // only the short key is a new string.
                let mut value = text;
                let skip = usize::from(value[colon + 1..].starts_with(' '));
                let key = value[..colon].to_string();
                value.drain(..colon + 1 + skip);
                if key.eq_ignore_ascii_case("Response") && value.trim() == "Follows" {
                    self.state = State::Follows;
                }
                self.frame.headers.push((key, value));
            }
            None => self.frame.body.push(text),
        }
        None
    }

    fn follows_line(&mut self, text: String) {
        if let Some(before) = text.trim_end().strip_suffix(END_COMMAND) {
            if !before.is_empty() {
                self.frame.body.push(before.to_string());
            }
            // The blank line that follows ends the frame.
            self.state = State::Headers;
            return;
        }
        if self.frame.body.is_empty() {
            if let Some((key, value)) = text.split_once(':') {
                if key.eq_ignore_ascii_case("ActionID") || key.eq_ignore_ascii_case("Privilege") {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    self.frame
                        .headers
                        .push((key.to_string(), value.to_string()));
                    return;
                }
            }
        }
        self.frame.body.push(text);
    }
}

/// A value that cannot go into an AMI action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encodes an action: `Action`, `ActionID`, then `headers` in order, CRLF line ends, blank line.
/// CR, LF and NUL are refused anywhere (header injection).
pub fn encode_action(
    action: &str,
    action_id: &str,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>, EncodeError> {
    let all = [("Action", action), ("ActionID", action_id)];
    let mut out = Vec::with_capacity(64 + headers.len() * 32);
    for (k, v) in all.iter().chain(headers.iter()) {
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if k.is_empty() || bad(k) || k.contains(':') || bad(v) {
            return Err(EncodeError(format!(
                "refusing to send {action}: header {k:?} has a control character"
            )));
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests;
