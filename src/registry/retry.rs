//! Network calls that survive real networks: a call that fails for a reason that may pass (a 5xx
//! or 429 answer, a reset or refused connection, a body cut short, a read that stalled past the
//! idle timeout, a digest that did not match) is made again with exponential backoff (the `backon`
//! crate); anything else fails at once. Callers make each attempt from scratch (a blob download
//! starts a new temporary blob), so what lands in the store is always verified whole.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// Attempts made in all (the first and the retries).
pub const ATTEMPTS: usize = 5;

/// How long a read may wait for the next bytes before the connection is cut and the call made
/// again: `HAKO_NET_IDLE_TIMEOUT` (seconds), 60 by default.
pub fn idle_timeout() -> Duration {
    let secs = std::env::var("HAKO_NET_IDLE_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok());
    Duration::from_secs_f64(secs.filter(|s| *s > 0.0).unwrap_or(60.0))
}

/// Whether an error may pass if the call is made again.
pub trait Transient {
    /// True for errors worth a retry.
    fn transient(&self) -> bool;
}

impl Transient for reqwest::Error {
    fn transient(&self) -> bool {
        if let Some(status) = self.status() {
            return status.is_server_error() || status.as_u16() == 429;
        }
        // A certificate that is not trusted will not be trusted on the next attempt either.
        if certificate_rejected(self) {
            return false;
        }
        self.is_timeout() || self.is_connect() || self.is_body() || self.is_decode() || self.is_request()
    }
}

/// `e` and its causes, `: `-joined (a cause its parent's text already shows is left out):
/// reqwest's own text ("error sending request for url …") does not say why.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = c.source();
    }
    text
}

/// Whether TLS failed because the server's certificate was not accepted (rustls says
/// "invalid peer certificate: UnknownIssuer", "… NotValidForName", …).
pub fn certificate_rejected(e: &(dyn std::error::Error + 'static)) -> bool {
    chain(e).contains("certificate")
}

impl Transient for oci_client::errors::OciDistributionError {
    fn transient(&self) -> bool {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode};
        match self {
            E::ServerError { code, .. } => *code >= 500 || *code == 429,
            E::RequestError(e) => e.transient(),
            E::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Toomanyrequests))
            }
            // oci-client reports a body cut short while streaming a blob as an I/O error.
            E::IoError(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::Other
            ),
            _ => false,
        }
    }
}

/// An attempt's failure: transient or not, as the error says.
#[derive(Debug)]
pub struct Failed<E> {
    /// The error of the last attempt.
    pub error: E,
    /// Attempts made.
    pub attempts: usize,
}

/// Makes `call` until it succeeds, fails for good, or [`ATTEMPTS`] attempts were made.
pub async fn retry<T, E, F, Fut>(mut call: F) -> Result<T, Failed<E>>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let attempts = std::sync::atomic::AtomicUsize::new(1);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(ATTEMPTS - 1)
        .with_jitter();
    (|| call())
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.transient())
        .notify(|_, _| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .map_err(|error| Failed { error, attempts: attempts.load(std::sync::atomic::Ordering::Relaxed) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct E(bool);
    impl Transient for E {
        fn transient(&self) -> bool {
            self.0
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let n = Cell::new(0);
        let ok = run(retry(|| {
            n.set(n.get() + 1);
            let i = n.get();
            async move { if i < 3 { Err(E(true)) } else { Ok(i) } }
        }));
        assert_eq!(ok.map_err(|f| f.attempts).ok(), Some(3));

        n.set(0);
        let failed = run(retry(|| {
            n.set(n.get() + 1);
            async { Err::<(), _>(E(false)) }
        }))
        .expect_err("permanent");
        assert_eq!((n.get(), failed.attempts), (1, 1));

        n.set(0);
        let failed = run(retry(|| {
            n.set(n.get() + 1);
            async { Err::<(), _>(E(true)) }
        }))
        .expect_err("gives up");
        assert_eq!((n.get(), failed.attempts), (ATTEMPTS, ATTEMPTS));
    }
}
