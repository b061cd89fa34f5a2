use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
    stack_bytes: usize,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    /// wxlogin patch: threads get `stack_bytes` of stack.
    pub fn new(stack_bytes: usize) -> TaskPool {
        let pool = TaskPool {
            stack_bytes,
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            // Without these the pool still works: each task then starts a thread.
            let _ = pool.add_thread(None);
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    /// wxlogin patch: runs `code` on an idle thread or a new one. When no thread can be started
    /// (a task or memory limit), `code` is dropped and the error returned; the pool lives on.
    /// The thread is started outside the queue's lock (the original spawned, and so panicked on
    /// failure, while holding it, which poisoned the pool for good).
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) -> std::io::Result<()> {
        {
            let mut queue = self.sharing.todo.lock().unwrap_or_else(|p| p.into_inner());
            // wxlogin patch: an idle thread that was already woken for a queued task still
            // counts as idle until it takes that task, so comparing with zero queued a burst of
            // connections behind a few threads, where each waited for some other keep-alive
            // connection to close. Only idle threads beyond the tasks already queued are free.
            if self.sharing.waiting_tasks.load(Ordering::Acquire) > queue.len() {
                queue.push_back(code);
                self.sharing.condvar.notify_one();
                return Ok(());
            }
        }
        self.add_thread(Some(code))
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnMut() + Send>>) -> std::io::Result<()> {
        let sharing = self.sharing.clone();

        thread::Builder::new()
            .name("tiny-http-connection".into())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                let sharing = sharing;
                let _active_guard = Registration::new(&sharing.active_tasks);

                if let Some(f) = initial_fn {
                    run(f);
                }

                loop {
                    let task: Box<dyn FnMut() + Send> = {
                        let mut todo = sharing.todo.lock().unwrap_or_else(|p| p.into_inner());

                        let task;
                        loop {
                            if let Some(poped_task) = todo.pop_front() {
                                task = poped_task;
                                break;
                            }
                            let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                            let received =
                                if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                    todo = sharing
                                        .condvar
                                        .wait(todo)
                                        .unwrap_or_else(|p| p.into_inner());
                                    true
                                } else {
                                    let (new_lock, waitres) = sharing
                                        .condvar
                                        .wait_timeout(todo, Duration::from_millis(5000))
                                        .unwrap_or_else(|p| p.into_inner());
                                    todo = new_lock;
                                    !waitres.timed_out()
                                };

                            // wxlogin patch: an idle thread leaves only while more than
                            // MIN_THREADS stay; the original let every idle thread leave
                            // together after a burst, and the pool fell to none.
                            if !received && todo.is_empty() && retire(&sharing.active_tasks) {
                                std::mem::forget(_active_guard);
                                return;
                            }
                        }

                        task
                    };

                    run(task);
                }
            })
            .map(|_| ())
    }
}

/// Counts a thread out of `active` if more than `MIN_THREADS` would remain.
fn retire(active: &AtomicUsize) -> bool {
    active
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n > MIN_THREADS).then(|| n - 1)
        })
        .is_ok()
}

/// wxlogin patch: runs one task; a panic in it (a bug while serving one connection) ends that
/// task only, not the thread, nor the pool, nor the server.
fn run(mut task: Box<dyn FnMut() + Send>) {
    if catch_unwind(AssertUnwindSafe(|| task())).is_err() {
        log::error!("a connection thread panicked; that connection is closed");
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
