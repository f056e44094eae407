//! Where promotions announce themselves. With the `amqp` feature, `model.published`
//! goes to RabbitMQ: a durable topic exchange, persistent messages, publisher confirms
//! on — the send returns only once the broker has acknowledged the message.

use crate::events::ModelPublished;

/// Where alias moves are announced.
#[derive(Debug, Clone, Default)]
pub enum Announcer {
    /// Nowhere: services notice new champions by polling.
    #[default]
    Off,
    /// A RabbitMQ URL (`amqp://user:pass@host:5672/%2f`).
    #[cfg(feature = "amqp")]
    Amqp(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[cfg(feature = "amqp")]
    #[error("AMQP {url}: {source}")]
    Amqp {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("AMQP {url}: the broker did not acknowledge the event (nack or returned)")]
    NotConfirmed { url: String },
    #[error("starting the AMQP client: {0}")]
    Runtime(#[from] std::io::Error),
}

impl Announcer {
    /// Whether announcements go anywhere.
    pub fn is_on(&self) -> bool {
        !matches!(self, Announcer::Off)
    }

    /// Sends one event; `Off` sends nothing and succeeds.
    pub fn announce(&self, event: &ModelPublished) -> Result<(), AnnounceError> {
        match self {
            Announcer::Off => {
                tracing::info!(
                    model = %event.name,
                    alias = %event.alias,
                    "no AMQP URL (--amqp-url, SGML_AMQP_URL): no model.published event sent"
                );
                Ok(())
            }
            #[cfg(feature = "amqp")]
            Announcer::Amqp(url) => amqp::send(url, event),
        }
    }
}

#[cfg(feature = "amqp")]
mod amqp {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    use super::AnnounceError as SendError;
    use super::redact;
    use crate::events::{EXCHANGE, ModelPublished, declare_exchange, routing_key};

    /// Publishes one event and waits for the broker's confirm.
    pub fn send(url: &str, event: &ModelPublished) -> Result<(), SendError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let amqp = |source| SendError::Amqp {
            url: redact(url),
            source,
        };
        runtime.block_on(async {
            let connection = Connection::connect(url, ConnectionProperties::default())
                .await
                .map_err(amqp)?;
            let channel = connection.create_channel().await.map_err(amqp)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(amqp)?;
            declare_exchange(&channel).await.map_err(amqp)?;
            let payload = serde_json::to_vec(event).expect("events serialize");
            let confirm = channel
                .basic_publish(
                    EXCHANGE.into(),
                    routing_key(&event.name, &event.alias).into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2)
                        .with_message_id(event.idempotency_key.clone().into()),
                )
                .await
                .map_err(amqp)?
                .await
                .map_err(amqp)?;
            let _ = connection.close(200, "done".into()).await;
            if confirm.is_ack() {
                Ok(())
            } else {
                Err(SendError::NotConfirmed { url: redact(url) })
            }
        })
    }
}

/// The URL without its password, for messages.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
