//! Similar-products queries by title: the server embeds the title with the model
//! `sgml embed` used, loaded once. Behind the `titles` feature (it links candle), so
//! a service that embeds sgml-serve for pricing links no embedder; `sgml` turns it on.

use std::path::PathBuf;
#[cfg(feature = "titles")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "titles")]
use sgml_models::embed::Embedder;

/// Why a title could not be embedded.
#[derive(Debug)]
pub enum TitleError {
    /// This server cannot embed titles (no model directory, a model that did not
    /// load, a build without the feature): the client should query by product id.
    Unavailable(String),
    /// The embedder failed on this title.
    Failed(String),
}

pub struct Titles {
    dir: Option<PathBuf>,
    #[cfg(feature = "titles")]
    loaded: OnceLock<Result<Arc<Embedder>, String>>,
}

impl Titles {
    pub fn new(dir: Option<PathBuf>) -> Titles {
        Titles {
            dir,
            #[cfg(feature = "titles")]
            loaded: OnceLock::new(),
        }
    }

    /// Loads the embedder now rather than on the first title query, whose latency
    /// would pay for it.
    pub fn preload(&self) {
        if self.dir.is_none() {
            return;
        }
        #[cfg(feature = "titles")]
        if let Err(e) = self.embedder() {
            tracing::warn!("{e}");
        }
    }

    #[cfg(feature = "titles")]
    fn embedder(&self) -> Result<Arc<Embedder>, String> {
        self.loaded
            .get_or_init(|| {
                let dir = self.dir.as_ref().ok_or_else(|| {
                    "this server has no embedder (start it with --model-dir or SGML_MODEL_DIR): query by product_id".to_string()
                })?;
                let started = std::time::Instant::now();
                let e = Embedder::load(dir)
                    .map_err(|e| format!("the title embedder did not load: {e}"))?;
                tracing::info!(dir = %dir.display(), seconds = started.elapsed().as_secs_f64(), "title embedder loaded");
                Ok(Arc::new(e))
            })
            .clone()
    }

    /// The title's vector.
    pub fn embed(&self, title: &str) -> Result<Vec<f32>, TitleError> {
        #[cfg(feature = "titles")]
        {
            let embedder = self.embedder().map_err(TitleError::Unavailable)?;
            let mut vectors = embedder
                .embed(&[title], 1)
                .map_err(|e| TitleError::Failed(e.to_string()))?;
            vectors
                .pop()
                .ok_or_else(|| TitleError::Failed("the embedder returned no vector".into()))
        }
        #[cfg(not(feature = "titles"))]
        {
            let _ = (title, &self.dir);
            Err(TitleError::Unavailable(
                "this server was built without title embedding (sgml-serve's `titles` feature): query by product_id".into(),
            ))
        }
    }
}
