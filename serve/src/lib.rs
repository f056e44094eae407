//! sgml-serve: the HTTP server behind `sgml serve`. It scores JSON requests with each model's verified champion over HTTP.
//!
//! - `POST /v1/models/{name}/predict` — `{"rows": [...]}` of raw attributes →
//!   predictions, intervals and the model version (scope `predict:<name>`);
//! - `POST /v1/admin/reload` — check every champion now (scope `admin:reload`);
//! - `GET /healthz` (the process answers), `/readyz` (every model loaded), `/metrics`
//!   (Prometheus). These three carry no model output and take no token: probes and
//!   scrapers do not hold one.
//!
//! New champions are picked up from `model.published` events (when an AMQP URL is
//! given) and by polling the alias as a fallback; see [`champions`].

pub mod auth;
pub mod champions;
pub mod connections;
#[cfg(test)]
mod fuzz;
pub mod metrics;
pub mod photos;
pub mod rows;
pub mod titles;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sgml_models::ann::{AnnError, AnnIndex, Filter, MarketFilter, Markets};

use self::auth::{Auth, Denied};
use self::champions::{Models, Reloader, Scorer, Trigger};
use self::metrics::{EndpointLabels, Metrics, ModelLabels, RequestLabels};
#[cfg(feature = "images")]
use self::photos::PhotoError;
use self::photos::Photos;
use self::rows::QueryBy;
use self::titles::{TitleError, Titles};
use sgml_registry::Store;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The models to serve (their names in the store, e.g. `pricing`).
    pub models: Vec<String>,
    /// How often to re-read the champion aliases when no event arrives.
    pub poll: Duration,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// RabbitMQ to hear `model.published` on.
    pub amqp_url: Option<String>,
    /// Scoring threads: requests beyond them wait their turn, while health checks,
    /// metrics and the reading of bodies go on on the server's own threads.
    pub workers: usize,
    /// Open connections at most (lowered to fit the descriptor limit).
    pub max_connections: usize,
    /// Time a client has to send a request's head; idle keep-alive connections close
    /// after it too.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its head has arrived.
    pub body_timeout: Duration,
    /// The embedding model's files, for similar-products queries by title (loaded
    /// at start when a similarity index is served, else at the first such query).
    /// None: title queries get 422.
    pub embedder_dir: Option<PathBuf>,
    /// The image embedder's converted weights, for category-from-photo requests
    /// (loaded at start when an image classifier is served). None: they get 422.
    pub image_model_dir: Option<PathBuf>,
    /// Where photos named by a relative path or `file://` URI in a request must lie.
    /// None: such requests get 422 (base64 photos and `s3://` URIs still work).
    pub images_dir: Option<PathBuf>,
    /// An S3-compatible endpoint for `s3://` photo URIs (else the standard AWS
    /// settings).
    pub s3_endpoint: Option<String>,
}

impl Config {
    /// Defaults for what a command line rarely changes.
    pub const MAX_CONNECTIONS: usize = 1024;
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no models to serve: name at least one with --models")]
    NoModels,
    #[error(transparent)]
    Model(#[from] sgml_models::estimator::ModelError),
    #[error("the images directory {dir}: {source}")]
    ImagesDir {
        dir: String,
        source: sgml_registry::StoreError,
    },
}

struct App {
    auth: Auth,
    titles: Arc<Titles>,
    photos: Arc<Photos>,
    models: Arc<Models>,
    metrics: Arc<Metrics>,
    reload: Sender<Trigger>,
    max_body_bytes: usize,
    body_timeout: Duration,
    /// One permit per scoring thread.
    scoring: Arc<tokio::sync::Semaphore>,
}

/// Loads the champions, then serves until SIGINT or SIGTERM. The first line on stdout
/// is `listening on http://ADDR` (with the real port when `listen` has port 0).
pub fn serve(store: Box<dyn Store>, auth: Auth, config: Config) -> Result<(), ServeError> {
    if config.models.is_empty() {
        return Err(ServeError::NoModels);
    }
    // Requests run side by side, one per request thread: each prediction stays on
    // its thread rather than fanning out to an OpenMP team of its own.
    sgml_models::gbdt::set_max_threads(1)?;
    let models = Arc::new(Models::new(&config.models));
    let metrics = Arc::new(Metrics::new());
    let reloader = Reloader {
        store,
        models: models.clone(),
        metrics: metrics.clone(),
    };
    // Start ready where champions exist; a model that fails here is retried by the
    // reloader and reported by /readyz meanwhile.
    for (name, outcome) in reloader.check_all() {
        tracing::info!(model = %name, ?outcome, "initial load");
    }
    let titles = Titles::new(config.embedder_dir.clone());
    let serves_an_index = config
        .models
        .iter()
        .filter_map(|m| models.get(m))
        .any(|s| matches!(s.scorer, Scorer::Similar(_)));
    if serves_an_index {
        titles.preload();
    }
    let photos = Photos::new(
        config.image_model_dir.clone(),
        config.images_dir.clone(),
        config.s3_endpoint.clone(),
    )
    .map_err(|source| ServeError::ImagesDir {
        dir: config
            .images_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        source,
    })?;
    #[cfg(feature = "images")]
    if config
        .models
        .iter()
        .filter_map(|m| models.get(m))
        .any(|s| matches!(s.scorer, Scorer::Images(_)))
    {
        photos.preload();
    }
    let reload = champions::spawn(reloader, config.poll)?;
    let app = Arc::new(App {
        auth,
        titles: Arc::new(titles),
        photos: Arc::new(photos),
        models,
        metrics,
        reload: reload.clone(),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
        scoring: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
    });
    let limits = connections::Limits {
        max_connections: connections::connection_limit(config.max_connections),
        header_timeout: config.header_timeout,
    };
    if limits.max_connections < config.max_connections {
        tracing::warn!(
            wanted = config.max_connections,
            allowed = limits.max_connections,
            "connection limit lowered to fit the open-file limit (ulimit -n)"
        );
    }

    // Two threads for connections, health and metrics: scoring runs on the blocking
    // pool, so these stay free to answer probes however busy the scorers are.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(config.workers.max(1) + 2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        tracing::info!(%addr, models = ?config.models, "serving");
        if let Some(url) = config.amqp_url.clone() {
            tokio::spawn(follow_events(url, config.models.clone(), reload));
        }
        connections::serve(listener, router(app), limits, shutdown()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/models/{name}/predict", post(predict))
        .route("/v1/models/{name}/query", post(query))
        .route("/v1/admin/reload", post(admin_reload))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(app)
}

/// A refused or failed request, as `{"error": ..., "field": ...}`.
struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        match d {
            Denied::Unauthenticated(why) => ApiError::new(StatusCode::UNAUTHORIZED, why),
            Denied::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, why),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(f) => json!({"error": self.error, "field": f}),
            None => json!({"error": self.error}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// What a scoring request asks: predictions for rows (pricing, categorize), or the
/// neighbours of one product (similar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Predict,
    Query,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Predict => "predict",
            Endpoint::Query => "query",
        }
    }
}

async fn predict(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(app, name, headers, body, Endpoint::Predict).await
}

async fn query(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(app, name, headers, body, Endpoint::Query).await
}

async fn handle(
    app: Arc<App>,
    name: String,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let start = Instant::now();
    let (response, status) = match score(&app, &name, &headers, body, endpoint).await {
        Ok(r) => (r, StatusCode::OK),
        Err(e) => {
            let s = e.status;
            (e.into_response(), s)
        }
    };
    // The name comes from the URL, before authentication: only a served model gets a
    // series of its own, or anyone could add series without limit.
    let model = if app.models.knows(&name) {
        name
    } else {
        metrics::UNKNOWN_MODEL.to_string()
    };
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.label(),
            model,
            status: status.as_u16(),
        })
        .inc();
    app.metrics
        .latency
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.label(),
        })
        .observe(start.elapsed().as_secs_f64());
    response
}

async fn score(
    app: &App,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let grant = app.auth.verify(authorization(headers))?;
    grant.may_predict(name)?;
    if !app.models.knows(name) {
        let served: Vec<&str> = app.models.names().collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "model {name} is not served here (serving: {})",
                served.join(", ")
            ),
        ));
    }
    let bytes = read_body(body, app.max_body_bytes, app.body_timeout).await?;
    let Some(served) = app.models.get(name) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no verified champion of {name} is loaded yet"),
        ));
    };
    // Parsing and scoring take CPU in proportion to the body (up to a few ms per MiB):
    // they run on the blocking pool, one request per scoring thread, never on the
    // threads that answer health checks.
    let permit = app
        .scoring
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let scoring = served.clone();
    let (titles, photos) = (app.titles.clone(), app.photos.clone());
    let predictions = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        answer(&scoring.scorer, endpoint, &bytes, &titles, &photos)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scoring failed: {e}"),
        )
    })??;
    app.metrics
        .rows
        .get_or_create(&ModelLabels {
            model: name.to_string(),
        })
        .inc_by(predictions.len() as u64);
    let key = match endpoint {
        Endpoint::Predict => "predictions",
        Endpoint::Query => "neighbours",
    };
    Ok(axum::Json(json!({
        "model": name,
        "version": served.version,
        key: predictions,
    }))
    .into_response())
}

/// Scores a request on the endpoint its model answers (CPU only; runs on the
/// blocking pool): rows on `/predict`, one product's neighbours on `/query`.
fn answer(
    scorer: &Scorer,
    endpoint: Endpoint,
    bytes: &[u8],
    titles: &Titles,
    photos: &Photos,
) -> Result<Vec<serde_json::Value>, ApiError> {
    match (scorer, endpoint) {
        (Scorer::Similar(index), Endpoint::Query) => neighbours(index, bytes, titles),
        (_, Endpoint::Query) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "only a similarity index answers /query: use POST /v1/models/<name>/predict",
        )),
        (_, Endpoint::Predict) => predictions(scorer, bytes, photos),
    }
}

/// The neighbours of the queried product (itself left out) or title, best first.
fn neighbours(
    index: &AnnIndex,
    bytes: &[u8],
    titles: &Titles,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let q = rows::similar_query(bytes).map_err(|b| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: b.why,
        field: Some(b.field),
    })?;
    let internal = |e: AnnError| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let found = match &q.by {
        QueryBy::Product(id) => {
            let Some(row) = index.row(id) else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("product {} is not in this index", rows::brief(id)),
                ));
            };
            let filter = index.neighbours_filter(row, q.other_sellers, q.markets);
            let vector = index.vector(row).map_err(internal)?;
            index.search(&vector, q.k, &filter).map_err(internal)?
        }
        QueryBy::Title {
            title,
            seller_id,
            market,
        } => {
            let unavailable = |why: String| ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error: why,
                field: Some("title".into()),
            };
            let vector = titles.embed(title).map_err(|e| match e {
                TitleError::Unavailable(why) => unavailable(why),
                TitleError::Failed(why) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why),
            })?;
            if vector.len() != index.dim() {
                return Err(unavailable(format!(
                    "the embedder gives {} dimensions, the index holds {}: serve an index built from this embedder",
                    vector.len(),
                    index.dim()
                )));
            }
            let market = market.as_deref();
            let filter = Filter {
                not_seller: seller_id.as_deref().filter(|_| q.other_sellers),
                market: match q.markets {
                    Markets::Any => MarketFilter::Any,
                    Markets::Same => MarketFilter::Same(market),
                    Markets::Other => MarketFilter::Other(market),
                },
                not_row: None,
            };
            index.search(&vector, q.k, &filter).map_err(internal)?
        }
    };
    let r = index.rows();
    Ok(found
        .iter()
        .map(|nb| {
            json!({
                "product_id": r.product_id[nb.row],
                "similarity": nb.similarity,
                "seller_id": r.seller_id[nb.row],
                "market": r.market[nb.row],
            })
        })
        .collect())
}

/// Parses a request's rows and scores them (CPU only; runs on the blocking pool).
fn predictions(
    scorer: &Scorer,
    bytes: &[u8],
    photos: &Photos,
) -> Result<Vec<serde_json::Value>, ApiError> {
    // Only image classifiers read photos.
    #[cfg(not(feature = "images"))]
    let _ = photos;
    let refused = |b: rows::BadBody| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: b.why,
        field: Some(b.field),
    };
    Ok(match scorer {
        Scorer::Pricing(model) => {
            let rows = rows::price_inputs(bytes).map_err(refused)?;
            let priced = model
                .price(&rows)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            priced
                .iter()
                .map(|p| {
                    json!({
                        "price_base": p.log_price.exp(),
                        "price_base_low": p.low.exp(),
                        "price_base_high": p.high.exp(),
                    })
                })
                .collect()
        }
        Scorer::Similar(_) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "a similarity index answers POST /v1/models/<name>/query",
            ));
        }
        Scorer::Categorize(model) => {
            let rows = rows::titles(bytes).map_err(refused)?;
            rows.iter()
                .map(|(title, k)| {
                    let c = model.categorize(title, *k);
                    json!({
                        "categories": c.top.iter().map(|(name, p)| json!({"category": name, "probability": p})).collect::<Vec<_>>(),
                        "needs_review": c.needs_review,
                    })
                })
                .collect()
        }
        #[cfg(feature = "images")]
        Scorer::Images(model) => {
            let max = sgml_models::photo::Limits::default().max_bytes;
            let rows = rows::photos(bytes, max).map_err(refused)?;
            rows.iter()
                .enumerate()
                .map(|(i, (photo, k))| {
                    let field = match photo {
                        rows::Photo::Bytes(_) => "image_base64",
                        rows::Photo::Uri(_) => "image_uri",
                    };
                    let features = photos.embed(photo).map_err(|e| match e {
                        PhotoError::Unavailable(why) => {
                            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)
                        }
                        PhotoError::Refused(why) => ApiError {
                            status: StatusCode::UNPROCESSABLE_ENTITY,
                            error: why,
                            field: Some(format!("rows[{i}].{field}")),
                        },
                    })?;
                    let c = model.classify(&features, *k);
                    Ok(json!({
                        "categories": c.top.iter().map(|(name, p)| json!({"category": name, "probability": p})).collect::<Vec<_>>(),
                        "needs_review": c.needs_review,
                    }))
                })
                .collect::<Result<_, ApiError>>()?
        }
    })
}

/// The whole body; 413 once it passes the limit (whether or not it declared its
/// length); 408 when it has not all arrived within `timeout`.
async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let read = tokio::time::timeout(timeout, to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}s",
                    timeout.as_secs()
                ),
            )
        })?;
    read.map_err(|e| {
        // The limit's error sits somewhere down the chain of causes, by type.
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |c| {
                c.source()
            })
            .any(|c| c.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request bodies are limited to {limit} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
        }
    })
}

async fn admin_reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = async {
        let grant = app.auth.verify(authorization(&headers))?;
        grant.may_reload()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        app.reload.send(Trigger::Admin(tx)).map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the reloader has stopped")
        })?;
        let outcomes = rx.await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the reloader has stopped")
        })?;
        tracing::info!(by = %grant.sub, "reload requested");
        let models: Vec<_> = outcomes
            .into_iter()
            .map(|(name, outcome)| json!({"name": name, "result": outcome}))
            .collect();
        Ok::<_, ApiError>(axum::Json(json!({ "models": models })).into_response())
    }
    .await;
    let (response, status) = match result {
        Ok(r) => (r, StatusCode::OK),
        Err(e) => {
            let s = e.status;
            (e.into_response(), s)
        }
    };
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: "reload",
            model: String::new(),
            status: status.as_u16(),
        })
        .inc();
    response
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let status = app.models.status();
    let ready = status.iter().all(|m| m.version.is_some());
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(json!({"ready": ready, "models": status}))).into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// Forwards `model.published` events for the served models to the reloader;
/// reconnects with a pause when RabbitMQ goes away (polling covers the gap).
async fn follow_events(url: String, models: Vec<String>, reload: Sender<Trigger>) {
    use sgml_registry::events::Subscription;
    let names: Vec<&str> = models.iter().map(String::as_str).collect();
    loop {
        match Subscription::open(&url, &names).await {
            Ok(mut subscription) => {
                tracing::info!("listening for model.published events");
                while let Some(event) = subscription.next().await {
                    match event {
                        Ok(e) => {
                            tracing::info!(model = %e.name, version = %e.version, alias = %e.alias, "model.published");
                            if e.alias == champions::ALIAS
                                && reload.send(Trigger::Event(e.name)).is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("event stream: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot subscribe to model.published: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
