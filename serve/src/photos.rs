//! Category-from-photo requests: the server decodes each posted photo under the same
//! limits `sgml images` applies and embeds it with the backbone the image classifier
//! was trained on, loaded once. Behind the `images` feature, so a service that embeds
//! sgml-serve for pricing links no image code; `sgml` turns it on.

use std::path::PathBuf;
#[cfg(feature = "images")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "images")]
use sgml_models::vision::ImageEmbedder;

/// Why a photo could not be embedded.
#[derive(Debug)]
pub enum PhotoError {
    /// This server cannot embed photos (no weights directory, weights that did not
    /// load, a build without the feature).
    Unavailable(String),
    /// The photo itself was refused (too large, not an image, …): the client's fault.
    Refused(String),
}

pub struct Photos {
    dir: Option<PathBuf>,
    #[cfg(feature = "images")]
    loaded: OnceLock<Result<Arc<ImageEmbedder>, String>>,
}

impl Photos {
    pub fn new(dir: Option<PathBuf>) -> Photos {
        Photos {
            dir,
            #[cfg(feature = "images")]
            loaded: OnceLock::new(),
        }
    }

    /// Loads the backbone now rather than on the first photo, whose latency would pay
    /// for it.
    pub fn preload(&self) {
        if self.dir.is_none() {
            return;
        }
        #[cfg(feature = "images")]
        if let Err(e) = self.embedder() {
            tracing::warn!("{e}");
        }
    }

    #[cfg(feature = "images")]
    fn embedder(&self) -> Result<Arc<ImageEmbedder>, String> {
        self.loaded
            .get_or_init(|| {
                let dir = self.dir.as_ref().ok_or_else(|| {
                    "this server has no image embedder (start it with --image-model-dir or SGML_IMAGE_MODEL_DIR)".to_string()
                })?;
                let started = std::time::Instant::now();
                let e = ImageEmbedder::load(dir)
                    .map_err(|e| format!("the image embedder did not load: {e}"))?;
                tracing::info!(dir = %dir.display(), seconds = started.elapsed().as_secs_f64(), "image embedder loaded");
                Ok(Arc::new(e))
            })
            .clone()
    }

    /// The photo's features, from its file bytes.
    pub fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, PhotoError> {
        #[cfg(feature = "images")]
        {
            let embedder = self.embedder().map_err(PhotoError::Unavailable)?;
            let photo =
                sgml_models::photo::decode(bytes, &sgml_models::photo::Limits::default())
                    .map_err(|e| PhotoError::Refused(format!("{} ({})", e, e.rule().as_str())))?;
            Ok(embedder.embed(&photo.rgb))
        }
        #[cfg(not(feature = "images"))]
        {
            let _ = (bytes, &self.dir);
            Err(PhotoError::Unavailable(
                "this server was built without image support (sgml-serve's `images` feature)"
                    .into(),
            ))
        }
    }
}
