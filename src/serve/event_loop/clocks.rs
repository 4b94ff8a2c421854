//! The loop's clocks: idle clients, slow lines, late PROXY headers, the
//! counters' log, a pause in accepting, a stop's grace period.
//!
//! The notes pass `TIMEOUT` to `select()` for their one client. Here every
//! clock's nearest deadline together makes `poll`'s time-out
//! ([`poll_timeout`]), rounded up by mio so the loop never wakes early and
//! spins; with nothing due, `poll` sleeps until an event.

use std::time::{Duration, Instant};

use super::EventLoop;
use crate::serve::close::CloseReason;
use crate::serve::deadline_list::DeadlineList;
use crate::serve::stats;

impl EventLoop {
    /// Every deadline this loop keeps, nearest or not. While reading is
    /// paused for output, clients' clocks do not run.
    pub(super) fn deadlines(&self) -> [Option<Instant>; 9] {
        let clients = !self.reading_paused();
        [
            Some(&self.handshakes)
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.proxy_headers
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.idle
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.line_deadlines
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.lifecycle.grace_until(),
            self.accept.paused_until(),
            self.next_stats,
            self.lingering.next_deadline(),
            self.metrics
                .as_ref()
                .and_then(crate::serve::metrics::MetricsServer::next_deadline),
        ]
    }

    pub(super) fn on_deadlines(&mut self, now: Instant) {
        if !self.reading_paused() {
            self.on_client_deadlines(now);
        }
        self.on_loop_deadlines(now);
    }

    /// Clients silent for the idle time-out (the notes' `if not inp:
    /// break`), and lines unfinished for the line time-out.
    pub(super) fn on_client_deadlines(&mut self, now: Instant) {
        while let Some(key) = self.idle.as_mut().and_then(|idle| idle.pop_expired(now)) {
            if let Some(connection) = self.connections.get_mut(key) {
                let reason = connection.on_idle_timeout(&mut self.ctx);
                self.close(key, reason);
            }
        }
        while let Some(key) = self
            .line_deadlines
            .as_mut()
            .and_then(|lines| lines.pop_expired(now))
        {
            if let Some(connection) = self.connections.get_mut(key) {
                let reason = connection.on_line_timeout(&mut self.ctx);
                self.close(key, reason);
            }
        }
        while let Some(key) = self
            .proxy_headers
            .as_mut()
            .and_then(|headers| headers.pop_expired(now))
        {
            if let Some(connection) = self.connections.get_mut(key)
                && connection.awaits_proxy_header()
            {
                let reason = connection.on_proxy_header_late();
                self.close(key, reason);
            }
        }
        while let Some(key) = self.handshakes.pop_expired(now) {
            if let Some(connection) = self.connections.get_mut(key)
                && connection.awaits_handshake()
            {
                let reason = connection.on_handshake_late(&mut self.ctx);
                self.close(key, reason);
            }
        }
    }

    /// Other deadlines: counters to log, the end of a stop's grace period,
    /// the end of a pause in accepting.
    pub(super) fn on_loop_deadlines(&mut self, now: Instant) {
        self.lingering.expire(now, &self.ctx.registry);
        if let Some(metrics) = &mut self.metrics {
            metrics.expire(now, &self.ctx.registry);
        }
        if let Some(due) = self.next_stats
            && due <= now
        {
            self.ctx.output.count_drops(&mut self.ctx.counters);
            let totals = self
                .ctx
                .shared
                .totals(Some((self.ctx.reactor, &self.ctx.counters)));
            stats::report(&totals);
            let every = self
                .ctx
                .config
                .stats_interval
                .unwrap_or(Duration::from_secs(1));
            self.next_stats = Some(now + every);
        }
        if self
            .lifecycle
            .grace_until()
            .is_some_and(|deadline| deadline <= now)
        {
            let unsent = self
                .connections
                .iter()
                .filter(|(_, connection)| connection.pending_output() > 0)
                .count();
            if unsent > 0 {
                log::warn!("grace period over: closing {unsent} clients with output unsent");
            }
            self.close_all(CloseReason::Stop);
        }
        if self.accept.resume_if_due(now) {
            // Clients queued in the backlog while we were paused raised
            // their edge then: no new event will come for them.
            for index in 0..self.accept.len() {
                self.accept_from(index, now);
            }
        }
    }
}

/// How long `poll` may sleep: not at all while the ready queue holds work,
/// until the nearest deadline otherwise (and no longer than `at_most`),
/// forever if nothing is due.
pub(super) fn poll_timeout(
    now: Instant,
    ready_queue_empty: bool,
    nearest: Option<Instant>,
    at_most: Option<Duration>,
    countdown: &mut Countdown,
) -> Option<Duration> {
    if !ready_queue_empty {
        return Some(Duration::ZERO);
    }
    let until_nearest = nearest.map(|deadline| countdown.until(deadline, now));
    match (until_nearest, at_most) {
        (Some(until), Some(most)) => Some(until.min(most)),
        (until, most) => until.or(most),
    }
}

/// The time from now to the nearest deadline, worked out at most once a
/// millisecond for the same deadline: the lazy clock's other half (see
/// [`DeadlineList`]'s "Lazy touches"). A busy loop sleeps every turn with
/// the idle deadline seconds away; subtracting two instants each turn would
/// cost more than the rest of the sleep's bookkeeping. Reusing a time
/// worked out less than a millisecond ago sleeps at most that much too
/// long, never too short.
#[derive(Debug, Default)]
pub(super) struct Countdown {
    /// The deadline, until when the time is reused, and the time.
    last: Option<(Instant, Instant, Duration)>,
}

impl Countdown {
    fn until(&mut self, deadline: Instant, now: Instant) -> Duration {
        if let Some((to, valid_until, left)) = self.last
            && to == deadline
            && now <= valid_until
        {
            return left;
        }
        let left = deadline.saturating_duration_since(now);
        self.last = now
            .checked_add(Duration::from_millis(1))
            .map(|valid_until| (deadline, valid_until, left));
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_timeout_once(
        now: Instant,
        ready_queue_empty: bool,
        nearest: Option<Instant>,
        at_most: Option<Duration>,
    ) -> Option<Duration> {
        poll_timeout(
            now,
            ready_queue_empty,
            nearest,
            at_most,
            &mut Countdown::default(),
        )
    }

    #[test]
    fn a_countdown_is_reused_within_a_millisecond_and_never_short() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(5);
        let mut countdown = Countdown::default();
        assert_eq!(countdown.until(deadline, now), Duration::from_secs(5));
        // Half a millisecond later: the same time, so at most that much late.
        let later = now + Duration::from_micros(500);
        assert_eq!(countdown.until(deadline, later), Duration::from_secs(5));
        // Past the millisecond: worked out again.
        let much_later = now + Duration::from_millis(2);
        assert_eq!(
            countdown.until(deadline, much_later),
            Duration::from_millis(4998)
        );
        // Another deadline: worked out at once.
        let sooner = much_later + Duration::from_millis(10);
        assert_eq!(
            countdown.until(sooner, much_later),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn no_deadline_sleeps_forever() {
        assert_eq!(poll_timeout_once(Instant::now(), true, None, None), None);
    }

    #[test]
    fn the_nearest_deadline_bounds_the_sleep() {
        let now = Instant::now();
        let near = now + Duration::from_millis(250);
        let far = now + Duration::from_secs(5);
        assert_eq!(
            poll_timeout_once(now, true, Some(near), Some(Duration::from_secs(1))),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            poll_timeout_once(now, true, Some(far), Some(Duration::from_millis(5))),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            poll_timeout_once(now, true, None, Some(Duration::from_millis(5))),
            Some(Duration::from_millis(5))
        );
    }

    #[test]
    fn a_past_deadline_means_no_sleep() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(
            poll_timeout_once(now, true, Some(past), None),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn work_in_the_ready_queue_means_no_sleep() {
        let now = Instant::now();
        let far = now + Duration::from_secs(5);
        assert_eq!(
            poll_timeout_once(now, false, Some(far), None),
            Some(Duration::ZERO)
        );
        assert_eq!(
            poll_timeout_once(now, false, None, None),
            Some(Duration::ZERO)
        );
    }
}
