//! When jobs are due: periodic schedules per kind, offset from each other
//! by a stagger so kinds do not fire together, and the triggers that
//! enqueue work (startup, a signal, the CLI, a period). The scheduler is a
//! pure calendar; the daemon enqueues what it says is due.

use std::time::{Duration, Instant};

use super::Request;

/// What made a job be enqueued; logged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Periodic,
    /// SIGUSR1: a full cleanup.
    Signal,
    Cli,
    /// A request to the HTTP API.
    Api,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Startup => "startup",
            Trigger::Periodic => "periodic",
            Trigger::Signal => "signal",
            Trigger::Cli => "cli",
            Trigger::Api => "api",
        })
    }
}

/// A request made every `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub request: Request,
    pub every: Duration,
}

/// The periodic schedules and when each fires next.
#[derive(Debug, Clone)]
pub struct Scheduler {
    entries: Vec<(Schedule, Instant)>,
}

impl Scheduler {
    /// Schedule `i` first fires at `now + every + i * stagger`, then every
    /// `every`; the startup trigger covers `now` itself.
    pub fn new(schedules: Vec<Schedule>, stagger: Duration, now: Instant) -> Scheduler {
        let entries = schedules
            .into_iter()
            .enumerate()
            .map(|(i, schedule)| {
                let offset = stagger.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                let first = now + schedule.every + offset;
                (schedule, first)
            })
            .collect();
        Scheduler { entries }
    }

    /// When the next schedule fires, if there is any.
    pub fn next_wake(&self) -> Option<Instant> {
        self.entries.iter().map(|(_, next)| *next).min()
    }

    /// The requests due at `now`, each once however late it is; their next
    /// firing keeps its phase (ticks missed while late are skipped).
    pub fn due(&mut self, now: Instant) -> Vec<Request> {
        let mut due = Vec::new();
        for (schedule, next) in &mut self.entries {
            if *next > now {
                continue;
            }
            due.push(schedule.request.clone());
            let every = schedule.every.max(Duration::from_millis(1));
            while *next <= now {
                *next += every;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_fire_staggered_at_their_own_periods_and_late_ticks_fire_once() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let schedule = |kind: &str, every| Schedule {
            request: Request::keyed(kind, kind, "{}"),
            every: ms(every),
        };
        let mut scheduler =
            Scheduler::new(vec![schedule("a", 100), schedule("b", 100)], ms(30), start);
        assert_eq!(scheduler.next_wake(), Some(start + ms(100)));
        let kinds = |due: Vec<Request>| due.into_iter().map(|r| r.kind).collect::<Vec<_>>();
        assert_eq!(kinds(scheduler.due(start + ms(99))), Vec::<String>::new());
        assert_eq!(kinds(scheduler.due(start + ms(100))), ["a"]);
        assert_eq!(
            scheduler.next_wake(),
            Some(start + ms(130)),
            "b is staggered"
        );
        assert_eq!(kinds(scheduler.due(start + ms(130))), ["b"]);
        // Far behind: each fires once, and keeps its phase.
        assert_eq!(kinds(scheduler.due(start + ms(1000))), ["a", "b"]);
        assert_eq!(scheduler.next_wake(), Some(start + ms(1030)));
        assert_eq!(Scheduler::new(Vec::new(), ms(30), start).next_wake(), None);
    }
}
