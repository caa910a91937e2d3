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

/// The message of a panic payload, cut short (it may quote outside data).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string());
    crate::dcs::bounded::clip(&text, 512)
}
