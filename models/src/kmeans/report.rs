//! The segments report, what a data scientist reads to name the segments: silhouette
//! and inertia against k (the chosen k and the elbow marked), segment sizes, a 2-D
//! projection of a sample coloured by segment, and a profile of each segment (its
//! most typical members, distinctive words, price level, markets).

use std::collections::BTreeMap;

use base64::Engine;
use plotters::prelude::*;

use super::Points;
use super::select::KScore;
use crate::report::{FONT, ReportError, bars, draw, escape, register_fonts};

/// What the page says about one segment; the pipeline fills it from its tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub segment: usize,
    pub size: usize,
    /// The members nearest the centroid (titles, or seller ids).
    pub typical: Vec<String>,
    /// Words far more frequent in the segment than overall.
    pub words: Vec<String>,
    /// Named values: price level, markets, mean features.
    pub facts: Vec<(String, String)>,
}

pub struct Page<'a> {
    pub title: &'a str,
    /// What was segmented ("products", "sellers").
    pub subject: &'a str,
    pub metrics: &'a BTreeMap<String, f64>,
    pub scores: &'a [KScore],
    pub chosen: usize,
    pub elbow: Option<usize>,
    /// Sample rows projected on two principal axes, with their segment.
    pub projection: &'a [([f32; 2], u32)],
    pub profiles: &'a [Profile],
    pub notes: &'a [String],
}

/// The two principal axes of `x`'s rows (power iteration on the covariance, from a
/// fixed start, so the same rows give the same picture).
pub fn project_2d(x: Points) -> Vec<[f32; 2]> {
    let (n, d) = (x.rows(), x.dim());
    if n == 0 {
        return Vec::new();
    }
    let mut mean = vec![0.0f64; d];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += f64::from(v) / n as f64;
        }
    }
    let mut cov = vec![0.0f64; d * d];
    for i in 0..n {
        let c: Vec<f64> = x
            .row(i)
            .iter()
            .zip(&mean)
            .map(|(&v, m)| f64::from(v) - m)
            .collect();
        for a in 0..d {
            let ca = c[a];
            for (slot, cb) in cov[a * d..(a + 1) * d].iter_mut().zip(&c) {
                *slot += ca * cb;
            }
        }
    }
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|j| 1.0 + (j % 7) as f64 * 0.1).collect();
        let mut lambda = 0.0;
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..d)
                .map(|a| {
                    cov[a * d..(a + 1) * d]
                        .iter()
                        .zip(&v)
                        .map(|(c, x)| c * x)
                        .sum()
                })
                .collect();
            // Deflate: remove the axes already found.
            for axis in &axes {
                let dot: f64 = w.iter().zip(axis).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(axis).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|a| a / norm).collect();
        }
        if lambda == 0.0 {
            v = vec![0.0; d];
        }
        axes.push(v);
    }
    (0..n)
        .map(|i| {
            let p = |axis: &[f64]| {
                x.row(i)
                    .iter()
                    .zip(&mean)
                    .zip(axis)
                    .map(|((&v, m), a)| (f64::from(v) - m) * a)
                    .sum::<f64>() as f32
            };
            [p(&axes[0]), p(&axes[1])]
        })
        .collect()
}

fn curve(
    chart: &'static str,
    caption: &str,
    y_desc: &str,
    points: &[(usize, f64)],
    marks: &[(usize, &str)],
) -> Result<Vec<u8>, ReportError> {
    let (k0, k1) = points
        .iter()
        .fold((usize::MAX, 0), |(lo, hi), (k, _)| (lo.min(*k), hi.max(*k)));
    let (k0, k1) = if points.is_empty() {
        (1, 2)
    } else {
        (k0, k1.max(k0 + 1))
    };
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let (lo, hi) = if lo < hi {
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    draw(chart, (820, 420), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(k0 as f64 - 0.5..k1 as f64 + 0.5, lo..hi)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("k")
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        let line: Vec<(f64, f64)> = points.iter().map(|(k, v)| (*k as f64, *v)).collect();
        c.draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        c.draw_series(line.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
            .map_err(|e| e.to_string())?;
        for (i, (k, label)) in marks.iter().enumerate() {
            let color = [RED, GREEN][i % 2];
            c.draw_series(LineSeries::new(
                [(*k as f64, lo), (*k as f64, hi)],
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        if !marks.is_empty() {
            c.configure_series_labels()
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn scatter(points: &[([f32; 2], u32)], k: usize) -> Result<Vec<u8>, ReportError> {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for ([x, y], _) in points {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    // No points, or all on one line: any visible range will do.
    if x0 >= x1 {
        (x0, x1) = (x0.min(0.0) - 1.0, x1.max(0.0) + 1.0);
    }
    if y0 >= y1 {
        (y0, y1) = (y0.min(0.0) - 1.0, y1.max(0.0) + 1.0);
    }
    draw("projection", (820, 660), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                "Sample on its two principal axes, coloured by segment",
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(f64::from(x0)..f64::from(x1), f64::from(y0)..f64::from(y1))
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("first axis")
            .y_desc("second axis")
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for s in 0..k {
            let color = Palette99::pick(s).to_rgba();
            c.draw_series(
                points
                    .iter()
                    .filter(|(_, l)| *l as usize == s)
                    .map(|([x, y], _)| {
                        Circle::new((f64::from(*x), f64::from(*y)), 3, color.mix(0.6).filled())
                    }),
            )
            .map_err(|e| e.to_string())?
            .label(format!("segment {s}"))
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        }
        c.configure_series_labels()
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// `report/index.html` and its charts.
pub fn render(p: &Page) -> Result<BTreeMap<String, Vec<u8>>, ReportError> {
    register_fonts();
    let silhouettes: Vec<(usize, f64)> = p
        .scores
        .iter()
        .filter_map(|s| Some((s.k, s.silhouette?)))
        .collect();
    let inertias: Vec<(usize, f64)> = p.scores.iter().map(|s| (s.k, s.inertia)).collect();
    let mut marks = vec![(p.chosen, "chosen k")];
    if let Some(e) = p.elbow {
        marks.push((e, "elbow"));
    }
    let mut charts = vec![
        (
            "silhouette.png",
            "silhouette against k",
            curve(
                "silhouette",
                "Silhouette (sample) against k",
                "mean silhouette",
                &silhouettes,
                &marks,
            )?,
        ),
        (
            "inertia.png",
            "inertia against k",
            curve(
                "inertia",
                "Inertia against k",
                "sum of squared distances",
                &inertias,
                &marks,
            )?,
        ),
    ];
    let labels: Vec<String> = p
        .profiles
        .iter()
        .map(|s| format!("segment {}", s.segment))
        .collect();
    let sizes: Vec<f64> = p.profiles.iter().map(|s| s.size as f64).collect();
    charts.push((
        "sizes.png",
        "segment sizes",
        bars(
            "segment sizes",
            &format!("Segment sizes ({})", p.subject),
            p.subject,
            &labels,
            &sizes,
        )?,
    ));
    charts.push((
        "projection.png",
        "2-D projection",
        scatter(p.projection, p.chosen)?,
    ));

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}}\
         img{{max-width:100%}}\
         </style></head><body>\n<h1>{t}</h1>\n",
        t = escape(p.title)
    );
    for n in p.notes {
        html.push_str(&format!("<p>{}</p>\n", escape(n)));
    }
    html.push_str(&format!(
        "<p>{} segments of {} chosen by the best silhouette on a sample{}.</p>\n",
        p.chosen,
        escape(p.subject),
        match p.elbow {
            Some(e) => format!("; the inertia curve's elbow is at k = {e}"),
            None => String::new(),
        }
    ));
    html.push_str("<h2>Metrics</h2>\n<table><tr><th>metric</th><th>value</th></tr>\n");
    for (k, v) in p.metrics {
        html.push_str(&format!("<tr><td>{}</td><td>{v:.4}</td></tr>\n", escape(k)));
    }
    html.push_str("</table>\n<h2>Choosing k</h2>\n<table><tr><th>k</th><th>silhouette</th><th>inertia</th><th>iterations</th></tr>\n");
    for s in p.scores {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>\n",
            s.k,
            s.silhouette.map_or("–".into(), |v| format!("{v:.4}")),
            s.inertia,
            s.iterations
        ));
    }
    html.push_str("</table>\n");
    for (_, alt, png) in &charts {
        html.push_str(&format!(
            "<figure><img alt=\"{alt}\" src=\"data:image/png;base64,{}\"></figure>\n",
            b64.encode(png)
        ));
    }
    html.push_str("<h2>Segments</h2>\n<table><tr><th>segment</th><th>size</th><th>typical</th><th>words</th><th>profile</th></tr>\n");
    for s in p.profiles {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| escape(i))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let facts = s
            .facts
            .iter()
            .map(|(k, v)| format!("{}: {}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join("<br>");
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s.segment,
            s.size,
            list(&s.typical),
            escape(&s.words.join(", ")),
            facts
        ));
    }
    html.push_str("</table>\n</body></html>\n");
    let mut files: BTreeMap<String, Vec<u8>> = charts
        .into_iter()
        .map(|(name, _, png)| (format!("report/{name}"), png))
        .collect();
    files.insert("report/index.html".into(), html.into_bytes());
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_axis_is_the_long_one() {
        // Points along y = 2x with a little spread across it.
        let x: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = i as f32 - 25.0;
                let e = if i % 2 == 0 { 0.3 } else { -0.3 };
                [t + e, 2.0 * t - e]
            })
            .collect();
        let p = project_2d(Points::new(&x, 2).unwrap());
        let spread = |a: usize| {
            let m = p.iter().map(|v| v[a]).sum::<f32>() / 50.0;
            p.iter().map(|v| (v[a] - m).powi(2)).sum::<f32>()
        };
        assert!(
            spread(0) > 100.0 * spread(1),
            "{} vs {}",
            spread(0),
            spread(1)
        );
    }

    #[test]
    fn renders_a_self_contained_page() {
        let scores: Vec<KScore> = (2..=6)
            .map(|k| KScore {
                k,
                inertia: 100.0 / k as f64,
                silhouette: Some(0.1 * k as f64),
                iterations: 3,
            })
            .collect();
        let metrics = BTreeMap::from([("silhouette".to_string(), 0.6)]);
        let projection: Vec<([f32; 2], u32)> = (0..30)
            .map(|i| ([i as f32, (i % 5) as f32], (i % 3) as u32))
            .collect();
        let profiles: Vec<Profile> = (0..3)
            .map(|s| Profile {
                segment: s,
                size: 10,
                typical: vec![format!("Title <{s}>")],
                words: vec!["mug".into()],
                facts: vec![("median price".into(), "12.50 EUR".into())],
            })
            .collect();
        let files = render(&Page {
            title: "product-segments v1",
            subject: "products",
            metrics: &metrics,
            scores: &scores,
            chosen: 3,
            elbow: Some(4),
            projection: &projection,
            profiles: &profiles,
            notes: &[],
        })
        .unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "report/index.html",
                "report/inertia.png",
                "report/projection.png",
                "report/silhouette.png",
                "report/sizes.png"
            ]
        );
        let html = String::from_utf8(files["report/index.html"].clone()).unwrap();
        assert_eq!(html.matches("data:image/png;base64,").count(), 4);
        assert!(html.contains("Title &lt;2&gt;"), "members are escaped");
        assert!(html.contains("elbow is at k = 4"));
        for (name, bytes) in &files {
            if name.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            }
        }
    }
}
