//! Reading samples out of the Prometheus text that `/metrics` answers.

/// One counter or gauge sample, 0 when absent: `name_and_labels` is the
/// sample's name with its labels exactly as rendered, e.g.
/// `dedupd_claims_total{outcome="acquired"}`.
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name_and_labels)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// The sum of every sample of the family `name` whose labels contain all of
/// `labels` (`key="value"` pairs), e.g. every route's count of one status.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let wanted = labels
                .iter()
                .all(|label| label_text.split(',').any(|pair| pair.trim() == *label));
            wanted.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE dedupd_claims_total counter
dedupd_claims_total{namespace=\"a\",outcome=\"acquired\"} 3
dedupd_claims_total{namespace=\"b\",outcome=\"acquired\"} 4
dedupd_claims_total{namespace=\"b\",outcome=\"duplicate\"} 5
dedupd_claims_total_extra 9
dedupd_up 1
";

    #[test]
    fn one_sample_by_its_exact_name_and_labels() {
        assert_eq!(
            metric_value(
                TEXT,
                "dedupd_claims_total{namespace=\"b\",outcome=\"duplicate\"}"
            ),
            5.0
        );
        assert_eq!(metric_value(TEXT, "dedupd_up"), 1.0);
        assert_eq!(metric_value(TEXT, "dedupd_missing"), 0.0);
    }

    #[test]
    fn a_family_summed_over_the_labels_not_named() {
        assert_eq!(
            metric_sum(TEXT, "dedupd_claims_total", &["outcome=\"acquired\""]),
            7.0
        );
        assert_eq!(metric_sum(TEXT, "dedupd_claims_total", &[]), 12.0);
        assert_eq!(metric_sum(TEXT, "dedupd_up", &[]), 1.0);
    }
}
