//! The categorizer's report: the confusion matrix and per-category F1 as PNGs, and one
//! self-contained HTML page with the holdout metrics and the per-category table.

use std::collections::BTreeMap;

use base64::Engine;
use plotters::prelude::*;

use super::metrics::ClassificationMetrics;
use crate::report::{FONT, ReportError, bars, draw, escape, register_fonts};

fn short(label: &str) -> String {
    if label.chars().count() > 24 {
        format!("{}…", label.chars().take(23).collect::<String>())
    } else {
        label.to_string()
    }
}

/// Rows are true categories, columns predicted ones; each cell is shaded by its share
/// of the row (so small categories read as clearly as large ones).
pub fn confusion_png(labels: &[String], confusion: &[Vec<usize>]) -> Result<Vec<u8>, ReportError> {
    register_fonts();
    let n = labels.len().max(1);
    let cell = (640 / n as u32).clamp(8, 28);
    let side = cell * n as u32;
    let (w, h) = (side + 260, side + 240);
    draw("confusion matrix", (w, h), |root| {
        root.draw_text(
            "Confusion matrix (rows: true category, columns: predicted; shade: share of the row)",
            &TextStyle::from((FONT, 15).into_font()).color(&BLACK),
            (10, 8),
        )
        .map_err(|e| e.to_string())?;
        let (x0, y0) = (230i32, 200i32);
        let label_style = TextStyle::from((FONT, 11).into_font()).color(&BLACK);
        for (i, label) in labels.iter().enumerate() {
            let y = y0 + (i as u32 * cell + cell / 2) as i32;
            root.draw_text(
                &short(label),
                &label_style.pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Right,
                    plotters::style::text_anchor::VPos::Center,
                )),
                (x0 - 6, y),
            )
            .map_err(|e| e.to_string())?;
            let x = x0 + (i as u32 * cell + cell / 2) as i32;
            root.draw_text(
                &short(label),
                &label_style.transform(FontTransform::Rotate270).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                ),
                (x, y0 - 6),
            )
            .map_err(|e| e.to_string())?;
        }
        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let (cx, cy) = (x0 + (p as u32 * cell) as i32, y0 + (t as u32 * cell) as i32);
                let color = if t == p {
                    RGBColor(30, 110, 200).mix(0.1 + 0.9 * share)
                } else {
                    RGBColor(210, 50, 40).mix(if count == 0 { 0.0 } else { 0.1 + 0.9 * share })
                };
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell as i32 - 1, cy + cell as i32 - 1)],
                    color.filled(),
                ))
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// `report/confusion.png`, `report/f1_by_category.png` and `report/index.html`.
pub fn render(
    title: &str,
    metrics: &BTreeMap<String, f64>,
    holdout: &ClassificationMetrics,
    labels: &[String],
    notes: &[String],
) -> Result<BTreeMap<String, Vec<u8>>, ReportError> {
    register_fonts();
    let confusion = confusion_png(labels, &holdout.confusion)?;
    let mut by_f1: Vec<&super::metrics::CategoryMetrics> = holdout
        .per_category
        .iter()
        .filter(|c| c.support > 0)
        .collect();
    by_f1.sort_by(|a, b| a.f1.total_cmp(&b.f1).then(a.category.cmp(&b.category)));
    let f1 = bars(
        "F1 by category",
        "F1 on the holdout, worst first",
        "F1",
        &by_f1.iter().map(|c| c.category.clone()).collect::<Vec<_>>(),
        &by_f1.iter().map(|c| c.f1).collect::<Vec<_>>(),
    )?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}\
         </style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    for n in notes {
        html.push_str(&format!("<p>{}</p>\n", escape(n)));
    }
    html.push_str("<h2>Holdout metrics</h2>\n<table><tr><th>metric</th><th>value</th></tr>\n");
    for (k, v) in metrics {
        html.push_str(&format!("<tr><td>{}</td><td>{v:.4}</td></tr>\n", escape(k)));
    }
    html.push_str("</table>\n");
    for (name, png) in [("confusion matrix", &confusion), ("F1 by category", &f1)] {
        html.push_str(&format!(
            "<figure><img alt=\"{name}\" src=\"data:image/png;base64,{}\"></figure>\n",
            b64.encode(png)
        ));
    }
    html.push_str(
        "<h2>Per category</h2>\n<table><tr><th>category</th><th>titles</th><th>precision</th><th>recall</th><th>F1</th></tr>\n",
    );
    for c in &holdout.per_category {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>\n",
            escape(&c.category),
            c.support,
            c.precision,
            c.recall,
            c.f1
        ));
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(BTreeMap::from([
        ("report/confusion.png".to_string(), confusion),
        ("report/f1_by_category.png".to_string(), f1),
        ("report/index.html".to_string(), html.into_bytes()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::categorize::metrics::classification;

    #[test]
    fn renders_a_confusion_matrix_and_a_page() {
        let labels: Vec<String> = ["books", "kitchen", "shoes"].map(String::from).to_vec();
        let m = classification(
            &labels,
            &[(0, 0.9), (1, 0.8), (1, 0.7), (2, 0.6)],
            &[0, 1, 2, 2],
        );
        let files = render(
            "categorize test",
            &BTreeMap::from([("accuracy".to_string(), m.accuracy)]),
            &m,
            &labels,
            &["a note".into()],
        )
        .unwrap();
        let png = &files["report/confusion.png"];
        assert_eq!(&png[1..4], b"PNG");
        let html = String::from_utf8(files["report/index.html"].clone()).unwrap();
        assert!(html.contains("kitchen") && html.contains("data:image/png;base64,"));
    }
}
