//! In steady state, echoing a line allocates nothing.
//!
//! This test binary installs a counting global allocator that counts only
//! on threads that opt in, so the server thread is measured and the test's
//! own bookkeeping is not.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use selectd::{Config, Format, Server};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches only an atomic and a const-initialised thread-local (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Round trips `n` lines one at a time over `client`.
fn round_trips(client: &mut std::net::TcpStream, n: usize) {
    for i in 0..n {
        let line = format!("steady state line {i:06}\n");
        client.write_all(line.as_bytes()).unwrap();
        assert_eq!(read_exactly(client, line.len()), line.as_bytes());
    }
}

/// Echo of lines in every format allocates nothing once the connection is
/// up: reads go to the shared buffer, replies straight to the socket.
#[test]
fn echoing_lines_allocates_nothing_in_steady_state() {
    for format in [Format::None, Format::Tagged, Format::Json] {
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        config.echo = true;
        config.format = format;
        let server = Server::bind(config).unwrap().with_output(std::io::sink());
        let addr = server.local_addrs()[0].to_string();
        let handle = server.handle();
        let thread = std::thread::spawn(move || {
            COUNTED.with(|c| c.set(true));
            server.run()
        });
        let mut client = connect(addr.trim_start_matches("tcp://"));
        round_trips(&mut client, 200); // warm up: accept, first buffers
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        round_trips(&mut client, 5000);
        let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
        handle.stop();
        thread.join().unwrap().unwrap();
        assert_eq!(
            during, 0,
            "{format}: {during} allocations for 5000 echoed lines"
        );
    }
}
