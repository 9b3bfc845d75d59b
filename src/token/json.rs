//! A small strict JSON reader for the two documents every token carries,
//! its JOSE header and its claims set. The caller walks one object and
//! takes the members it knows; everything else is checked as JSON (RFC
//! 8259) and skipped. Strings come back borrowed from the input unless they
//! hold escapes. It exists for speed: serde_json's generic machinery ran
//! most of the filter's own instructions per request (`make bench-callgrind`)
//! and is kept for documents read once (configuration, JWKS) and for claim
//! rules.
#![forbid(unsafe_code)]

use std::borrow::Cow;

/// Deeper nesting is refused, so that skipping a value never recurses
/// without bound. 127 is what serde_json reads into a `Value` (its recursion
/// limit of 128 counts from zero), so every claims set this reader accepts is
/// one the rules and `claims_to_headers` can read too.
pub const MAX_DEPTH: u32 = 127;

/// Why a document was refused. Callers only need to know that it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not JSON: a syntax error, an unpaired surrogate, nesting too deep.
    Syntax,
    /// JSON, but a member has the wrong type.
    Type,
    /// A known member appears twice.
    Duplicate,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A cursor over one JSON text.
pub struct Reader<'a> {
    src: &'a str,
    pos: usize,
    depth: u32,
    /// The member names of the objects being read, innermost last, so that
    /// a name repeated in any object (read or skipped) is refused.
    keys: Vec<Cow<'a, str>>,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a str) -> Reader<'a> {
        Reader {
            src,
            pos: 0,
            depth: 0,
            keys: Vec::new(),
        }
    }

    /// The members of the object at the cursor: each key (decoded, so that
    /// `"a"` and `"\u0061"` are one name) goes to `member`, which consumes the
    /// value. A name that appears twice is `Error::Duplicate` (issue 19:
    /// readers that keep the first and the last value would disagree).
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Reader<'a>, &str) -> Result<()>,
    ) -> Result<()> {
        let frame = self.keys.len();
        if self.keys.capacity() == 0 {
            // One allocation for a usual claims set, not one per doubling.
            self.keys.reserve(16);
        }
        self.items(b'{', b'}', |r| {
            if r.next_token() != Some(b'"') {
                return Err(Error::Syntax);
            }
            let key = r.string_body()?;
            r.expect(b':')?;
            member(r, &key)?;
            r.keys.push(key);
            Ok(())
        })?;
        let distinct = match self.keys.get_mut(frame..) {
            Some(names) if names.len() > 1 => {
                names.sort_unstable();
                names.windows(2).all(|w| w.first() != w.get(1))
            }
            _ => true,
        };
        self.keys.truncate(frame);
        if distinct {
            Ok(())
        } else {
            Err(Error::Duplicate)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn next_token(&mut self) -> Option<u8> {
        self.ws();
        self.peek()
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.next_token() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Error::Syntax)
        }
    }

    fn literal(&mut self, word: &str) -> Result<()> {
        let end = self.pos + word.len();
        if self.src.as_bytes().get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(())
        } else {
            Err(Error::Syntax)
        }
    }

    /// Only whitespace is left.
    pub fn finish(mut self) -> Result<()> {
        self.ws();
        if self.pos == self.src.len() {
            Ok(())
        } else {
            Err(Error::Syntax)
        }
    }

    /// Consumes a `null` if one comes next.
    pub fn null(&mut self) -> Result<bool> {
        if self.next_token() == Some(b'n') {
            self.literal("null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads an object, handing each member's key to `member`, which must
    /// consume the value (read it or [`Reader::skip`] it).
    pub fn object(
        &mut self,
        member: impl FnMut(&mut Reader<'a>, &str) -> Result<()>,
    ) -> Result<()> {
        self.members(member)
    }

    /// Reads an array, calling `element` for each element, which must
    /// consume it.
    pub fn array(&mut self, element: impl FnMut(&mut Reader<'a>) -> Result<()>) -> Result<()> {
        self.items(b'[', b']', element)
    }

    /// The comma-separated items between `open` and `close`; `each` consumes
    /// one.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut each: impl FnMut(&mut Reader<'a>) -> Result<()>,
    ) -> Result<()> {
        match self.next_token() {
            Some(b) if b == open => {}
            Some(_) => return Err(Error::Type),
            None => return Err(Error::Syntax),
        }
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::Syntax);
        }
        if self.next_token() == Some(close) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            each(self)?;
            match self.next_token() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Error::Syntax),
            }
        }
    }

    /// Reads a string.
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        match self.next_token() {
            Some(b'"') => self.string_body(),
            Some(_) => Err(Error::Type),
            None => Err(Error::Syntax),
        }
    }

    /// The string that starts at the current quote: borrowed unless it
    /// holds escapes.
    fn string_body(&mut self) -> Result<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.src.as_bytes();
        // The usual string, without escapes: a scan with no calls in it.
        loop {
            match bytes.get(self.pos) {
                None | Some(0..=0x1f) => return Err(Error::Syntax),
                Some(b'"') => {
                    let s = self.src.get(start..self.pos).ok_or(Error::Syntax)?;
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(_) => self.pos += 1,
            }
        }
        // Escapes: build the text.
        let mut out = String::new();
        let mut run = start;
        loop {
            match bytes.get(self.pos) {
                None | Some(0..=0x1f) => return Err(Error::Syntax),
                Some(b'"') => {
                    out.push_str(self.src.get(run..self.pos).ok_or(Error::Syntax)?);
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    out.push_str(self.src.get(run..self.pos).ok_or(Error::Syntax)?);
                    self.pos += 1;
                    let code = match self.escape()? {
                        hi @ 0xD800..=0xDBFF => {
                            // A high surrogate must be followed by an escaped
                            // low one.
                            if bytes.get(self.pos) != Some(&b'\\') {
                                return Err(Error::Syntax);
                            }
                            self.pos += 1;
                            let lo = self.escape()?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return Err(Error::Syntax);
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        // A lone low surrogate is no character: refused here.
                        code => code,
                    };
                    out.push(char::from_u32(code).ok_or(Error::Syntax)?);
                    run = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// One escape, its backslash already consumed: the character, or for
    /// `\uXXXX` the UTF-16 code unit (surrogate halves are the caller's).
    fn escape(&mut self) -> Result<u32> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.hex4();
            }
            _ => return Err(Error::Syntax),
        };
        self.pos += 1;
        Ok(u32::from(c))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .src
            .as_bytes()
            .get(self.pos..self.pos + 4)
            .ok_or(Error::Syntax)?;
        let mut v = 0u32;
        for d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(Error::Syntax),
            };
            v = v * 16 + u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }

    /// Reads a number.
    pub fn number(&mut self) -> Result<f64> {
        match self.next_token() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => return Err(Error::Type),
            None => return Err(Error::Syntax),
        }
        let start = self.pos;
        let integer = self.number_syntax()?;
        let text = self.src.get(start..self.pos).ok_or(Error::Syntax)?;
        // Whole numbers of up to 15 digits are exact in an f64: no need for
        // the general decimal conversion.
        if integer && text.len() <= 15 {
            let (neg, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text),
            };
            let v = digits
                .bytes()
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0')) as f64;
            return Ok(if neg { -v } else { v });
        }
        text.parse::<f64>().map_err(|_| Error::Syntax)
    }

    /// Moves over a number's text (RFC 8259 grammar); true if it has no
    /// fraction and no exponent.
    fn number_syntax(&mut self) -> Result<bool> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Error::Syntax),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(Error::Syntax);
            }
            self.digits();
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(Error::Syntax);
            }
            self.digits();
            integer = false;
        }
        Ok(integer)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Checks and skips any one value. As in serde_json, a skipped string
    /// is only checked against the grammar: an escaped lone surrogate
    /// passes (it matches the grammar; only turning it into text fails).
    pub fn skip(&mut self) -> Result<()> {
        match self.next_token() {
            Some(b'{') => self.skip_object(),
            Some(b'[') => self.array(|r| r.skip()),
            Some(b'"') => self.skip_string(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number_syntax().map(drop),
            _ => Err(Error::Syntax),
        }
    }

    fn skip_object(&mut self) -> Result<()> {
        self.members(|r, _| r.skip())
    }

    /// Moves over the string at the current quote, checking its grammar.
    fn skip_string(&mut self) -> Result<()> {
        self.pos += 1;
        loop {
            match self.peek() {
                None | Some(0..=0x1f) => return Err(Error::Syntax),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Skips one value and returns its text (for a caller that wants to
    /// read it another way).
    pub fn raw(&mut self) -> Result<&'a str> {
        self.ws();
        let start = self.pos;
        self.skip()?;
        self.src.get(start..self.pos).ok_or(Error::Syntax)
    }
}

/// Records a known member: a second one is refused.
pub fn once(seen: &mut u32, bit: u32) -> Result<()> {
    if *seen & bit != 0 {
        return Err(Error::Duplicate);
    }
    *seen |= bit;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(text: &str) -> Result<()> {
        let mut r = Reader::new(text);
        r.skip()?;
        r.finish()
    }

    #[test]
    fn valid_json_is_skipped_and_invalid_refused() {
        for ok in [
            "{}",
            " { \"a\" : [1, -0, 0.5, 1e3, 1E-3, -2.5e+10, true, false, null, \"x\"] } ",
            "[[[]]]",
            "\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
            "{\"a\":{\"b\":{\"c\":[{}]}}}",
            "123",
        ] {
            assert_eq!(skip_all(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1,]",
            "{a:1}",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "-",
            "tru",
            "nul",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "\"open",
            "{} x",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "'a'",
        ] {
            assert_eq!(skip_all(bad), Err(Error::Syntax), "{bad}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(skip_all(&deep(127)), Ok(()));
        assert_eq!(skip_all(&deep(128)), Err(Error::Syntax));
        assert_eq!(skip_all(&deep(100_000)), Err(Error::Syntax));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut r = Reader::new("\"plain é\"");
        assert!(matches!(r.string(), Ok(Cow::Borrowed("plain é"))));
        let mut r = Reader::new(r#""a\/b\u0041\ud83d\ude00""#);
        let s = r.string().unwrap();
        assert!(matches!(s, Cow::Owned(_)));
        assert_eq!(s, "a/bA\u{1f600}");
        assert_eq!(Reader::new("5").string(), Err(Error::Type));
        // Lone surrogates match the grammar (a skipped value may hold one)
        // but are no text.
        for lone in [r#""\ud83d""#, r#""\ude00""#, r#""\ud83d\u0041""#] {
            assert_eq!(skip_all(lone), Ok(()), "{lone}");
            assert_eq!(Reader::new(lone).string(), Err(Error::Syntax), "{lone}");
        }
    }

    #[test]
    fn numbers_read_exactly() {
        let num = |t: &str| Reader::new(t).number();
        assert_eq!(num("0"), Ok(0.0));
        assert_eq!(num("1700000000"), Ok(1_700_000_000.0));
        assert_eq!(num("-12"), Ok(-12.0));
        assert_eq!(num("1.5"), Ok(1.5));
        assert_eq!(num("2e3"), Ok(2000.0));
        assert_eq!(num("123456789012345678901"), Ok(123456789012345678901.0));
        assert_eq!(num("1e400").map(f64::is_infinite), Ok(true));
        assert_eq!(num("\"1\""), Err(Error::Type));
        assert_eq!(
            num("01"),
            Ok(0.0),
            "the reader stops after 0; finish() refuses the rest"
        );
    }

    #[test]
    fn objects_hand_over_each_member() {
        let mut r = Reader::new(r#"{"a":1,"b":"x","c":[true],"d":2}"#);
        let mut seen = Vec::new();
        r.object(|r, k| {
            seen.push(k.to_string());
            r.skip()
        })
        .unwrap();
        assert_eq!(seen, ["a", "b", "c", "d"]);
        assert_eq!(Reader::new("[1]").object(|r, _| r.skip()), Err(Error::Type));
        let mut bits = 0;
        assert_eq!(once(&mut bits, 1), Ok(()));
        assert_eq!(once(&mut bits, 2), Ok(()));
        assert_eq!(once(&mut bits, 1), Err(Error::Duplicate));
    }

    /// Issue 19, item 6: the reader and serde_json's `Value` (which the
    /// route rules read) agree on how deep a document may nest.
    #[test]
    fn nesting_limit_matches_serde_json_value() {
        for n in [1usize, 2, 126, 127, 128, 129, 200] {
            let doc = format!("{}{}", "[".repeat(n), "]".repeat(n));
            let ours = skip_all(&doc).is_ok();
            let serde = serde_json::from_str::<serde_json::Value>(&doc).is_ok();
            assert_eq!(ours, serde, "depth {n}");
        }
        assert_eq!(MAX_DEPTH, 127);
    }

    /// Issue 19, item 3: a member name repeated in any object, top level or
    /// nested, read or skipped, escaped or not, is refused.
    #[test]
    fn repeated_member_names_are_refused_at_every_level() {
        let read_all = |text: &str| Reader::new(text).object(|r, _| r.skip());
        assert_eq!(
            read_all(r#"{"scope":"a","x":1,"scope":"b"}"#),
            Err(Error::Duplicate)
        );
        assert_eq!(
            read_all(r#"{"roles":1,"rol\u0065s":2}"#),
            Err(Error::Duplicate)
        );
        assert_eq!(
            read_all(r#"{"realm_access":{"roles":["a"],"roles":["admin"]}}"#),
            Err(Error::Duplicate)
        );
        assert_eq!(
            skip_all(r#"[{"a":1},{"b":{"c":1,"c":2}}]"#),
            Err(Error::Duplicate)
        );
        // the same name in sibling or nested objects is fine
        assert_eq!(
            read_all(r#"{"a":{"a":{"a":1}},"b":{"a":2},"c":[{"a":3},{"a":4}]}"#),
            Ok(())
        );
        // many members: refused or not in n log n, whatever the order
        let many: Vec<String> = (0..1200).map(|i| format!("\"k{i}\":0")).collect();
        assert_eq!(read_all(&format!("{{{}}}", many.join(","))), Ok(()));
        let dup = format!("{{{},\"k7\":1}}", many.join(","));
        assert_eq!(read_all(&dup), Err(Error::Duplicate));
    }
}
