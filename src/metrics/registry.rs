//! feedvisor's own metrics registry: the `metrics` crate's recorder, the
//! series it holds, and their Prometheus text.
//!
//! Why our own and not `metrics-exporter-prometheus`: a removed feed or
//! subscriber must leave `/metrics`, at once and whatever its series held.
//! That exporter can only forget series by an idle timeout, which also
//! forgets live but quiet ones (a feed that is up, a drop counter at zero,
//! a histogram with no new sample) and so turns zeros into gaps for
//! alerts; and it cannot remove a series on request. Here a series is
//! removed by its labels ([`Registry::remove_labelled`]), and nothing else
//! ever removes one.
//!
//! Histograms count into fixed buckets as they record (one atomic add per
//! bucket, count and sum), so nothing accumulates between scrapes and no
//! upkeep task is needed; their bounds come from [`BucketTable`] when the
//! series is first registered.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Histogram bounds by metric name, with a fallback for names not listed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketTable {
    /// Bounds of the histograms named here.
    pub by_name: HashMap<&'static str, Arc<[f64]>>,
    /// Bounds of every other histogram.
    pub fallback: Arc<[f64]>,
}

impl BucketTable {
    fn for_name(&self, name: &str) -> Arc<[f64]> {
        self.by_name.get(name).unwrap_or(&self.fallback).clone()
    }
}

/// A histogram with fixed bucket bounds, counted as samples are recorded.
#[derive(Debug)]
pub(crate) struct FixedHistogram {
    /// Upper bounds (`le`), ascending; the `+Inf` bucket is implicit.
    bounds: Arc<[f64]>,
    /// Samples per bucket (not cumulative); one more than `bounds` for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of the samples, as `f64` bits.
    sum: AtomicU64,
}

impl FixedHistogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        FixedHistogram { bounds, counts, sum: AtomicU64::new(0f64.to_bits()) }
    }

    /// Cumulative counts per bound, then the total (the `+Inf` bucket), and the sum.
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut total = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            if index < self.bounds.len() {
                cumulative.push(total);
            }
        }
        (cumulative, total, f64::from_bits(self.sum.load(Ordering::Relaxed)))
    }
}

impl HistogramFn for FixedHistogram {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        // The first bound at or above the value: Prometheus buckets are `le`.
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }
}

/// The series of one kind, by key.
type Series<T> = HashMap<Key, Arc<T>>;

/// Every series and description the recorder was given.
#[derive(Debug)]
pub(crate) struct Registry {
    counters: RwLock<Series<AtomicU64>>,
    /// Gauges hold `f64` bits (the `metrics` crate's own `GaugeFn` for `AtomicU64`).
    gauges: RwLock<Series<AtomicU64>>,
    histograms: RwLock<Series<FixedHistogram>>,
    /// Help texts by metric name.
    descriptions: RwLock<HashMap<String, SharedString>>,
    /// Bounds for histograms registered from now on.
    buckets: RwLock<BucketTable>,
    /// Counts removals, so that handles cached outside (the inboxes' latency
    /// histograms) know to resolve theirs again.
    removals: AtomicU64,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn entry<T>(lock: &RwLock<Series<T>>, key: &Key, make: impl FnOnce() -> T) -> Arc<T> {
    if let Some(found) = read(lock).get(key) {
        return found.clone();
    }
    write(lock).entry(key.clone()).or_insert_with(|| Arc::new(make())).clone()
}

impl Registry {
    /// An empty registry whose histograms use `buckets`.
    pub(crate) fn new(buckets: BucketTable) -> Self {
        Registry {
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
            descriptions: RwLock::default(),
            buckets: RwLock::new(buckets),
            removals: AtomicU64::new(0),
        }
    }

    /// Sets the bounds of histograms registered from now on (existing ones keep theirs).
    pub(crate) fn set_buckets(&self, buckets: BucketTable) {
        *write(&self.buckets) = buckets;
    }

    /// Removes every series that has the label `name="value"`; returns how many.
    pub(crate) fn remove_labelled(&self, name: &str, value: &str) -> usize {
        let matches =
            |key: &Key| key.labels().any(|label| label.key() == name && label.value() == value);
        let mut removed = 0;
        removed += retain(&self.counters, |key| !matches(key));
        removed += retain(&self.gauges, |key| !matches(key));
        removed += retain(&self.histograms, |key| !matches(key));
        self.removals.fetch_add(1, Ordering::Release);
        removed
    }

    /// How many removals there have been.
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Every series in the Prometheus text format (0.0.4), by metric name.
    pub(crate) fn render(&self) -> String {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for (key, value) in read(&self.counters).iter() {
            let family = families.entry(key.name().to_owned()).or_insert_with(Family::counter);
            family.lines.push((labels(key, None), value.load(Ordering::Relaxed).to_string()));
        }
        for (key, value) in read(&self.gauges).iter() {
            let family = families.entry(key.name().to_owned()).or_insert_with(Family::gauge);
            let value = f64::from_bits(value.load(Ordering::Relaxed));
            family.lines.push((labels(key, None), number(value)));
        }
        for (key, histogram) in read(&self.histograms).iter() {
            let family = families.entry(key.name().to_owned()).or_insert_with(Family::histogram);
            family.histograms.push((key.clone(), histogram.clone()));
        }
        let descriptions = read(&self.descriptions);
        let mut out = String::new();
        for (name, mut family) in families {
            if let Some(help) = descriptions.get(&name) {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            family.lines.sort();
            for (labels, value) in &family.lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
            family.histograms.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, histogram) in &family.histograms {
                let (cumulative, total, sum) = histogram.snapshot();
                for (bound, count) in histogram.bounds.iter().zip(cumulative) {
                    let le = labels(key, Some(&number(*bound)));
                    let _ = writeln!(out, "{name}_bucket{le} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{} {total}", labels(key, Some("+Inf")));
                let _ = writeln!(out, "{name}_sum{} {}", labels(key, None), number(sum));
                let _ = writeln!(out, "{name}_count{} {total}", labels(key, None));
            }
        }
        out
    }

    /// Series held, of every kind.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        read(&self.counters).len() + read(&self.gauges).len() + read(&self.histograms).len()
    }
}

fn retain<T>(lock: &RwLock<Series<T>>, keep: impl Fn(&Key) -> bool) -> usize {
    let mut series = write(lock);
    let before = series.len();
    series.retain(|key, _| keep(key));
    let kept = series.len();
    series.shrink_to(kept * 2);
    before - series.len()
}

/// The series of one metric name, gathered for rendering.
struct Family {
    kind: &'static str,
    /// Label text and value of each counter or gauge series.
    lines: Vec<(String, String)>,
    histograms: Vec<(Key, Arc<FixedHistogram>)>,
}

impl Family {
    fn counter() -> Self {
        Family { kind: "counter", lines: Vec::new(), histograms: Vec::new() }
    }
    fn gauge() -> Self {
        Family { kind: "gauge", ..Family::counter() }
    }
    fn histogram() -> Self {
        Family { kind: "histogram", ..Family::counter() }
    }
}

/// `{a="1",b="2"}` (with `le` last when given), or nothing for no labels.
fn labels(key: &Key, le: Option<&str>) -> String {
    let mut text = String::new();
    for label in key.labels() {
        text.push(if text.is_empty() { '{' } else { ',' });
        let _ = write!(text, "{}=\"{}\"", label.key(), escape_label(label.value()));
    }
    if let Some(le) = le {
        text.push(if text.is_empty() { '{' } else { ',' });
        let _ = write!(text, "le=\"{le}\"");
    }
    if !text.is_empty() {
        text.push('}');
    }
    text
}

fn escape_label(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// A sample value as Prometheus writes it (`NaN`, `+Inf`, `-Inf`, or decimal).
pub(crate) fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

/// The `metrics` crate's recorder, writing into a shared [`Registry`].
pub(crate) struct RegistryRecorder(pub Arc<Registry>);

impl RegistryRecorder {
    fn describe(&self, key: KeyName, description: SharedString) {
        write(&self.0.descriptions).insert(key.as_str().to_owned(), description);
    }
}

impl Recorder for RegistryRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(entry(&self.0.counters, key, || AtomicU64::new(0)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(entry(&self.0.gauges, key, || AtomicU64::new(0f64.to_bits())))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let bounds = || read(&self.0.buckets).for_name(key.name());
        Histogram::from_arc(entry(&self.0.histograms, key, || FixedHistogram::new(bounds())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::metrics::with_local_recorder;

    fn registry() -> Arc<Registry> {
        let fallback: Arc<[f64]> = Arc::from(vec![0.1, 1.0]);
        Arc::new(Registry::new(BucketTable { by_name: HashMap::new(), fallback }))
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let registry = registry();
        let recorder = RegistryRecorder(registry.clone());
        with_local_recorder(&recorder, || {
            let histogram = ::metrics::histogram!("t_seconds", "feed" => "a");
            for value in [0.05, 0.1, 0.5, 7.0, f64::NAN] {
                histogram.record(value);
            }
        });
        let text = registry.render();
        let expected = [
            "# TYPE t_seconds histogram",
            r#"t_seconds_bucket{feed="a",le="0.1"} 2"#,
            r#"t_seconds_bucket{feed="a",le="1"} 3"#,
            r#"t_seconds_bucket{feed="a",le="+Inf"} 4"#,
            r#"t_seconds_sum{feed="a"} 7.65"#,
            r#"t_seconds_count{feed="a"} 4"#,
        ];
        for line in expected {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn removing_by_label_drops_every_kind_and_keeps_the_rest() {
        let registry = registry();
        let recorder = RegistryRecorder(registry.clone());
        with_local_recorder(&recorder, || {
            for feed in ["gone", "kept"] {
                ::metrics::counter!("c_total", "feed" => feed).increment(3);
                ::metrics::gauge!("g", "feed" => feed).set(1.5);
                ::metrics::histogram!("h_seconds", "feed" => feed).record(0.2);
            }
        });
        assert_eq!(registry.remove_labelled("feed", "gone"), 3);
        assert_eq!(registry.len(), 3);
        let text = registry.render();
        assert!(!text.contains("gone"), "{text}");
        assert!(text.contains(r#"c_total{feed="kept"} 3"#), "{text}");
        assert!(text.contains(r#"g{feed="kept"} 1.5"#), "{text}");
        assert_eq!(registry.removals(), 1);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let registry = registry();
        let recorder = RegistryRecorder(registry.clone());
        with_local_recorder(&recorder, || {
            ::metrics::describe_counter!("e_total", "a \\ b\nc");
            ::metrics::counter!("e_total", "v" => "q\"\\\n").increment(1);
        });
        let text = registry.render();
        assert!(text.contains(r"# HELP e_total a \\ b\nc"), "{text}");
        assert!(text.contains(r#"e_total{v="q\"\\\n"} 1"#), "{text}");
    }

    #[test]
    fn buckets_apply_to_histograms_registered_after_they_are_set() {
        let registry = registry();
        let recorder = RegistryRecorder(registry.clone());
        let mut by_name = HashMap::new();
        by_name.insert("named_seconds", Arc::from(vec![5.0]));
        registry.set_buckets(BucketTable { by_name, fallback: Arc::from(vec![2.0]) });
        with_local_recorder(&recorder, || {
            ::metrics::histogram!("named_seconds").record(1.0);
            ::metrics::histogram!("other_seconds").record(1.0);
        });
        let text = registry.render();
        assert!(text.contains(r#"named_seconds_bucket{le="5"} 1"#), "{text}");
        assert!(text.contains(r#"other_seconds_bucket{le="2"} 1"#), "{text}");
    }

    #[test]
    fn special_values_are_written_as_prometheus_reads_them() {
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(0.000001), "0.000001");
    }
}
