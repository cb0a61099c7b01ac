//! `soak`: the sidecar at a fixed rate (10 connections × 1000 msg/s of
//! 64 bytes by default: `--soak-conns`, `--soak-rate`) for `--duration`
//! (30 s by default), with nothing scraping `/metrics` (there is no admin
//! server at all). The delivery-latency histograms count into fixed buckets
//! as they record, so nothing waits for a scrape: RSS should stay flat.
//!
//! The blaster sends on schedule; the sidecar's feeds and connection actors
//! deliver to one subscriber that only counts (it keeps nothing per
//! message, unlike the other scenarios' subscribers, which keep latencies).
//! VmRSS is sampled every second from the go. The slope is a least-squares
//! line through the samples after a warm-up (a fifth of the run, at most
//! 10 s), in KiB per minute, with its standard error: "zero within noise"
//! means within about two of those.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use feedvisor::config::{Config, SubscriberOverflow, DEFAULT_QUEUE};
use feedvisor::{Sidecar, SubscriptionSpec};

use crate::blaster::{BlastJob, JobSpec, Pace};
use crate::cpu::ProcessCpu;
use crate::figures::SoakFigures;
use crate::format::{format_rate, Table};
use crate::memory::{self, format_kib};
use crate::options::BenchArgs;
use crate::result::{Extra, Load, Row, RunResult};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::sidecar;
use crate::table;
use crate::tally::{CountingSubscriber, Tally};

/// Payload bytes per message.
const SIZE: usize = 64;

/// How often VmRSS is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Samples between two progress lines.
const PROGRESS_EVERY: usize = 10;

/// The longest warm-up left out of the fit.
const MAX_WARM_UP: Duration = Duration::from_secs(10);

/// What the report says under the table.
pub const NOTE: &str = "RSS: VmRSS sampled every second from the go (start: at the go; end: the last sample); \
slope: least-squares line through the samples after a warm-up (a fifth of the run, at most 10 s), ± its standard error \
(RSS moves in pages and steps, so the error understates the noise); last half: the slope of the second half of the run alone; \
nobody scrapes /metrics (histograms count into fixed buckets as they record). \
msg/s: handled over the run; ns/msg: client CPU per message; blaster: the share of its core the blaster used; \
late: the share of messages the blaster sent more than 1 ms after they were due.";

/// A least-squares line `y = intercept + slope × x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineFit {
    /// dy/dx.
    pub slope: f64,
    /// y at x = 0.
    pub intercept: f64,
    /// The slope's standard error (`None` with fewer than 3 points).
    pub slope_stderr: Option<f64>,
}

/// The least-squares line through `points`; `None` with fewer than 2 points
/// or when every x is the same.
pub fn fit_line(points: &[(f64, f64)]) -> Option<LineFit> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let slope_stderr = (points.len() > 2).then(|| {
        let residuals: f64 = points.iter().map(|(x, y)| (y - intercept - slope * x).powi(2)).sum();
        (residuals / (n - 2.0) / sxx).sqrt()
    });
    Some(LineFit { slope, intercept, slope_stderr })
}

/// The warm-up left out of the fit for a run of `duration`.
pub fn warm_up(duration: Duration) -> Duration {
    (duration / 5).min(MAX_WARM_UP)
}

/// The figures of `samples` (seconds since the go, KiB) over a run of `duration`.
pub fn summarise(samples: &[(f64, u64)], duration: Duration) -> Option<SoakFigures> {
    let warm_up = warm_up(duration).as_secs_f64();
    let points = |from: f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(at, kib)| (*at / 60.0, *kib as f64))
            .collect()
    };
    let after_warm_up = points(warm_up);
    let (fitted, warm_up) =
        if after_warm_up.len() >= 3 { (after_warm_up, warm_up) } else { (points(0.0), 0.0) };
    let fit = fit_line(&fitted)?;
    let round = |value: f64| (value * 10.0).round() / 10.0;
    Some(SoakFigures {
        duration_s: duration.as_millis() as f64 / 1000.0,
        rss_samples: samples.len(),
        rss_start_kib: samples.first()?.1,
        rss_end_kib: samples.last()?.1,
        rss_max_kib: samples.iter().map(|(_, kib)| *kib).max()?,
        warm_up_s: warm_up,
        slope_kib_per_min: round(fit.slope),
        slope_stderr_kib_per_min: fit.slope_stderr.map(round),
        last_half_slope_kib_per_min: Some(points(duration.as_secs_f64() / 2.0))
            .filter(|points| points.len() >= 3)
            .and_then(|points| fit_line(&points))
            .map(|fit| round(fit.slope)),
    })
}

/// Runs the soak once.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let (conns, rate) = (args.resources.soak_conns, args.resources.soak_rate);
    let per_conn = ((rate * args.duration.as_secs_f64()).round() as u64).max(1);
    let pace = Pace::Rate { per_conn: rate };
    let load = Load { conns, size: SIZE, per_conn, pace, subscribers: 1 };
    let mut job = bench.blaster.prepare(JobSpec { conns, size: SIZE, per_conn, pace }).await?;
    let expected = per_conn * conns as u64;
    let (tally, complete) = Tally::new(expected, bench.base);
    let client = start_sidecar(&job, conns, &tally).await?;
    let outcome = soak(bench, &mut job, complete).await;
    client.stop().await;
    let (elapsed, client_cpu, samples) = outcome?;
    let blaster = job.report(bench.timeout).await?;
    let result = RunResult {
        system: SystemKind::Sidecar,
        messages: expected,
        subscribers: 1,
        pace,
        elapsed,
        client_cpu,
        blaster,
        latencies: Vec::new(),
    };
    let figures = summarise(&samples, elapsed)
        .ok_or_else(|| BenchError::Incomplete("too few RSS samples".to_owned()))?;
    eprintln!(
        "soak {conns} × {rate}/s: {} msg/s, RSS {} -> {} (max {}), slope {:+.1} KiB/min{}{}",
        format_rate(result.msgs_per_s()),
        format_kib(figures.rss_start_kib as f64),
        format_kib(figures.rss_end_kib as f64),
        format_kib(figures.rss_max_kib as f64),
        figures.slope_kib_per_min,
        figures.slope_stderr_kib_per_min.map_or_else(String::new, |se| format!(" ± {se:.1}")),
        figures
            .last_half_slope_kib_per_min
            .map_or_else(String::new, |slope| format!(", last half {slope:+.1} KiB/min"))
    );
    let case = format!("{conns} × {}/s", format_rate(rate));
    let mut row = Row::from_runs(Scenario::Soak, case, &load, Some(rate * conns as f64), &[result]);
    row.extra = Some(Extra::Soak(figures));
    Ok(vec![row])
}

/// From the go until the last message: elapsed, client CPU, RSS samples.
async fn soak(
    bench: &Bench,
    job: &mut BlastJob,
    complete: oneshot::Receiver<Instant>,
) -> Result<(Duration, Duration, Vec<(f64, u64)>), BenchError> {
    let rss =
        || memory::rss_kib().map_err(|source| BenchError::io("read /proc/self/status", source));
    let cpu = || ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source));
    job.ready(bench.timeout).await?;
    let cpu_before = cpu()?;
    let started = Instant::now();
    job.go();
    let mut samples = vec![(0.0, rss()?)];
    let mut ticks =
        actix_rt::time::interval_at(actix_rt::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    let deadline = actix_rt::time::sleep(bench.timeout);
    tokio::pin!(deadline, complete);
    let finished = loop {
        tokio::select! {
            finished = &mut complete => match finished {
                Ok(finished) => break finished,
                Err(_) => return Err(BenchError::Incomplete("the soak's count was dropped".to_owned())),
            },
            _ = ticks.tick() => {
                let (at, kib) = (started.elapsed().as_secs_f64(), rss()?);
                samples.push((at, kib));
                if samples.len() % PROGRESS_EVERY == 1 {
                    eprintln!("soak: {at:>5.0} s, RSS {}", format_kib(kib as f64));
                }
            }
            () = &mut deadline => {
                return Err(BenchError::Incomplete(format!(
                    "the soak did not finish within {:?}",
                    bench.timeout
                )));
            }
        }
    };
    let client_cpu = cpu()?.used_since(&cpu_before, &[bench.blaster.thread_id()]);
    Ok((finished.saturating_duration_since(started), client_cpu, samples))
}

/// The sidecar of the soak: `conns` feeds on the blaster, one counting subscriber.
async fn start_sidecar(
    job: &BlastJob,
    conns: usize,
    tally: &Rc<RefCell<Tally>>,
) -> Result<Sidecar, BenchError> {
    let config = Config::from_toml_str(
        &sidecar::config_text(job.addr, conns),
        Path::new("bench.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .map_err(|error| BenchError::Config(error.to_string()))?;
    let subscriber = CountingSubscriber { tally: tally.clone() }.start();
    let spec = SubscriptionSpec::new("bench-soak", ["bench-*"])
        .with_queue(DEFAULT_QUEUE, SubscriberOverflow::Backpressure);
    Ok(Sidecar::builder(config)
        .without_http()
        .subscriber(spec, subscriber.recipient())
        .start()
        .await?)
}

/// The soak table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "conns × rate",
        "duration",
        "sidecar msg/s",
        "sidecar ns/msg",
        "RSS start",
        "RSS end",
        "RSS max",
        "slope",
        "last half",
        "blaster",
        "late",
    ]);
    for row in rows {
        let Some(Extra::Soak(f)) = &row.extra else { continue };
        let sidecar = row.sidecar.as_ref();
        table.rows.push(vec![
            table::case(row),
            format!("{:.0} s", f.duration_s),
            sidecar.map_or_else(|| "-".to_owned(), |s| format_rate(s.msgs_per_s.median)),
            sidecar.map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s.cpu_ns_per_msg.median)),
            format_kib(f.rss_start_kib as f64),
            format_kib(f.rss_end_kib as f64),
            format_kib(f.rss_max_kib as f64),
            match f.slope_stderr_kib_per_min {
                Some(se) => format!("{:+.1} ± {se:.1} KiB/min", f.slope_kib_per_min),
                None => format!("{:+.1} KiB/min", f.slope_kib_per_min),
            },
            f.last_half_slope_kib_per_min
                .map_or_else(|| "-".to_owned(), |slope| format!("{slope:+.1} KiB/min")),
            format!("{:.0}%", row.blaster_share_max * 100.0),
            table::late_cell(row),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_fitted_exactly() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 2.0 * x as f64)).collect();
        let fit = fit_line(&points).expect("fit");
        assert!((fit.slope - 2.0).abs() < 1e-12 && (fit.intercept - 3.0).abs() < 1e-12);
        assert!(fit.slope_stderr.expect("stderr") < 1e-9);
        assert_eq!(fit_line(&[(1.0, 1.0)]), None);
        assert_eq!(fit_line(&[(1.0, 1.0), (1.0, 2.0)]), None, "no spread in x");
        assert_eq!(fit_line(&[(0.0, 0.0), (1.0, 1.0)]).and_then(|fit| fit.slope_stderr), None);
    }

    #[test]
    fn noise_gives_a_flat_slope_with_an_error() {
        // A sawtooth around 100 with no trend: the slope is small, the error not zero.
        let points: Vec<(f64, f64)> =
            (0..60).map(|x| (x as f64, 100.0 + if x % 5 == 0 { 8.0 } else { 0.0 })).collect();
        let fit = fit_line(&points).expect("fit");
        let stderr = fit.slope_stderr.expect("stderr");
        assert!(fit.slope.abs() < 2.0 * stderr + 1e-9, "{fit:?}");
        assert!(stderr > 0.0);
    }

    #[test]
    fn the_warm_up_is_left_out_of_the_slope() {
        // Growth during the first 6 s of 30, flat after: the slope is zero.
        let samples: Vec<(f64, u64)> =
            (0..=30).map(|s| (s as f64, 50_000 + 1000 * s.min(6) as u64)).collect();
        let figures = summarise(&samples, Duration::from_secs(30)).expect("figures");
        assert_eq!(figures.warm_up_s, 6.0);
        assert_eq!(figures.slope_kib_per_min, 0.0);
        assert_eq!(figures.last_half_slope_kib_per_min, Some(0.0));
        assert_eq!((figures.rss_start_kib, figures.rss_end_kib), (50_000, 56_000));
        assert_eq!((figures.rss_max_kib, figures.rss_samples), (56_000, 31));
        // A steady 1 KiB a second is 60 KiB a minute.
        let growing: Vec<(f64, u64)> = (0..=30).map(|s| (s as f64, 50_000 + s as u64)).collect();
        let figures = summarise(&growing, Duration::from_secs(30)).expect("figures");
        assert_eq!(figures.slope_kib_per_min, 60.0);
        assert_eq!(figures.last_half_slope_kib_per_min, Some(60.0));
        assert_eq!(warm_up(Duration::from_secs(600)), MAX_WARM_UP);
        // Too short to leave anything out.
        let short = [(0.0, 10), (1.0, 12)];
        assert_eq!(summarise(&short, Duration::from_secs(2)).expect("figures").warm_up_s, 0.0);
    }
}
