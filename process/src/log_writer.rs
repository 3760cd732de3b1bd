//! Log output that keeps one event on one line. Field values and messages often carry text from outside the
//! process (a NACK's `error_detail`, an AdmissionReview's `uid`, a file's content); a line break in such text must
//! not start what looks like a separate, forged log line. tracing-subscriber already escapes terminal control
//! sequences; this writer escapes CR and LF inside an event, whatever field they came from.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Makes [`OneLine`] writers around stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneLineStderr;

impl<'a> MakeWriter<'a> for OneLineStderr {
    type Writer = OneLine<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine(io::stderr())
    }
}

/// Writes each formatted event (tracing-subscriber writes an event with one `write_all`) with its inner line
/// breaks escaped as `\n` and `\r`; the final newline stays.
#[derive(Debug)]
pub struct OneLine<W>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_line_breaks(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `buf` with every CR and LF escaped except one trailing LF.
pub fn escape_line_breaks(buf: &[u8]) -> Cow<'_, [u8]> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (buf, &b""[..]),
    };
    if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return Cow::Borrowed(buf);
    }
    let mut escaped = Vec::with_capacity(buf.len() + 16);
    for byte in body {
        match byte {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            other => escaped.push(*other),
        }
    }
    escaped.extend_from_slice(end);
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_inside_an_event_are_escaped_and_the_last_one_kept() {
        let forged = b"WARN NACK detail=boom\n2026-12-03T00:00:00Z  INFO all is well\r\n";
        assert_eq!(
            escape_line_breaks(forged).as_ref(),
            b"WARN NACK detail=boom\\n2026-12-03T00:00:00Z  INFO all is well\\r\n"
        );
        assert!(matches!(escape_line_breaks(b"INFO plain\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn events_logged_through_the_writer_stay_on_one_line() {
        let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let make = {
            let sink = sink.clone();
            move || OneLine(SharedBuffer(sink.clone()))
        };
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(make).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(uid = %"abc\nINFO forged line", detail = "x\ry", "first\nsecond");
        });
        let output = String::from_utf8(sink.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        assert_eq!(output.lines().count(), 1, "{output}");
        assert!(output.contains("first\\nsecond") && output.contains("abc\\nINFO forged line"), "{output}");
    }

    struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Ok(mut sink) = self.0.lock() {
                sink.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
