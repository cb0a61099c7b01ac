//! Bounded waits: run a future under a deadline, or poll a condition until
//! it holds, failing the test with what was awaited when time runs out.

use std::future::Future;
use std::time::{Duration, Instant};

/// The longest a test of one connection may take (see [`within`]).
pub const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// How often [`eventually`] probes its condition.
const POLL: Duration = Duration::from_millis(20);

/// Runs `future` to completion, failing the test after [`TEST_DEADLINE`].
pub async fn within<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(TEST_DEADLINE, future).await {
        Ok(output) => output,
        Err(_) => panic!("test deadline of {TEST_DEADLINE:?} passed"),
    }
}

/// Probes until `probe` gives a value and returns it, failing the test
/// after `deadline` with `what` it was waiting for.
///
/// The deadline is measured on the wall clock, so that a test with paused
/// tokio time still waits for real work on other threads.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < give_up, "gave up after {deadline:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `condition` is true, failing the test after `deadline` (see [`eventually`]).
pub async fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    eventually(deadline, what, || std::future::ready(condition().then_some(()))).await
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value_the_probe_gives() {
        let probes = Cell::new(0);
        let value = eventually(TEST_DEADLINE, "the third probe", || {
            probes.set(probes.get() + 1);
            std::future::ready((probes.get() == 3).then_some("third"))
        })
        .await;
        assert_eq!((value, probes.get()), ("third", 3));
    }

    #[tokio::test]
    #[should_panic(expected = "gave up after 50ms waiting for something that never happens")]
    async fn eventually_fails_the_test_at_its_deadline() {
        wait_until(Duration::from_millis(50), "something that never happens", || false).await;
    }
}
