//! Category-from-photo requests: the server reads each photo (posted as base64, or
//! named by a URI it reads the way `sgml images` does: inside its images directory or
//! from a bucket, size-bounded), decodes it under the same limits `sgml images`
//! applies and embeds it with the backbone the image classifier was trained on, loaded
//! once. Behind the `images` feature, so a service that embeds sgml-serve for pricing
//! links no image code; `sgml` turns it on.

use std::path::PathBuf;
#[cfg(feature = "images")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "images")]
use sgml_models::vision::ImageEmbedder;
#[cfg(feature = "images")]
use sgml_registry::store::S3Options;
#[cfg(feature = "images")]
use sgml_registry::store::photos::PhotoSource;

#[cfg(feature = "images")]
use crate::rows::Photo;

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
    #[cfg(feature = "images")]
    source: PhotoSource,
}

impl Photos {
    /// `dir`: the embedder's weights; `images_dir`: where photo paths in requests must
    /// lie; `s3_endpoint`: for `s3://` photos. Refuses an images directory that is not
    /// one.
    pub fn new(
        dir: Option<PathBuf>,
        images_dir: Option<PathBuf>,
        s3_endpoint: Option<String>,
    ) -> Result<Photos, sgml_registry::StoreError> {
        #[cfg(not(feature = "images"))]
        let _ = (images_dir, s3_endpoint);
        Ok(Photos {
            dir,
            #[cfg(feature = "images")]
            loaded: OnceLock::new(),
            #[cfg(feature = "images")]
            source: PhotoSource::new(
                images_dir,
                S3Options {
                    endpoint: s3_endpoint,
                },
                sgml_models::photo::Limits::default().max_bytes as u64,
            )?,
        })
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

    /// The photo's features, from its file bytes or from where its URI points.
    #[cfg(feature = "images")]
    pub fn embed(&self, photo: &Photo) -> Result<Vec<f32>, PhotoError> {
        let embedder = self.embedder().map_err(PhotoError::Unavailable)?;
        let fetched;
        let bytes = match photo {
            Photo::Bytes(b) => b.as_slice(),
            Photo::Uri(uri) => {
                fetched = self
                    .source
                    .fetch(uri)
                    .map_err(|e| PhotoError::Refused(format!("{} ({})", e, e.rule().as_str())))?;
                fetched.as_slice()
            }
        };
        let photo = sgml_models::photo::decode(bytes, &sgml_models::photo::Limits::default())
            .map_err(|e| PhotoError::Refused(format!("{} ({})", e, e.rule().as_str())))?;
        Ok(embedder.embed(&photo.rgb))
    }

    /// Without the `images` feature, no photo is embedded.
    #[cfg(not(feature = "images"))]
    pub fn embed(&self, photo: &[u8]) -> Result<Vec<f32>, PhotoError> {
        {
            let _ = (photo, &self.dir);
            Err(PhotoError::Unavailable(
                "this server was built without image support (sgml-serve's `images` feature)"
                    .into(),
            ))
        }
    }
}
