//! Faults injected on purpose (`--features failpoints`): whatever part of
//! the server dies, the server as a whole stops, says why, and fails.
#![cfg(feature = "failpoints")]

mod common;

use std::sync::{Mutex, MutexGuard};

/// fail's configuration is process-global: one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// The output writer: writes that fail, a writer that dies, handles dropped
// on several loops at once.
// ---------------------------------------------------------------------------

mod output_faults {
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread;
    use std::time::Duration;

    use selectd::serve::OutputTarget;
    use selectd::{Config, Error, MemorySink, Server};

    use super::common::{PATIENCE, connect, wait_until};
    use super::serial;

    /// Removes every point these tests configure, also when one fails.
    struct Points;

    impl Drop for Points {
        fn drop(&mut self) {
            for name in [
                "output-write",
                "output-retry",
                "output-reopen",
                "output-writer",
                "output-queue-drop",
            ] {
                fail::remove(name);
            }
        }
    }

    fn tcp(server: &Server) -> String {
        server.local_addrs()[0]
            .to_string()
            .trim_start_matches("tcp://")
            .to_string()
    }

    /// Rename + `SIGHUP` while every write to the file fails (a full disk:
    /// `ENOSPC`; a failing one: `EIO`): the writer switches to the new file
    /// although it is in the middle of retrying, and what waited goes there.
    /// (The failure ends when the file is reopened, as deleting a full log
    /// frees the disk.)
    #[test]
    fn output_rotation_switches_files_while_writes_fail() {
        let _serial = serial();
        let _points = Points;
        for errno in ["ENOSPC", "EIO"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.log");
            let rotated = dir.path().join("out.log.1");
            let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
            config.output = OutputTarget::File(path.clone());
            config.handle_signals = true;
            let server = Server::bind(config).unwrap();
            let addr = tcp(&server);
            let handle = server.handle();
            let running = thread::spawn(move || server.run());

            static RETRYING: AtomicBool = AtomicBool::new(false);
            RETRYING.store(false, Ordering::SeqCst);
            fail::cfg("output-write", &format!("return({errno})")).unwrap();
            fail::cfg_callback("output-retry", || RETRYING.store(true, Ordering::SeqCst)).unwrap();
            // The new file is writable: the failure ends with the reopen.
            fail::cfg_callback("output-reopen", || fail::remove("output-write")).unwrap();

            let mut client = connect(&addr);
            client.write_all(b"waiting line\n").unwrap();
            wait_until("a failed write being retried", || {
                RETRYING.load(Ordering::SeqCst)
            });
            std::fs::rename(&path, &rotated).unwrap();
            // SAFETY: kill(2) on our own process; the server handles SIGHUP.
            assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
            wait_until(
                &format!("{errno}: the waiting line in the new file"),
                || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("] waiting line\n")),
            );
            client.write_all(b"after the rotation\n").unwrap();
            wait_until("the next line in the new file", || {
                std::fs::read_to_string(&path).is_ok_and(|t| t.contains("] after the rotation\n"))
            });
            handle.stop();
            running.join().unwrap().unwrap();
            let old = std::fs::read_to_string(&rotated).unwrap();
            let new = std::fs::read_to_string(&path).unwrap();
            assert!(!old.contains("waiting line"), "{errno}: old file: {old:?}");
            assert_eq!(new.matches("] waiting line\n").count(), 1, "{new:?}");
            fail::remove("output-retry");
            fail::remove("output-reopen");
        }
    }

    /// The writer thread panics: the server stops by itself (nobody asks it
    /// to, a client is still connected) and `run` fails, rather than every
    /// loop waiting for room that never comes.
    #[test]
    fn output_writer_death_stops_the_server_with_an_error() {
        let _serial = serial();
        let _points = Points;
        fail::cfg("output-writer", "panic(injected writer fault)").unwrap();
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        config.reactors = 2;
        config.grace = Duration::from_secs(1);
        let server = Server::bind(config).unwrap().with_output(MemorySink::new());
        let addr = tcp(&server);
        let running = thread::spawn(move || server.run());
        let mut client = connect(&addr);
        client.write_all(b"the writer dies on this\n").unwrap();
        wait_until("the server to stop by itself", || running.is_finished());
        let result = running.join().expect("run returns, it does not panic");
        assert!(
            matches!(result, Err(Error::OutputClosed)),
            "{:?}",
            result.map_err(|e| e.to_string())
        );
        // The client was closed, not left hanging.
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        let _ = io::Read::read_to_end(&mut client, &mut rest);
    }

    /// A sink that says when it is dropped, which happens when its writer
    /// thread ends.
    struct Watched {
        dropped: Arc<AtomicBool>,
        written: Arc<AtomicUsize>,
    }

    impl Write for Watched {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.fetch_add(buf.len(), Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    /// Two loops drop their handles on the output at the same moment (made
    /// to meet at the point where a handle decides whether it is the last):
    /// one of them is the last, so the writer ends and its sink is closed.
    #[test]
    fn output_writer_ends_when_two_loops_drop_their_handles_at_once() {
        let _serial = serial();
        let _points = Points;
        let dropped = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        config.reactors = 2;
        let server = Server::bind(config).unwrap().with_output(Watched {
            dropped: Arc::clone(&dropped),
            written: Arc::clone(&written),
        });
        let addr = tcp(&server);
        let handle = server.handle();
        // Both loops' handles meet at the decision point (bounded: a loop
        // that never arrives lets the other go on after PATIENCE).
        let meeting = Arc::new((Mutex::new(0usize), Condvar::new()));
        fail::cfg_callback("output-queue-drop", move || {
            let name = thread::current().name().map(str::to_string);
            if !matches!(name.as_deref(), Some("first-loop" | "selectd-reactor-2")) {
                return;
            }
            let (count, arrived) = &*meeting;
            let mut count = count.lock().unwrap();
            *count += 1;
            arrived.notify_all();
            let _ = arrived.wait_timeout_while(count, PATIENCE, |count| *count < 2);
        })
        .unwrap();
        let running = thread::Builder::new()
            .name("first-loop".into())
            .spawn(move || server.run())
            .unwrap();
        let mut client = connect(&addr);
        client.write_all(b"start the writer\n").unwrap();
        wait_until("the line written", || written.load(Ordering::SeqCst) > 0);
        handle.stop();
        running.join().unwrap().unwrap();
        wait_until("the writer to end and close its sink", || {
            dropped.load(Ordering::SeqCst)
        });
    }
}
