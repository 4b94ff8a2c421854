//! HdrHistogram's `.hgrm` percentile text, the format its plotters read.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// HdrHistogram's percentile distribution text, as Java's
/// `Histogram.outputPercentileDistribution(out, 5, 1.0)` prints it and as
/// HdrHistogram's plotter and `hdr-plot` read it: a header, one row per
/// percentile step (5 ticks per half distance), the last row (100%) without
/// the `1/(1-Percentile)` column, and a `#[...]` footer.
///
/// ```
/// use selectd::bench::hgrm;
/// let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000, 3)?;
/// for v in 1..=100 { h.record(v)?; }
/// let text = hgrm(&h);
/// assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
/// assert!(text.contains("#[Max     =      100.000, Total count    =          100]"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let digits = histogram.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !histogram.is_empty() {
        for step in histogram.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let quantile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64;
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {quantile:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {quantile:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (histogram.mean(), histogram.stdev(), histogram.max() as f64)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_buckets(histogram.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for a precision: the power of two that
/// holds `2 * 10^sigfig` (2048 for 3 digits). The crate does not expose it.
fn sub_buckets(sigfig: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(sigfig));
    largest_single_unit.next_power_of_two()
}
