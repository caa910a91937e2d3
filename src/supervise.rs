//! Long-running tasks that survive their own panics: a panic is caught, counted in
//! `dcs_operator_panics_total{task}`, logged, and the task started again. One bad
//! input must fail one object, never the process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::metrics::Metrics;

/// Pause before a panicked task starts again, so a task that panics at once on
/// every start cannot spin a core.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs the task `start` makes until it returns normally; restarts it after each
/// panic. `task` is a bounded label (`batch_poller`, `metrics_server`, …).
pub async fn supervised<F, Fut>(task: &'static str, metrics: Arc<Metrics>, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(join) if join.is_panic() => {
                metrics.panicked(task);
                error!(
                    task,
                    "task panicked; starting it again: {}",
                    panic_text(join.into_panic().as_ref())
                );
                tokio::time::sleep(RESTART_DELAY).await;
            }
            // Cancelled (the runtime is shutting down).
            Err(_) => return,
        }
    }
}

/// Runs `future`, turning a panic into `Err(message)` counted under `task`.
pub async fn catching<T>(
    task: &'static str,
    metrics: &Metrics,
    future: impl Future<Output = T>,
) -> Result<T, String> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(future).catch_unwind().await {
        Ok(value) => Ok(value),
        Err(payload) => {
            metrics.panicked(task);
            let text = panic_text(payload.as_ref());
            error!(task, "panicked: {text}");
            Err(text)
        }
    }
}

/// The message of a panic payload, cut short (it may quote outside data).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string());
    crate::dcs::bounded::clip(&text, 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(Arc::new(
            crate::controller::store::InstanceView::default(),
        )))
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_and_restarted() {
        let metrics = metrics();
        let starts = Arc::new(AtomicU32::new(0));
        let counter = starts.clone();
        supervised("batch_poller", metrics.clone(), move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("hostile input");
                }
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.panics_total(), 2);
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("dcs_operator_panics_total{task=\"batch_poller\"} 2")
        );
    }

    #[tokio::test]
    async fn a_panicking_future_becomes_an_error() {
        let metrics = metrics();
        let result: Result<(), String> =
            catching("reconcile", &metrics, async { panic!("boom {}", 1) }).await;
        assert_eq!(result.unwrap_err(), "boom 1");
        assert_eq!(catching("reconcile", &metrics, async { 7 }).await, Ok(7));
        assert_eq!(metrics.panics_total(), 1);
    }
}
