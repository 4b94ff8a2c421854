//! When things happen: the phases of a run, the open-loop schedule, and
//! which source address each connection binds.
//!
//! Everything here is arithmetic on instants handed in, so it is the same
//! for every reactor thread and testable without a socket or a sleep.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::config::{BenchConfig, Target};

/// How long every connection may take to connect. Lost SYNs (a full accept
/// queue) are retried by the kernel after 1 s, 3 s, 7 s...: 30 s allows a few.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Ingest: the longest the server may take no byte at all before the run
/// fails (shorter in a short run, see [`Plan::stall_time`]). A server that
/// never reads would otherwise look fast: its socket buffers take the first
/// megabytes, and lines that only fill them count as written.
pub(crate) const STALL_TIME: Duration = Duration::from_secs(2);

/// When the run began and how long each phase lasts; the same for every reactor.
///
/// Phases: connecting (until every connect has finished, at most
/// [`CONNECT_TIMEOUT`]), then `--warmup`, then the `--duration` window.
/// Connections start their load as soon as they are connected, but nothing
/// counts before the window: a run with 1,000 connections measures 1,000
/// connections, not the ones that happened to connect first. Churn has no
/// connecting phase: connecting is what it measures.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) config: BenchConfig,
    /// The server, resolved.
    pub(crate) target: Target,
    /// When the first connect started.
    pub(crate) start: Instant,
}

impl Plan {
    /// Ingest: how long the server may take no byte before the run fails:
    /// [`STALL_TIME`], or half the run (warm-up and window) if that is
    /// shorter, so that a short run cannot pass on filled buffers alone.
    pub(crate) fn stall_time(&self) -> Duration {
        STALL_TIME.min((self.config.warmup + self.config.duration) / 2)
    }
}

/// The measured window, once known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// When load starts (every connection is up): the open-loop schedule's zero.
    pub(crate) load_start: Instant,
    /// From here on, messages count.
    pub(crate) measure_start: Instant,
    /// End of the run.
    pub(crate) end: Instant,
}

impl Window {
    /// Before every connection is up: nothing counts, and the run ends at
    /// the connect deadline.
    pub(crate) fn connecting(plan: &Plan) -> Window {
        let never = plan.start + crate::net::units::MAX_DURATION;
        Window {
            load_start: never,
            measure_start: never,
            end: plan.start + CONNECT_TIMEOUT,
        }
    }

    pub(crate) fn after(plan: &Plan, connected_at: Instant) -> Window {
        let measure_start = connected_at + plan.config.warmup;
        Window {
            load_start: connected_at,
            measure_start,
            end: measure_start + plan.config.duration,
        }
    }

    pub(crate) fn counts(&self, now: Instant) -> bool {
        now >= self.measure_start && now < self.end
    }
}

/// The open-loop schedule of one reactor: its share of `--rate`, spread
/// evenly over its connections.
///
/// Message `n` of the reactor is due at `start + n × interval` and belongs
/// to connection `n mod slots`; so connection `slot` sends its `k`-th line
/// at `start + (slot + k × slots) × interval`. Nothing is stored per
/// message: a connection that fell behind (its pipeline full while the
/// server stalled) knows when each of its late lines *should* have gone, and
/// that instant, not the one it finally went at, starts the line's
/// corrected latency.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    interval: Duration,
    slots: u64,
}

impl Schedule {
    /// `rate` lines per second in all, of which this reactor has `slots`
    /// of `conns` connections.
    pub(crate) fn new(start: Instant, rate: f64, conns: usize, slots: usize) -> Schedule {
        let share = rate * slots as f64 / conns.max(1) as f64;
        // At the least rate (`MIN_RATE`) spread over the most connections
        // (`MAX_CONNS`) a slot's line is due every 1e9 s: within the bound,
        // which only keeps `Duration` and the nanosecond sums below from
        // overflowing if a caller's rate slipped past the checks.
        let interval = Duration::from_secs_f64((1.0 / share).min(1e9));
        Schedule {
            start,
            interval,
            slots: slots.max(1) as u64,
        }
    }

    /// When message `k` of connection `slot` is due.
    pub(crate) fn due(&self, slot: usize, k: u64) -> Instant {
        self.at(slot as u64 + k * self.slots)
    }

    /// When message `n` of this reactor is due.
    pub(crate) fn at(&self, n: u64) -> Instant {
        let nanos = self.interval.as_nanos() as u64;
        self.start + Duration::from_nanos(n.saturating_mul(nanos))
    }

    /// How many of connection `slot`'s lines are due by `now`.
    pub(crate) fn due_by(&self, slot: usize, now: Instant) -> u64 {
        let released = self.released(now);
        let slot = slot as u64;
        if released > slot {
            (released - slot - 1) / self.slots + 1
        } else {
            0
        }
    }

    /// How many of this reactor's messages are due by `now`.
    pub(crate) fn released(&self, now: Instant) -> u64 {
        let nanos = (self.interval.as_nanos() as u64).max(1);
        match now.checked_duration_since(self.start) {
            Some(since) => (since.as_nanos() as u64) / nanos + 1,
            None => 0,
        }
    }
}

/// Which source address each connection binds before connecting.
///
/// One source IP reaches one server address through at most as many
/// connections as there are ephemeral ports (`ip_local_port_range`, about
/// 28,000 by default), and a connection the client closes keeps its port in
/// `TIME_WAIT` for 60 s: churn at 10,000 connections a second would run out
/// within three seconds. Every `127/8` address is local, so connections to
/// an IPv4 loopback server take their source from `127.0.0.1`, `127.0.0.2`,
/// ... and, bound with `IP_BIND_ADDRESS_NO_PORT`, let the kernel pick the
/// port only at `connect`, per (source, destination) pair. Churn rotates
/// over 65,536 sources (about 1.8 billion ports), idle and echo runs move to
/// the next source after one address's worth of ports.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    /// Connections per source address; `None` means never bind.
    per_source: Option<usize>,
}

/// Source addresses churn rotates over: 127.0.0.1 to 127.1.0.0.
const CHURN_SOURCES: u64 = 1 << 16;

impl SourcePlan {
    pub(crate) fn for_run(plan: &Plan) -> SourcePlan {
        let config = &plan.config;
        let loopback_v4 = matches!(&plan.target, Target::Tcp(addr) if matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
        let ports = ephemeral_ports().saturating_sub(1000).max(1);
        let per_source = if !loopback_v4 {
            None
        } else if config.mode == super::Mode::Churn {
            Some(1)
        } else if config.conns > ports {
            Some(ports)
        } else {
            None
        };
        SourcePlan { per_source }
    }

    /// The address the `n`-th connection binds to, if any. Echo and idle
    /// runs bind nothing for the first `per_source` (the kernel picks
    /// 127.0.0.1), then 127.0.0.2, ...; churn binds every connection.
    pub(crate) fn source_for(&self, n: u64) -> Option<IpAddr> {
        let per_source = self.per_source? as u64;
        let host = if per_source == 1 {
            1 + n % CHURN_SOURCES
        } else {
            match n / per_source {
                0 => return None,
                block => 1 + block,
            }
        };
        Some(IpAddr::V4(Ipv4Addr::from(
            0x7f00_0000 | (host as u32 & 0x00ff_ffff),
        )))
    }
}

/// The size of the kernel's ephemeral port range, or the Linux default.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>());
            match (parts.next(), parts.next()) {
                (Some(Ok(low)), Some(Ok(high))) if high >= low => Some(high - low + 1),
                _ => None,
            }
        })
        .unwrap_or(60999 - 32768 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_beyond_one_address_worth_of_ports() {
        let many = SourcePlan {
            per_source: Some(10),
        };
        assert_eq!(many.source_for(9), None);
        assert_eq!(many.source_for(10), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(many.source_for(25), Some("127.0.0.3".parse().unwrap()));
    }

    #[test]
    fn churn_rotates_over_many_loopback_sources() {
        let churn = SourcePlan {
            per_source: Some(1),
        };
        assert_eq!(churn.source_for(0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(churn.source_for(255), Some("127.0.1.0".parse().unwrap()));
        assert_eq!(churn.source_for(CHURN_SOURCES), churn.source_for(0));
    }

    #[test]
    fn schedule_gives_each_slot_its_turn() {
        let start = Instant::now();
        // 1000/s in all, this reactor has 2 of 4 connections: 500/s, every 2 ms.
        let schedule = Schedule::new(start, 1000.0, 4, 2);
        assert_eq!(schedule.due(0, 0), start);
        assert_eq!(schedule.due(1, 0), start + Duration::from_millis(2));
        assert_eq!(schedule.due(0, 1), start + Duration::from_millis(4));
        assert_eq!(schedule.released(start), 1);
        assert_eq!(schedule.released(start + Duration::from_millis(5)), 3);
    }
}
