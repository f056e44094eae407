//! `sgml serve`: sgml-serve on the store's champions.

use std::path::PathBuf;

use anyhow::{Context, bail};
use sgml_serve::auth::Auth;

use crate::global::Global;
use crate::weights::{self, ModelDirArgs};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("jwt").required(true).args(["jwt_secret", "jwt_public_key"]))]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the first line on stdout names it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The models to serve, comma-separated (pricing, categorize, similar, images).
    #[arg(long, value_delimiter = ',', default_value = "pricing")]
    models: Vec<String>,
    /// Verify HS256 tokens with this shared secret (prefer the environment variable
    /// to keep it out of the process list).
    #[arg(
        long,
        env = "SGML_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    jwt_secret: Option<String>,
    /// Verify RS256 tokens with this PEM public key file.
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
    /// Seconds between checks of the champion aliases (events make swaps immediate;
    /// polling covers a missed event).
    #[arg(long, default_value_t = 30)]
    poll_secs: u64,
    /// Request bodies over this many bytes get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Scoring threads (default: one per core). Requests beyond them wait their turn;
    /// health checks and metrics never wait behind scoring.
    #[arg(long)]
    workers: Option<usize>,
    /// Open connections at most; more clients wait in the listen backlog. Lowered to
    /// fit the open-file limit (`ulimit -n`) less 64.
    #[arg(long, default_value_t = sgml_serve::Config::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a client has to send a request's head; idle keep-alive connections
    /// close after it too.
    #[arg(long, default_value_t = sgml_serve::Config::HEADER_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, default_value_t = sgml_serve::Config::BODY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_secs: u64,
    /// For similar-products queries by title: the embedding model they are embedded
    /// with (the one `sgml embed` used). Without it, only queries by product_id.
    #[command(flatten)]
    model: ModelDirArgs,
    /// For the image classifier (`--models images`): the directory of the image
    /// embedder's model.safetensors (default: where scripts/setup converts it). A
    /// photo is embedded with it before classification; base64 photos are accepted up
    /// to 20 MiB each, within --max-body-bytes.
    #[arg(long, env = "SGML_IMAGE_MODEL_DIR", value_name = "DIR")]
    image_model_dir: Option<PathBuf>,
    /// Where photos named in requests by a relative path or file:// URI
    /// (`{"image_uri": "images/P1.jpg"}`) must lie; a path outside it is refused
    /// (422). s3://bucket/key URIs are read with the store's S3 settings.
    #[arg(long, env = "SGML_IMAGES_DIR", value_name = "DIR")]
    images_dir: Option<PathBuf>,
}

pub fn run(g: &Global, a: &Args) -> anyhow::Result<()> {
    let auth = match (&a.jwt_secret, &a.jwt_public_key) {
        (Some(secret), _) => Auth::hs256(secret.as_bytes())?,
        (None, Some(path)) => Auth::rs256(
            &std::fs::read(path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?,
        )
        .with_context(|| format!("JWT public key {}", path.display()))?,
        (None, None) => bail!("give --jwt-secret (or SGML_JWT_SECRET) or --jwt-public-key"),
    };
    // An explicit model directory must be right; the default one may be absent (the
    // server then answers queries by product id only).
    let embedder_dir = match &a.model.model_dir {
        Some(_) => Some(weights::model_dir(&a.model)?),
        None => weights::model_dir(&a.model).ok(),
    };
    let image_model_dir = match &a.image_model_dir {
        Some(dir) => Some(sgml_models::vision::weights_dir(Some(dir), &[])?),
        None => weights::default_image_model_dir(),
    };
    let config = sgml_serve::Config {
        listen: a.listen,
        models: a.models.clone(),
        poll: std::time::Duration::from_secs(a.poll_secs.max(1)),
        max_body_bytes: a.max_body_bytes,
        amqp_url: g.amqp_url.clone(),
        workers: a.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }),
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_secs(a.header_timeout_secs),
        body_timeout: std::time::Duration::from_secs(a.body_timeout_secs),
        embedder_dir,
        image_model_dir,
        images_dir: a.images_dir.clone(),
        s3_endpoint: g.s3_endpoint.clone(),
    };
    sgml_serve::serve(g.open_store()?, auth, config)?;
    Ok(())
}
