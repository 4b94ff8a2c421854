//! One load-generator thread: a `Poll` and the connections it drives.
//!
//! The same readiness rules as the server apply, and for the same reasons:
//! every socket is non-blocking and registered once, edge-triggered, for
//! both readable and writable; `WouldBlock` and `Interrupted` are control
//! flow, never errors. The poll time-out is the nearest of: the end of the
//! run, the next flush of the histograms, and (open loop) the next line the
//! schedule makes due, rounded up to the millisecond so the loop never
//! wakes early and spins.
//!
//! In echo and ingest modes any failure ends the run; idle and churn count
//! failures and go on (see [`modes`](super::modes), [`churn`](super::churn)).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::BenchError;
use super::churn::{ChurnIo, churn_turn};
use super::config::Mode;
use super::conn::{Conn, State, finish_connect};
use super::modes::{Count, Ctx, Pace, echo_turn, idle_turn, ingest_block, ingest_turn};
use super::plan::{CONNECT_TIMEOUT, Plan, Schedule, SourcePlan, Window};
use super::record::Measured;
use super::shared::Shared;
use super::timer::Timer;

/// How often a reactor adds its histograms to the shared ones (and checks `stop`).
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// What one reactor reports when the run ends normally.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Messages (churn: visits) completed inside the measured window.
    pub(crate) msgs: u64,
    /// Idle mode: connections that failed or were closed by the server.
    pub(crate) errors: u64,
    /// Connections that became established.
    pub(crate) established: usize,
    /// Connections still open at the end.
    pub(crate) held: usize,
    /// Idle mode: the first failure, as text.
    pub(crate) first_failure: Option<String>,
}

/// Runs one reactor over the connections numbered `conn_ids` until the plan's
/// end, a failure in any reactor, or (idle) the last connection closing.
/// A failure is stored in `shared` (reported once, from there).
pub(crate) fn run_worker(
    plan: &Plan,
    sources: &SourcePlan,
    conn_ids: &[usize],
    shared: &Shared,
) -> Outcome {
    match Reactor::new(plan, sources, conn_ids, shared).and_then(Reactor::run) {
        Ok(outcome) => outcome,
        Err(error) => {
            shared.fail(error);
            Outcome::default()
        }
    }
}

struct Reactor<'a> {
    plan: &'a Plan,
    sources: &'a SourcePlan,
    shared: &'a Shared,
    poll: Poll,
    conns: Vec<Conn>,
    outcome: Outcome,
    window: Window,
    pace: Pace,
    /// Open loop: messages of this reactor the schedule has released so far.
    released: u64,
    measured: Measured,
    /// Connections to turn again without an event: ingest connections that
    /// used their turn before `WouldBlock` (edge-triggered, they get no new
    /// event), open-loop lines that fell due, churn slots free to reconnect.
    ready: Vec<usize>,
    block: Vec<u8>,
    scratch: Vec<u8>,
    /// Open loop: wakes the reactor when the next line is due.
    timer: Option<Timer>,
    /// Ingest: a write succeeded in this turn (the server took bytes).
    took: bool,
}

/// The timer's token: no connection has it.
const TIMER: Token = Token(usize::MAX);

impl<'a> Reactor<'a> {
    fn new(
        plan: &'a Plan,
        sources: &'a SourcePlan,
        ids: &[usize],
        shared: &'a Shared,
    ) -> Result<Reactor<'a>, BenchError> {
        let config = &plan.config;
        let now = Instant::now();
        Ok(Reactor {
            plan,
            sources,
            shared,
            poll: Poll::new().map_err(BenchError::Reactor)?,
            conns: ids
                .iter()
                .enumerate()
                .map(|(slot, &id)| Conn::new(id, slot, now))
                .collect(),
            outcome: Outcome::default(),
            window: Window::connecting(plan),
            pace: if config.rate.is_some() {
                Pace::NotYet
            } else {
                Pace::Closed
            },
            released: 0,
            measured: Measured::new()?,
            ready: Vec::new(),
            block: if config.mode == Mode::Ingest {
                ingest_block(config.size)
            } else {
                Vec::new()
            },
            scratch: vec![0u8; 64 * 1024],
            timer: None,
            took: false,
        })
    }

    fn run(mut self) -> Result<Outcome, BenchError> {
        if self.plan.config.mode == Mode::Churn {
            // No connecting phase: every slot starts its first visit now.
            self.ready.extend(0..self.conns.len());
        } else {
            self.open_all()?;
        }
        let mut events = Events::with_capacity(1024);
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        loop {
            let now = Instant::now();
            if !self.await_connects(now)? {
                continue;
            }
            if now >= self.window.end || self.shared.stopped() {
                break;
            }
            if now >= next_flush {
                self.shared.merge(&mut self.measured);
                next_flush = now + FLUSH_EVERY;
            }
            self.release_due(now)?;
            let timeout = self.timeout(now, next_flush);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::Reactor(e)),
            }
            let resumed = std::mem::take(&mut self.ready);
            let tokens = events.iter().map(|event| event.token().0).chain(resumed);
            let turn = self.dispatch(tokens)?;
            self.ready.sort_unstable();
            self.ready.dedup();
            if self.plan.config.mode == Mode::Ingest {
                self.check_stall(Instant::now())?;
            }
            if turn.all > 0 {
                self.outcome.msgs += turn.in_window;
                self.shared.progress.fetch_add(turn.all, Ordering::Relaxed);
            }
        }
        if let (Pace::Open(schedule), Mode::Echo) = (self.pace, self.plan.config.mode) {
            self.count_unanswered(schedule);
        }
        self.shared.merge(&mut self.measured);
        if self.plan.config.mode != Mode::Churn {
            self.outcome.held = self.conns.iter().filter(|c| c.state == State::Open).count();
        }
        Ok(self.outcome)
    }

    /// Open loop, at the end of the window: the lines still unanswered,
    /// sent or only due (a connection's pipeline full while the server
    /// stalled), count in the corrected latencies too, each at the time it
    /// had waited by then. That is a lower bound, but without it a server
    /// that stalls near the end would look faster for it: its slowest
    /// lines would be the ones left out.
    fn count_unanswered(&mut self, schedule: Schedule) {
        let end = self.window.end;
        if Instant::now() < end {
            return; // Stopped early: the run failed, and says why.
        }
        for conn in self.conns.iter().filter(|c| c.state == State::Open) {
            // (Lines queued in a turn after the end were due after it.)
            for sent in conn.echo.in_flight.iter().filter(|s| s.intended < end) {
                self.measured.round_trip(*sent, end);
            }
            // Lines the schedule made due that never went out, their due
            // times evenly spaced: recorded in at most `CHUNKS` steps (a
            // huge backlog would otherwise take as long to count as it
            // took to build), each at its middle line's wait.
            const CHUNKS: u64 = 1024;
            let due = schedule.due_by(conn.slot, end);
            let unsent = due.saturating_sub(conn.started);
            let chunk = unsent.div_ceil(CHUNKS).max(1);
            let mut k = conn.started;
            while k < due {
                let count = chunk.min(due - k);
                let middle = schedule.due(conn.slot, k + count / 2);
                self.measured.unanswered(middle, end, count);
                k += count;
            }
        }
    }

    /// Starts every connection's connect (all modes but churn).
    fn open_all(&mut self) -> Result<(), BenchError> {
        let config = &self.plan.config;
        for conn in &mut self.conns {
            let source = self.sources.source_for(conn.id as u64);
            match conn.open(&self.plan.target, source, self.poll.registry()) {
                Ok(()) => {}
                // Idle mode reports how far it got; the others need every connection.
                Err(error) if config.mode == Mode::Idle => {
                    conn.state = State::Closed;
                    self.outcome.errors += 1;
                    self.outcome.first_failure.get_or_insert(error.to_string());
                    self.shared.resolve(1, self.plan);
                }
                Err(source) => {
                    return Err(BenchError::Connect {
                        target: self.plan.target.to_string(),
                        source_ip: source_ip(self.sources, conn),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Until every connect has finished: `Ok(true)` once the window is
    /// known; `Ok(false)` while waiting for other reactors' stragglers after
    /// the connect deadline.
    fn await_connects(&mut self, now: Instant) -> Result<bool, BenchError> {
        if !matches!(self.pace, Pace::NotYet) && self.window.load_start <= now {
            return Ok(true);
        }
        if let Some(at) = self.shared.connected_at(self.plan) {
            self.window = Window::after(self.plan, at);
            if let Some(rate) = self.plan.config.rate {
                let config = &self.plan.config;
                self.pace = Pace::Open(Schedule::new(at, rate, config.conns, self.conns.len()));
                let timer = Timer::new(self.poll.registry(), TIMER).map_err(BenchError::Reactor)?;
                self.timer = Some(timer);
            }
            return Ok(true);
        }
        if now < self.window.end {
            return Ok(true);
        }
        // The connect deadline passed: what is still connecting failed.
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|c| c.state == State::Connecting)
            .map(|c| c.slot)
            .collect();
        if self.plan.config.mode != Mode::Idle && !late.is_empty() {
            return Err(BenchError::ConnectTimeout {
                target: self.plan.target.to_string(),
                pending: self.shared.unresolved(),
            });
        }
        for &slot in &late {
            self.close(slot);
        }
        if !late.is_empty() {
            self.outcome.errors += late.len() as u64;
            self.outcome.first_failure.get_or_insert(format!(
                "{} connects still pending after {}s",
                late.len(),
                CONNECT_TIMEOUT.as_secs()
            ));
            self.shared.resolve(late.len(), self.plan);
        }
        std::thread::sleep(Duration::from_millis(1));
        Ok(false)
    }

    /// Ingest: fails the run once no reactor's server has taken a byte for
    /// the plan's stall time. Checked after a turn, so the writes that the
    /// events allowed have been tried: a reactor that was itself not
    /// scheduled for a while does not blame the server for it.
    fn check_stall(&mut self, now: Instant) -> Result<(), BenchError> {
        if std::mem::take(&mut self.took) {
            self.shared.took(self.plan, now);
            return Ok(());
        }
        if !self.ready.is_empty() {
            // A connection used its whole turn: it is not blocked.
            return Ok(());
        }
        let since = match self.shared.taken_at(self.plan) {
            Some(at) => at.max(self.window.load_start),
            None => self.window.load_start,
        };
        let stall = self.plan.stall_time();
        if now.saturating_duration_since(since) >= stall {
            return Err(BenchError::Stalled { waited: stall });
        }
        Ok(())
    }

    /// Open loop: marks the connections whose next line the schedule has
    /// made due since the last turn, and sets the timer for the next one.
    fn release_due(&mut self, now: Instant) -> Result<(), BenchError> {
        let (Pace::Open(schedule), Some(timer)) = (self.pace, &self.timer) else {
            return Ok(());
        };
        timer.clear();
        let released = schedule.released(now);
        let slots = self.conns.len() as u64;
        let fresh = released.saturating_sub(self.released).min(slots);
        self.ready
            .extend((0..fresh).map(|i| ((self.released + i) % slots) as usize));
        self.released = released;
        let next = schedule.at(released).saturating_duration_since(now);
        timer.set(next).map_err(BenchError::Reactor)
    }

    fn timeout(&self, now: Instant, next_flush: Instant) -> Duration {
        if !self.ready.is_empty() {
            return Duration::ZERO;
        }
        // The next line due is the timer's job (see `timer`).
        let wait = self
            .window
            .end
            .min(next_flush)
            .saturating_duration_since(now);
        // Round up to the next millisecond so the loop never wakes early and spins.
        Duration::from_millis(
            wait.as_millis() as u64 + u64::from(!wait.subsec_nanos().is_multiple_of(1_000_000)),
        )
    }

    /// Turns each connection named by `tokens`; returns messages completed.
    fn dispatch(&mut self, tokens: impl Iterator<Item = usize>) -> Result<Count, BenchError> {
        let mut turn = Count::default();
        let config = &self.plan.config;
        for slot in tokens {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            let ctx = Ctx {
                config,
                target: &self.plan.target,
                window: self.window,
                pace: self.pace,
            };
            if config.mode == Mode::Churn {
                let mut io = ChurnIo {
                    registry: self.poll.registry(),
                    sources: self.sources,
                    measured: &mut self.measured,
                    scratch: &mut self.scratch,
                    conns: config.conns,
                };
                let (count, again) = churn_turn(conn, &ctx, &mut io);
                turn += count;
                if again {
                    self.ready.push(slot);
                }
                continue;
            }
            if conn.state == State::Connecting && !self.established(slot)? {
                continue;
            }
            turn += self.turn(slot, &ctx)?;
        }
        Ok(turn)
    }

    /// A connecting socket had an event: `Ok(true)` if it is now open.
    fn established(&mut self, slot: usize) -> Result<bool, BenchError> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(false);
        };
        let Some(stream) = conn.stream.as_ref() else {
            return Ok(false);
        };
        match finish_connect(stream) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.shared.resolve(1, self.plan);
                conn.state = State::Open;
                self.outcome.established += 1;
                self.shared.established.fetch_add(1, Ordering::Relaxed);
                self.shared.held.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(error) if self.plan.config.mode == Mode::Idle => {
                self.shared.resolve(1, self.plan);
                self.outcome.errors += 1;
                self.outcome.first_failure.get_or_insert(error.to_string());
                self.close(slot);
                Ok(false)
            }
            Err(source) => Err(BenchError::Connect {
                target: self.plan.target.to_string(),
                source_ip: source_ip(self.sources, conn),
                source,
            }),
        }
    }

    /// One turn of an open connection in echo, ingest or idle mode.
    fn turn(&mut self, slot: usize, ctx: &Ctx<'_>) -> Result<Count, BenchError> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(Count::default());
        };
        if conn.state != State::Open {
            return Ok(Count::default());
        }
        match ctx.config.mode {
            Mode::Echo => echo_turn(conn, ctx, &mut self.scratch, &mut self.measured),
            Mode::Ingest => {
                let before = conn.ingested;
                let (lines, more) = ingest_turn(conn, ctx, &self.block, &mut self.scratch)?;
                self.took |= conn.ingested > before;
                if more {
                    self.ready.push(slot);
                }
                Ok(lines)
            }
            Mode::Idle | Mode::Churn => {
                if let Some(why) = idle_turn(conn, &mut self.scratch) {
                    self.outcome.errors += 1;
                    self.outcome.first_failure.get_or_insert(why);
                    self.shared.held.fetch_sub(1, Ordering::Relaxed);
                    self.close(slot);
                }
                Ok(Count::default())
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if let Some(mut stream) = conn.stream.take() {
                stream.close_notify();
                let _ = self.poll.registry().deregister(&mut stream);
            }
            conn.state = State::Closed;
        }
    }
}

fn source_ip(sources: &SourcePlan, conn: &Conn) -> Option<std::net::IpAddr> {
    sources.source_for(conn.id as u64)
}
