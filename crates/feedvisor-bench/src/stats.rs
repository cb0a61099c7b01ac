//! Summaries of repeated runs (median, min, max) and latency percentiles.

/// The median and the range of one figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none (NaNs are ignored).
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|value| !value.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Summary { median, min: sorted[0], max: sorted[sorted.len() - 1] })
    }
}

/// The latency percentiles the benchmark reports, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
    /// How many samples they come from.
    pub samples: usize,
}

impl Percentiles {
    /// The percentiles of `samples` (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [u64]) -> Option<Percentiles> {
        samples.sort_unstable();
        Some(Percentiles {
            p50: percentile(samples, 50.0)?,
            p99: percentile(samples, 99.0)?,
            p999: percentile(samples, 99.9)?,
            samples: samples.len(),
        })
    }
}

/// The `q`th percentile (0 < q <= 100) of sorted samples, by nearest rank:
/// the smallest sample with at least `q`% of the samples at or below it.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() || !(q > 0.0 && q <= 100.0) {
        return None;
    }
    // Nearest rank, computed in parts per million to stay exact for 99.9.
    let per_million = (q * 10_000.0).round() as u128;
    let rank = (per_million * sorted.len() as u128).div_ceil(1_000_000).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(usize::MAX).min(sorted.len() - 1);
    Some(sorted[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Summary::of(&[5.0, 1.0, 3.0]).expect("values");
        assert_eq!(odd, Summary { median: 3.0, min: 1.0, max: 5.0 });
        let even = Summary::of(&[4.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!(even, Summary { median: 2.5, min: 1.0, max: 4.0 });
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN, 2.0]).map(|s| s.median), Some(2.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 50.0), Some(500));
        assert_eq!(percentile(&samples, 99.0), Some(990));
        assert_eq!(percentile(&samples, 99.9), Some(999));
        assert_eq!(percentile(&samples, 100.0), Some(1000));
        assert_eq!(percentile(&samples, 0.01), Some(1));
    }

    #[test]
    fn percentiles_of_few_samples_are_the_largest_ones() {
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 99.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1], 0.0), None);
    }

    #[test]
    fn percentiles_sort_their_samples() {
        let mut samples = vec![30, 10, 20];
        let found = Percentiles::of(&mut samples).expect("samples");
        assert_eq!(found, Percentiles { p50: 20, p99: 30, p999: 30, samples: 3 });
        assert_eq!(samples, vec![10, 20, 30]);
        assert_eq!(Percentiles::of(&mut []), None);
    }
}
