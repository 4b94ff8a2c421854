//! Churn: the notes' own workload. A client connects, sends one line, reads
//! its echo and goes away; each connection slot does that again and again.
//!
//! A slot's life is `Waiting` (for the schedule, in the open loop) →
//! `Connecting` → `Open` (its line sent) → echo back → closed → `Waiting`.
//! A failure at any step is counted by kind and the slot starts over: a
//! server that refuses some connections under churn is what is being
//! measured, not a reason to stop.
//!
//! A visit's latency runs from when it should have started (open loop) or
//! did start (closed loop) to its echo's last byte: connect, send, receive.
//! The connect alone goes into its own histogram.

use std::time::Instant;

use mio::Registry;

use super::BenchError;
use super::conn::{Conn, State, finish_connect};
use super::modes::{Count, Ctx, Pace, read_echoes};
use super::plan::SourcePlan;
use super::record::{ErrorKind, Measured, Sent};

/// What a churn turn needs besides the connection and the context.
pub(crate) struct ChurnIo<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) sources: &'a SourcePlan,
    pub(crate) measured: &'a mut Measured,
    pub(crate) scratch: &'a mut [u8],
    /// Connections in the whole run: spreads sources across threads.
    pub(crate) conns: usize,
}

/// One turn of a churn slot. Returns visits completed, and whether the slot
/// should be turned again without waiting for an event (it is free to
/// start its next visit).
pub(crate) fn churn_turn(conn: &mut Conn, ctx: &Ctx<'_>, io: &mut ChurnIo<'_>) -> (Count, bool) {
    let now = Instant::now();
    match conn.state {
        State::Waiting | State::Closed => start_visit(conn, ctx, io, now),
        State::Connecting => match conn.stream.as_ref().map(finish_connect) {
            Some(Ok(true)) => {
                if ctx.window.counts(now) {
                    io.measured.connected(conn.connect_started, now);
                }
                conn.state = State::Open;
                let sent = Sent {
                    intended: conn.visit_intended,
                    actual: conn.connect_started,
                };
                conn.echo.queue(conn.id, ctx.config.size, sent);
                exchange(conn, ctx, io)
            }
            Some(Ok(false)) => (Count::default(), false),
            Some(Err(e)) => fail(conn, io, ErrorKind::of(&e)),
            None => fail(conn, io, ErrorKind::Other),
        },
        State::Open => exchange(conn, ctx, io),
    }
}

/// Starts the slot's next visit if the schedule allows it.
fn start_visit(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    io: &mut ChurnIo<'_>,
    now: Instant,
) -> (Count, bool) {
    let intended = match ctx.pace {
        Pace::Closed => now,
        Pace::NotYet => return (Count::default(), false),
        Pace::Open(schedule) => {
            let due = schedule.due(conn.slot, conn.started);
            if due > now {
                return (Count::default(), false);
            }
            due
        }
    };
    let visit = conn.id as u64 + conn.started * io.conns as u64;
    conn.started += 1;
    conn.echo.reset();
    conn.visit_intended = intended;
    conn.connect_started = now;
    match conn.open(ctx.target, io.sources.source_for(visit), io.registry) {
        Ok(()) => (Count::default(), false),
        Err(e) => {
            io.measured.errors.add(ErrorKind::of(&e));
            conn.state = State::Waiting;
            (Count::default(), true)
        }
    }
}

/// Sends the line (if not yet out), reads the echo; on the last byte, the
/// visit is recorded and the connection closed.
fn exchange(conn: &mut Conn, ctx: &Ctx<'_>, io: &mut ChurnIo<'_>) -> (Count, bool) {
    let flushed = match conn.stream.as_mut() {
        Some(stream) => conn.echo.flush(stream, conn.id),
        None => return fail(conn, io, ErrorKind::Other),
    };
    let read = flushed.and_then(|()| read_echoes(conn, ctx, io.scratch, io.measured));
    match read {
        Ok(count) if count.all > 0 => {
            close(conn, io.registry);
            (count, true)
        }
        Ok(count) => (count, false),
        Err(error) => {
            let kind = match &error {
                BenchError::Io { source, .. } => ErrorKind::of(source),
                BenchError::Closed { .. } => ErrorKind::Closed,
                _ => ErrorKind::Mismatch,
            };
            fail(conn, io, kind)
        }
    }
}

fn fail(conn: &mut Conn, io: &mut ChurnIo<'_>, kind: ErrorKind) -> (Count, bool) {
    io.measured.errors.add(kind);
    close(conn, io.registry);
    (Count::default(), true)
}

fn close(conn: &mut Conn, registry: &Registry) {
    if let Some(mut stream) = conn.stream.take() {
        // TLS: a clean goodbye, as a real client says it.
        stream.close_notify();
        let _ = registry.deregister(&mut stream);
    }
    conn.state = State::Waiting;
}
