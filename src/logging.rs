//! The process logger behind the `log` crate: text or JSON lines to stderr
//! or a file. Worker threads buffer lines and flush once per loop turn, so
//! an access-log line costs no system call of its own.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Logger {
    json: bool,
    sink: Mutex<Box<dyn Write + Send>>,
}

thread_local! {
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Parse a level name ("error".."trace", "off").
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.trim().parse().ok()
}

/// Install the logger. `RUST_LOG` (a level name) overrides `level`.
pub fn init(level: LevelFilter, json: bool, file: Option<&Path>) -> std::io::Result<()> {
    let level = std::env::var("RUST_LOG").ok().and_then(|v| parse_level(&v)).unwrap_or(level);
    let sink: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        None => Box::new(std::io::stderr()),
    };
    if LOGGER.set(Logger { json, sink: Mutex::new(sink) }).is_ok() {
        if let Some(l) = LOGGER.get() {
            let _ = log::set_logger(l);
        }
    }
    log::set_max_level(level);
    Ok(())
}

/// Buffer this thread's log lines until `flush_thread`.
pub fn buffer_this_thread() {
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(16 * 1024)));
}

/// Write out this thread's buffered lines.
pub fn flush_thread() {
    BUFFER.with(|b| {
        if let Some(buf) = b.borrow_mut().as_mut() {
            if !buf.is_empty() {
                if let Some(l) = LOGGER.get() {
                    if let Ok(mut s) = l.sink.lock() {
                        let _ = s.write_all(buf);
                        let _ = s.flush();
                    }
                }
                buf.clear();
            }
        }
    });
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut line = Vec::with_capacity(160);
        let ts = timestamp();
        if self.json {
            let v = serde_json::json!({
                "ts": ts,
                "level": r.level().as_str(),
                "target": r.target(),
                "msg": r.args().to_string(),
            });
            let _ = serde_json::to_writer(&mut line, &v);
            line.push(b'\n');
        } else {
            let _ = writeln!(line, "{ts} {:<5} {}: {}", r.level(), r.target(), r.args());
        }
        let pending = BUFFER.with(|b| {
            b.borrow_mut().as_mut().map(|buf| {
                buf.extend_from_slice(&line);
                buf.len()
            })
        });
        match pending {
            // warnings and errors are not held back; big batches neither
            Some(len) if len > 64 * 1024 || r.level() <= Level::Warn => flush_thread(),
            Some(_) => {}
            None => {
                if let Ok(mut s) = self.sink.lock() {
                    let _ = s.write_all(&line);
                    let _ = s.flush();
                }
            }
        }
    }

    fn flush(&self) {
        flush_thread();
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date crate.
fn timestamp() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!("{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_598), (2026, 5, 25));
    }
}
