//! Prometheus metrics of one bot replica, served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label called `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What is counted: a decision (`allow`, `needs_approval`, `deny`), an approval's fate
    /// (`counted`, `ignored_self`, `ignored_not_eligible`, `withdrawn`, `rejected`,
    /// `too_late`), an event kind, an HTTP refusal reason.
    pub kind: String,
}

/// The bot's metrics.
pub struct Metrics {
    /// The registry they are encoded from.
    pub registry: Registry,
    /// Requests decided, by decision.
    pub requests: Family<KindLabel, Counter>,
    /// Approval reactions, by what became of them.
    pub approvals: Family<KindLabel, Counter>,
    /// Jobs queued for an executor.
    pub jobs_queued: Counter,
    /// Requests expired.
    pub expired: Counter,
    /// Events dropped because they were seen before, by kind.
    pub duplicates: Family<KindLabel, Counter>,
    /// Incoming HTTP requests refused (bad signature, stale, replay, bad token), by reason.
    pub refused: Family<KindLabel, Counter>,
    /// Events from a platform the bot could not read (logged; a silent drop hides bugs).
    pub unknown_events: Counter,
    /// Time to acknowledge a platform request.
    pub ack_seconds: Histogram,
    /// Time to handle a command after the acknowledgement.
    pub command_seconds: Histogram,
    /// Failures talking to chat.
    pub chat_errors: Counter,
    /// Failures in the flow (retried from the inbox).
    pub flow_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn label(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("countersign_bot");
        let requests = Family::<KindLabel, Counter>::default();
        registry.register(
            "requests",
            "Requests decided, by decision",
            requests.clone(),
        );
        let approvals = Family::<KindLabel, Counter>::default();
        registry.register(
            "approvals",
            "Approval reactions, by what became of them",
            approvals.clone(),
        );
        let jobs_queued = Counter::default();
        registry.register(
            "jobs_queued",
            "Jobs queued for an executor",
            jobs_queued.clone(),
        );
        let expired = Counter::default();
        registry.register(
            "expired",
            "Requests expired before approval",
            expired.clone(),
        );
        let duplicates = Family::<KindLabel, Counter>::default();
        registry.register(
            "duplicate_events",
            "Events dropped because they were seen before",
            duplicates.clone(),
        );
        let refused = Family::<KindLabel, Counter>::default();
        registry.register(
            "http_refused",
            "Incoming requests refused, by reason",
            refused.clone(),
        );
        let unknown_events = Counter::default();
        registry.register(
            "unknown_events",
            "Platform events the bot could not read",
            unknown_events.clone(),
        );
        let ack_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "ack_duration_seconds",
            "Time to acknowledge a platform request",
            ack_seconds.clone(),
        );
        let command_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "command_duration_seconds",
            "Time to handle a command after its acknowledgement",
            command_seconds.clone(),
        );
        let chat_errors = Counter::default();
        registry.register(
            "chat_errors",
            "Failures talking to chat",
            chat_errors.clone(),
        );
        let flow_errors = Counter::default();
        registry.register(
            "flow_errors",
            "Failures handling an event (retried from the inbox)",
            flow_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            approvals,
            jobs_queued,
            expired,
            duplicates,
            refused,
            unknown_events,
            ack_seconds,
            command_seconds,
            chat_errors,
            flow_errors,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub(crate) fn decision(&self, decision: &str) {
        self.requests.get_or_create(&label(decision)).inc();
    }

    pub(crate) fn approval(&self, kind: &str) {
        self.approvals.get_or_create(&label(kind)).inc();
    }

    pub(crate) fn queued(&self) {
        self.jobs_queued.inc();
    }

    pub(crate) fn expired(&self) {
        self.expired.inc();
    }

    pub(crate) fn duplicate_event(&self, kind: &str) {
        self.duplicates.get_or_create(&label(kind)).inc();
    }

    /// Counts an incoming request refused for `reason`.
    pub fn refused(&self, reason: &str) {
        self.refused.get_or_create(&label(reason)).inc();
    }

    /// Counts an event the bot could not read.
    pub fn unknown_event(&self) {
        self.unknown_events.inc();
    }

    /// Records an acknowledgement's latency.
    pub fn acked(&self, took: Duration) {
        self.ack_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn command_handled(&self, took: Duration) {
        self.command_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn chat_error(&self) {
        self.chat_errors.inc();
    }

    /// Counts a failure outside the flow (an event that could not be stored).
    pub fn flow_error_external(&self) {
        self.flow_errors.inc();
    }

    pub(crate) fn flow_error(&self) {
        self.flow_errors.inc();
    }
}
