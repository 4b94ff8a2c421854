//! `--plot FILE.svg`: the latency percentile spectrum, drawn the way
//! HdrHistogram's plotter draws it.
//!
//! The x axis is the percentile on a "number of nines" scale (90%, 99%,
//! 99.9%... equally spaced, so the tail gets the room it matters by), the y
//! axis the latency. Two curves: corrected for coordinated omission (from
//! when each line should have gone out) and uncorrected (from when it did).
//! Where they part, the load generator would have hidden a stall had it
//! waited politely for the server. `plotters` draws it (its SVG backend,
//! without fonts or bitmaps: the SVG names a font and the viewer draws it).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Ticks per half distance when walking the percentiles (as `.hgrm` does).
const TICKS: u32 = 5;

/// `(nines, latency in ms)` points of a histogram: `nines` is
/// `-log10(1 - quantile)`, so 1 is 90%, 2 is 99%, 3 is 99.9%.
pub(crate) fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // The last step is 100%, infinitely many nines: draw it one count short.
    let top = 1.0 - 1.0 / histogram.len().max(2) as f64;
    histogram
        .iter_quantiles(TICKS)
        .map(|step| {
            let q = step.quantile_iterated_to().min(top);
            (-(1.0 - q).log10(), step.value_iterated_to() as f64 / 1000.0)
        })
        .collect()
}

/// `2.0` → `99%`, `3.0` → `99.9%`: the percentile at so many nines.
pub(crate) fn nines_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.ceil() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// Draws both curves into `path`, with `title` (the run's settings) on top.
pub(crate) fn draw(
    path: &Path,
    title: &str,
    corrected: &Histogram<u64>,
    uncorrected: &Histogram<u64>,
) -> Result<(), String> {
    let curves = [
        ("corrected", spectrum(corrected), RED),
        ("uncorrected", spectrum(uncorrected), BLUE),
    ];
    let points = || curves.iter().flat_map(|(_, points, _)| points.iter());
    let max_nines = points().map(|p| p.0).fold(1.0, f64::max).ceil();
    let max_ms = points().map(|p| p.1).fold(0.001, f64::max) * 1.05;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_nines, 0f64..max_ms)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(max_nines as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, points, color) in curves {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_read_as_percentiles() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }

    #[test]
    fn spectrum_rises_and_stays_finite() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let points = spectrum(&h);
        assert!(points.len() > 10);
        assert!(points.iter().all(|p| p.0.is_finite() && p.1.is_finite()));
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert!(points.last().unwrap().0 >= 3.9);
    }
}
