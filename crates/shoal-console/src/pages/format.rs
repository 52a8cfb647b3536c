//! How figures read on the pages.

use std::time::{Duration, UNIX_EPOCH};

/// `12.3/s`, `1.2k/s`.
pub fn per_sec(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k/s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.1}/s")
    }
}

/// `0.42 ms`, `12 ms`, `—` for none.
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// `12.5%`, `—` for none.
pub fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// `1.2 MiB`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A Unix-ms time as `2026-12-04 16:10:05Z`.
pub fn utc(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
}

/// A Unix-ms time as `16:10:05`.
pub fn clock(ms: u64) -> String {
    let s = utc(ms);
    s.get(11..19).unwrap_or(&s).to_owned()
}

/// A whole number with thousands separators: `12,345`.
pub fn count(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(ms(Some(0.4236)), "0.42 ms");
        assert_eq!(ms(None), "—");
        assert_eq!(per_sec(1500.0), "1.5k/s");
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(clock(3_661_000), "01:01:01");
        assert_eq!(percent(Some(0.125)), "12.5%");
    }
}
