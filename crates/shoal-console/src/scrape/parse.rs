//! Reading the Prometheus text exposition a proxy's `/metrics` serves.
//!
//! Only what that format says: `# HELP`/`# TYPE` comments are skipped, each sample is
//! `name{label="value",…} value [timestamp]`; label values may hold `\"`, `\\` and `\n`.
//! A line that does not parse is skipped (counted), never fatal: a scrape is a best effort.

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (with a histogram's `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`, and how many lines were skipped as unreadable.
pub fn parse(text: &str) -> (Vec<Sample>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => out.push(s),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to the closing `}`; returns them and the text after it.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_labels_histograms_and_skips_garbage() {
        let text = "# HELP x help\n# TYPE x counter\nx 3\n\
                    y{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 2.5\n\
                    h_bucket{le=\"+Inf\"} 7\n\
                    z{le=\"0.5\"} +Inf 1700000000\n\
                    broken{a=\"1\" 3\n\
                    {x=\"1\"} 3\n";
        let (s, skipped) = parse(text);
        assert_eq!(skipped, 2);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            Sample {
                name: "x".into(),
                labels: vec![],
                value: 3.0
            }
        );
        assert_eq!(s[1].label("b"), Some("q\"u\\o\nte"));
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert!(s[3].value.is_infinite());
    }
}
