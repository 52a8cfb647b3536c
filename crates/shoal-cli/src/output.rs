//! Printing: aligned text tables and key/value blocks for people, one JSON document for tools,
//! progress bars on stderr only when a person is watching.

use std::{
    io::{IsTerminal as _, Write},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use shoal_core::Timestamp;

/// Writes `value` as one pretty-printed JSON document (plus a newline) on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Writes `text` on stdout.
pub(crate) fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A left-aligned text table; the last column is not padded.
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row after the header line.
    pub(crate) fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::new();
            for (i, cell) in cells.enumerate() {
                if i + 1 < cols {
                    l.push_str(cell);
                    let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                    l.extend(std::iter::repeat_n(' ', pad));
                } else {
                    l.push_str(cell);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut self.headers.iter().copied());
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str));
        }
        out
    }
}

/// Aligned `key: value` lines.
pub(crate) fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    out
}

/// A timestamp as RFC 3339 to the second (`-` for 0).
pub(crate) fn fmt_time(t: Timestamp) -> String {
    if t.0 == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}

/// A duration rounded for people: `850µs`, `12.3ms`, `4s`.
pub(crate) fn fmt_latency(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// `1 session`, `2 sessions`.
pub(crate) fn count_of(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `-` for `None`.
pub(crate) fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_owned()
}

/// Whether progress bars may be drawn: stderr is a terminal and output is not JSON.
pub(crate) fn progress_enabled(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A progress bar on stderr (hidden unless `enabled`). With `len`, a bar; without, a spinner.
pub(crate) fn progress_bar(enabled: bool, len: Option<u64>, what: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => {
            let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{wide_bar}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix} {pos} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        }
    };
    bar.set_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A byte-count progress bar on stderr (hidden unless `enabled`).
pub(crate) fn bytes_bar(enabled: bool, len: u64, what: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix} [{wide_bar}] {bytes}/{total_bytes} ({elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.row(vec!["a".into(), "active".into(), "x".into()]);
        t.row(vec!["longer-id".into(), "failed".into(), String::new()]);
        assert_eq!(
            t.render(),
            "ID         STATUS  NOTE\na          active  x\nlonger-id  failed\n"
        );
    }

    #[test]
    fn key_values_align() {
        let s = key_values(&[("id", "a".into()), ("frames", "3".into())]);
        assert_eq!(s, "id:     a\nframes: 3\n");
    }

    #[test]
    fn formats_times_and_latencies() {
        assert_eq!(fmt_time(Timestamp(0)), "-");
        assert_eq!(fmt_time(Timestamp(1_000)), "1970-01-01T00:00:01Z");
        assert_eq!(fmt_latency(Duration::from_micros(850)), "850µs");
        assert_eq!(fmt_latency(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(fmt_latency(Duration::from_millis(4_000)), "4.00s");
        assert!(progress_bar(false, Some(3), "x").is_hidden());
        assert_eq!(count_of(1, "frame", "frames"), "1 frame");
        assert_eq!(count_of(0, "frame", "frames"), "0 frames");
    }
}
