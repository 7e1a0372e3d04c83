//! `ADD https://…`: downloads stream into the store (digested on the way) and are checked against
//! `--checksum` before anything is written into a layer.

use futures_util::StreamExt;

use crate::digest::Digest;
use crate::registry::retry;
use crate::store::Store;

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its content digest (it is stored as a blob under it).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// `Last-Modified` as Unix time, if the server sent one (Docker uses it as the mtime).
    pub mtime: Option<i64>,
}

/// Downloads `url` into the store. `checksum` (`sha256:…`) must match when given.
pub fn fetch(store: &Store, url: &str, checksum: Option<&str>) -> Result<Fetched, String> {
    let expected = checksum
        .map(|c| {
            Digest::parse(c)
                .map_err(|_| format!("--checksum={c}: expected sha256: followed by 64 hex digits"))
        })
        .transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the network runtime: {e}"))?;
    let (digest, size, mtime) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(retry::idle_timeout())
            .build()
            .map_err(|e| e.to_string())?;
        retry::retry(|| download(&client, store, url)).await.map_err(|f| {
            let tries = if f.attempts > 1 {
                format!(" (gave up after {} attempts)", f.attempts)
            } else {
                String::new()
            };
            format!("downloading {url}: {}{tries}", f.error)
        })
    })?;
    if let Some(want) = expected
        && want != digest
    {
        return Err(format!("checksum mismatch for {url}: expected {want}, got {digest}"));
    }
    Ok(Fetched { digest, size, mtime })
}

/// Why one download attempt failed.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl retry::Transient for Attempt {
    fn transient(&self) -> bool {
        match self {
            Attempt::Http(e) => e.transient(),
            Attempt::Status(s) => s.is_server_error() || s.as_u16() == 429,
            Attempt::Store(_) | Attempt::Io(_) => false,
        }
    }
}

/// One attempt: the body streamed into a new temporary blob (dropped if the attempt fails).
async fn download(
    client: &reqwest::Client,
    store: &Store,
    url: &str,
) -> Result<(Digest, u64, Option<i64>), Attempt> {
    let resp = client.get(url).send().await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Attempt::Status(status));
    }
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut writer = store.blob_writer()?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        std::io::Write::write_all(&mut writer, &chunk?)?;
    }
    let (digest, size) = writer.commit(None)?;
    Ok((digest, size, mtime))
}

/// The file name a URL gives a download (`https://x/a/b.tgz?x=1` → `b.tgz`).
pub fn file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let after_host = path.split_once("://").map_or(path, |(_, rest)| rest);
    let (_, path) = after_host.split_once('/')?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix time.
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = t.as_slice() else { return None };
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(file_name("https://example.com/a/b.tgz?x=1#f").as_deref(), Some("b.tgz"));
        assert_eq!(file_name("http://127.0.0.1:8000/file").as_deref(), Some("file"));
        assert_eq!(file_name("https://example.com/"), None);
        assert_eq!(file_name("https://example.com"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
