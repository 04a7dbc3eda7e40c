//! The server's lines as the client reads them: bounded before they are buffered, decoded lossily
//! (as the server treats its own peers). Pure core over any `BufRead`.

use std::io::{self, BufRead};

/// The longest line kept, in bytes (a notification is a few hundred; the server's own lines are
/// bounded far lower).
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The connection ended (nothing left of a line).
    Eof,
    /// A line, `\n` included when it had one (the last line before the end may lack it); bytes
    /// that are not UTF-8 are U+FFFD.
    Text(String),
    /// A line longer than the bound: read to its end and dropped, never held whole.
    TooLong,
}

/// Reads one line of at most `max` bytes from `r`.
pub fn read_line(r: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        let end = available.iter().position(|&b| b == b'\n');
        let n = end.map_or(available.len(), |i| i + 1);
        if !too_long {
            if buf.len() + n > max {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&available[..n]);
            }
        }
        r.consume(n);
        if end.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn all(bytes: &[u8], max: usize, capacity: usize) -> Vec<Line> {
        let mut r = BufReader::with_capacity(capacity, Cursor::new(bytes.to_vec()));
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, max).unwrap();
            if l == Line::Eof {
                return out;
            }
            out.push(l);
        }
    }

    #[test]
    fn lines_are_bounded_decoded_lossily_and_the_next_line_survives() {
        for capacity in [1, 2, 7, 8192] {
            let got = all(b"ab\n\xff\xfeok\nxxxxxxxxxx\nlast", 8, capacity);
            assert_eq!(
                got,
                vec![
                    Line::Text("ab\n".into()),
                    Line::Text("\u{FFFD}\u{FFFD}ok\n".into()),
                    Line::TooLong,
                    Line::Text("last".into()),
                ],
                "{capacity}"
            );
            // Exactly the bound (newline included) is kept; one more is too long.
            assert_eq!(
                all(b"1234567\n", 8, capacity),
                [Line::Text("1234567\n".into())]
            );
            assert_eq!(all(b"12345678\n", 8, capacity), [Line::TooLong]);
            assert_eq!(all(b"123456789", 8, capacity), [Line::TooLong]);
        }
    }

    #[test]
    fn a_huge_line_is_never_held() {
        // 64 MiB without a newline, then a line: the reader's buffer never passes the bound.
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    let tail = b"\n<event/>\n";
                    let n = tail.len().min(b.len());
                    b[..n].copy_from_slice(&tail[..n]);
                    self.0 = usize::MAX;
                    return Ok(n);
                }
                if self.0 == usize::MAX {
                    return Ok(0);
                }
                let n = b.len().min(self.0);
                b[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut r = BufReader::new(Endless(64 << 20));
        assert_eq!(read_line(&mut r, MAX_LINE).unwrap(), Line::TooLong);
        assert_eq!(
            read_line(&mut r, MAX_LINE).unwrap(),
            Line::Text("<event/>\n".into())
        );
        assert_eq!(read_line(&mut r, MAX_LINE).unwrap(), Line::Eof);
    }
}
