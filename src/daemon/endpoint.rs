//! The `/metrics` endpoint of `poked run --metrics-listen ADDR`: a small HTTP/1.1 server on one
//! thread of its own, with `std::net` and nothing else.
//!
//! It answers `GET /metrics` (and `HEAD`) with [`crate::metrics::render`], 404 for any other
//! path and 405 for any other method, one connection at a time, each closed after its answer.
//! It reads the database on a connection of its own, so the scheduler's connections are never
//! waited for, and a read never blocks poked's writers (WAL). A slow or silent client cannot
//! hold it for long either: the request must arrive within [`REQUEST_TIME`] and the whole answer
//! be taken within [`WRITE_TIME`], or the connection is dropped. Nothing it does can block the
//! daemon's loop, which only asks it to stop (it looks five times a second).
//!
//! The address is bound by [`bind`] before the daemon recovers or pokes anything, so a port in
//! use is an error at start-up, not a warning in the log.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::{OpenOptions, Store};

/// How often the idle server looks whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// How long a client has to send its request.
pub const REQUEST_TIME: Duration = Duration::from_secs(5);
/// How long a client has to take the whole answer.
pub const WRITE_TIME: Duration = Duration::from_secs(5);
/// The longest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;

/// Parses a `--metrics-listen` address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`, or `:PORT`
/// for every IPv4 interface. Port 0 takes any free port (the log names it).
pub fn parse_address(text: &str) -> std::result::Result<SocketAddr, String> {
    let rule = || {
        "must be IP:PORT, [IPv6]:PORT, localhost:PORT or :PORT (every interface), \
         like 127.0.0.1:9187"
            .to_string()
    };
    if let Ok(address) = SocketAddr::from_str(text) {
        return Ok(address);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(rule)?;
    let port = port.parse::<u16>().map_err(|_| rule())?;
    match host {
        "" => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        "localhost" => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => Err(rule()),
    }
}

/// Binds the metrics address, or says why it cannot (a port in use, an address not of this
/// machine, a privileged port).
pub fn bind(address: SocketAddr) -> Result<TcpListener> {
    let listen = |source| Error::Listen { address, source };
    let listener = TcpListener::bind(address).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    Ok(listener)
}

/// Serves `/metrics` from `listener` until `stop` is set, reading the database at `store`'s
/// path on a connection of its own.
pub fn serve(listener: TcpListener, store: &Store, clock: &dyn Clock, stop: &AtomicBool) {
    if let Ok(local) = listener.local_addr() {
        tracing::info!("serving metrics at http://{local}/metrics");
    }
    let mut reader: Option<Store> = None;
    let mut failing = false;
    while !stop.load(Ordering::SeqCst) {
        if !readable(&listener, POLL) {
            continue;
        }
        let Ok((stream, peer)) = listener.accept() else {
            continue;
        };
        let render = || {
            let opened = match reader.take() {
                Some(opened) => opened,
                None => Store::open(
                    store.path(),
                    OpenOptions {
                        read_only_ok: true,
                        ..OpenOptions::default()
                    },
                )?,
            };
            let text = crate::metrics::render(&opened, clock.now());
            reader = Some(opened);
            text
        };
        match answer(stream, render) {
            Ok(Served::Metrics) if std::mem::take(&mut failing) => {
                tracing::info!("metrics can be read again");
            }
            Ok(Served::Failed(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the metrics; scrapes get 500 until it works");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "metrics client went away"),
        }
    }
}

/// Whether `listener` has a connection waiting, within `timeout`.
fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for a descriptor the listener owns, for the length of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, ms) };
    ready > 0 && fd.revents & libc::POLLIN != 0
}

/// What a connection was given.
enum Served {
    Metrics,
    Other,
    Failed(Error),
}

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, render: impl FnOnce() -> Result<String>) -> std::io::Result<Served> {
    stream.set_nonblocking(false)?;
    let head = read_head(&mut stream)?;
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next());
    let Some(target) = target.filter(|_| words.next().is_some_and(|v| v.starts_with("HTTP/"))) else {
        respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
            true,
        )?;
        return Ok(Served::Other);
    };
    let path = target.split('?').next().unwrap_or_default();
    let head_only = method == "HEAD";
    if path != "/metrics" {
        let body = "not found: poked serves /metrics\n";
        respond(&mut stream, "404 Not Found", "text/plain", body, !head_only)?;
        return Ok(Served::Other);
    }
    if method != "GET" && !head_only {
        respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "use GET\n",
            true,
        )?;
        return Ok(Served::Other);
    }
    match render() {
        Ok(body) => {
            respond(
                &mut stream,
                "200 OK",
                crate::metrics::CONTENT_TYPE,
                &body,
                !head_only,
            )?;
            Ok(Served::Metrics)
        }
        Err(e) => {
            let body = format!("cannot read the metrics: {e}\n");
            respond(
                &mut stream,
                "500 Internal Server Error",
                "text/plain",
                &body,
                !head_only,
            )?;
            Ok(Served::Failed(e))
        }
    }
}

/// The request line and headers, up to the blank line, read within [`REQUEST_TIME`].
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let deadline = Instant::now() + REQUEST_TIME;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        head.extend_from_slice(&buf[..n]);
        let ended = head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
        if n == 0 || ended || head.len() >= MAX_REQUEST {
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
    }
}

/// Writes all of `bytes` before `deadline`, or fails: a client that takes a large answer a
/// few bytes at a time cannot hold the endpoint longer than that.
fn write_within(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let deadline = Instant::now() + WRITE_TIME;
    write_within(stream, head.as_bytes(), deadline)?;
    if with_body {
        write_within(stream, body.as_bytes(), deadline)?;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_as_exporters_write_them() {
        let ok = |text: &str| parse_address(text).map(|a| a.to_string());
        assert_eq!(ok("127.0.0.1:9187"), Ok("127.0.0.1:9187".into()));
        assert_eq!(ok("[::1]:9187"), Ok("[::1]:9187".into()));
        assert_eq!(ok(":9187"), Ok("0.0.0.0:9187".into()));
        assert_eq!(ok("localhost:0"), Ok("127.0.0.1:0".into()));
        for bad in [
            "nonsense",
            "127.0.0.1",
            "127.0.0.1:99999",
            "example.com:80",
            ":",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
