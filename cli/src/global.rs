//! The options every command takes: the store, the broker, the S3 endpoint, logging.

use anyhow::Context;
use clap::{Args, ValueEnum};
use sgml_registry::Announcer;
use sgml_registry::store::{self, S3Options, Store};

#[derive(Args)]
pub struct Global {
    /// The store: a directory (created if missing) or s3://bucket/prefix (region and
    /// credentials from the standard AWS settings: AWS_REGION, AWS_PROFILE,
    /// AWS_ACCESS_KEY_ID, ...).
    #[arg(
        long,
        global = true,
        env = "SGML_STORE",
        default_value = "./sgml-store"
    )]
    pub store: String,

    /// RabbitMQ to announce alias moves on (`model.published`, topic exchange
    /// sgml.models), e.g. amqp://guest:guest@127.0.0.1:5672/%2f. Without it, no event
    /// is sent and services notice new champions by polling.
    #[arg(long, global = true, env = "SGML_AMQP_URL", value_name = "URL")]
    pub amqp_url: Option<String>,

    /// An S3-compatible endpoint for s3:// stores (overrides AWS_ENDPOINT_URL); requests
    /// then use path-style addressing.
    #[arg(long, global = true, env = "SGML_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Log format on stderr: `text` for people, `json` for Airflow and log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More logs (-v info, -vv debug). On a terminal the default shows warnings only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Global {
    pub fn open_store(&self) -> anyhow::Result<Box<dyn Store>> {
        store::open(&self.store, &self.s3_options())
            .with_context(|| format!("opening store {}", self.store))
    }

    /// How s3:// URIs are reached: the store's, and photos in buckets.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
        }
    }

    /// Where promotions announce themselves.
    pub fn announcer(&self) -> Announcer {
        match &self.amqp_url {
            Some(url) => Announcer::Amqp(url.clone()),
            None => Announcer::Off,
        }
    }
}
