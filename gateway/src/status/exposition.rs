//! Reading back what `/metrics` says: the Prometheus text the recorder
//! renders, parsed into series. The status page samples the node from this
//! text, so every number it shows is one `/metrics` shows too.

use std::collections::BTreeMap;

/// One line of the exposition: a series and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The series of one rendering.
#[derive(Debug, Default)]
pub struct Exposition {
    series: Vec<Series>,
}

impl Exposition {
    /// Parses Prometheus text; lines that are not series (comments, help
    /// and type lines) and lines it cannot read are skipped.
    pub fn parse(text: &str) -> Exposition {
        let series = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Exposition { series }
    }

    /// The series named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// The sum of the series named `name` whose labels include `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.named(name)
            .filter(|s| matching.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
            .sum()
    }

    /// The series named `name` summed by the value of their label `by`.
    pub fn sum_by(&self, name: &str, by: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for series in self.named(name) {
            if let Some(value) = series.label(by) {
                *sums.entry(value.to_string()).or_insert(0.0) += series.value;
            }
        }
        sums
    }

    /// Every series.
    pub fn series(&self) -> &[Series] {
        &self.series
    }
}

/// `name{label="value",...} value [timestamp]`.
fn parse_line(line: &str) -> Option<Series> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    (!name.is_empty()).then(|| Series {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The labels up to the closing brace, and what follows it.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_string();
        let quoted = text[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        text = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_with_labels_escapes_and_special_values() {
        let text = "# HELP x help\n# TYPE x counter\n\
            plain 3\n\
            with{a=\"1\",b=\"x\\\"y\\\\z\"} 4.5\n\
            h_bucket{op=\"get\",le=\"+Inf\"} 7\n\
            gauge{a=\"2\"} -1e3 1700000000\n\
            broken{a=\"1\" 3\n";
        let e = Exposition::parse(text);
        assert_eq!(e.sum("plain", &[]), 3.0);
        let with: Vec<_> = e.named("with").collect();
        assert_eq!(with[0].label("b"), Some("x\"y\\z"));
        assert_eq!(with[0].value, 4.5);
        assert_eq!(
            e.named("h_bucket").next().and_then(|s| s.label("le")),
            Some("+Inf")
        );
        assert_eq!(e.sum("gauge", &[("a", "2")]), -1000.0);
        assert_eq!(e.named("broken").count(), 0);
    }

    #[test]
    fn sums_by_a_label() {
        let e =
            Exposition::parse("c{s=\"a\",t=\"1\"} 1\nc{s=\"a\",t=\"2\"} 2\nc{s=\"b\"} 5\nc 9\n");
        let by = e.sum_by("c", "s");
        assert_eq!(by.get("a"), Some(&3.0));
        assert_eq!(by.get("b"), Some(&5.0));
        assert_eq!(e.sum("c", &[("s", "a"), ("t", "2")]), 2.0);
    }
}
