//! Just enough JSON for `meta_data.json`: walk the members of the top-level object, with the
//! whole document validated first. No allocation; nesting is bounded (`MAX_DEPTH`), so the
//! recursion is too. Host-tested by `tests/configdrive_json.rs`, which includes this file.

/// Most nested objects and arrays, the top-level object included.
pub const MAX_DEPTH: usize = 16;

/// Why a document was refused: what, and the byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub what: &'static str,
    /// Where, in bytes from the start.
    pub at: usize,
}

/// A member's value, borrowed from the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string, escapes not yet decoded.
    Str(Str<'a>),
    /// An object: its text, braces included (already validated).
    Object(&'a [u8]),
    /// A number, `true`, `false`, `null` or an array.
    Other,
}

/// The raw text between a string's quotes (validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str<'a>(pub &'a [u8]);

impl<'a> Str<'a> {
    /// The decoded bytes (UTF-8; `\u` escapes encoded, a lone surrogate as U+FFFD).
    pub fn bytes(self) -> Unescape<'a> {
        Unescape {
            raw: self.0,
            pending: [0; 4],
            pending_len: 0,
            pending_at: 0,
        }
    }

    /// True when the decoded string is `s`.
    pub fn is(self, s: &[u8]) -> bool {
        self.bytes().eq(s.iter().copied())
    }

    /// Decodes into `out`; returns the length written (truncated to `out`).
    pub fn decode_into(self, out: &mut [u8]) -> usize {
        let mut n = 0;
        for (slot, b) in out.iter_mut().zip(self.bytes()) {
            *slot = b;
            n += 1;
        }
        n
    }
}

/// Calls `f` with each member of the object `doc` (surrounding whitespace allowed) in order.
/// The whole document is validated before the first call.
pub fn members<'a>(doc: &'a [u8], mut f: impl FnMut(Str<'a>, Value<'a>)) -> Result<(), JsonError> {
    let mut p = Parser { s: doc, at: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.err("expected an object"));
    }
    p.value(0)?;
    p.ws();
    if p.at != doc.len() {
        return Err(p.err("text after the object"));
    }
    // Second pass over a valid document: nothing below can fail.
    let mut p = Parser { s: doc, at: 0 };
    p.ws();
    p.at += 1;
    loop {
        p.ws();
        if p.peek() == Some(b'}') {
            return Ok(());
        }
        let key = p.string()?;
        p.ws();
        p.at += 1; // ':'
        p.ws();
        let start = p.at;
        let value = match p.peek() {
            Some(b'"') => Value::Str(p.string()?),
            Some(b'{') => {
                p.value(1)?;
                Value::Object(&doc[start..p.at])
            }
            _ => {
                p.value(1)?;
                Value::Other
            }
        };
        f(key, value);
        p.ws();
        if p.peek() == Some(b',') {
            p.at += 1;
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if matches!(self.peek(), Some(b'{' | b'[')) && depth >= MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.container(depth, b'}', true),
            Some(b'[') => self.container(depth, b']', false),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end")),
        }
    }

    fn container(&mut self, depth: usize, close: u8, object: bool) -> Result<(), JsonError> {
        self.at += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if object {
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a key"));
                }
                self.string()?;
                self.ws();
                self.expect(b':', "expected ':'")?;
                self.ws();
            }
            self.value(depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.s[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.digits() == 0 {
            return Err(self.err("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<Str<'a>, JsonError> {
        self.expect(b'"', "expected a string")?;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            let hex = self.s.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("bad \\u escape"));
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                Some(0..=0x1f) => return Err(self.err("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
        let raw = &self.s[start..self.at];
        self.at += 1;
        Ok(Str(raw))
    }
}

/// The decoded bytes of a [`Str`].
pub struct Unescape<'a> {
    raw: &'a [u8],
    pending: [u8; 4],
    pending_len: usize,
    pending_at: usize,
}

impl Unescape<'_> {
    fn hex4(&mut self) -> Option<u32> {
        let h = self.raw.get(..4)?;
        let mut v = 0;
        for &b in h {
            v = v * 16 + (b as char).to_digit(16)?;
        }
        self.raw = &self.raw[4..];
        Some(v)
    }

    fn push_char(&mut self, c: u32) {
        let c = char::from_u32(c).unwrap_or('\u{fffd}');
        self.pending_len = c.encode_utf8(&mut self.pending).len();
        self.pending_at = 0;
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.pending_at < self.pending_len {
            self.pending_at += 1;
            return Some(self.pending[self.pending_at - 1]);
        }
        let (&b, rest) = self.raw.split_first()?;
        self.raw = rest;
        if b != b'\\' {
            return Some(b);
        }
        let (&e, rest) = self.raw.split_first()?;
        self.raw = rest;
        let simple = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = self.hex4().unwrap_or(0xfffd);
                let mut c = hi;
                if (0xd800..0xdc00).contains(&hi) && self.raw.starts_with(b"\\u") {
                    let saved = self.raw;
                    self.raw = &self.raw[2..];
                    match self.hex4() {
                        Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                            c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        _ => self.raw = saved,
                    }
                }
                self.push_char(c);
                return self.next();
            }
            other => other,
        };
        Some(simple)
    }
}
