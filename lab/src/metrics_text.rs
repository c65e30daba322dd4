//! The service's metrics as its Prometheus text exposition renders them
//! (`Metrics::render`, `GET /metrics`): the bench and the soak read their
//! in-process server's, the checker its processes'.

/// One sample line: `name{labels} value`.
pub struct Sample<'a> {
    labels: &'a str,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`. The service's label values hold no commas
    /// nor escaped quotes, so the labels split on commas.
    pub fn label(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=\"");
        self.labels
            .split(',')
            .find_map(|pair| pair.strip_prefix(prefix.as_str()))
            .map(|value| value.trim_end_matches('"'))
    }
}

/// Every sample of the series `name`, exactly: `x_sum` and `x_count` are
/// series of their own. Lines that do not parse are passed over.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample<'a>> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let value = value.trim().parse().ok()?;
        Some(Sample { labels, value })
    })
}

/// The value of the sample of `name` whose labels are exactly `labels`, in
/// the order the service renders them; 0 when there is none yet (a counter
/// or histogram no request has touched is not rendered).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect::<Vec<_>>()
        .join(",");
    samples(text, name)
        .find(|sample| sample.labels == wanted)
        .map_or(0.0, |sample| sample.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE dedupd_completed_cache counter
dedupd_completed_cache_total{result=\"hit\"} 9
dedupd_completed_cache_total{result=\"miss\"} 1
dedupd_unknown_outcomes_total{statement=\"claim_insert\",resolution=\"applied\"} 2
dedupd_request_duration_seconds_sum{status=\"201\"} 0.5
dedupd_request_duration_seconds_count{status=\"201\"} 4
dedupd_up 1
";

    #[test]
    fn a_sample_is_found_by_its_exact_name_and_labels() {
        assert_eq!(
            value(TEXT, "dedupd_completed_cache_total", &[("result", "hit")]),
            9.0
        );
        assert_eq!(
            value(
                TEXT,
                "dedupd_request_duration_seconds_count",
                &[("status", "201")]
            ),
            4.0
        );
        assert_eq!(value(TEXT, "dedupd_up", &[]), 1.0);
        // Absent: not yet rendered, so zero.
        assert_eq!(
            value(TEXT, "dedupd_completed_cache_total", &[("result", "other")]),
            0.0
        );
        assert_eq!(value(TEXT, "dedupd_request_duration_seconds", &[]), 0.0);
    }

    #[test]
    fn labels_are_read_by_name() {
        let outcomes: Vec<_> = samples(TEXT, "dedupd_unknown_outcomes_total").collect();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].label("statement"), Some("claim_insert"));
        assert_eq!(outcomes[0].label("resolution"), Some("applied"));
        assert_eq!(outcomes[0].label("missing"), None);
        assert_eq!(outcomes[0].value, 2.0);
    }
}
