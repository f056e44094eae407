//! The model report: PNG charts and one self-contained HTML page (charts embedded),
//! written into every bundle version under `report/`, so the evidence for a model
//! travels with it.
//!
//! Charts are drawn in memory with plotters and encoded with `png`. Text uses the
//! DejaVu Sans font compiled in (the `dejavu` crate), so a report renders the same on
//! a machine with no fonts installed.

use std::collections::BTreeMap;
use std::sync::Once;

use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing the {chart} chart: {why}")]
    Draw { chart: &'static str, why: String },
    #[error("encoding the {chart} chart as PNG: {why}")]
    Png { chart: &'static str, why: String },
    #[error("a report needs as many predictions as actual values ({predicted} vs {actual})")]
    Shape { predicted: usize, actual: usize },
}

/// What a report shows: holdout predictions against the truth, on the log scale.
pub struct Evaluation<'a> {
    /// The page's heading, e.g. `pricing 20261125T… (pricing-gbdt)`.
    pub title: &'a str,
    pub metrics: &'a BTreeMap<String, f64>,
    pub predicted: &'a [f64],
    pub actual: &'a [f64],
    /// Half-width of the prediction interval (log scale) and the coverage it promises.
    pub half_width: f64,
    pub coverage_target: f64,
    /// Groupings of the holdout rows: a name (`category`) and each row's level.
    pub groups: Vec<(&'a str, Vec<String>)>,
    /// Feature importance by column.
    pub importance: Vec<(String, f64)>,
}

/// Residuals of one level of a grouping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub level: String,
    pub rows: usize,
    /// Mean of predicted − actual: positive means the model prices the level too high.
    pub bias: f64,
    pub rmse: f64,
    pub coverage: f64,
}

/// Per-level residual statistics, the largest levels first.
pub fn group_stats(
    levels: &[String],
    predicted: &[f64],
    actual: &[f64],
    half_width: f64,
) -> Vec<GroupStats> {
    let mut acc: BTreeMap<&str, (usize, f64, f64, usize)> = BTreeMap::new();
    for ((level, p), a) in levels.iter().zip(predicted).zip(actual) {
        let e = acc.entry(level.as_str()).or_default();
        let r = p - a;
        e.0 += 1;
        e.1 += r;
        e.2 += r * r;
        e.3 += usize::from(r.abs() <= half_width);
    }
    let mut out: Vec<GroupStats> = acc
        .into_iter()
        .map(|(level, (n, sum, sq, inside))| GroupStats {
            level: level.to_string(),
            rows: n,
            bias: sum / n as f64,
            rmse: (sq / n as f64).sqrt(),
            coverage: inside as f64 / n as f64,
        })
        .collect();
    out.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.level.cmp(&b.level)));
    out
}

/// The report's files, keyed by their path in the bundle.
pub fn render(e: &Evaluation) -> Result<BTreeMap<String, Vec<u8>>, ReportError> {
    if e.predicted.len() != e.actual.len() {
        return Err(ReportError::Shape {
            predicted: e.predicted.len(),
            actual: e.actual.len(),
        });
    }
    register_fonts();
    let mut charts: Vec<(String, &str, Vec<u8>)> = vec![(
        "predicted_vs_actual.png".into(),
        "Predicted vs actual log price on the holdout",
        scatter(e.predicted, e.actual)?,
    )];
    let mut tables = String::new();
    for (name, levels) in &e.groups {
        let stats = group_stats(levels, e.predicted, e.actual, e.half_width);
        let top: Vec<&GroupStats> = stats.iter().take(MAX_BARS).collect();
        charts.push((
            format!("residuals_by_{name}.png"),
            "Holdout RMSE (log price) by level, largest levels first",
            bars(
                "residuals",
                &format!("RMSE by {name}"),
                "RMSE of log price",
                &top.iter()
                    .map(|s| format!("{} ({})", s.level, s.rows))
                    .collect::<Vec<_>>(),
                &top.iter().map(|s| s.rmse).collect::<Vec<_>>(),
            )?,
        ));
        tables.push_str(&group_table(name, &stats));
    }
    let mut importance = e.importance.clone();
    importance.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = importance
        .iter()
        .map(|(_, v)| v)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    charts.push((
        "feature_importance.png".into(),
        "Share of total importance (gain for trees, |standardised weight| for linear)",
        bars(
            "feature importance",
            "Feature importance",
            "share of total",
            &importance
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            &importance
                .iter()
                .map(|(_, v)| v / total)
                .collect::<Vec<_>>(),
        )?,
    ));
    charts.push((
        "interval_coverage.png".into(),
        "Share of holdout prices inside their interval, by predicted-price decile",
        coverage_chart(e)?,
    ));

    let mut files = BTreeMap::new();
    let html = page(e, &charts, &tables);
    for (name, _, png) in charts {
        files.insert(format!("report/{name}"), png);
    }
    files.insert("report/index.html".into(), html.into_bytes());
    Ok(files)
}

const MAX_BARS: usize = 20;
const MAX_POINTS: usize = 5000;
pub(crate) const FONT: &str = "sans-serif";

pub(crate) fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font bytes are compiled in: failure would be a broken build, not input.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font parses"));
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans Bold font parses"));
    });
}

/// Draws on an in-memory RGB canvas and returns it as PNG bytes.
pub(crate) fn draw(
    chart: &'static str,
    (w, h): (u32, u32),
    paint: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, ReportError> {
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| ReportError::Draw {
            chart,
            why: e.to_string(),
        })?;
        paint(&root).map_err(|why| ReportError::Draw { chart, why })?;
        root.present().map_err(|e| ReportError::Draw {
            chart,
            why: e.to_string(),
        })?;
    }
    let png_error = |e: png::EncodingError| ReportError::Png {
        chart,
        why: e.to_string(),
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.03;
        (lo - pad, hi + pad)
    }
}

fn scatter(predicted: &[f64], actual: &[f64]) -> Result<Vec<u8>, ReportError> {
    // An even stride keeps the chart readable and its bytes deterministic.
    let stride = predicted.len().div_ceil(MAX_POINTS).max(1);
    let points: Vec<(f64, f64)> = actual
        .iter()
        .zip(predicted)
        .step_by(stride)
        .map(|(a, p)| (*a, *p))
        .filter(|(a, p)| a.is_finite() && p.is_finite())
        .collect();
    let (lo, hi) = range(points.iter().flat_map(|(a, p)| [*a, *p]));
    draw("predicted vs actual", (820, 640), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Predicted vs actual (log price)", (FONT, 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("actual")
            .y_desc("predicted")
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 2, BLUE.mix(0.35).filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Horizontal bars, the first label at the top.
pub(crate) fn bars(
    chart: &'static str,
    caption: &str,
    x_desc: &str,
    labels: &[String],
    values: &[f64],
) -> Result<Vec<u8>, ReportError> {
    let n = labels.len().max(1);
    let short: Vec<String> = labels
        .iter()
        .map(|l| {
            if l.chars().count() > 30 {
                format!("{}…", l.chars().take(29).collect::<String>())
            } else {
                l.clone()
            }
        })
        .collect();
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let xmax = if max > 0.0 { max * 1.08 } else { 1.0 };
    let height = 90 + 26 * n as u32;
    draw(chart, (820, height), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(230)
            .build_cartesian_2d(0.0..xmax, 0.0..n as f64)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(x_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        // Labels are drawn as points at each bar's centre, so they line up whatever
        // tick positions the axis would have chosen.
        let top = |i: usize| (n - i) as f64;
        c.draw_series(values.iter().enumerate().map(|(i, v)| {
            let v = if v.is_finite() { *v } else { 0.0 };
            Rectangle::new(
                [(0.0, top(i) - 0.15), (v, top(i) - 0.85)],
                BLUE.mix(0.7).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
        let area = c.plotting_area();
        let style = TextStyle::from((FONT, 13).into_font()).color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Right,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        for (i, label) in short.iter().enumerate() {
            let (px, py) = area.map_coordinate(&(0.0, top(i) - 0.5));
            root.draw_text(label, &style, (px - 6, py))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn coverage_chart(e: &Evaluation) -> Result<Vec<u8>, ReportError> {
    let mut order: Vec<usize> = (0..e.predicted.len()).collect();
    order.sort_by(|a, b| e.predicted[*a].total_cmp(&e.predicted[*b]));
    let deciles: Vec<f64> = (0..10)
        .map(|d| {
            let slice = &order[order.len() * d / 10..order.len() * (d + 1) / 10];
            let inside = slice
                .iter()
                .filter(|&&i| (e.predicted[i] - e.actual[i]).abs() <= e.half_width)
                .count();
            inside as f64 / slice.len().max(1) as f64
        })
        .collect();
    let target = e.coverage_target;
    draw("interval coverage", (820, 480), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("Interval coverage by predicted-price decile (target {target:.2})"),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..10.0, 0.0..1.05)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_labels(11)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("decile of predicted price (0 = cheapest)")
            .y_desc("share inside interval")
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(deciles.iter().enumerate().map(|(i, v)| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *v)],
                BLUE.mix(0.7).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(
            [(0.0, target), (10.0, target)],
            RED.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn group_table(name: &str, stats: &[GroupStats]) -> String {
    let mut t = format!(
        "<h2>Residuals by {n}</h2>\n<table><tr><th>{n}</th><th>rows</th><th>bias</th><th>RMSE</th><th>coverage</th></tr>\n",
        n = escape(name)
    );
    for s in stats.iter().take(50) {
        t.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:+.4}</td><td>{:.4}</td><td>{:.3}</td></tr>\n",
            escape(&s.level),
            s.rows,
            s.bias,
            s.rmse,
            s.coverage
        ));
    }
    if stats.len() > 50 {
        t.push_str(&format!(
            "<tr><td colspan=5>… {} more levels</td></tr>\n",
            stats.len() - 50
        ));
    }
    t.push_str("</table>\n");
    t
}

fn page(e: &Evaluation, charts: &[(String, &str, Vec<u8>)], tables: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}figcaption{{color:#555}}\
         </style></head><body>\n<h1>{t}</h1>\n<h2>Holdout metrics</h2>\n<table><tr><th>metric</th><th>value</th></tr>\n",
        t = escape(e.title)
    );
    for (k, v) in e.metrics {
        html.push_str(&format!("<tr><td>{}</td><td>{v:.4}</td></tr>\n", escape(k)));
    }
    html.push_str(&format!(
        "</table>\n<p>Interval: predicted log price ± {:.4} (promised coverage {:.2}).</p>\n",
        e.half_width, e.coverage_target
    ));
    for (name, caption, png) in charts {
        html.push_str(&format!(
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
            escape(name),
            b64.encode(png),
            escape(caption)
        ));
    }
    html.push_str(tables);
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation<'a>(
        metrics: &'a BTreeMap<String, f64>,
        predicted: &'a [f64],
        actual: &'a [f64],
    ) -> Evaluation<'a> {
        Evaluation {
            title: "pricing test <v1>",
            metrics,
            predicted,
            actual,
            half_width: 0.5,
            coverage_target: 0.9,
            groups: vec![(
                "category",
                (0..predicted.len())
                    .map(|i| ["Mugs", "Lamps & <Lights>", "Rugs"][i % 3].to_string())
                    .collect(),
            )],
            importance: vec![("product_price".into(), 3.0), ("month".into(), 1.0)],
        }
    }

    #[test]
    fn group_stats_by_hand() {
        let levels = ["a", "a", "b"].map(String::from);
        let s = group_stats(&levels, &[1.0, 2.0, 5.0], &[1.0, 1.0, 3.0], 0.5);
        assert_eq!(s[0].level, "a");
        assert_eq!(s[0].rows, 2);
        assert!((s[0].bias - 0.5).abs() < 1e-12);
        assert!((s[0].rmse - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(s[0].coverage, 0.5);
        assert_eq!((s[1].bias, s[1].coverage), (2.0, 0.0));
    }

    #[test]
    fn renders_pngs_and_one_self_contained_page() {
        let metrics = BTreeMap::from([("rmse_log".to_string(), 0.25)]);
        let actual: Vec<f64> = (0..300).map(|i| f64::from(i) / 50.0).collect();
        let predicted: Vec<f64> = actual
            .iter()
            .enumerate()
            .map(|(i, a)| a + if i % 2 == 0 { 0.2 } else { -0.3 })
            .collect();
        let files = render(&evaluation(&metrics, &predicted, &actual)).unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "report/feature_importance.png",
                "report/index.html",
                "report/interval_coverage.png",
                "report/predicted_vs_actual.png",
                "report/residuals_by_category.png",
            ]
        );
        for (name, bytes) in &files {
            if name.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
                let decoder = png::Decoder::new(bytes.as_slice());
                let reader = decoder.read_info().unwrap();
                assert!(reader.info().width >= 800, "{name}");
                // Something beyond the white background was drawn.
                assert!(bytes.len() > 2000, "{name}: {} bytes", bytes.len());
            }
        }
        let html = String::from_utf8(files["report/index.html"].clone()).unwrap();
        assert_eq!(html.matches("data:image/png;base64,").count(), 4);
        assert!(!html.contains("src=\"http"), "self-contained");
        assert!(
            html.contains("Lamps &amp; &lt;Lights&gt;"),
            "levels are escaped"
        );
        assert!(html.contains("pricing test &lt;v1&gt;"));
        // Same input, same bytes: bundle checksums stay reproducible.
        assert_eq!(
            files,
            render(&evaluation(&metrics, &predicted, &actual)).unwrap()
        );
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let metrics = BTreeMap::new();
        let e = evaluation(&metrics, &[1.0, 2.0], &[1.0]);
        assert!(matches!(render(&e), Err(ReportError::Shape { .. })));
    }
}
