//! An output that stays in memory, for tests and programs that embed the
//! server and want to read what it would have printed.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A sink that keeps everything written to it in memory, shareable across
/// threads: give a clone to [`crate::Server::with_output`] and read it back.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as (lossy) UTF-8 text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere while holding the lock leaves bytes that are
        // still valid bytes; keep them readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
