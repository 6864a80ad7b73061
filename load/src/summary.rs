//! Latency summaries: percentiles of measured samples, and quantiles of a Prometheus
//! histogram (the gateway's `thoth_event_delivery_seconds`) read from `/metrics` text.

/// The `q` quantile (0..=1) of samples, nearest rank; `None` when there are none.
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Cumulative bucket counts `(le, count)` of `metric` summed over every series whose labels
/// contain `label_filter` (e.g. `sink="splunk"`; empty for all).
pub fn histogram_buckets(metrics_text: &str, metric: &str, label_filter: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{metric}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics_text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((labels, value)) = line[prefix.len()..].split_once("} ") else {
            continue;
        };
        if !labels.contains(label_filter) {
            continue;
        }
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let count: f64 = value.trim().parse().unwrap_or(0.0);
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket as
/// Prometheus' `histogram_quantile` does. `before` (an earlier scrape, possibly empty) is
/// subtracted so a quantile covers only the window between two scrapes.
pub fn histogram_quantile(q: f64, after: &[(f64, f64)], before: &[(f64, f64)]) -> Option<f64> {
    let window: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - earlier)
        })
        .collect();
    let total = window.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &window {
        if count >= target {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 {
                (target - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&s, 0.5), Some(50));
        assert_eq!(percentile(&s, 0.99), Some(99));
        assert_eq!(percentile(&s, 1.0), Some(100));
        assert_eq!(percentile(&s, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    const METRICS: &str = "\
# TYPE thoth_event_delivery_seconds histogram
thoth_event_delivery_seconds_bucket{sink=\"a\",le=\"0.1\"} 50
thoth_event_delivery_seconds_bucket{sink=\"a\",le=\"0.2\"} 100
thoth_event_delivery_seconds_bucket{sink=\"a\",le=\"+Inf\"} 100
thoth_event_delivery_seconds_bucket{sink=\"b\",le=\"0.1\"} 0
thoth_event_delivery_seconds_bucket{sink=\"b\",le=\"0.2\"} 100
thoth_event_delivery_seconds_bucket{sink=\"b\",le=\"+Inf\"} 100
thoth_event_delivery_seconds_sum{sink=\"a\"} 9
";

    #[test]
    fn histogram_quantiles_interpolate_like_prometheus() {
        let a = histogram_buckets(METRICS, "thoth_event_delivery_seconds", "sink=\"a\"");
        assert_eq!(a, vec![(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)]);
        assert!((histogram_quantile(0.5, &a, &[]).unwrap() - 0.1).abs() < 1e-9);
        assert!((histogram_quantile(0.75, &a, &[]).unwrap() - 0.15).abs() < 1e-9);
        let all = histogram_buckets(METRICS, "thoth_event_delivery_seconds", "");
        assert_eq!(all[0], (0.1, 50.0));
        // Only the window after the first scrape counts.
        let later = vec![(0.1, 50.0), (0.2, 200.0), (f64::INFINITY, 200.0)];
        assert!((histogram_quantile(0.5, &later, &a).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(histogram_quantile(0.5, &a, &a), None);
    }
}
