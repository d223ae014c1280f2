//! The circuit breaker of an action sink's endpoint: closed → open after
//! `failures` failed attempts in a row → after `cooldown`, half-open: one
//! probe → closed if it succeeds, open again if not. While open nothing is
//! sent; the requests wait (up to their sink's `fallback.after`).
//!
//! A pure state machine over the instants it is given, so its transitions
//! are tested without waiting; the dispatcher drives it.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open: the metric's value.
    pub fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// What a request may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send.
    Go,
    /// Send: it is the half-open circuit's one probe.
    Probe,
    /// Wait: the circuit is open until then.
    WaitUntil(Instant),
    /// Wait: a probe is out.
    WaitProbe,
}

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    cooldown: Duration,
    in_a_row: u32,
    state: Inner,
    /// How often it opened.
    pub opened: u64,
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Breaker {
        Breaker {
            failures: failures.max(1),
            cooldown,
            in_a_row: 0,
            state: Inner::Closed,
            opened: 0,
        }
    }

    pub fn state(&self) -> State {
        match self.state {
            Inner::Closed => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            Inner::Closed => Admit::Go,
            Inner::Open { until } if now < until => Admit::WaitUntil(until),
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                self.state = Inner::HalfOpen { probing: true };
                Admit::Probe
            }
            Inner::HalfOpen { probing: true } => Admit::WaitProbe,
        }
    }

    /// An attempt reached the service and it answered (a 4xx too: the
    /// endpoint works, the request was wrong).
    pub fn success(&mut self, probe: bool) {
        self.in_a_row = 0;
        if probe || !matches!(self.state, Inner::Open { .. }) {
            self.state = Inner::Closed;
        }
    }

    /// An attempt failed in a way a retry may help (connect error,
    /// time-out, 5xx, 429).
    pub fn failure(&mut self, probe: bool, now: Instant) {
        self.in_a_row = self.in_a_row.saturating_add(1);
        let open = match self.state {
            Inner::Closed => self.in_a_row >= self.failures,
            Inner::HalfOpen { .. } => probe,
            Inner::Open { .. } => false,
        };
        if open {
            self.state = Inner::Open {
                until: now + self.cooldown,
            };
            self.opened += 1;
        }
    }

    /// A probe that ended without an answer either way (its request gave
    /// up waiting): another may probe.
    pub fn abandon_probe(&mut self) {
        if let Inner::HalfOpen { probing: true } = self.state {
            self.state = Inner::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_half_opens_and_closes() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut b = Breaker::new(3, cool);
        assert_eq!(b.admit(t0), Admit::Go);
        b.failure(false, t0);
        b.failure(false, t0);
        b.success(false);
        b.failure(false, t0);
        b.failure(false, t0);
        assert_eq!(b.state(), State::Closed, "a success in between resets the count");
        b.failure(false, t0);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(t0 + Duration::from_secs(9)), Admit::WaitUntil(t0 + cool));
        // Late answers of attempts sent before it opened change nothing.
        b.success(false);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(t0 + cool), Admit::Probe);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.admit(t0 + cool), Admit::WaitProbe);
        let t1 = t0 + cool + Duration::from_secs(1);
        b.failure(true, t1);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.opened, 2);
        assert_eq!(b.admit(t1 + cool), Admit::Probe);
        b.success(true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(t1 + cool), Admit::Go);
    }

    #[test]
    fn an_abandoned_probe_lets_another_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::ZERO);
        b.failure(false, t0);
        assert_eq!(b.admit(t0), Admit::Probe);
        b.abandon_probe();
        assert_eq!(b.admit(t0), Admit::Probe);
    }
}
