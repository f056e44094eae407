//! model.published on the real RabbitMQ at 127.0.0.1:5672 (guest/guest).

use sgml_registry::Announcer;
use sgml_registry::events::{Subscription, routing_key};
use sgml_registry::publish::Action;

use crate::common::*;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Events from a subscription until `want` of them concern `versions` (other tests
/// publish pricing models on the same broker concurrently), or a timeout.
async fn collect(
    sub: &mut Subscription,
    versions: &[String],
    want: usize,
) -> Vec<sgml_registry::events::ModelPublished> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while out.len() < want {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(e))) if versions.contains(&e.version) => out.push(e),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("subscription failed: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// One event per promotion and rollback, with the right payload; a duplicate
/// delivery (same idempotency key) reaches the consumer once.
#[test]
fn alias_moves_are_announced_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sub = rt
        .block_on(Subscription::open(AMQP_URL, &["pricing"]))
        .expect("RabbitMQ at 127.0.0.1:5672");
    let dir = tempfile::tempdir().unwrap();
    let (store, v1, v2) =
        champion_and_challenger(dir.path(), 1500, 31, 20, &[("SGML_AMQP_URL", AMQP_URL)]);
    ok(sgml(&store).env("SGML_AMQP_URL", AMQP_URL).args([
        "models",
        "publish",
        "pricing",
        "--version",
        &v2,
        "--force",
    ]));
    ok(sgml(&store)
        .env("SGML_AMQP_URL", AMQP_URL)
        .args(["models", "rollback", "pricing"]));

    let events = rt.block_on(collect(&mut sub, &[v1.clone(), v2.clone()], 3));
    let summary: Vec<(Action, String)> = events
        .iter()
        .map(|e| (e.action, e.version.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (Action::Promote, v1.clone()),
            (Action::Promote, v2.clone()),
            (Action::Rollback, v1.clone())
        ]
    );
    let bundle = sgml_models::Bundle::load_dir(&store.join("models/pricing").join(&v1)).unwrap();
    assert_eq!(events[0].manifest_sha256, bundle.manifest_sha256());
    assert_eq!(events[0].alias, "champion");
    let keys: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 3, "one key per alias move");

    // Redeliver the last event twice (what a publisher retrying after a lost confirm
    // does): the consumer passes it on no more.
    let amqp = Announcer::Amqp(AMQP_URL.into());
    for _ in 0..2 {
        amqp.announce(&events[2]).unwrap();
    }
    let mut marker = events[2].clone();
    marker.idempotency_key = format!("{}-marker", marker.idempotency_key);
    amqp.announce(&marker).unwrap();
    let after = rt.block_on(collect(&mut sub, std::slice::from_ref(&v1), 1));
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].idempotency_key, marker.idempotency_key,
        "the duplicates were dropped, the marker came through"
    );
    assert_eq!(
        routing_key("pricing", "champion"),
        "model.published.pricing.champion"
    );
}
