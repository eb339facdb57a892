//! gcrun-store against a private redis-server: records, transitions,
//! audit, idempotency, the dead-letter set and the shared limiter.
#![allow(clippy::unwrap_used)]

mod dlq;
mod limiter;
mod query;
mod runs;
mod webhooks;

use gcrun_harness::RedisServer;
use gcrun_model::{Flavor, RequestLimits, RunRequest};
use gcrun_store::{Store, StoreConfig};

pub async fn store() -> (RedisServer, Store) {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), StoreConfig::default()).await.unwrap();
    (redis, store)
}

pub fn request(idem: Option<&str>) -> RunRequest {
    let mut b = RunRequest::builder(Flavor::Runs, "custom_-_a").input("customerId", "42");
    if let Some(k) = idem {
        b = b.idempotency_key(k);
    }
    b.build(&RequestLimits::default()).unwrap()
}

pub async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}
