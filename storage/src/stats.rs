//! What the engine may learn about this thread's durable writes, without
//! the storage crate knowing who listens: a thread sets an observer (a
//! plain function, kept in a thread-local, so calling it shares nothing
//! with another thread) and every durable write reports to it.

use std::cell::Cell;
use std::time::Duration;

/// Which kind of durable write finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableWrite {
    /// A group of log records: one O_DSYNC write (the log's fsync).
    LogGroup,
    /// A meta or snapshot file replaced atomically (fdatasync of the file
    /// and fsync of its directory).
    File,
}

/// Called after each durable write with its kind, its duration and its bytes.
pub type Observer = fn(DurableWrite, Duration, u64);

thread_local! {
    static OBSERVER: Cell<Option<Observer>> = const { Cell::new(None) };
}

/// Sets this thread's observer (`None`: report to nobody).
pub fn observe(observer: Option<Observer>) {
    OBSERVER.with(|o| o.set(observer));
}

pub(crate) fn report(kind: DurableWrite, elapsed: Duration, bytes: u64) {
    if let Some(observer) = OBSERVER.with(Cell::get) {
        observer(kind, elapsed, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SEEN: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    fn count(_: DurableWrite, _: Duration, bytes: u64) {
        SEEN.with(|s| {
            let (n, b) = s.get();
            s.set((n + 1, b + bytes));
        });
    }

    #[test]
    fn a_thread_hears_its_own_writes_only_once_it_observes() {
        report(DurableWrite::LogGroup, Duration::ZERO, 10);
        observe(Some(count));
        report(DurableWrite::LogGroup, Duration::ZERO, 4096);
        report(DurableWrite::File, Duration::ZERO, 100);
        std::thread::spawn(|| report(DurableWrite::File, Duration::ZERO, 1))
            .join()
            .unwrap();
        assert_eq!(SEEN.with(Cell::get), (2, 4196));
        observe(None);
    }
}
