//! Finds RFC 6901 JSON pointers in a message without parsing it into a tree.
//!
//! A feed's `topic` and `sequence` pointers each name one scalar in every
//! inbound message (and so do its `timestamp` pointer and, while a
//! conflating subscriber is behind, that subscriber's key pointer). [`lookup_pair`] walks the message bytes once, skips
//! (and checks) every value that is not on a pointer's path, and stops as
//! soon as every pointer it was given is resolved. Nothing is allocated
//! unless a string found, or an object key compared on the way, has escapes
//! to decode. The one-pointer form, `lookup`, is what the tests hold the
//! walk to.
//!
//! Against `serde_json::from_slice::<Value>` followed by `Value::pointer`:
//!
//! - Valid JSON without duplicate keys: the same scalar (the same string
//!   text, the same number, the same bool), and `None` where serde_json
//!   finds nothing, `null`, an object or an array.
//! - Malformed before the value (bad syntax, bad escape, lone surrogate,
//!   control character or invalid UTF-8 in a string, nesting deeper than
//!   serde_json's limit of 127, end of input): `None`, as serde_json.
//! - Malformed after the value: the value still stands here, where
//!   serde_json refuses the whole document and finds nothing. The message is
//!   delivered whole either way; only its topic and sequence number differ.
//!   The value's own end is checked, though: it must be followed (after
//!   whitespace) by `,` or its container's closing bracket, or by the end of
//!   input at the root, so a message cut short as `{"seq":12` yields
//!   nothing rather than 12.
//! - Duplicate keys: the first one wins here, since the walk stops there;
//!   serde_json's `Value` keeps the last. Finding the last would mean walking
//!   the rest of every object on the path, which most of the time is the
//!   whole message.
//! - Numbers beyond `f64`'s range (`1e400`) are valid JSON and are accepted
//!   here; serde_json refuses them.

use std::borrow::Cow;

/// The deepest nesting of objects and arrays accepted, serde_json's default
/// recursion limit: it also bounds this walk's recursion.
const MAX_DEPTH: u32 = 127;

/// The bytes that end a run of plain characters in a string: the closing
/// quote, a backslash, and the control characters JSON forbids there.
const STRING_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stops[byte] = true;
        byte += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// A scalar found at a pointer: what a topic or sequence number can be.
///
/// `null`, objects and arrays are not scalars: a pointer to one finds `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string, borrowed from the message unless it had escapes to decode.
    Str(Cow<'a, str>),
    /// A number, as the text of the message (it follows JSON's grammar).
    Number(&'a str),
    /// `true` or `false`.
    Bool(bool),
}

impl Scalar<'_> {
    /// The number as a `u64` where `serde_json::Value::as_u64` gives one: a
    /// non-negative integer without fraction or exponent that fits.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::Number(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
            _ => None,
        }
    }
}

/// The scalar at `pointer` in the JSON document `json`, if there is one.
///
/// `pointer` is an RFC 6901 pointer: empty for the whole document, else
/// tokens each after a `/`, with `~1` for `/` and `~0` for `~`; a token
/// that is a decimal index without leading zeros picks an array element (`-`
/// picks none). See the module documentation for malformed input and
/// duplicate keys. (The sidecar looks up topic and sequence with
/// [`lookup_pair`], and a message's timestamp with this one-pointer form,
/// which is also what the tests hold the walk to.)
pub(crate) fn lookup<'a>(json: &'a [u8], pointer: &str) -> Option<Scalar<'a>> {
    let [found] = Walk::run(json, [Some(pointer)]);
    found
}

/// Checks that `pointer` is an RFC 6901 pointer: empty, or `/`-separated
/// tokens with `~0` and `~1` as the only escapes. The error names the
/// pointer and says how to write one.
pub(crate) fn check_syntax(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON pointer: start it with '/', such as \"/symbol\""
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{pointer:?} is not a JSON pointer: \
                 '~' must be followed by 0 or 1 (\"~0\" is '~', \"~1\" is '/')"
            ));
        }
    }
    Ok(())
}

/// The scalars at two pointers, found in one walk: the same answers as two
/// `lookup`s (the test-only one-pointer form), where `None` for a pointer
/// finds `None`.
pub(crate) fn lookup_pair<'a>(
    json: &'a [u8],
    first: Option<&str>,
    second: Option<&str>,
) -> (Option<Scalar<'a>>, Option<Scalar<'a>>) {
    let [first, second] = Walk::run(json, [first, second]);
    (first, second)
}

/// The scalars at up to 32 pointers, found in one walk: the same answers as
/// one `lookup` each, where `None` for a pointer finds `None`.
pub(crate) fn lookup_many<'a, const N: usize>(
    json: &'a [u8],
    pointers: [Option<&str>; N],
) -> [Option<Scalar<'a>>; N] {
    Walk::run(json, pointers)
}

/// Stops a walk early: every pointer is resolved, or the document is malformed.
struct Halt;

/// The outcome of walking part of the document.
type Step<T = ()> = Result<T, Halt>;

/// One walk through a document for up to 32 pointers at once.
///
/// Sets of pointers are bit masks: bit `i` stands for pointer `i`.
struct Walk<'a, 'p, const N: usize> {
    json: &'a [u8],
    /// The next byte to read.
    pos: usize,
    /// Each pointer's tokens not yet matched, relative to the value its walk
    /// has reached: empty when that value is the one it names.
    rest: [&'p str; N],
    /// What each pointer found.
    found: [Option<Scalar<'a>>; N],
    /// The pointers not yet resolved (found, or known to find nothing).
    pending: u32,
}

impl<'a, 'p, const N: usize> Walk<'a, 'p, N> {
    /// Walks `json` until every pointer given is resolved, or to the end of
    /// the document, or to the first malformed byte.
    fn run(json: &'a [u8], pointers: [Option<&'p str>; N]) -> [Option<Scalar<'a>>; N] {
        const { assert!(N <= 32, "a walk follows at most 32 pointers") };
        let mut walk =
            Walk { json, pos: 0, rest: [""; N], found: std::array::from_fn(|_| None), pending: 0 };
        for (i, pointer) in pointers.into_iter().enumerate() {
            // Like serde_json, a non-empty pointer must start with `/`.
            if let Some(pointer) = pointer.filter(|p| p.is_empty() || p.starts_with('/')) {
                walk.rest[i] = pointer;
                walk.pending |= 1 << i;
            }
        }
        if walk.pending != 0 {
            // Either way the walk ends, `found` holds the answers.
            let _ = walk.value(0, walk.pending, None);
        }
        walk.found
    }

    /// Walks one value, `depth` containers deep. `active` holds the pointers
    /// whose path leads through it; `closer` is the byte that closes the
    /// container it is in (`None` at the root).
    fn value(&mut self, depth: u32, active: u32, closer: Option<u8>) -> Step {
        self.skip_whitespace();
        if active == 0 {
            return self.skip(depth);
        }
        let mut here = 0;
        for i in 0..N {
            if active & (1 << i) != 0 && self.rest[i].is_empty() {
                here |= 1 << i;
            }
        }
        let deeper = active & !here;
        match self.peek()? {
            b'{' => {
                self.resolve(here, None)?;
                self.object(depth + 1, deeper)
            }
            b'[' => {
                self.resolve(here, None)?;
                self.array(depth + 1, deeper)
            }
            _ => {
                let scalar = self.scalar(here != 0)?;
                if here != 0 {
                    self.check_end(closer)?;
                }
                self.resolve(deeper, None)?;
                self.resolve(here, scalar)
            }
        }
    }

    /// Walks an object (the current byte is its `{`).
    fn object(&mut self, depth: u32, active: u32) -> Step {
        if depth > MAX_DEPTH {
            return Err(Halt);
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
            return self.resolve(active, None);
        }
        let mut tokens = [Token::default(); N];
        for (i, token) in tokens.iter_mut().enumerate() {
            if active & (1 << i) != 0 {
                *token = Token::first_of(self.rest[i]);
            }
        }
        loop {
            if self.peek()? != b'"' {
                return Err(Halt);
            }
            let (key, escaped) = self.string()?;
            let wanted = active & self.pending;
            let matched =
                if wanted == 0 { 0 } else { self.matching(wanted, &tokens, key, escaped)? };
            self.skip_whitespace();
            if self.peek()? != b':' {
                return Err(Halt);
            }
            self.pos += 1;
            self.value(depth, matched, Some(b'}'))?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(Halt),
            }
        }
        self.resolve(active & self.pending, None)
    }

    /// The pointers in `wanted` whose next token names the key `raw`
    /// (escapes undecoded); their walks move past that token.
    fn matching(
        &mut self,
        wanted: u32,
        tokens: &[Token<'p>; N],
        raw: &[u8],
        escaped: bool,
    ) -> Step<u32> {
        let decoded;
        let key = if escaped {
            decoded = unescape(std::str::from_utf8(raw).map_err(|_| Halt)?)?;
            decoded.as_bytes()
        } else {
            raw
        };
        let mut matched = 0;
        for (i, token) in tokens.iter().enumerate() {
            if wanted & (1 << i) != 0 && token.names(key) {
                self.rest[i] = token.rest;
                matched |= 1 << i;
            }
        }
        Ok(matched)
    }

    /// Walks an array (the current byte is its `[`).
    fn array(&mut self, depth: u32, active: u32) -> Step {
        if depth > MAX_DEPTH {
            return Err(Halt);
        }
        self.pos += 1;
        let mut indices = [None; N];
        for (i, index) in indices.iter_mut().enumerate() {
            if active & (1 << i) != 0 {
                *index = parse_index(split_token(self.rest[i]).0);
            }
        }
        self.skip_whitespace();
        if self.peek()? == b']' {
            self.pos += 1;
            return self.resolve(active, None);
        }
        let mut index = 0usize;
        loop {
            let mut matched = 0;
            for (i, wanted) in indices.iter().enumerate() {
                if active & self.pending & (1 << i) != 0 && *wanted == Some(index) {
                    self.rest[i] = split_token(self.rest[i]).1;
                    matched |= 1 << i;
                }
            }
            self.value(depth, matched, Some(b']'))?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(Halt),
            }
            index = index.saturating_add(1);
        }
        self.resolve(active & self.pending, None)
    }

    /// Skips a value no pointer leads through, checking it all the same.
    fn skip(&mut self, depth: u32) -> Step {
        match self.peek()? {
            b'{' => self.object(depth + 1, 0),
            b'[' => self.array(depth + 1, 0),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Halt),
        }
    }

    /// Reads a string, number or literal; returns it only when `wanted`
    /// (`null` gives `None` anyway).
    fn scalar(&mut self, wanted: bool) -> Step<Option<Scalar<'a>>> {
        let scalar = match self.peek()? {
            b'"' => {
                let (raw, escaped) = self.string()?;
                if !wanted {
                    return Ok(None);
                }
                let text = std::str::from_utf8(raw).map_err(|_| Halt)?;
                Scalar::Str(if escaped { Cow::Owned(unescape(text)?) } else { Cow::Borrowed(text) })
            }
            b't' => {
                self.literal(b"true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Scalar::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                return Ok(None);
            }
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                self.number()?;
                if !wanted {
                    return Ok(None);
                }
                let json: &'a [u8] = self.json;
                let text = json.get(start..self.pos).ok_or(Halt)?;
                Scalar::Number(std::str::from_utf8(text).map_err(|_| Halt)?)
            }
            _ => return Err(Halt),
        };
        Ok(wanted.then_some(scalar))
    }

    /// Reads `word` (`true`, `false` or `null`).
    fn literal(&mut self, word: &[u8]) -> Step {
        let end = self.pos + word.len();
        if self.json.get(self.pos..end) != Some(word) {
            return Err(Halt);
        }
        self.pos = end;
        Ok(())
    }

    /// Reads a number.
    fn number(&mut self) -> Step {
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.skip_digits(),
            _ => return Err(Halt),
        }
        if self.json.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.json.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.json.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    /// Reads one or more digits.
    fn digits(&mut self) -> Step {
        if !self.peek()?.is_ascii_digit() {
            return Err(Halt);
        }
        self.skip_digits();
        Ok(())
    }

    /// Reads any digits.
    fn skip_digits(&mut self) {
        while self.json.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    /// Reads a string (the current byte is its opening quote), checking it
    /// as serde_json does. Returns its bytes between the quotes, escapes
    /// undecoded, and whether it has any.
    fn string(&mut self) -> Step<(&'a [u8], bool)> {
        let json: &'a [u8] = self.json;
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            let rest = json.get(self.pos..).ok_or(Halt)?;
            let plain = rest.iter().position(|&b| STRING_STOPS[usize::from(b)]);
            self.pos += plain.ok_or(Halt)?;
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(Halt),
            }
        }
        let raw = json.get(start..self.pos).ok_or(Halt)?;
        self.pos += 1;
        // Escapes are ASCII, so checking the raw bytes checks the decoded text.
        if !raw.is_ascii() {
            std::str::from_utf8(raw).map_err(|_| Halt)?;
        }
        Ok((raw, escaped))
    }

    /// Reads one escape (the current byte is its backslash). A `\u` escape of
    /// a UTF-16 surrogate must be a leading one followed by a trailing one.
    fn escape(&mut self) -> Step {
        match self.json.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4(self.pos + 2)?;
                self.pos += 6;
                match unit {
                    0xDC00..=0xDFFF => Err(Halt),
                    0xD800..=0xDBFF => {
                        if self.json.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(Halt);
                        }
                        let trailing = self.hex4(self.pos + 2)?;
                        self.pos += 6;
                        if (0xDC00..=0xDFFF).contains(&trailing) {
                            Ok(())
                        } else {
                            Err(Halt)
                        }
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(Halt),
        }
    }

    /// The four hex digits at `at`.
    fn hex4(&self, at: usize) -> Step<u32> {
        let digits = self.json.get(at..at + 4).ok_or(Halt)?;
        digits.iter().try_fold(0, |unit, &digit| Ok((unit << 4) | hex_digit(digit)?))
    }

    /// Checks what follows a value found: `,` or `closer`, or at the root
    /// nothing but whitespace.
    fn check_end(&mut self, closer: Option<u8>) -> Step {
        self.skip_whitespace();
        let next = self.json.get(self.pos).copied();
        match closer {
            Some(closer) if next == Some(b',') || next == Some(closer) => Ok(()),
            None if next.is_none() => Ok(()),
            _ => Err(Halt),
        }
    }

    /// Marks the pointers in `which` resolved, finding `value`; halts the walk
    /// once every pointer is resolved.
    fn resolve(&mut self, which: u32, value: Option<Scalar<'a>>) -> Step {
        if which == 0 {
            return Ok(());
        }
        for i in 0..N {
            if which & (1 << i) != 0 {
                self.found[i].clone_from(&value);
            }
        }
        self.pending &= !which;
        if self.pending == 0 {
            return Err(Halt);
        }
        Ok(())
    }

    /// The current byte; halts at the end of input.
    fn peek(&self) -> Step<u8> {
        self.json.get(self.pos).copied().ok_or(Halt)
    }

    /// Moves past JSON whitespace.
    fn skip_whitespace(&mut self) {
        while matches!(self.json.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
}

/// The next token of a pointer, as the walk of an object compares it with keys.
#[derive(Clone, Copy, Default)]
struct Token<'p> {
    /// The token, `~` escapes undecoded.
    text: &'p str,
    /// Whether it has a `~` (else it is its own decoding).
    tilde: bool,
    /// The pointer's tokens after it.
    rest: &'p str,
}

impl<'p> Token<'p> {
    /// The first token of `pointer` (`/token/rest…`).
    fn first_of(pointer: &'p str) -> Self {
        let (text, rest) = split_token(pointer);
        Token { text, tilde: text.contains('~'), rest }
    }

    /// Whether the token names `key` (decoded).
    ///
    /// Reads `~1` as `/` and `~0` as `~`, as serde_json does (`~1` replaced,
    /// then `~0`): a `~` followed by anything else stands for itself.
    fn names(&self, key: &[u8]) -> bool {
        let token = self.text.as_bytes();
        if !self.tilde {
            return token == key;
        }
        let mut keys = key.iter();
        let mut t = 0;
        while let Some(&byte) = token.get(t) {
            let (decoded, width) = match (byte, token.get(t + 1)) {
                (b'~', Some(b'1')) => (b'/', 2),
                (b'~', Some(b'0')) => (b'~', 2),
                _ => (byte, 1),
            };
            if keys.next() != Some(&decoded) {
                return false;
            }
            t += width;
        }
        keys.next().is_none()
    }
}

/// Splits `/token/rest…` into `token` (still escaped) and `/rest…`.
fn split_token(pointer: &str) -> (&str, &str) {
    let pointer = pointer.strip_prefix('/').unwrap_or(pointer);
    pointer.split_at(pointer.find('/').unwrap_or(pointer.len()))
}

/// The array index a pointer token names, as serde_json reads it: decimal
/// digits without a leading zero (but `0`), fitting a `usize`.
fn parse_index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    if !digits || token.is_empty() || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// The value of one hex digit.
fn hex_digit(digit: u8) -> Step<u32> {
    char::from(digit).to_digit(16).ok_or(Halt)
}

/// Decodes the escapes of a string already checked by [`Walk::string`].
fn unescape(text: &str) -> Step<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let unit = hex_chars(&mut chars)?;
                let code = if (0xD800..=0xDBFF).contains(&unit) {
                    if chars.next() != Some('\\') || chars.next() != Some('u') {
                        return Err(Halt);
                    }
                    let trailing = hex_chars(&mut chars)?;
                    0x1_0000 + ((unit - 0xD800) << 10) + trailing.checked_sub(0xDC00).ok_or(Halt)?
                } else {
                    unit
                };
                char::from_u32(code).ok_or(Halt)?
            }
            _ => return Err(Halt),
        };
        out.push(decoded);
    }
    Ok(out)
}

/// Reads the four hex digits of a `\u` escape.
fn hex_chars(chars: &mut std::str::Chars<'_>) -> Step<u32> {
    (0..4).try_fold(0, |unit, _| {
        let digit = chars.next().and_then(|c| c.to_digit(16)).ok_or(Halt)?;
        Ok((unit << 4) | digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Number, Value};

    const TICK: &[u8] =
        br#"{"symbol":"AAPL","price":189.25,"size":100,"seq":123456,"ts":1733300000000}"#;

    fn text(found: Option<Scalar<'_>>) -> Option<String> {
        match found? {
            Scalar::Str(text) => Some(text.into_owned()),
            Scalar::Number(text) => Some(format!("#{text}")),
            Scalar::Bool(flag) => Some(format!("!{flag}")),
        }
    }

    fn find(json: &str, pointer: &str) -> Option<String> {
        text(lookup(json.as_bytes(), pointer))
    }

    fn serde_finds(json: &str, pointer: &str) -> Option<Value> {
        serde_json::from_str::<Value>(json).ok()?.pointer(pointer).cloned()
    }

    #[test]
    fn a_tick_gives_its_symbol_and_sequence() {
        assert_eq!(lookup(TICK, "/symbol"), Some(Scalar::Str(Cow::Borrowed("AAPL"))));
        assert!(matches!(lookup(TICK, "/symbol"), Some(Scalar::Str(Cow::Borrowed(_)))));
        assert_eq!(lookup(TICK, "/seq").and_then(|seq| seq.as_u64()), Some(123_456));
        assert_eq!(lookup(TICK, "/price"), Some(Scalar::Number("189.25")));
        assert_eq!(lookup(TICK, "/price").and_then(|price| price.as_u64()), None);
        assert_eq!(lookup(TICK, "/ts").and_then(|ts| ts.as_u64()), Some(1_733_300_000_000));
        assert_eq!(lookup(TICK, "/missing"), None);
        assert_eq!(lookup(TICK, "/symbol/0"), None);
    }

    #[test]
    fn strings_with_escapes_are_decoded() {
        let json = r#"{"t":"caf\u00e9 \"q\" \\ \/ \b\f\n\r\t \ud83d\ude00 é"}"#;
        let found = lookup(json.as_bytes(), "/t");
        assert!(matches!(found, Some(Scalar::Str(Cow::Owned(_)))));
        assert_eq!(text(found).as_deref(), Some("café \"q\" \\ / \u{8}\u{c}\n\r\t 😀 é"));
        assert_eq!(find(r#"{"t":"é😀"}"#, "/t").as_deref(), Some("é😀"));
        assert_eq!(find(r#"{"t":"\uD83D\uDE00"}"#, "/t").as_deref(), Some("😀"));
    }

    #[test]
    fn keys_with_escapes_match_their_tokens() {
        assert_eq!(find(r#"{"a\/b":1}"#, "/a~1b").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"a/b":1}"#, "/a~1b").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"caf\u00e9":1}"#, "/café").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"caf\u00E9":{"x":2}}"#, "/café/x").as_deref(), Some("#2"));
        assert_eq!(find(r#"{"\"q\"":1}"#, "/\"q\"").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"a\\b":1}"#, "/a\\b").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"\ud83d\ude00":1}"#, "/😀").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"~":1}"#, "/~0").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"~1":1}"#, "/~01").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"/":1}"#, "/~01"), None);
        // A `~` before anything but 0 or 1 stands for itself, as in serde_json.
        assert_eq!(find(r#"{"~2":1}"#, "/~2").as_deref(), Some("#1"));
        assert_eq!(serde_finds(r#"{"~2":1}"#, "/~2"), Some(Value::from(1)));
        assert_eq!(find(r#"{"":1}"#, "/").as_deref(), Some("#1"));
        assert_eq!(find(r#"{"":{"":true}}"#, "//").as_deref(), Some("!true"));
        assert_eq!(find(r#"{"ab":1}"#, "/a"), None);
        assert_eq!(find(r#"{"a":1}"#, "/ab"), None);
    }

    #[test]
    fn arrays_are_indexed_as_serde_json_does() {
        let json = r#"{"list":[10,"x",[false,{"k":"v"}],null]}"#;
        assert_eq!(find(json, "/list/0").as_deref(), Some("#10"));
        assert_eq!(find(json, "/list/1").as_deref(), Some("x"));
        assert_eq!(find(json, "/list/2/0").as_deref(), Some("!false"));
        assert_eq!(find(json, "/list/2/1/k").as_deref(), Some("v"));
        for pointer in
            ["/list/3", "/list/4", "/list/01", "/list/-", "/list/+1", "/list/ 1", "/list/"]
        {
            assert_eq!(find(json, pointer), None, "{pointer}");
            assert!(serde_finds(json, pointer).is_none_or(|v| v.is_null()), "{pointer}");
        }
        assert_eq!(find(json, "/list/99999999999999999999999"), None);
        assert_eq!(find("[]", "/0"), None);
        assert_eq!(find(r#"{"0":"key"}"#, "/0").as_deref(), Some("key"));
        assert_eq!(find(r#"{"01":"key"}"#, "/01").as_deref(), Some("key"));
    }

    #[test]
    fn the_empty_pointer_names_the_root() {
        assert_eq!(find(r#""top""#, "").as_deref(), Some("top"));
        assert_eq!(find(" 42 ", "").as_deref(), Some("#42"));
        assert_eq!(find("true", "").as_deref(), Some("!true"));
        assert_eq!(find("{}", ""), None);
        assert_eq!(find("[1]", ""), None);
        // A non-empty pointer must start with `/`.
        assert_eq!(find(r#"{"a":1}"#, "a"), None);
        assert_eq!(serde_finds(r#"{"a":1}"#, "a"), None);
    }

    #[test]
    fn null_objects_and_arrays_are_not_scalars() {
        let json = r#"{"n":null,"o":{"a":1},"l":[1]}"#;
        for pointer in ["/n", "/o", "/l"] {
            assert_eq!(find(json, pointer), None, "{pointer}");
        }
    }

    #[test]
    fn as_u64_accepts_what_serde_json_accepts() {
        let cases = [
            "0",
            "7",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "-0",
            "1.0",
            "1e2",
            "1E2",
            "0.5",
            "123456789012345678901234567890",
        ];
        for text in cases {
            let serde = serde_json::from_str::<Value>(text).ok().and_then(|v| v.as_u64());
            assert_eq!(Scalar::Number(text).as_u64(), serde, "{text}");
        }
        assert_eq!(Scalar::Str(Cow::Borrowed("1")).as_u64(), None);
        assert_eq!(Scalar::Bool(true).as_u64(), None);
    }

    #[test]
    fn whitespace_is_allowed_wherever_json_allows_it() {
        let json = " \t\r\n{ \"a\" \n:\t[ 1 ,\r\n { \"b\" : \"c\" } ] , \"d\" : true \n} \r\n";
        assert_eq!(find(json, "/a/1/b").as_deref(), Some("c"));
        assert_eq!(find(json, "/a/0").as_deref(), Some("#1"));
        assert_eq!(find(json, "/d").as_deref(), Some("!true"));
        // Other control characters and non-breaking spaces are not whitespace.
        assert_eq!(find("{\u{b}\"a\":1}", "/a"), None);
        assert_eq!(find("{\u{a0}\"a\":1}", "/a"), None);
    }

    #[test]
    fn malformed_before_the_value_finds_nothing() {
        let cases = [
            "",
            "   ",
            "{",
            r#"{"a""#,
            r#"{"a" 1, "seq":1}"#,
            r#"{"a":, "seq":1}"#,
            r#"{"a":1 "seq":1}"#,
            r#"{"a":1,,"seq":1}"#,
            r#"{,"seq":1}"#,
            r#"{a:1,"seq":1}"#,
            r#"{'a':1,"seq":1}"#,
            r#"{"a":[1,],"seq":1}"#,
            r#"{"a":[1}],"seq":1}"#,
            r#"{"a":{"b":1],"seq":1}"#,
            r#"{"a":01,"seq":1}"#,
            r#"{"a":1.,"seq":1}"#,
            r#"{"a":.5,"seq":1}"#,
            r#"{"a":-,"seq":1}"#,
            r#"{"a":+1,"seq":1}"#,
            r#"{"a":1e,"seq":1}"#,
            r#"{"a":1e+,"seq":1}"#,
            r#"{"a":tru,"seq":1}"#,
            r#"{"a":nul,"seq":1}"#,
            r#"{"a":True,"seq":1}"#,
            r#"{"a":NaN,"seq":1}"#,
            r#"{"a":"\x","seq":1}"#,
            r#"{"a":"\u12","seq":1}"#,
            r#"{"a":"\u12G4","seq":1}"#,
            r#"{"a":"\ud800","seq":1}"#,
            r#"{"a":"\ud800\u0041","seq":1}"#,
            r#"{"a":"\udc00\ud800","seq":1}"#,
            r#"{"a":"\ud800\n","seq":1}"#,
            "{\"a\":\"tab\there\",\"seq\":1}",
            "{\"a\":\"nul\u{0}\",\"seq\":1}",
            r#"{"a\x":1,"seq":1}"#,
            r#"{"\ud800":1,"seq":1}"#,
        ];
        for json in cases {
            assert_eq!(find(json, "/seq"), None, "{json}");
            assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
        }
        // Invalid UTF-8, in a string skipped and in a key.
        for json in [
            &b"{\"a\":\"\xff\",\"seq\":1}"[..],
            b"{\"\xc3\":1,\"seq\":1}",
            b"\xef\xbb\xbf{\"seq\":1}",
        ] {
            assert_eq!(lookup(json, "/seq"), None);
            assert!(serde_json::from_slice::<Value>(json).is_err());
        }
    }

    #[test]
    fn malformed_after_the_value_still_finds_it() {
        // serde_json refuses these documents whole; the walk has stopped
        // before reaching what is wrong, and the message goes out anyway.
        let cases = [
            r#"{"seq":5,"x":}"#,
            r#"{"seq":5,"#,
            r#"{"seq":5,"x":"\ud800"}"#,
            r#"{"seq":5} trailing"#,
            r#"{"seq":5}}"#,
            r#"{"seq":5,]"#,
            r#"{"a":{"seq":5,"b":[}}"#,
        ];
        for json in cases {
            assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
            let pointer = if json.starts_with(r#"{"a""#) { "/a/seq" } else { "/seq" };
            assert_eq!(find(json, pointer).as_deref(), Some("#5"), "{json}");
        }
    }

    #[test]
    fn a_value_cut_short_is_not_taken() {
        let cases = [
            r#"{"seq":12"#,
            r#"{"seq":12 "#,
            r#"{"seq":12x}"#,
            r#"{"seq":12.}"#,
            r#"{"t":"ab"#,
            r#"{"t":"ab" "u"}"#,
            r#"{"b":tru"#,
            r#"{"b":true"#,
            r#"{"b":truest}"#,
            r#"[12"#,
            r#"[12}"#,
            r#"{"seq":12]"#,
            "12 x",
            "12,",
        ];
        for json in cases {
            for pointer in ["/seq", "/t", "/b", "/0", ""] {
                assert_eq!(find(json, pointer), None, "{json} {pointer}");
            }
        }
        // A bare number at the root cannot be told from a shorter one.
        assert_eq!(find("12", "").as_deref(), Some("#12"));
    }

    #[test]
    fn the_first_of_duplicate_keys_wins() {
        let json = r#"{"a":1,"a":2,"b":{"c":"x"},"b":{"c":"y"}}"#;
        assert_eq!(find(json, "/a").as_deref(), Some("#1"));
        assert_eq!(find(json, "/b/c").as_deref(), Some("x"));
        // serde_json's Value keeps the last.
        assert_eq!(serde_finds(json, "/a"), Some(Value::from(2)));
        assert_eq!(serde_finds(json, "/b/c"), Some(Value::from("y")));
        // The first wins even where it holds nothing the pointer names.
        assert_eq!(find(r#"{"b":{},"b":{"c":1}}"#, "/b/c"), None);
    }

    #[test]
    fn nesting_is_bounded_like_serde_json() {
        for depth in [126, 127, 128, 129] {
            let json = format!("{}7{}", "[".repeat(depth), "]".repeat(depth));
            let pointer = "/0".repeat(depth);
            let serde = serde_finds(&json, &pointer).map(|v| format!("#{v}"));
            assert_eq!(find(&json, &pointer), serde, "{depth}");
            assert_eq!(find(&json, &pointer).is_some(), depth <= 127, "{depth}");
            // Skipped rather than followed, the same limit holds.
            let json = format!(r#"{{"x":{json},"seq":1}}"#);
            assert_eq!(find(&json, "/seq").is_some(), depth < 127, "{depth}");
            assert_eq!(serde_finds(&json, "/seq").is_some(), depth < 127, "{depth}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let arrays = "[".repeat(100_000);
        assert_eq!(find(&arrays, "/0"), None);
        assert_eq!(find(&arrays, "/seq"), None);
        let objects = r#"{"a":"#.repeat(100_000);
        assert_eq!(find(&objects, &"/a".repeat(100_000)), None);
        assert_eq!(find(&objects, "/seq"), None);
        let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(find(&closed, &"/0".repeat(100_000)), None);
    }

    #[test]
    fn two_pointers_are_found_in_one_walk() {
        assert_eq!(
            lookup_pair(TICK, Some("/symbol"), Some("/seq")),
            (Some(Scalar::Str(Cow::Borrowed("AAPL"))), Some(Scalar::Number("123456")))
        );
        assert_eq!(lookup_pair(TICK, Some("/seq"), None), (Some(Scalar::Number("123456")), None));
        assert_eq!(
            lookup_pair(TICK, None, Some("/ts")),
            (None, Some(Scalar::Number("1733300000000")))
        );
        assert_eq!(lookup_pair(TICK, None, None), (None, None));
        let same = lookup_pair(TICK, Some("/size"), Some("/size"));
        assert_eq!(same, (Some(Scalar::Number("100")), Some(Scalar::Number("100"))));
        let json = r#"{"a":{"b":[1,{"c":"x"}],"d":"y"},"e":false}"#;
        assert_eq!(
            lookup_pair(json.as_bytes(), Some("/a/b/1/c"), Some("/a/d")),
            (Some(Scalar::Str(Cow::Borrowed("x"))), Some(Scalar::Str(Cow::Borrowed("y"))))
        );
        assert_eq!(
            lookup_pair(json.as_bytes(), Some("/a"), Some("/a/b/0")),
            (None, Some(Scalar::Number("1")))
        );
        // Found before the document breaks, and not.
        let broken = br#"{"seq":5,"topic":"#;
        assert_eq!(
            lookup_pair(broken, Some("/topic"), Some("/seq")),
            (None, Some(Scalar::Number("5")))
        );
    }

    // Generated documents, written with random whitespace and escapes.

    /// Keys and strings rich in what pointers and JSON must escape.
    fn text_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab]{0,2}",
            "[a/~01\"\\\\é😀\u{7}\n]{0,4}",
            "\\PC{0,3}",
            "[a\u{0}-\u{1f}\u{7f}\u{ffff}\u{10000}]{0,3}",
        ]
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0u64..1000).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            (-1e6f64..1e6).prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            text_strategy().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text_strategy(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Every path in `value`, as unescaped tokens.
    fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        let children: Vec<(String, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(items) => {
                items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect()
            }
            _ => Vec::new(),
        };
        for (token, child) in children {
            prefix.push(token);
            paths(child, prefix, out);
            prefix.pop();
        }
    }

    fn encode(tokens: &[String]) -> String {
        tokens.iter().map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1"))).collect()
    }

    /// Pointers into `value`: existing paths, altered ones, and random ones.
    fn pointer_strategy(value: &Value) -> BoxedStrategy<String> {
        let mut all = Vec::new();
        paths(value, &mut Vec::new(), &mut all);
        let existing = prop::sample::select(all.clone()).prop_map(|path| encode(&path));
        let altered = (prop::sample::select(all), 0..6usize).prop_map(|(mut path, how)| {
            let last = path.pop().unwrap_or_default();
            match how {
                0 => path.extend([last, "zz".to_owned()]),
                1 => path.extend([last, "0".to_owned()]),
                2 => path.push(format!("0{last}")),
                3 => path.push("-".to_owned()),
                4 => path.push(format!("+{last}")),
                _ => path.push(format!("{last}x")),
            }
            encode(&path)
        });
        let random = "(/[ab01~/]{0,2}){0,3}|[a0]{1,2}";
        prop_oneof![4 => existing, 2 => altered, 1 => random].boxed()
    }

    /// A deterministic source of the writer's choices.
    struct Choices(u64);

    impl Choices {
        fn one_in(&mut self, n: u64) -> bool {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0.is_multiple_of(n)
        }

        fn space(&mut self, out: &mut String) {
            while self.one_in(4) {
                out.push([' ', '\t', '\n', '\r'][(self.0 >> 20) as usize % 4]);
            }
        }
    }

    /// Writes `value` as JSON, with whitespace and escapes chosen at random.
    fn write(value: &Value, choices: &mut Choices, out: &mut String) {
        choices.space(out);
        match value {
            Value::Object(map) => {
                out.push('{');
                for (i, (key, member)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    choices.space(out);
                    write_string(key, choices, out);
                    choices.space(out);
                    out.push(':');
                    write(member, choices, out);
                }
                choices.space(out);
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, choices, out);
                }
                choices.space(out);
                out.push(']');
            }
            Value::String(text) => write_string(text, choices, out),
            scalar => out.push_str(&scalar.to_string()),
        }
        choices.space(out);
    }

    fn write_string(text: &str, choices: &mut Choices, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if choices.one_in(2) => out.push_str("\\/"),
                '\n' if choices.one_in(2) => out.push_str("\\n"),
                c if c < ' ' || choices.one_in(5) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let hex = if choices.one_in(2) {
                            format!("\\u{unit:04X}")
                        } else {
                            format!("\\u{unit:04x}")
                        };
                        out.push_str(&hex);
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// Whether the walk found what serde_json's `Value::pointer` finds.
    fn agrees(found: &Option<Scalar<'_>>, expected: Option<&Value>) -> Result<(), TestCaseError> {
        match (expected, found) {
            (Some(Value::String(want)), Some(Scalar::Str(got))) => prop_assert_eq!(want, got),
            (Some(Value::Number(want)), Some(got @ Scalar::Number(text))) => {
                let parsed: Number = serde_json::from_str(text)?;
                prop_assert_eq!(&parsed, want);
                prop_assert_eq!(got.as_u64(), want.as_u64());
            }
            (Some(Value::Bool(want)), Some(Scalar::Bool(got))) => prop_assert_eq!(want, got),
            (None | Some(Value::Null | Value::Array(_) | Value::Object(_)), None) => {}
            (expected, found) => {
                prop_assert!(false, "serde_json found {expected:?}, the walk {found:?}")
            }
        }
        Ok(())
    }

    fn case_strategy() -> impl Strategy<Value = (String, String, String)> {
        (value_strategy(), any::<u64>()).prop_flat_map(|(value, seed)| {
            let mut json = String::new();
            write(&value, &mut Choices(seed | 1), &mut json);
            (Just(json), pointer_strategy(&value), pointer_strategy(&value))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn agrees_with_serde_json_on_valid_documents((json, first, second) in case_strategy()) {
            let value: Value = serde_json::from_str(&json)?;
            let found = lookup(json.as_bytes(), &first);
            agrees(&found, value.pointer(&first))?;
            let other = lookup(json.as_bytes(), &second);
            agrees(&other, value.pointer(&second))?;
            prop_assert_eq!(lookup_pair(json.as_bytes(), Some(&first), Some(&second)), (found, other));
        }

        #[test]
        fn a_document_cut_short_finds_the_same_or_nothing(
            (json, first, second) in case_strategy(),
            cut in any::<prop::sample::Index>(),
        ) {
            // A bare number at the root cannot be told from a shorter one.
            if !json.trim_start().starts_with(['{', '[']) {
                return Ok(());
            }
            let cut = &json.as_bytes()[..cut.index(json.len() + 1)];
            for pointer in [&first, &second] {
                let found = lookup(cut, pointer);
                prop_assert!(found.is_none() || found == lookup(json.as_bytes(), pointer));
            }
        }

        #[test]
        fn damaged_documents_never_panic_and_one_walk_equals_two(
            (json, first, second) in case_strategy(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]\":,\\u0-e. \x00\xff".to_vec()),
            insert in any::<bool>(),
        ) {
            let mut bytes = json.into_bytes();
            let at = at.index(bytes.len() + 1);
            if insert || at == bytes.len() {
                bytes.insert(at, byte);
            } else {
                bytes[at] = byte;
            }
            let pair = lookup_pair(&bytes, Some(&first), Some(&second));
            prop_assert_eq!(pair, (lookup(&bytes, &first), lookup(&bytes, &second)));
        }
    }
}
