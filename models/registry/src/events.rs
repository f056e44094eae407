//! `model.published`: the message sent to an AMQP topic exchange whenever an alias
//! moves (promotion or rollback), and — with the `amqp` feature — the subscription
//! services embed to hot-swap models. Promotions send it ([`crate::announce`]).
//!
//! Delivery is at least once (publisher confirms; a publisher that re-sends after a
//! crash, a redelivered message), so each message carries an idempotency key that is
//! the same for every delivery of one alias move; [`Dedup`] drops the repeats.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::publish::{Action, Promotion};

/// The topic exchange (durable) the events go to.
pub const EXCHANGE: &str = "sgml.models";
pub const EVENT: &str = "model.published";

/// `model.published.<name>.<alias>`: bind `model.published.pricing.*`, or `#`.
pub fn routing_key(name: &str, alias: &str) -> String {
    format!("{EVENT}.{name}.{alias}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPublished {
    /// Always [`EVENT`].
    pub event: String,
    pub name: String,
    pub version: String,
    pub alias: String,
    pub manifest_sha256: String,
    pub action: Action,
    /// The same for every delivery of one alias move: `<name>/<alias>/<history seq>`.
    pub idempotency_key: String,
    pub at: String,
}

/// The event for one alias move.
pub fn event_for(name: &str, p: &Promotion) -> ModelPublished {
    ModelPublished {
        event: EVENT.into(),
        name: name.into(),
        version: p.to.clone(),
        alias: p.alias.clone(),
        manifest_sha256: p.manifest_sha256.clone(),
        action: p.action,
        idempotency_key: format!("{name}/{}/{}", p.alias, p.seq),
        at: p.at.clone(),
    }
}

/// Remembers the last `capacity` idempotency keys.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time a key is seen (act on the event), false for a repeat.
    pub fn first_time(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.to_string());
        self.order.push_back(key.to_string());
        true
    }
}

#[cfg(feature = "amqp")]
pub use consumer::{EventError, Subscription, declare_exchange};

#[cfg(feature = "amqp")]
mod consumer {
    use futures_lite::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties, ExchangeKind};

    use super::{Dedup, EXCHANGE, ModelPublished};

    /// Declares the durable topic exchange; publishers and consumers both call it, so
    /// whichever comes first creates it with the same settings.
    pub async fn declare_exchange(channel: &lapin::Channel) -> Result<(), lapin::Error> {
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
    }

    #[derive(Debug, thiserror::Error)]
    pub enum EventError {
        #[error("AMQP: {0}")]
        Amqp(#[from] lapin::Error),
    }

    /// A service's subscription: an exclusive queue bound to `model.published.<name>.*`
    /// for the given models, yielding each alias move once.
    pub struct Subscription {
        _connection: Connection,
        consumer: lapin::Consumer,
        dedup: Dedup,
    }

    impl Subscription {
        pub async fn open(amqp_url: &str, models: &[&str]) -> Result<Subscription, EventError> {
            let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            declare_exchange(&channel).await?;
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            for name in models {
                channel
                    .queue_bind(
                        queue.name().clone(),
                        EXCHANGE.into(),
                        format!("{}.{name}.*", super::EVENT).into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok(Subscription {
                _connection: connection,
                consumer,
                dedup: Dedup::new(10_000),
            })
        }

        /// The next alias move not seen before; `None` when the connection closes.
        /// Messages that do not parse are acknowledged and skipped (logged).
        pub async fn next(&mut self) -> Option<Result<ModelPublished, EventError>> {
            loop {
                let delivery = match self.consumer.next().await? {
                    Ok(d) => d,
                    Err(e) => return Some(Err(e.into())),
                };
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    return Some(Err(e.into()));
                }
                match serde_json::from_slice::<ModelPublished>(&delivery.data) {
                    Ok(event) if self.dedup.first_time(&event.idempotency_key) => {
                        return Some(Ok(event));
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(
                            "skipping a message that is not a model.published event: {e}"
                        );
                        continue;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_drops_repeats_and_forgets_the_oldest() {
        let mut d = Dedup::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("a"), "a was forgotten when c arrived");
        assert!(!d.first_time("c"));
    }

    #[test]
    fn events_round_trip_as_json() {
        let e = ModelPublished {
            event: EVENT.into(),
            name: "pricing".into(),
            version: "v1".into(),
            alias: "champion".into(),
            manifest_sha256: "ab".into(),
            action: Action::Promote,
            idempotency_key: "pricing/champion/1".into(),
            at: "2026-11-25T00:00:00Z".into(),
        };
        let back: ModelPublished =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            routing_key("pricing", "champion"),
            "model.published.pricing.champion"
        );
    }
}
