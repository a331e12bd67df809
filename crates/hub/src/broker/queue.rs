//! The queue in front of a broker's writer thread, bounded in messages and in bytes: when
//! either is full, senders are told `overloaded` at once instead of the server holding more.
//! The channel underneath grows with what waits (a bounded channel would allocate and touch
//! every slot of its capacity up front: megabytes of an idle server's memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::ErrorCode;

use crate::access::Refusal;

/// Sending side: cheap to share.
#[derive(Debug)]
pub(crate) struct JobQueue<T> {
    tx: Sender<(T, usize)>,
    load: Arc<Load>,
    max_jobs: usize,
    max_bytes: usize,
}

/// What waits in the queue.
#[derive(Debug, Default)]
struct Load {
    jobs: AtomicUsize,
    bytes: AtomicUsize,
}

/// Receiving side, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct JobReceiver<T> {
    rx: Receiver<(T, usize)>,
    load: Arc<Load>,
}

/// A queue of at most `max_jobs` jobs and `max_bytes` bytes.
pub(crate) fn job_queue<T>(max_jobs: usize, max_bytes: usize) -> (JobQueue<T>, JobReceiver<T>) {
    let (tx, rx) = mpsc::channel();
    let load = Arc::new(Load::default());
    (
        JobQueue {
            tx,
            load: load.clone(),
            max_jobs: max_jobs.max(1),
            max_bytes: max_bytes.max(1),
        },
        JobReceiver { rx, load },
    )
}

fn overloaded() -> Refusal {
    Refusal::new(
        ErrorCode::Overloaded,
        "the server is storing messages slower than they arrive; retry shortly",
    )
}

impl<T> JobQueue<T> {
    /// Queues a job of `size` bytes, or refuses it with `overloaded`.
    pub(crate) fn submit(&self, job: T, size: usize) -> Result<(), Refusal> {
        let load = &self.load;
        if load.jobs.fetch_add(1, Ordering::AcqRel) >= self.max_jobs {
            load.jobs.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        let before = load.bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.max_bytes {
            load.bytes.fetch_sub(size, Ordering::AcqRel);
            load.jobs.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        self.tx.send((job, size)).map_err(|_| {
            load.bytes.fetch_sub(size, Ordering::AcqRel);
            load.jobs.fetch_sub(1, Ordering::AcqRel);
            Refusal::new(ErrorCode::Internal, "message storage has stopped")
        })
    }
}

/// What waiting for a batch gave.
pub(crate) enum Batch {
    /// Jobs (possibly none, when the wait timed out).
    Jobs,
    /// Every sender is gone: the writer should stop.
    Closed,
}

impl<T> JobReceiver<T> {
    /// Waits up to `wait` for a job, then takes everything else waiting, up to `max` in all.
    pub(crate) fn take(&self, into: &mut Vec<T>, max: usize, wait: Duration) -> Batch {
        match self.rx.recv_timeout(wait) {
            Ok(job) => self.accept(into, job),
            Err(RecvTimeoutError::Timeout) => return Batch::Jobs,
            Err(RecvTimeoutError::Disconnected) => return Batch::Closed,
        }
        while into.len() < max {
            match self.rx.try_recv() {
                Ok(job) => self.accept(into, job),
                Err(_) => break,
            }
        }
        Batch::Jobs
    }

    fn accept(&self, into: &mut Vec<T>, (job, size): (T, usize)) {
        self.load.bytes.fetch_sub(size, Ordering::AcqRel);
        self.load.jobs.fetch_sub(1, Ordering::AcqRel);
        into.push(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_in_bytes_or_jobs_answers_overloaded() {
        let (queue, rx) = job_queue::<u32>(3, 100);
        queue.submit(1, 60).unwrap();
        assert_eq!(queue.submit(2, 60).unwrap_err().code, ErrorCode::Overloaded);
        queue.submit(3, 40).unwrap();
        let mut batch = Vec::new();
        rx.take(&mut batch, 10, Duration::from_millis(1));
        assert_eq!(batch, [1, 3]);
        for n in 0..3 {
            queue.submit(n, 1).unwrap();
        }
        assert_eq!(queue.submit(9, 1).unwrap_err().code, ErrorCode::Overloaded);
    }

    #[test]
    fn one_job_larger_than_the_budget_still_goes_through_an_empty_queue() {
        let (queue, _rx) = job_queue::<u32>(3, 100);
        queue.submit(1, 500).unwrap();
        assert!(queue.submit(2, 1).is_err());
    }
}
