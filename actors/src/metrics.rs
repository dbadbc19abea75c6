//! Process-wide counters for `GET /metrics`: sessions ended by protocol
//! and outcome, and bytes relayed by protocol and direction.
//!
//! Counters are plain atomics in statics, bumped where a session ends
//! ([`session_ended`]) and where a relay writes ([`relayed`]): no actor,
//! no lock, nothing a session waits for. What is better asked of its
//! owner — live sessions (the registry), pending approvals (the broker),
//! the recorder's backlog — is passed to [`render`] as [`Gauges`] by
//! whoever serves the scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::recorder::RecorderStatus;
use crate::recording::Outcome;

/// The protocols sessions are counted under, as session headers name them.
pub const PROTOCOLS: [&str; 3] = ["postgres", "ssh", "admin-ssh"];

const OUTCOMES: [Outcome; 5] = [
    Outcome::Closed,
    Outcome::Refused,
    Outcome::Failed,
    Outcome::Terminated,
    Outcome::Interrupted,
];

/// Which way relayed bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// From the agent to the target.
    ToTarget,
    /// From the target to the agent.
    ToClient,
}

impl Flow {
    fn label(self) -> &'static str {
        match self {
            Flow::ToTarget => "to_target",
            Flow::ToClient => "to_client",
        }
    }
}

// Array initialisers only: each use is a fresh value, never shared.
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const BY_OUTCOME: [AtomicU64; OUTCOMES.len()] = [ZERO; OUTCOMES.len()];
#[allow(clippy::declare_interior_mutable_const)]
const BY_FLOW: [AtomicU64; 2] = [ZERO; 2];

static ENDED: [[AtomicU64; OUTCOMES.len()]; PROTOCOLS.len()] = [BY_OUTCOME; PROTOCOLS.len()];
static RELAYED: [[AtomicU64; 2]; PROTOCOLS.len()] = [BY_FLOW; PROTOCOLS.len()];

fn protocol_index(protocol: &str) -> Option<usize> {
    PROTOCOLS.iter().position(|p| *p == protocol)
}

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)
}

/// A session of `protocol` ended with `outcome` (as recorded).
pub fn session_ended(protocol: &str, outcome: Outcome) {
    if let Some(p) = protocol_index(protocol) {
        ENDED[p][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }
}

/// A relay of `protocol` wrote `bytes` in direction `flow`.
pub fn relayed(protocol: &str, flow: Flow, bytes: u64) {
    if let Some(p) = protocol_index(protocol) {
        let f = match flow {
            Flow::ToTarget => 0,
            Flow::ToClient => 1,
        };
        RELAYED[p][f].fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Sessions of `protocol` that ended with `outcome` so far.
pub fn ended(protocol: &str, outcome: Outcome) -> u64 {
    protocol_index(protocol).map_or(0, |p| {
        ENDED[p][outcome_index(outcome)].load(Ordering::Relaxed)
    })
}

/// Bytes of `protocol` relayed in direction `flow` so far.
pub fn relayed_bytes(protocol: &str, flow: Flow) -> u64 {
    let f = usize::from(flow == Flow::ToClient);
    protocol_index(protocol).map_or(0, |p| RELAYED[p][f].load(Ordering::Relaxed))
}

/// What the scrape asks of the actors that own it.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Live sessions by protocol (from the registry).
    pub live: Vec<(String, u64)>,
    pub approvals_pending: u64,
    /// `None` when the recorder did not answer.
    pub recorder: Option<RecorderStatus>,
    /// Unix microseconds now, for the age of the last flush.
    pub now: i64,
}

/// Everything in the Prometheus text format (version 0.0.4).
pub fn render(g: &Gauges) -> String {
    // Writing to a String cannot fail: the `let _ =` below drop nothing.
    let mut out = String::with_capacity(4096);
    header(&mut out, "sessions_live", "gauge", "Sessions open now.");
    for protocol in PROTOCOLS {
        let n = g
            .live
            .iter()
            .filter(|(p, _)| p == protocol)
            .map(|(_, n)| n)
            .sum::<u64>();
        let _ = writeln!(
            out,
            "gatehouse_sessions_live{{protocol=\"{protocol}\"}} {n}"
        );
    }
    header(
        &mut out,
        "sessions_total",
        "counter",
        "Sessions ended, by how they ended.",
    );
    for protocol in PROTOCOLS {
        for outcome in OUTCOMES {
            let _ = writeln!(
                out,
                "gatehouse_sessions_total{{protocol=\"{protocol}\",outcome=\"{}\"}} {}",
                outcome.as_str(),
                ended(protocol, outcome)
            );
        }
    }
    header(
        &mut out,
        "relayed_bytes_total",
        "counter",
        "Bytes relayed between agents and targets.",
    );
    for protocol in PROTOCOLS {
        for flow in [Flow::ToTarget, Flow::ToClient] {
            let _ = writeln!(
                out,
                "gatehouse_relayed_bytes_total{{protocol=\"{protocol}\",direction=\"{}\"}} {}",
                flow.label(),
                relayed_bytes(protocol, flow)
            );
        }
    }
    header(
        &mut out,
        "approvals_pending",
        "gauge",
        "Statements and commands waiting for an operator.",
    );
    let _ = writeln!(out, "gatehouse_approvals_pending {}", g.approvals_pending);
    header(
        &mut out,
        "recorder_up",
        "gauge",
        "1 if the recorder answered this scrape.",
    );
    let _ = writeln!(
        out,
        "gatehouse_recorder_up {}",
        u8::from(g.recorder.is_some())
    );
    if let Some(r) = &g.recorder {
        header(
            &mut out,
            "recorder_pending_events",
            "gauge",
            "Events received and not yet durable.",
        );
        let _ = writeln!(
            out,
            "gatehouse_recorder_pending_events {}",
            r.pending_events
        );
        header(
            &mut out,
            "recorder_flush_age_seconds",
            "gauge",
            "Seconds since the last successful flush.",
        );
        let age = r
            .last_flush
            .map_or(-1.0, |t| (g.now - t).max(0) as f64 / 1e6);
        let _ = writeln!(out, "gatehouse_recorder_flush_age_seconds {age}");
        header(
            &mut out,
            "recorder_failed_flushes_total",
            "counter",
            "Flushes that failed (each retried).",
        );
        let _ = writeln!(
            out,
            "gatehouse_recorder_failed_flushes_total {}",
            r.failed_flushes
        );
        header(
            &mut out,
            "recorder_commits_total",
            "counter",
            "Store transactions committed.",
        );
        let _ = writeln!(out, "gatehouse_recorder_commits_total {}", r.commits);
        header(
            &mut out,
            "recorder_open_sessions",
            "gauge",
            "Recordings open in the recorder.",
        );
        let _ = writeln!(out, "gatehouse_recorder_open_sessions {}", r.open_sessions);
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP gatehouse_{name} {help}\n# TYPE gatehouse_{name} {kind}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        // Statics are shared with other tests: compare before and after.
        let closed = ended("postgres", Outcome::Closed);
        let sent = relayed_bytes("ssh", Flow::ToClient);
        session_ended("postgres", Outcome::Closed);
        session_ended("unknown-protocol", Outcome::Closed);
        relayed("ssh", Flow::ToClient, 1234);
        assert_eq!(ended("postgres", Outcome::Closed), closed + 1);
        assert_eq!(relayed_bytes("ssh", Flow::ToClient), sent + 1234);

        let text = render(&Gauges {
            live: vec![("postgres".into(), 2), ("postgres".into(), 1)],
            approvals_pending: 4,
            recorder: Some(RecorderStatus {
                pending_events: 7,
                last_flush: Some(1_000_000),
                ..Default::default()
            }),
            now: 3_500_000,
        });
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_owned()
        };
        assert_eq!(
            line("gatehouse_sessions_live{protocol=\"postgres\"}"),
            "gatehouse_sessions_live{protocol=\"postgres\"} 3"
        );
        assert_eq!(
            line("gatehouse_sessions_live{protocol=\"ssh\"}"),
            "gatehouse_sessions_live{protocol=\"ssh\"} 0"
        );
        assert_eq!(
            line("gatehouse_sessions_total{protocol=\"postgres\",outcome=\"closed\"}"),
            format!(
                "gatehouse_sessions_total{{protocol=\"postgres\",outcome=\"closed\"}} {}",
                closed + 1
            )
        );
        assert_eq!(
            line("gatehouse_approvals_pending"),
            "gatehouse_approvals_pending 4"
        );
        assert_eq!(
            line("gatehouse_recorder_pending_events"),
            "gatehouse_recorder_pending_events 7"
        );
        assert_eq!(
            line("gatehouse_recorder_flush_age_seconds"),
            "gatehouse_recorder_flush_age_seconds 2.5"
        );
        // Every sample has its TYPE line before it.
        let mut typed = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} has no TYPE line");
            }
        }
    }
}
