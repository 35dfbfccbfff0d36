//! Happy Eyeballs (RFC 8305) TCP connection set-up (feature `tokio`).
//!
//! Why: trying a host's addresses one after another spends the whole connect deadline on the
//! first one when it sits behind a path that silently drops packets (a broken IPv6 route is the
//! common case), and the working address after it is never tried. Here the attempts overlap:
//!
//! - the addresses are ordered as RFC 8305 section 4 asks: the resolver's order (which sorts by
//!   RFC 6724 destination address selection, IPv6 first on a dual-stack host), with the two
//!   families interleaved, starting with the family of the first address;
//! - the first attempt starts at once, and each following one after the
//!   [connection attempt delay](crate::transport::SetupTimeouts::connection_attempt_delay)
//!   (250 ms by default, RFC 8305 section 5), or at once when an earlier attempt fails;
//! - the first attempt to complete wins; the others are dropped, which closes their sockets;
//! - when all fail, the error names every address and how it failed.
//!
//! The overall connect deadline stays with the caller ([`crate::transport::connect_from`]).
//! Not done: the separate AAAA/A queries and resolution delay of RFC 8305 section 3 (the
//! system resolver answers for both families at once) and the NAT64 synthesis of section 7.

use std::{
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::Poll,
    time::Duration,
};

use tokio::{
    net::{TcpSocket, TcpStream},
    time::{Instant, Sleep},
};

pub use crate::setup::{DEFAULT_ATTEMPT_DELAY, interleave};

/// Every connection attempt failed: which address failed how, in the order they were tried.
#[derive(Debug)]
pub struct AttemptsFailed {
    /// The address tried and its error.
    pub attempts: Vec<(SocketAddr, io::Error)>,
}

impl fmt::Display for AttemptsFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (addr, error)) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{addr}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AttemptsFailed {}

impl AttemptsFailed {
    /// As an [`io::Error`] of the kind of the last failure (so callers that look at the kind of
    /// a single-address failure, such as `ConnectionRefused`, still see it), carrying the list.
    fn into_io_error(self) -> io::Error {
        let kind = self
            .attempts
            .last()
            .map_or(io::ErrorKind::NotFound, |(_, e)| e.kind());
        io::Error::new(kind, self)
    }
}

/// Resolves `host`, then connects to `port` on its addresses with Happy Eyeballs. With `local`,
/// the socket is bound to that address (any port) and only addresses of its family are tried.
///
/// # Errors
/// Resolution failure; no address (of `local`'s family); or every attempt failed, as an
/// [`io::Error`] of the kind of the last failure whose inner error is [`AttemptsFailed`].
pub async fn connect(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
    attempt_delay: Duration,
) -> io::Result<TcpStream> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let usable: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| local.is_none_or(|local| local.is_ipv4() == a.is_ipv4()))
        .collect();
    if usable.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            match local {
                Some(local) => format!("{host} has no address in the family of {local}"),
                None => format!("{host} resolved to no address"),
            },
        ));
    }
    race(&interleave(usable), attempt_delay, |addr| {
        attempt(addr, local)
    })
    .await
    .map(|(_, stream)| stream)
    .map_err(AttemptsFailed::into_io_error)
}

/// One TCP connection attempt, from `local` when given.
async fn attempt(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.connect(addr).await
}

type Attempt<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Runs `connect` for the addresses in order, starting each after `delay` or as soon as an
/// earlier attempt fails, and returns the first success with its address. The attempts still
/// running then are dropped. Generic over the attempt so the scheduling can be tested without a
/// network.
///
/// # Errors
/// Every attempt failed (or `addrs` is empty): each address with its error.
pub async fn race<'a, T, F, Fut>(
    addrs: &[SocketAddr],
    delay: Duration,
    mut connect: F,
) -> Result<(SocketAddr, T), AttemptsFailed>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>> + Send + 'a,
{
    let mut running: Vec<(SocketAddr, Attempt<'a, T>)> = Vec::new();
    let mut failed = Vec::new();
    let mut queued = addrs.iter().copied();
    let mut next_start: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(delay));
    let mut more = addrs.len();
    // Set when an attempt failed: the next one starts without waiting for the timer.
    let mut start_now = true;
    std::future::poll_fn(move |cx| {
        loop {
            // Start the next attempt when its delay has passed or an earlier one failed.
            if more > 0
                && (start_now || next_start.as_mut().poll(cx).is_ready())
                && let Some(addr) = queued.next()
            {
                more -= 1;
                start_now = false;
                running.push((addr, Box::pin(connect(addr))));
                next_start.as_mut().reset(Instant::now() + delay);
                // Registers the timer's wake-up (it is not due yet).
                let _ = next_start.as_mut().poll(cx);
            }
            let mut index = 0;
            let mut one_failed = false;
            while index < running.len() {
                match running[index].1.as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok((running[index].0, stream))),
                    Poll::Ready(Err(error)) => {
                        let (addr, _) = running.remove(index);
                        failed.push((addr, error));
                        one_failed = true;
                    }
                    Poll::Pending => index += 1,
                }
            }
            if running.is_empty() && more == 0 {
                return Poll::Ready(Err(AttemptsFailed {
                    attempts: std::mem::take(&mut failed),
                }));
            }
            if one_failed && more > 0 {
                // A failure starts the next attempt at once (RFC 8305 section 5).
                start_now = true;
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::{AttemptsFailed, interleave, race};
    use std::{
        io,
        net::SocketAddr,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };
    use tokio::time::Instant;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    const DELAY: Duration = Duration::from_millis(250);

    #[test]
    fn interleaves_starting_with_the_first_family() {
        let v4_first = addrs(&[
            "192.0.2.1:1",
            "192.0.2.2:1",
            "[2001:db8::1]:1",
            "[2001:db8::2]:1",
        ]);
        assert_eq!(
            interleave(v4_first),
            addrs(&[
                "192.0.2.1:1",
                "[2001:db8::1]:1",
                "192.0.2.2:1",
                "[2001:db8::2]:1"
            ])
        );
        let one_family = addrs(&["[2001:db8::1]:1", "[2001:db8::2]:1"]);
        assert_eq!(interleave(one_family.clone()), one_family);
        assert!(interleave(Vec::new()).is_empty());
    }

    /// What the fake attempts saw: when each address was started, relative to the race's start.
    type Log = Arc<Mutex<Vec<(SocketAddr, Duration)>>>;

    /// An attempt that, after `after`, succeeds, fails, or never completes (`None`).
    fn fake(
        log: &Log,
        start: Instant,
        plan: impl Fn(SocketAddr) -> (Duration, Option<io::Result<u32>>),
    ) -> impl FnMut(SocketAddr) -> std::pin::Pin<Box<dyn Future<Output = io::Result<u32>> + Send>>
    {
        let log = Arc::clone(log);
        move |addr| {
            log.lock().unwrap().push((addr, start.elapsed()));
            let (after, outcome) = plan(addr);
            Box::pin(async move {
                tokio::time::sleep(after).await;
                match outcome {
                    Some(outcome) => outcome,
                    None => std::future::pending().await,
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_black_hole_first_costs_one_delay() {
        let list = addrs(&["[2001:db8::1]:1", "192.0.2.1:1"]);
        let log = Log::default();
        let start = Instant::now();
        let won = race(
            &list,
            DELAY,
            fake(&log, start, |addr| {
                if addr.is_ipv6() {
                    (Duration::ZERO, None)
                } else {
                    (Duration::from_millis(10), Some(Ok(4)))
                }
            }),
        )
        .await
        .unwrap();
        assert_eq!(won, (list[1], 4));
        assert_eq!(
            *log.lock().unwrap(),
            vec![(list[0], Duration::ZERO), (list[1], DELAY)]
        );
        assert_eq!(start.elapsed(), DELAY + Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_the_next_attempt_at_once() {
        let list = addrs(&["[2001:db8::1]:1", "192.0.2.1:1", "[2001:db8::2]:1"]);
        let log = Log::default();
        let start = Instant::now();
        let refused = || Some(Err(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let won = race(
            &list,
            DELAY,
            fake(&log, start, |addr| match addr {
                a if a == list[0] => (Duration::from_millis(20), refused()),
                a if a == list[1] => (Duration::ZERO, None),
                _ => (Duration::from_millis(5), Some(Ok(6))),
            }),
        )
        .await
        .unwrap();
        assert_eq!(won, (list[2], 6));
        // The second started when the first failed; the third one delay after the second.
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                (list[0], Duration::ZERO),
                (list[1], Duration::from_millis(20)),
                (list[2], Duration::from_millis(20) + DELAY),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_to_complete_wins_and_the_others_are_dropped() {
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let list = addrs(&["[2001:db8::1]:1", "192.0.2.1:1"]);
        let dropped = Arc::new(AtomicUsize::new(0));
        let won = race(&list, DELAY, |addr| {
            let guard = Dropped(Arc::clone(&dropped));
            async move {
                let _guard = guard;
                // The first (started earlier) completes later than the second.
                let after = if addr.is_ipv6() { 2 * DELAY } else { DELAY / 2 };
                tokio::time::sleep(after).await;
                Ok(addr.port())
            }
        })
        .await
        .unwrap();
        assert_eq!(won.0, list[1]);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "loser and winner both dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn all_failures_are_reported_with_their_addresses() {
        let list = addrs(&["[2001:db8::1]:1", "192.0.2.1:1"]);
        let log = Log::default();
        let err = race(
            &list,
            DELAY,
            fake(&log, Instant::now(), |addr| {
                let kind = if addr.is_ipv6() {
                    io::ErrorKind::NetworkUnreachable
                } else {
                    io::ErrorKind::ConnectionRefused
                };
                (Duration::from_millis(1), Some(Err(io::Error::from(kind))))
            }),
        )
        .await
        .unwrap_err();
        let kinds: Vec<_> = err.attempts.iter().map(|(a, e)| (*a, e.kind())).collect();
        assert_eq!(
            kinds,
            vec![
                (list[0], io::ErrorKind::NetworkUnreachable),
                (list[1], io::ErrorKind::ConnectionRefused)
            ]
        );
        let shown = err.to_string();
        assert!(
            shown.contains("[2001:db8::1]:1: ") && shown.contains("192.0.2.1:1: "),
            "{shown}"
        );
        let io = err.into_io_error();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            io.get_ref()
                .is_some_and(|inner| inner.is::<AttemptsFailed>())
        );
    }

    #[tokio::test]
    async fn loopback_refused_ipv6_then_ipv4_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A port on ::1 with nothing listening (IPv6 loopback may be absent: then it fails
        // differently, which serves as well).
        let closed = std::net::TcpListener::bind("[::1]:0")
            .ok()
            .and_then(|l| l.local_addr().ok())
            .map_or(1, |a| a.port());
        let list = vec![
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], closed)),
            SocketAddr::from(([127, 0, 0, 1], port)),
        ];
        let (addr, stream) = race(&list, Duration::from_secs(30), |addr| {
            super::attempt(addr, None)
        })
        .await
        .unwrap();
        assert_eq!(addr, list[1]);
        assert_eq!(stream.peer_addr().unwrap(), list[1]);
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from, stream.local_addr().unwrap());
    }

    #[tokio::test]
    async fn local_address_limits_the_family_and_binds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let local = "127.0.0.1".parse().unwrap();
        let stream = super::connect("localhost", port, Some(local), DELAY)
            .await
            .unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), local);
        let err = super::connect("127.0.0.1", port, Some("::1".parse().unwrap()), DELAY)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
    }
}
