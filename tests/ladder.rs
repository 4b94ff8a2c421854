//! `benches/ladder` in its short mode (two points per rung), and the facts
//! the guide's chapter 6 states about the code.
//!
//! The ladder's driver is `examples/ladder.rs`; here it runs against the
//! binaries of this test run (`--bin-dir`), so nothing is built in release.
//! Its numbers are not asserted (a test asserts behaviour, never speed):
//! only that every rung was measured, that select meets its wall past
//! `FD_SETSIZE` and says so, and that the SVG is a plot of all four rungs.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::examples::{bin_dir, example};

/// The texts an SVG shows: legends, axis labels, marks.
fn labels<'a>(doc: &'a roxmltree::Document) -> Vec<&'a str> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect()
}

/// The short ladder measures every rung at K = 0; at K = 1100 select is at
/// its wall (shown, not measured) while poll, selectd and mio are measured;
/// and the SVG parses as XML and draws all four curves and the wall.
#[test]
fn short_ladder_measures_every_rung_and_plots_them() {
    // Built here if this run did not build the examples.
    for name in ["select_server", "poll_server", "mio_echo"] {
        example(name);
    }
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("ladder.svg");
    let out = Command::new(example("ladder"))
        .arg("--short")
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--svg")
        .arg(&svg)
        .stdin(Stdio::null())
        .output()
        .expect("run the ladder");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);

    let row = |k: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {k} |")))
            .unwrap_or_else(|| panic!("no row for K={k}: {stdout}"));
        line.trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_string())
            .collect()
    };
    let measured = |cell: &str| {
        cell.split_whitespace()
            .next()
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 0.0)
    };
    let at_zero = row("0");
    assert!(at_zero[1..].iter().all(|c| measured(c)), "{stdout}");
    let past_wall = row("1100");
    assert!(past_wall[1].starts_with("wall: "), "{stdout}");
    assert!(past_wall[1].contains(" refused"), "{stdout}");
    assert!(past_wall[2..].iter().all(|c| measured(c)), "{stdout}");

    let text = fs::read_to_string(&svg).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let labels = labels(&doc);
    for legend in [
        "select (examples/select_server.rs)",
        "poll (examples/poll_server.rs)",
        "selectd serve (epoll via mio)",
        "mio_echo (epoll, no framing)",
        "FD_SETSIZE: select's wall",
    ] {
        assert!(labels.contains(&legend), "{legend:?} not in {labels:?}");
    }
    // A curve per rung: select's has one point (K = 0), the others two.
    let curves = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(curves >= 4, "{curves} polylines");

    // `--replot` draws the same curves again from the saved tables,
    // measuring nothing.
    let saved = dir.path().join("ladder.md");
    fs::write(&saved, stdout.as_bytes()).unwrap();
    let again = dir.path().join("again.svg");
    let out = Command::new(example("ladder"))
        .arg("--replot")
        .arg(&saved)
        .arg("--svg")
        .arg(&again)
        .stdin(Stdio::null())
        .output()
        .expect("run the ladder's replot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&again).expect("the replot was written");
    let redrawn = roxmltree::Document::parse(&text).expect("the replot is XML");
    assert_eq!(self::labels(&redrawn), labels);
}

/// The committed plot is a plot: `docs/ladder.svg` parses and carries the
/// four rungs' legends (the README and the guide show it).
#[test]
fn committed_ladder_svg_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ladder.svg");
    let text = fs::read_to_string(&path).expect("docs/ladder.svg exists");
    let doc = roxmltree::Document::parse(&text).expect("docs/ladder.svg is XML");
    let labels = labels(&doc);
    for legend in [
        "select (examples/select_server.rs)",
        "selectd serve (epoll via mio)",
    ] {
        assert!(labels.contains(&legend), "{legend:?} not in {labels:?}");
    }
}
