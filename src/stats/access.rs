//! The access log (docs/wire.md §5): one line per `/v1/` request on stderr, as text
//! or as a JSON object: time, client address, method, path, the model the
//! client asked for, provider/account, status, latency, TTFT, tokens and
//! request id. Never a key: the path is logged without its query string
//! (where `?api_key=` may be), and no header is.
//!
//! Lines are gathered in a buffer per thread and written when it holds
//! [`FLUSH_BYTES`], or when the worker's once-a-second tick calls
//! [`flush`] (as nginx's `access_log ... buffer=`): no syscall per request,
//! and a line is out within about a second.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::json_str;
use crate::config::AccessLog;

/// A thread's buffer is written out once it holds this much.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The format in force (`AccessLog as u8`); set at start from the config.
static FORMAT: AtomicU8 = AtomicU8::new(AccessLog::Off as u8);

thread_local! {
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Turn the access log on (text or JSON lines) or off.
pub fn set_format(format: AccessLog) {
    FORMAT.store(format as u8, Relaxed);
}

/// Whether lines are written at all.
pub fn enabled() -> bool {
    FORMAT.load(Relaxed) != AccessLog::Off as u8
}

/// What a line says about one request.
pub struct Entry<'a> {
    pub unix_ms: u64,
    pub client: Option<SocketAddr>,
    pub method: &'a str,
    /// Without its query string.
    pub path: &'a str,
    pub model: &'a str,
    /// `provider/account`, when the request reached one.
    pub route: Option<&'a str>,
    pub status: u16,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tokens: (u64, u64),
    pub request_id: &'a str,
    pub error: Option<&'a str>,
    /// Tools left out of the request on its way upstream (hosted tools a
    /// chat provider cannot run), comma-separated.
    pub dropped_tools: Option<&'a str>,
    /// The name of the client key the request presented (never the key).
    pub key: Option<&'a str>,
}

/// Add one request's line to this thread's buffer.
pub fn record(e: &Entry<'_>) {
    let json = FORMAT.load(Relaxed) == AccessLog::Json as u8;
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        let client = e.client.map(|c| c.to_string());
        let client = client.as_deref().unwrap_or("-");
        let _ = if json {
            writeln!(
                b,
                "{{\"time\":\"{}\",\"client\":{},\"method\":{},\"path\":{},\"model\":{},\"route\":{},\"status\":{},\"latency\":{:.3},\"ttft\":{},\"tokens\":{{\"prompt\":{},\"completion\":{}}},\"requestId\":{},\"error\":{},\"droppedTools\":{},\"key\":{}}}",
                rfc3339(e.unix_ms),
                json_str(client),
                json_str(e.method),
                json_str(e.path),
                json_str(e.model),
                e.route.map_or("null".to_owned(), json_str),
                e.status,
                e.latency_ms,
                e.ttft_ms.map_or("null".to_owned(), |t| format!("{t:.3}")),
                e.tokens.0,
                e.tokens.1,
                json_str(e.request_id),
                e.error.map_or("null".to_owned(), json_str),
                e.dropped_tools.map_or("null".to_owned(), json_str),
                e.key.map_or("null".to_owned(), json_str),
            )
        } else {
            let ttft = e.ttft_ms.map_or("-".to_owned(), |t| format!("{t:.1}ms"));
            writeln!(
                b,
                "{} {} \"{} {}\" model={} route={} status={} latency={:.1}ms ttft={} tokens={}/{} id={} error={}{}{}",
                rfc3339(e.unix_ms),
                client,
                e.method,
                e.path.escape_debug(),
                if e.model.is_empty() { "-".to_owned() } else { e.model.escape_debug().to_string() },
                e.route.unwrap_or("-"),
                e.status,
                e.latency_ms,
                ttft,
                e.tokens.0,
                e.tokens.1,
                if e.request_id.is_empty() { "-" } else { e.request_id },
                e.error.unwrap_or("-"),
                e.dropped_tools.map_or(String::new(), |d| format!(" dropped={d}")),
                e.key.map_or(String::new(), |k| format!(" key={}", k.escape_debug())),
            )
        };
        if b.len() >= FLUSH_BYTES {
            write_out(&mut b);
        }
    });
}

/// Write out this thread's buffered lines.
pub fn flush() {
    BUFFER.with(|b| write_out(&mut b.borrow_mut()));
}

fn write_out(buffer: &mut String) {
    if buffer.is_empty() {
        return;
    }
    let _ = std::io::stderr().lock().write_all(buffer.as_bytes());
    buffer.clear();
}

/// `2026-11-29T23:52:15.123Z` for Unix milliseconds (RFC 3339, UTC).
pub fn rfc3339(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(784_111_777_123), "1994-11-06T08:49:37.123Z");
        assert_eq!(rfc3339(1_835_481_599_000), "2028-02-29T23:59:59.000Z");
    }
}
