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

use std::borrow::Cow;
use std::fmt;

/// One header: its key is `text[start..colon]`, its value `text[colon..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    colon: u32,
    end: u32,
}

/// One AMI message: headers in arrival order, plus body lines (command output, lines without `:`).
///
/// Stored as one string holding every key, value and body line, and the offsets of each in it: a
/// decoded frame is two heap allocations (three with a body), whatever its number of headers.
#[derive(Clone, Default)]
pub struct Frame {
    text: String,
    headers: Vec<Span>,
    body: Vec<(u32, u32)>,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.headers().eq(other.headers()) && self.body().eq(other.body())
    }
}

impl Eq for Frame {}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body().collect::<Vec<_>>())
            .finish()
    }
}

fn offset(n: usize) -> u32 {
    // Frames are bounded by `Limits::max_frame` (at most a few MiB); a frame built by hand past
    // 4 GiB is a programming error.
    u32::try_from(n).expect("an AMI frame larger than 4 GiB")
}

impl Frame {
    pub fn new() -> Frame {
        Frame::default()
    }

    /// A frame with these headers, in order (tests and tools build frames this way).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new();
        for (k, v) in pairs {
            f.push_header(k, v);
        }
        f
    }

    pub fn push_header(&mut self, key: &str, value: &str) {
        let start = offset(self.text.len());
        self.text.push_str(key);
        let colon = offset(self.text.len());
        self.text.push_str(value);
        let end = offset(self.text.len());
        self.headers.push(Span { start, colon, end });
    }

    pub fn push_body(&mut self, line: &str) {
        let start = offset(self.text.len());
        self.text.push_str(line);
        self.body.push((start, offset(self.text.len())));
    }

    fn key(&self, s: &Span) -> &str {
        &self.text[s.start as usize..s.colon as usize]
    }

    fn value(&self, s: &Span) -> &str {
        &self.text[s.colon as usize..s.end as usize]
    }

    /// The headers as (key, value), in arrival order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|s| (self.key(s), self.value(s)))
    }

    /// The body lines, in order.
    pub fn body(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.body
            .iter()
            .map(|&(a, b)| &self.text[a as usize..b as usize])
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.body.is_empty()
    }

    /// A copy with the value of every header for which `replace` gives one replaced.
    pub fn map_values(&self, replace: impl Fn(&str, &str) -> Option<String>) -> Frame {
        let mut f = Frame::new();
        for (k, v) in self.headers() {
            match replace(k, v) {
                Some(new) => f.push_header(k, &new),
                None => f.push_header(k, v),
            }
        }
        for line in self.body() {
            f.push_body(line);
        }
        f
    }

    /// A copy without its `i`-th header.
    pub fn without_header(&self, i: usize) -> Frame {
        let mut f = Frame::new();
        for (_, (k, v)) in self.headers().enumerate().filter(|(j, _)| *j != i) {
            f.push_header(k, v);
        }
        for line in self.body() {
            f.push_body(line);
        }
        f
    }

    /// Approximate bytes of memory the frame holds: what queue bounds count.
    pub fn cost(&self) -> usize {
        const PER_VEC: usize = 24;
        self.text.capacity()
            + self.headers.capacity() * std::mem::size_of::<Span>()
            + self.body.capacity() * 8
            + 3 * PER_VEC
    }

    /// The first value of `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|s| self.key_is(s, key))
            .map(|s| self.value(s))
    }

    /// Whether the key of `s` is `key`, ASCII case-insensitively (bytes compared, no string built).
    fn key_is(&self, s: &Span, key: &str) -> bool {
        (s.colon - s.start) as usize == key.len()
            && self.text.as_bytes()[s.start as usize..s.colon as usize]
                .eq_ignore_ascii_case(key.as_bytes())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |s| self.key_is(s, key))
            .map(|s| self.value(s))
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
        let mut s = String::with_capacity(self.text.len() + 4 * self.headers.len());
        for (k, v) in self.headers() {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        for line in self.body() {
            s.push_str(line);
            s.push_str("\r\n");
        }
        s
    }
}

/// A frame as the decoder builds it: its lines' raw bytes, checked for UTF-8 once, when complete.
#[derive(Debug, Default)]
struct RawFrame {
    bytes: Vec<u8>,
    headers: Vec<Span>,
    body: Vec<(u32, u32)>,
}

impl RawFrame {
    fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.body.is_empty()
    }

    fn push_header(&mut self, key: &[u8], value: &[u8]) {
        let start = offset(self.bytes.len());
        self.bytes.extend_from_slice(key);
        let colon = offset(self.bytes.len());
        self.bytes.extend_from_slice(value);
        let end = offset(self.bytes.len());
        self.headers.push(Span { start, colon, end });
    }

    fn push_body(&mut self, line: &[u8]) {
        let start = offset(self.bytes.len());
        self.bytes.extend_from_slice(line);
        self.body.push((start, offset(self.bytes.len())));
    }

    /// The finished frame, in exact-size allocations (two, three with a body). Text that is not
    /// UTF-8 is decoded line by line: a line that is valid UTF-8 stays so, any other line is
    /// Latin-1 (every byte one char), as if each line had been decoded on its own.
    fn build(&self) -> Frame {
        if let Ok(text) = std::str::from_utf8(&self.bytes) {
            return Frame {
                text: text.to_owned(),
                headers: self.headers.as_slice().to_vec(),
                body: self.body.as_slice().to_vec(),
            };
        }
        let b = &self.bytes;
        let mut f = Frame::new();
        for s in &self.headers {
            let (key, value) = (
                &b[s.start as usize..s.colon as usize],
                &b[s.colon as usize..s.end as usize],
            );
            // ':' and ' ' are ASCII, so the line is UTF-8 exactly when both halves are.
            match (std::str::from_utf8(key), std::str::from_utf8(value)) {
                (Ok(k), Ok(v)) => f.push_header(k, v),
                _ => f.push_header(&latin1(key), &latin1(value)),
            }
        }
        for &(a, e) in &self.body {
            f.push_body(&decode_line(&b[a as usize..e as usize]));
        }
        f
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.headers.clear();
        self.body.clear();
        // One huge frame must not keep its buffer for the rest of the session.
        const KEEP: usize = 64 * 1024;
        if self.bytes.capacity() > KEEP {
            self.bytes.shrink_to(KEEP);
        }
        if self.headers.capacity() > KEEP / 8 {
            self.headers.shrink_to(KEEP / 8);
        }
        if self.body.capacity() > KEEP / 8 {
            self.body.shrink_to(KEEP / 8);
        }
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
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
    b: Builder,
}

/// The frame under construction, in buffers reused from frame to frame.
#[derive(Debug)]
struct Builder {
    state: State,
    frame: RawFrame,
    frame_size: usize,
    limits: Limits,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// A line's text: UTF-8 when valid (borrowed), else Latin-1 (every byte kept as one char).
fn decode_line(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(latin1(bytes)),
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            in_long_line: false,
            b: Builder {
                state: State::Headers,
                frame: RawFrame::default(),
                frame_size: 0,
                limits,
                stats: DecoderStats::default(),
            },
        }
    }

    pub fn stats(&self) -> DecoderStats {
        self.b.stats
    }

    /// Bytes held (buffered input plus the frame under construction), for tests of the bounds.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.b.frame_size
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
        let max_line = self.b.limits.max_line;
        loop {
            let pending = &self.buf[self.start..];
            let Some(i) = memchr_lf(&pending[self.scanned..]) else {
                self.scanned = pending.len();
                if pending.len() > max_line {
                    // Keep nothing of it; drop the rest when its LF comes.
                    self.start = self.buf.len();
                    self.scanned = 0;
                    let first = !self.in_long_line;
                    self.in_long_line = true;
                    if first {
                        if let Some(item) = self.b.discard(Discard::LineTooLong) {
                            return Some(item);
                        }
                    }
                }
                return None;
            };
            let end = self.scanned + i;
            let line_start = self.start;
            let mut line_end = line_start + end;
            if end > 0 && self.buf[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let too_long = line_end - line_start > max_line;
            let was_long = std::mem::take(&mut self.in_long_line);
            self.start += end + 1;
            self.scanned = 0;
            if was_long {
                continue;
            }
            let item = if too_long {
                self.b.discard(Discard::LineTooLong)
            } else {
                self.b.line(&self.buf[line_start..line_end])
            };
            if item.is_some() {
                return item;
            }
        }
    }
}

/// The position of the first LF: a word at a time (no dependency for it).
fn memchr_lf(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = 0;
    while i + 8 <= hay.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ LF;
        if (x.wrapping_sub(LO) & !x & HI) != 0 {
            break;
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == b'\n').map(|p| p + i)
}

impl Builder {
    /// Drops the frame under construction and skips to the next blank line.
    fn discard(&mut self, why: Discard) -> Option<Item> {
        self.frame.clear();
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
        if self.frame.is_empty() {
            return None;
        }
        let frame = self.frame.build();
        self.frame.clear();
        self.stats.frames += 1;
        Some(Item::Frame(frame))
    }

    fn line(&mut self, text: &[u8]) -> Option<Item> {
        if self.state == State::Skipping {
            if text.is_empty() {
                self.state = State::Headers;
            }
            return None;
        }
        if text.is_empty() && self.state == State::Headers {
            return self.finish();
        }
        if self.frame.is_empty() {
            if let Some(version) = text.strip_prefix(BANNER.as_bytes()) {
                return Some(Item::Banner(decode_line(version).trim().to_string()));
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
        match text.iter().position(|&b| b == b':') {
            Some(colon) => {
                let key = &text[..colon];
                let value = &text[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if key.eq_ignore_ascii_case(b"Response") && value.trim_ascii() == b"Follows" {
                    self.state = State::Follows;
                }
                self.frame.push_header(key, value);
            }
            None => self.frame.push_body(text),
        }
        None
    }

    fn follows_line(&mut self, text: &[u8]) {
        if let Some(before) = text.trim_ascii_end().strip_suffix(END_COMMAND.as_bytes()) {
            if !before.is_empty() {
                self.frame.push_body(before);
            }
            // The blank line that follows ends the frame.
            self.state = State::Headers;
            return;
        }
        if self.frame.body.is_empty() {
            if let Some(colon) = text.iter().position(|&b| b == b':') {
                let key = &text[..colon];
                if key.eq_ignore_ascii_case(b"ActionID") || key.eq_ignore_ascii_case(b"Privilege") {
                    let value = &text[colon + 1..];
                    self.frame
                        .push_header(key, value.strip_prefix(b" ").unwrap_or(value));
                    return;
                }
            }
        }
        self.frame.push_body(text);
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
