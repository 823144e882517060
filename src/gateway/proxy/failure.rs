//! How one attempt ended (docs/wire.md §2): its answer, and for a failure
//! the scope it belongs to (deployment, account or origin), its cause, and
//! the upstream's `Retry-After` (RFC 9110 §10.2.3).

use std::time::Duration;

use super::Response;
use crate::api::error::ApiError;
use crate::gateway::router::{Cause, Failure, Scope};
use crate::upstream::UpstreamError;

/// How one attempt at one deployment ended.
pub enum Attempt {
    /// The answer to give the client.
    Done(Response),
    /// This deployment failed in a way another may not.
    Failed(FailedAttempt),
}

/// One failed attempt, described once: the answer the client gets if no
/// retry is left, the scope the failure belongs to (deployment, account or
/// origin), and its cause with the status and `Retry-After` it came with.
/// The retry loop records it in the router's health from this value alone.
pub struct FailedAttempt {
    pub answer: Response,
    pub scope: Scope,
    pub failure: Failure,
}

impl FailedAttempt {
    /// The [`Attempt`] that failed this way.
    pub(super) fn attempt(
        answer: Response,
        scope: Scope,
        cause: Cause,
        status: u16,
        retry_after: Option<Duration>,
    ) -> Attempt {
        Attempt::Failed(FailedAttempt {
            answer,
            scope,
            failure: Failure {
                cause,
                status,
                retry_after,
            },
        })
    }
}

/// The scope an upstream status belongs to, or `None` when the request
/// itself is at fault (other 4xx): then nothing rests, no other deployment
/// is tried, and the client gets the upstream's answer (docs/wire.md §2).
pub(super) fn classify_status(status: u16) -> Option<(Scope, Cause)> {
    match status {
        429 => Some((Scope::Deployment, Cause::RateLimit)),
        // The client's organization and project are never forwarded, so a
        // refused key is the account's own.
        401 | 403 => Some((Scope::Account, Cause::KeyRefused)),
        408 => Some((Scope::Deployment, Cause::Timeout)),
        _ if status >= 500 => Some((Scope::Deployment, Cause::ServerError)),
        _ => None,
    }
}

/// The scope of a failure before any answer: connections that cannot be
/// made belong to the origin, a missed deadline or a broken answer to the
/// deployment. (A queue timeout at the origin's connection cap is no
/// failure of the upstream's: `forward` answers it at once.)
pub(super) fn classify_error(e: &UpstreamError) -> (Scope, Cause) {
    match e {
        UpstreamError::Connect(_) | UpstreamError::ConnectTimeout | UpstreamError::Tls(_) => {
            (Scope::Origin, Cause::Unreachable)
        }
        e if e.is_timeout() => (Scope::Deployment, Cause::Timeout),
        _ => (Scope::Deployment, Cause::ServerError),
    }
}

/// The client's answer to an upstream failure (docs/wire.md §4): 504
/// `upstream_timeout` for a missed deadline, 503 `server_overloaded` for a
/// queue at the connection cap or no file descriptor for a connection,
/// else 502 `upstream_error` with the cause.
pub(crate) fn api_error(e: &UpstreamError) -> ApiError {
    match e {
        UpstreamError::QueueTimeout { max_conns } => ApiError::UpstreamBusy(*max_conns),
        UpstreamError::OutOfDescriptors(_) => ApiError::OutOfDescriptors,
        e if e.is_timeout() => ApiError::UpstreamTimeout,
        e => ApiError::Upstream(e.to_string()),
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as the
/// time from now; a date in the past is no delay.
pub fn retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(text)?;
    Some(Duration::from_secs(
        at.saturating_sub(crate::stats::unix_time()),
    ))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) as
/// Unix seconds; the obsolete forms are not accepted.
pub(super) fn http_date(text: &str) -> Option<u64> {
    let rest = text.get(5..)?; // "Sun, "
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after(b" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        // A date in the past is no delay; a date ahead is its distance.
        assert_eq!(
            retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let ahead = crate::stats::unix_time() + 120;
        let days = ahead / 86_400;
        let date = format_http_date(ahead);
        let got = retry_after(date.as_bytes()).expect("parsed");
        assert!(
            (119..=120).contains(&got.as_secs()),
            "{date}: {got:?} ({days})"
        );
        for bad in [
            "",
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(bad.as_bytes()), None, "{bad}");
        }
    }

    /// The inverse of `http_date`, for the test (weekday left generic),
    /// from the access log's RFC 3339 rendering of the same instant.
    fn format_http_date(unix: u64) -> String {
        let iso = crate::stats::access::rfc3339(unix * 1000); // 2026-11-30T00:21:00.000Z
        let (y, m, d, time) = (&iso[..4], &iso[5..7], &iso[8..10], &iso[11..19]);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[m.parse::<usize>().expect("month") - 1];
        format!("Mon, {d} {month} {y} {time} GMT")
    }
}
