//! Sends `model.published` (sgml_models::events) to RabbitMQ when an alias moves:
//! a durable topic exchange, persistent messages, publisher confirms on — the send
//! returns only once the broker has acknowledged the message.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sgml_models::events::{EVENT, EXCHANGE, ModelPublished, declare_exchange, routing_key};

use crate::publish::Promotion;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
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

/// The event for one alias move.
pub fn event_for(name: &str, p: &Promotion) -> ModelPublished {
    ModelPublished {
        event: EVENT.into(),
        name: name.into(),
        version: p.to.clone(),
        alias: p.alias.clone(),
        manifest_sha256: p.manifest_sha256.clone(),
        action: p.action.clone(),
        idempotency_key: format!("{name}/{}/{}", p.alias, p.seq),
        at: p.at.clone(),
    }
}

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

/// The URL without its password, for messages.
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
