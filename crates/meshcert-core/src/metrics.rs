//! The Prometheus text exposition format (version 0.0.4), in which `GET /metrics` shows
//! certificate expiry, alerts, sync states and the last scan.

use std::fmt::Write as _;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric families written one after the other. A family's samples must follow its `# TYPE`
/// line without another family in between, so each family is written whole.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Writes a gauge family: its `# HELP` and `# TYPE` lines, then one line per sample of
    /// `(labels, value)`.
    pub fn gauge<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Vec<(&'a str, String)>, f64)>) {
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                let labels: Vec<String> = labels.iter().map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value))).collect();
                let _ = write!(self.text, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(self.text, " {}", format_value(value));
        }
    }

    /// Returns the text written so far.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// Escapes a label value as the format requires: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_writes_help_type_and_samples() {
        let mut exposition = Exposition::default();

        exposition.gauge("meshcert_alerts", "Active alerts by kind.", [(vec![("kind", "expired".to_string())], 2.0), (vec![("kind", "expiring".to_string())], 0.0)]);
        exposition.gauge("meshcert_last_scan_timestamp_seconds", "End of the last scan.", [(vec![], 1_790_000_000.0)]);

        assert_eq!(
            exposition.into_text(),
            "# HELP meshcert_alerts Active alerts by kind.\n# TYPE meshcert_alerts gauge\nmeshcert_alerts{kind=\"expired\"} 2\nmeshcert_alerts{kind=\"expiring\"} 0\n\
             # HELP meshcert_last_scan_timestamp_seconds End of the last scan.\n# TYPE meshcert_last_scan_timestamp_seconds gauge\nmeshcert_last_scan_timestamp_seconds 1790000000\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("CN=a\"b\\c\nd"), "CN=a\\\"b\\\\c\\nd");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.5), "0.5");
    }
}
