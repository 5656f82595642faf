//! The queue that hands jobs to the worker threads.
//!
//! Every worker waits on one condition variable, so each job pushed wakes its own worker and
//! jobs handed out by one pass start together. (A single channel receiver shared behind a
//! mutex let only the worker holding the mutex wait for a job: when a pass handed out two, the
//! second worker was woken only once the first had been scheduled and had taken its own, which
//! on a busy machine held back every command after the first by a scheduling delay.)

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Jobs waiting for a worker, and whether more may come.
pub(super) struct JobQueue<J> {
    state: Mutex<State<J>>,
    ready: Condvar,
}

struct State<J> {
    jobs: VecDeque<J>,
    closed: bool,
}

impl<J> JobQueue<J> {
    pub fn new() -> JobQueue<J> {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues `job` and wakes one waiting worker.
    pub fn push(&self, job: J) {
        self.lock().jobs.push_back(job);
        self.ready.notify_one();
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub fn next(&self) -> Option<J> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// No more jobs: the workers take what is queued, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A worker that panicked while holding the lock left the queue whole: each change
        // under it is a single push, pop or flag.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scheduler's end of the queue: dropping it closes the queue, which ends the workers
/// (also when the scheduler unwinds from a panic, so the scope joining them cannot hang).
pub(super) struct Jobs<'q, J>(pub &'q JobQueue<J>);

impl<J> Jobs<'_, J> {
    /// Queues `job` and wakes one waiting worker.
    pub fn push(&self, job: J) {
        self.0.push(job);
    }
}

impl<J> Drop for Jobs<'_, J> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_is_taken_once_and_closing_ends_the_workers_after_the_queued_ones() {
        let queue = JobQueue::new();
        let taken: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    let queue = &queue;
                    scope.spawn(move || std::iter::from_fn(|| queue.next()).collect::<Vec<u32>>())
                })
                .collect();
            let jobs = Jobs(&queue);
            (0..100).for_each(|job| jobs.push(job));
            // Dropping the scheduler's end closes the queue: the workers take what is left,
            // then stop.
            drop(jobs);
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = taken.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(queue.next(), None, "a closed, empty queue gives no job");
    }
}
