//! Upgrading from a release before the queue engine.

use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_tests::{Stack, limiter};
use gcrun_worker::{BuildError, RunSettings, Worker};

#[tokio::test]
async fn a_worker_refuses_to_start_on_jobs_in_the_old_queue_layout() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let mut conn = stack.store.connection();
    // What apalis-redis left: a scheduled poll job and its payload.
    let _: () =
        redis::cmd("ZADD").arg("{gcrun:poll}:scheduled").arg(1).arg("01JOLD").query_async(&mut conn).await.unwrap();
    let _: () =
        redis::cmd("HSET").arg("{gcrun:poll}:data").arg("01JOLD").arg("{}").query_async(&mut conn).await.unwrap();
    let settings = stack.worker_settings(limiter(60_000, 100, 100), RunSettings::default());
    let err = Worker::build(settings.clone()).await.unwrap_err();
    assert!(matches!(err, BuildError::OldQueues(ref q) if q == &[("{gcrun:poll}".to_string(), 1)]), "{err}");
    let text = err.to_string();
    assert!(text.contains("{gcrun:poll}: 1") && text.contains("drain"), "{text}");
    // Drained (the old workers finished them): the new worker starts.
    let _: () =
        redis::cmd("DEL").arg("{gcrun:poll}:scheduled").arg("{gcrun:poll}:data").query_async(&mut conn).await.unwrap();
    assert!(Worker::build(settings).await.is_ok());
}
