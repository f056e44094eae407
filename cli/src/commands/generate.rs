//! `sgml generate`: a synthetic export (sgml-synth).

use std::path::PathBuf;

use sgml_synth::Params;

#[derive(clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Number of orders (each has 1 to 3 lines).
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows made bad the way real exports are (missing keys, negative or
    /// absurd prices, unknown currencies, malformed timestamps, duplicated lines,
    /// broken UTF-8), for exercising quarantine.
    #[arg(long, default_value_t = 0.0)]
    bad_fraction: f64,
    /// Write gzipped CSV (.csv.gz).
    #[arg(long)]
    gzip: bool,
    /// Share of listings with a photo (images/<product_id>.jpg, 96 x 96 JPEG; their
    /// relistings get edited copies; some are dark, blurred or, at --bad-fraction,
    /// broken). 0: no photos.
    #[arg(long, default_value_t = 0.05)]
    photos: f64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let params = Params {
        orders: a.orders,
        seed: a.seed,
        bad_fraction: a.bad_fraction,
        gzip: a.gzip,
        photos: a.photos,
    };
    let summary = sgml_synth::generate(&a.out, &params)?;
    say!("wrote synthetic data to {}:", a.out.display());
    for (file, rows) in summary.files {
        say!("  {file:<28} {rows:>9} rows");
    }
    say!("ingest it with --demo (the public demo key: synthetic data only)");
    Ok(())
}
