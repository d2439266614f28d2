//! A child's output, split into lines with bounds ([`BoundedLines`]).
//!
//! A process writes whatever it likes to its pipes: a line of a gigabyte (`cat big.bin`), or
//! gigabytes of short lines. The `shell` processor reads its child's output through this
//! splitter, which holds at most one line of [`OutputLimits::max_line_bytes`] at any time, so
//! the worker's memory does not depend on what the child prints:
//!
//! - a line longer than `max_line_bytes` is cut there and marked
//!   (`… [line cut: N more bytes]`); the rest of it is read and thrown away, never buffered;
//! - once `max_output_bytes` of lines have been logged, later lines are passed on marked
//!   [`Line::Unlogged`] (the caller may keep the last few as a result, but logs none), and
//!   [`OutputCut::summary`] gives one closing line that says how many were not logged.
//!
//! The pipe is always read to its end, so a child writing more than the bounds is never
//! blocked on a full pipe: it runs to completion (or to its timeout) as it would unbounded.
//!
//! The splitter does no I/O ([`BoundedLines::push`] takes bytes already read), so its tests
//! feed the same input split at every byte boundary.

/// Bounds on what is kept of one output stream of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Longest line passed on, in bytes (at least 1); longer lines are cut and marked.
    pub max_line_bytes: usize,
    /// Bytes of lines passed on per stream and run; further lines are counted, not passed on.
    pub max_output_bytes: usize,
}

/// Default [`OutputLimits::max_line_bytes`]: 8000 bytes, so that a cut line with its mark
/// (`… [line cut: N more bytes]`, under 50 bytes) still fits the 8 KiB log line the server
/// stores and its count of what was cut arrives.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8000;
/// Default [`OutputLimits::max_output_bytes`]: 8 MiB per stream and run.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// One line of output, cut to `max_line_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Within `max_output_bytes`: to be logged.
    Logged(String),
    /// Beyond `max_output_bytes`: counted in [`OutputCut`], not to be logged.
    Unlogged(String),
}

/// What a stream's bounds cut, once it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCut {
    /// Lines cut at `max_line_bytes`.
    pub long_lines: u64,
    /// Lines not passed on because `max_output_bytes` was reached.
    pub lines_dropped: u64,
    /// Bytes not logged: the cut tails of long lines and the dropped lines.
    pub bytes_dropped: u64,
    /// The `max_output_bytes` in force.
    pub max_output_bytes: usize,
}

impl OutputCut {
    /// The closing line to log when lines were dropped.
    pub fn summary(&self) -> Option<String> {
        (self.lines_dropped > 0).then(|| {
            format!(
                "[output cut: {} more lines ({} bytes in all cut) not logged, beyond {} bytes]",
                self.lines_dropped, self.bytes_dropped, self.max_output_bytes
            )
        })
    }

    /// True when nothing was cut.
    pub fn is_empty(&self) -> bool {
        self.long_lines == 0 && self.lines_dropped == 0 && self.bytes_dropped == 0
    }
}

/// Splits a byte stream into bounded lines (see the module doc).
#[derive(Debug)]
pub struct BoundedLines {
    limits: OutputLimits,
    /// The current line's kept bytes (at most `max_line_bytes`).
    line: Vec<u8>,
    /// Bytes of the current line beyond `line`.
    overflow: u64,
    /// Whether the current line has any byte (an empty last line without `\n` is no line).
    open: bool,
    /// Bytes of lines passed on so far.
    passed: usize,
    cut: OutputCut,
}

impl BoundedLines {
    /// A splitter with `limits` (a `max_line_bytes` of 0 counts as 1).
    pub fn new(limits: OutputLimits) -> Self {
        let limits = OutputLimits {
            max_line_bytes: limits.max_line_bytes.max(1),
            ..limits
        };
        BoundedLines {
            limits,
            line: Vec::new(),
            overflow: 0,
            open: false,
            passed: 0,
            cut: OutputCut {
                max_output_bytes: limits.max_output_bytes,
                ..OutputCut::default()
            },
        }
    }

    /// Feeds `chunk`; every line it completes is given to `emit` (without its `\n`, with a
    /// trailing `\r` removed).
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Line)) {
        while !chunk.is_empty() {
            let (part, rest, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (chunk.get(..i).unwrap_or_default(), chunk.get(i + 1..), true),
                None => (chunk, None, false),
            };
            self.open = true;
            let room = self.limits.max_line_bytes.saturating_sub(self.line.len());
            let (kept, beyond) = part.split_at(room.min(part.len()));
            self.line.extend_from_slice(kept);
            self.overflow = self
                .overflow
                .saturating_add(u64::try_from(beyond.len()).unwrap_or(u64::MAX));
            if ends {
                self.end_line(emit);
            }
            chunk = rest.unwrap_or_default();
        }
    }

    /// Ends the stream: passes on an unterminated last line; returns what was cut.
    pub fn finish(mut self, emit: &mut impl FnMut(Line)) -> OutputCut {
        if self.open {
            self.end_line(emit);
        }
        self.cut
    }

    fn end_line(&mut self, emit: &mut impl FnMut(Line)) {
        let mut bytes = std::mem::take(&mut self.line);
        let overflow = std::mem::take(&mut self.overflow);
        self.open = false;
        if overflow == 0 && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let len = bytes.len();
        let mut text = utf8_lossy_whole_chars(&bytes);
        if overflow > 0 {
            text.push_str(&format!(" … [line cut: {overflow} more bytes]"));
        }
        if self.passed.saturating_add(len) > self.limits.max_output_bytes {
            self.cut.lines_dropped = self.cut.lines_dropped.saturating_add(1);
            let all = u64::try_from(len)
                .unwrap_or(u64::MAX)
                .saturating_add(overflow);
            self.cut.bytes_dropped = self.cut.bytes_dropped.saturating_add(all);
            emit(Line::Unlogged(text));
        } else {
            self.passed += len;
            if overflow > 0 {
                self.cut.long_lines = self.cut.long_lines.saturating_add(1);
                self.cut.bytes_dropped = self.cut.bytes_dropped.saturating_add(overflow);
            }
            emit(Line::Logged(text));
        }
        // Keep the buffer's allocation for the next line.
        self.line = bytes;
        self.line.clear();
    }
}

/// `bytes` as text; an incomplete UTF-8 sequence at the end (a line cut inside a character)
/// is left out rather than shown as a replacement character.
fn utf8_lossy_whole_chars(bytes: &[u8]) -> String {
    let whole = match std::str::from_utf8(bytes) {
        Ok(s) => return s.to_string(),
        Err(e) if e.error_len().is_none() => bytes.get(..e.valid_up_to()).unwrap_or_default(),
        Err(_) => bytes,
    };
    String::from_utf8_lossy(whole).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(line: usize, total: usize) -> OutputLimits {
        OutputLimits {
            max_line_bytes: line,
            max_output_bytes: total,
        }
    }

    /// The lines and the cut of `input` fed in chunks of `step` bytes.
    /// Logged lines are shown as they are, unlogged ones prefixed with `-`; the summary
    /// closes the list.
    fn run(input: &[u8], l: OutputLimits, step: usize) -> (Vec<String>, OutputCut) {
        let mut out = Vec::new();
        let mut emit = |line: Line| match line {
            Line::Logged(s) => out.push(s),
            Line::Unlogged(s) => out.push(format!("-{s}")),
        };
        let mut split = BoundedLines::new(l);
        for chunk in input.chunks(step.max(1)) {
            split.push(chunk, &mut emit);
        }
        let cut = split.finish(&mut emit);
        out.extend(cut.summary());
        (out, cut)
    }

    /// `input` gives `lines` and `cut` whatever the chunk boundaries.
    fn check(input: &[u8], l: OutputLimits, lines: &[&str], cut: OutputCut) {
        for step in 1..=input.len().max(1) {
            let (got, got_cut) = run(input, l, step);
            assert_eq!(got, lines, "{input:?} in chunks of {step}");
            let got_cut = OutputCut {
                max_output_bytes: 0,
                ..got_cut
            };
            assert_eq!(got_cut, cut, "{input:?} in chunks of {step}");
        }
    }

    fn cut(long_lines: u64, lines_dropped: u64, bytes_dropped: u64) -> OutputCut {
        OutputCut {
            long_lines,
            lines_dropped,
            bytes_dropped,
            max_output_bytes: 0,
        }
    }

    #[test]
    fn lines_within_bounds_pass_as_they_are() {
        let l = limits(16, 1000);
        check(b"", l, &[], cut(0, 0, 0));
        check(b"a\nb\n", l, &["a", "b"], cut(0, 0, 0));
        check(b"a\nb", l, &["a", "b"], cut(0, 0, 0));
        check(b"\n\n", l, &["", ""], cut(0, 0, 0));
        check(b"crlf\r\nx", l, &["crlf", "x"], cut(0, 0, 0));
        check("é ü\n".as_bytes(), l, &["é ü"], cut(0, 0, 0));
    }

    #[test]
    fn a_long_line_is_cut_and_marked() {
        let l = limits(4, 1000);
        check(
            b"abcdefgh\nxy\n",
            l,
            &["abcd … [line cut: 4 more bytes]", "xy"],
            cut(1, 0, 4),
        );
        // Exactly the bound is not cut.
        check(b"abcd\n", l, &["abcd"], cut(0, 0, 0));
        // A cut inside a character leaves the partial character out.
        check(
            "abcé\n".as_bytes(),
            l,
            &["abc … [line cut: 1 more bytes]"],
            cut(1, 0, 1),
        );
        // An unterminated long last line too.
        check(
            b"123456",
            l,
            &["1234 … [line cut: 2 more bytes]"],
            cut(1, 0, 2),
        );
    }

    #[test]
    fn beyond_the_total_lines_are_counted_not_passed_on() {
        let l = limits(4, 5);
        check(
            b"ab\ncd\nef\ngh\n",
            l,
            &[
                "ab",
                "cd",
                "-ef",
                "-gh",
                "[output cut: 2 more lines (4 bytes in all cut) not logged, beyond 5 bytes]",
            ],
            cut(0, 2, 4),
        );
        // Dropped long lines count every byte, their cut tails included.
        check(
            b"abcd\nxxxxxxxx\n",
            l,
            &[
                "abcd",
                "-xxxx … [line cut: 4 more bytes]",
                "[output cut: 1 more lines (8 bytes in all cut) not logged, beyond 5 bytes]",
            ],
            cut(0, 1, 8),
        );
    }

    #[test]
    fn a_huge_line_without_newline_keeps_one_bounded_buffer() {
        let mut split = BoundedLines::new(limits(1024, 1 << 20));
        let block = vec![b'x'; 64 * 1024];
        let mut out = Vec::new();
        for _ in 0..1024 {
            split.push(&block, &mut |s| out.push(s));
            assert!(split.line.capacity() <= 2 * 1024, "buffer grew");
        }
        let c = split.finish(&mut |s| out.push(s));
        assert_eq!(out.len(), 1);
        assert_eq!(c.long_lines, 1);
        assert_eq!(c.bytes_dropped, 64 * 1024 * 1024 - 1024);
    }
}
