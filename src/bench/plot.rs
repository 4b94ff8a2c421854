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

/// A curve of the plot: its legend and its `(nines, ms)` points.
pub(crate) type Curve = (String, Vec<(f64, f64)>);

/// The curve of a `.hgrm` file written by an earlier run (`NAME=FILE`);
/// the error says what is wrong with the file (the caller names it).
pub(crate) fn read_hgrm(name: &str, path: &Path) -> Result<Curve, String> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::net::os_reason(&e))?;
    let rows: Vec<(f64, f64, f64)> = text
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<f64>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(value)), Some(Ok(quantile)), Some(Ok(count))) => {
                    Some((value, quantile, count))
                }
                _ => None,
            }
        })
        .collect();
    let total = rows.last().map_or(0.0, |row| row.2);
    if total < 1.0 {
        return Err("no percentile rows (not an .hgrm file?)".to_string());
    }
    let top = 1.0 - 1.0 / total.max(2.0);
    let points = rows
        .iter()
        .map(|&(value, quantile, _)| (-(1.0 - quantile.min(top)).log10(), value / 1000.0))
        .collect();
    Ok((name.to_string(), points))
}

/// Draws `curves` into `path`, with `title` (the run's settings) on top.
pub(crate) fn draw(path: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    const COLOURS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
    let points = || curves.iter().flat_map(|(_, points)| points.iter());
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
    for ((name, points), colour) in curves.iter().zip(COLOURS.iter().cycle()) {
        let style = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
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

/// A vertical line across a [`draw_log_log`] plot at `x`, with a label.
pub type Mark<'a> = (f64, &'a str);

/// Draws `curves` (each `(legend, [(x, y)])`) into `path` with both axes
/// log-scaled, a dot at every point and a dashed vertical line at each of
/// `marks`: for measurements over orders of magnitude, such as
/// `benches/ladder`'s CPU per message against connections held. Every `x`
/// and `y` must be above zero.
pub fn draw_log_log(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    curves: &[(String, Vec<(f64, f64)>)],
    marks: &[Mark<'_>],
) -> Result<(), String> {
    const COLOURS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
    let points = || curves.iter().flat_map(|(_, points)| points.iter());
    if points().any(|&(x, y)| !(x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite())) {
        return Err(format!(
            "{title}: a log-scaled plot needs points above zero"
        ));
    }
    // Whole powers of ten around the data, so the axes read 1, 10, 100...
    let decades = |lo: f64, hi: f64| {
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil());
        (lo, if hi > lo { hi } else { lo * 10.0 })
    };
    let xs = points().map(|p| p.0).chain(marks.iter().map(|m| m.0));
    let (x_lo, _) = decades(xs.clone().fold(f64::MAX, f64::min), 1.0);
    // The right end just past the last point, not a whole decade beyond it.
    let x_hi = xs.fold(x_lo * 10.0, f64::max) * 1.5;
    let ys = points().map(|p| p.1);
    let (y_lo, y_hi) = decades(
        ys.clone().fold(f64::MAX, f64::min),
        ys.fold(f64::MIN_POSITIVE, f64::max),
    );

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for &(x, label) in marks {
        let grey = BLACK.mix(0.5);
        let steps = 40;
        let ratio = (y_hi / y_lo).powf(1.0 / f64::from(steps));
        // Dashes: every other step of the line, evenly spaced on the log axis.
        chart
            .draw_series((0..steps).step_by(2).map(|i| {
                let y = y_lo * ratio.powi(i);
                PathElement::new(vec![(x, y), (x, y * ratio)], grey.stroke_width(1))
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.to_string(),
                (x * 1.05, y_hi / ratio.powi(2)),
                ("sans-serif", 13),
            )))
            .map_err(|e| e.to_string())?;
    }
    for ((name, points), colour) in curves.iter().zip(COLOURS.iter().cycle()) {
        let style = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
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
    fn hgrm_files_read_back_as_the_same_curve() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hgrm");
        std::fs::write(&path, crate::bench::hgrm(&h)).unwrap();
        let (name, points) = read_hgrm("ref", &path).unwrap();
        assert_eq!(name, "ref");
        let direct = spectrum(&h);
        assert_eq!(points.len(), direct.len());
        for (a, b) in points.iter().zip(&direct) {
            assert!(
                (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-3,
                "{a:?} {b:?}"
            );
        }
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

    #[test]
    fn log_log_plots_draw_every_curve_and_refuse_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ladder.svg");
        let curves = vec![
            ("poll".to_string(), vec![(1.0, 30.0), (10_001.0, 600.0)]),
            ("epoll".to_string(), vec![(1.0, 30.0), (10_001.0, 31.0)]),
        ];
        draw_log_log(&path, "t", ("x", "y"), &curves, &[(1024.0, "wall")]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for label in ["poll", "epoll", "wall", "1000", "10"] {
            assert!(texts.contains(&label), "{label} not in {texts:?}");
        }
        let zero = vec![("z".to_string(), vec![(0.0, 1.0)])];
        assert!(draw_log_log(&path, "t", ("x", "y"), &zero, &[]).is_err());
    }
}
