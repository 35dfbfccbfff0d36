//! Capturing `tracing` output in a test, reliably while other tests of the binary run.
//!
//! `tracing` caches each call site's interest process-wide, decided by the first thread that
//! reaches it. While only one dispatcher is registered, that decision is made against the
//! reaching thread's own default: a sibling test thread with no subscriber caches "never", and
//! the call site then stays silent for the capturing test too (an intermittent "the log is
//! missing a line" failure). [`capture`] first installs, once per process, a global default
//! subscriber that is interested in everything and records nothing, so no call site is ever
//! cached as "never"; each test's capturing subscriber is then scoped to its thread as before.

use std::sync::{Arc, Mutex, Once};

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Interested in every call site, keeps nothing: the global default that keeps call sites
/// open for the scoped capturing subscribers.
struct KeepCallsitesOpen;

impl Subscriber for KeepCallsitesOpen {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs, once, a global default subscriber that is interested in every call site and keeps
/// nothing. A program (or test binary) that already set its own global default keeps it.
pub fn keep_callsites_open() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(KeepCallsitesOpen);
    });
}

/// What a capturing subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which lines to capture besides the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spans {
    /// Events only.
    Off,
    /// Every span's creation, entry, exit and close too (with their fields).
    Full,
}

/// Runs `f` on this thread with a subscriber that writes every event (TRACE and up, no ANSI
/// colours) into a buffer, and returns `f`'s value and the text written.
pub fn capture<T>(spans: Spans, f: impl FnOnce() -> T) -> (T, String) {
    keep_callsites_open();
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let span_events = match spans {
        Spans::Off => tracing_subscriber::fmt::format::FmtSpan::NONE,
        Spans::Full => tracing_subscriber::fmt::format::FmtSpan::FULL,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(span_events)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    (value, String::from_utf8_lossy(&bytes).into_owned())
}
