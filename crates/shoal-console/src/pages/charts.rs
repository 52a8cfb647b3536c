//! Charts as inline SVG, rendered on the server (no script, no library): horizontal bars,
//! columns over time, and a line.

use maud::{Markup, html};

/// Horizontal bars: one row per `(label, value, note)`, scaled to the largest value.
pub fn hbars(id: &str, rows: &[(String, f64, String)]) -> Markup {
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let row_h = 22.0;
    let height = (rows.len() as f64 * row_h).max(row_h);
    html! {
        @if rows.is_empty() {
            p.empty { "nothing yet" }
        } @else {
            svg.chart.hbars id=(id) viewBox=(format!("0 0 640 {height}")) role="img" {
                @for (i, (label, value, note)) in rows.iter().enumerate() {
                    @let y = i as f64 * row_h;
                    @let w = 160.0 * value / max;
                    text x="0" y=(y + 15.0) class="label" { (truncate(label, 26)) }
                    rect x="180" y=(y + 3.0) width=(format!("{w:.1}")) height="16" rx="2" {}
                    text x=(format!("{:.1}", 186.0 + w)) y=(y + 15.0) class="value" { (note) }
                }
            }
        }
    }
}

/// Columns over time: `(x label, value)`, oldest first.
pub fn columns(id: &str, points: &[(String, f64)], unit: &str) -> Markup {
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let n = points.len().max(1) as f64;
    let w = 600.0 / n;
    html! {
        @if points.is_empty() {
            p.empty { "nothing yet" }
        } @else {
            svg.chart.columns id=(id) viewBox="0 0 600 140" role="img" preserveAspectRatio="none" {
                @for (i, (label, value)) in points.iter().enumerate() {
                    @let h = if max > 0.0 { 110.0 * value / max } else { 0.0 };
                    rect x=(format!("{:.1}", i as f64 * w + 1.0)) y=(format!("{:.1}", 120.0 - h))
                        width=(format!("{:.1}", (w - 2.0).max(1.0))) height=(format!("{h:.1}")) {
                        title { (label) ": " (value) " " (unit) }
                    }
                }
                line x1="0" y1="120" x2="600" y2="120" class="axis" {}
                text x="0" y="136" class="label" { (points.first().map(|p| p.0.as_str()).unwrap_or("")) }
                text x="600" y="136" class="label" text-anchor="end" { (points.last().map(|p| p.0.as_str()).unwrap_or("")) }
                text x="0" y="10" class="label" { "max " (format!("{max:.0}")) " " (unit) }
            }
        }
    }
}

/// A line over time (oldest first), with its latest value.
pub fn line(id: &str, values: &[f64], latest: &str) -> Markup {
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", 300.0 * i as f64 / n, 58.0 - 54.0 * v / max))
        .collect();
    html! {
        svg.chart.line id=(id) viewBox="0 0 300 60" role="img" preserveAspectRatio="none" {
            polyline points=(points.join(" ")) {}
        }
        span.latest { (latest) }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_scaled() {
        let m = hbars(
            "x",
            &[
                ("<script>".into(), 2.0, "2".into()),
                ("b".into(), 1.0, "1".into()),
            ],
        )
        .into_string();
        assert!(m.contains("&lt;script&gt;"), "{m}");
        assert!(m.contains("width=\"160.0\""), "{m}");
        assert!(m.contains("width=\"80.0\""), "{m}");
        assert!(hbars("y", &[]).into_string().contains("nothing yet"));
        let c = columns("c", &[("a".into(), 0.0), ("b".into(), 5.0)], "sessions").into_string();
        assert!(c.contains("height=\"110.0\""), "{c}");
    }
}
