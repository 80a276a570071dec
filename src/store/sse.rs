//! The client side of a team server's `GET /v1/watch`: a Server-Sent Events stream of log
//! heads read as a [`HeadListener`].
//!
//! Only what the server sends is understood (`event: head`, one `data:` line of JSON,
//! `id:`, and `:` keep-alive comments); a line longer than [`MAX_LINE`] or a body that is
//! not a head ends the stream with an error, and the caller connects again.

use super::{Head, HeadListener, StoreError};
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// The longest line accepted from the stream.
const MAX_LINE: u64 = 16 * 1024;

/// A `/v1/watch` stream being read.
pub(super) struct HeadStream<R> {
    lines: BufReader<R>,
    url: String,
    head: Option<Head>,
}

impl<R: Read + Send> HeadStream<R> {
    /// Reads the stream's first event (the head as it is now), so [`HeadListener::wait`]
    /// then reports only changes, like every other listener.
    pub(super) fn start(body: R, url: String) -> Result<HeadStream<R>, StoreError> {
        let mut stream = HeadStream {
            lines: BufReader::new(body),
            url,
            head: None,
        };
        // The first event arrives at once; a keep-alive interval is plenty.
        if stream.wait(Duration::from_secs(20))?.is_none() {
            return Err(stream.broken("no head at the start of the stream"));
        }
        Ok(stream)
    }

    fn broken(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unreachable {
            url: self.url.clone(),
            detail: format!("watch stream: {detail}"),
        }
    }

    /// The next line without its line ending; `None` at the end of the stream.
    fn line(&mut self) -> Result<Option<String>, StoreError> {
        let mut line = String::new();
        let read = (&mut self.lines)
            .take(MAX_LINE)
            .read_line(&mut line)
            .map_err(|e| self.broken(e))?;
        if read == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') {
            return Err(self.broken(format!("a line longer than {MAX_LINE} bytes")));
        }
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
    }
}

impl<R: Read + Send> HeadListener for HeadStream<R> {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Head>, StoreError> {
        let deadline = Instant::now() + timeout;
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let Some(line) = self.line()? else {
                return Err(self.broken("the server closed it"));
            };
            if line.is_empty() {
                // The end of an event.
                if event == "head" {
                    let head: Head = serde_json::from_str(&data)
                        .map_err(|e| self.broken(format!("an unreadable head: {e}")))?;
                    if self.head.as_ref() != Some(&head) {
                        self.head = Some(head.clone());
                        return Ok(Some(head));
                    }
                }
                event.clear();
                data.clear();
            } else if line.starts_with(':') {
                // A keep-alive: the time to give up waiting, if it has come.
            } else {
                let (field, value) = line.split_once(':').unwrap_or((&line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = value.to_string(),
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> Result<HeadStream<&[u8]>, StoreError> {
        HeadStream::start(text.as_bytes(), "http://server".into())
    }

    #[test]
    fn heads_are_read_after_the_first_and_keep_alives_only_pass_time() {
        let mut s = stream(concat!(
            "event: head\nid: 3\ndata: {\"seq\":3,\"hash\":\"c\"}\n\n",
            ": keep-alive\n\n",
            "event: head\ndata: {\"seq\":4,\"hash\":\"d\"}\n\n",
        ))
        .unwrap();
        assert_eq!(
            s.wait(Duration::from_secs(60)).unwrap(),
            Some(Head {
                seq: 4,
                hash: Some("d".into())
            })
        );
        // The server closed the stream: an error, so the caller connects again.
        assert!(matches!(
            s.wait(Duration::from_secs(60)),
            Err(StoreError::Unreachable { .. })
        ));
    }

    #[test]
    fn a_stream_without_a_head_first_or_with_a_runaway_line_is_refused() {
        let err = stream(": hello\n\n").err().unwrap().to_string();
        assert!(err.contains("watch stream"), "{err}");
        let long = format!("data: {}\n", "x".repeat(MAX_LINE as usize + 1));
        let err = stream(&long).err().unwrap().to_string();
        assert!(err.contains("longer than"), "{err}");
        let err = stream("event: head\ndata: nonsense\n\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unreadable head"), "{err}");
    }
}
