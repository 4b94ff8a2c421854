//! The fuzzer's saved inputs, replayed on the stable toolchain: every file
//! in `fuzz/corpus/framing/` and `fuzz/regressions/` goes through the same
//! checks the fuzz target runs, so CI keeps them passing without nightly
//! or libFuzzer. See `docs/fuzzing.md`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::check_framing;
use crate::proto::{LineBuffer, write_escaped};
use crate::serve::output::{Format, MemorySink, Output, OutputFull};

/// Every regular file under the saved corpus directories, sorted.
fn saved_inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus/framing", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every saved input passes every invariant of the fuzz target.
#[test]
fn saved_fuzz_inputs_pass_every_check() {
    let inputs = saved_inputs();
    assert!(inputs.len() >= 5, "the saved corpus is missing");
    for path in &inputs {
        let data = std::fs::read(path).expect("read a saved input");
        // A panic names the file: replay it with `cargo fuzz run framing FILE`.
        eprintln!("replaying {}", path.display());
        check_framing(&data);
    }
}

/// What the library check leaves out (it has no JSON parser): in `json`
/// format every output line is a JSON object, and a line event's `line`
/// field holds exactly the text the `tagged` format shows.
#[test]
fn saved_fuzz_inputs_print_as_json_objects() {
    for path in saved_inputs() {
        let data = std::fs::read(&path).expect("read a saved input");
        let mut texts = Vec::new();
        let mut buffer = LineBuffer::new(usize::MAX - 1);
        let mut keep = |line: crate::proto::Line<'_>| {
            texts.push(line.text.to_vec());
            ControlFlow::Continue(())
        };
        let fed = buffer.feed(&data, &mut keep).expect("no limit");
        assert!(fed.is_continue());
        let finished = buffer.finish(&mut keep).expect("no limit");
        assert!(finished.is_continue());

        let sink = MemorySink::new();
        let mut output = Output::to_writer(
            Format::Json,
            Box::new(sink.clone()),
            usize::MAX,
            OutputFull::Block,
        )
        .expect("start the output writer");
        let peer = output.label(&"[::1]:7 \"odd\" \u{202e}");
        output.open(&peer);
        for text in &texts {
            output.line(&peer, text);
        }
        output.close(&peer, crate::serve::CloseReason::Eof);
        assert!(output.wait_written(std::time::Duration::from_secs(10)));
        let printed = sink.contents();

        let events: Vec<serde_json::Value> = printed
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: {l:?} is not JSON: {e}", path.display()))
            })
            .collect();
        assert_eq!(events.len(), texts.len() + 2, "{}", path.display());
        for (event, text) in events[1..].iter().zip(&texts) {
            let mut shown = Vec::new();
            write_escaped(&mut shown, text, false).unwrap();
            assert_eq!(event["event"], "line");
            assert_eq!(
                event["line"].as_str(),
                Some(String::from_utf8(shown).unwrap().as_str()),
                "{}",
                path.display()
            );
        }
    }
}
