//! Any bytes, cut into any reads, through framing, commands, escaping and
//! output: the checks are in `selectd::fuzzing::check_framing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    selectd::fuzzing::check_framing(data);
});
