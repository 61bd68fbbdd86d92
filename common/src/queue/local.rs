//! The in-process run queue: an unbounded channel, a dispatcher, and two semaphores per delivery
//! (one per organization, one global), so one organization's backlog never holds a global worker
//! slot while it waits for its own.
//!
//! Delivery is at least once within the process; a run lost with the process (crash, restart)
//! stays PENDING or RUNNING until its lease expires, is then marked FAILED, and its window can be
//! run again (`pipeline::runlog::expire_stale`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};

use super::{QueueError, RunHandler, RunQueue, RunRequest};

pub struct LocalRunQueue {
    sender: mpsc::UnboundedSender<RunRequest>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<RunRequest>>>,
    workers: usize,
    per_org: usize,
}

impl LocalRunQueue {
    /// A queue running at most `workers` runs at once, at most `per_org` of one organization.
    /// Requests enqueued before [`LocalRunQueue::start`] wait for it.
    pub fn new(workers: usize, per_org: usize) -> LocalRunQueue {
        let (sender, receiver) = mpsc::unbounded_channel();
        LocalRunQueue { sender, receiver: Mutex::new(Some(receiver)), workers: workers.max(1), per_org: per_org.max(1) }
    }

    /// Starts the dispatcher (once; later calls do nothing). Needs a tokio runtime.
    pub fn start(&self, handler: RunHandler) {
        let Some(mut receiver) = self.receiver.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let global = Arc::new(Semaphore::new(self.workers));
        let per_org = self.per_org;
        tokio::spawn(async move {
            let mut orgs: HashMap<String, Arc<Semaphore>> = HashMap::new();
            while let Some(request) = receiver.recv().await {
                // Forget organizations with nothing in flight (the map holds the only reference).
                orgs.retain(|_, s| Arc::strong_count(s) > 1);
                let org =
                    orgs.entry(request.org_slug.clone()).or_insert_with(|| Arc::new(Semaphore::new(per_org))).clone();
                let global = global.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Ok(_org_permit) = org.acquire_owned().await else { return };
                    let Ok(_permit) = global.acquire_owned().await else { return };
                    tracing::debug!(org = %request.org_slug, run_id = %request.run_id, "run delivered");
                    handler(request).await;
                });
            }
        });
    }
}

#[async_trait]
impl RunQueue for LocalRunQueue {
    fn backend_name(&self) -> &'static str {
        "local"
    }

    async fn enqueue(&self, request: RunRequest) -> Result<(), QueueError> {
        self.sender.send(request).map_err(|_| QueueError::Unavailable("the local run queue has stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn caps_workers_globally_and_per_org() {
        let queue = LocalRunQueue::new(3, 1);
        let running: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let peak_org = Arc::new(AtomicUsize::new(0));
        let peak_all = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (r, po, pa, d) = (running.clone(), peak_org.clone(), peak_all.clone(), done.clone());
        queue.start(Arc::new(move |req: RunRequest| {
            let (r, po, pa, d) = (r.clone(), po.clone(), pa.clone(), d.clone());
            Box::pin(async move {
                {
                    let mut m = r.lock().unwrap();
                    *m.entry(req.org_slug.clone()).or_default() += 1;
                    po.fetch_max(m[&req.org_slug], Ordering::SeqCst);
                    pa.fetch_max(m.values().sum(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                *r.lock().unwrap().get_mut(&req.org_slug).unwrap() -= 1;
                d.fetch_add(1, Ordering::SeqCst);
            })
        }));
        for i in 0..20 {
            let org = format!("org{}", i % 5);
            queue.enqueue(RunRequest { org_slug: org, run_id: i.to_string() }).await.unwrap();
        }
        for _ in 0..200 {
            if done.load(Ordering::SeqCst) == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 20, "every request delivered");
        assert_eq!(peak_org.load(Ordering::SeqCst), 1, "one run per organization at a time");
        assert!(peak_all.load(Ordering::SeqCst) <= 3, "at most three runs at a time");
        assert!(peak_all.load(Ordering::SeqCst) >= 2, "runs of different organizations overlap");
    }
}
