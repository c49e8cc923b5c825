//! Prometheus metrics of one executor, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label with one value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `succeeded`, `failed`, `rolled_back`, `refused`, `unknown`.
    pub outcome: String,
}

/// A refusal's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A short reason code: `signature`, `expired`, `sql_hash`, `scope`, `replay`, ...
    pub reason: String,
}

/// What the reconciler did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `republished`, `requeued`, `unknown`, `reposted`.
    pub action: String,
}

/// The executor's metrics.
pub struct Metrics {
    /// The registry they are encoded from.
    pub registry: Registry,
    /// Jobs finished, by outcome.
    pub jobs: Family<OutcomeLabel, Counter>,
    /// Jobs refused, by reason.
    pub refusals: Family<ReasonLabel, Counter>,
    /// Time from delivery to posted summary, by outcome.
    pub job_seconds: Family<OutcomeLabel, Histogram>,
    /// Time the statement itself took on the target.
    pub statement_seconds: Histogram,
    /// Jobs being handled now.
    pub in_flight: Gauge,
    /// Preflight requests answered, by outcome (`answered`, `refused`, `failed`).
    pub preflights: Family<OutcomeLabel, Counter>,
    /// Reconciler actions.
    pub reconciler: Family<ActionLabel, Counter>,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("countersign_executor");
        let jobs = Family::<OutcomeLabel, Counter>::default();
        registry.register("jobs", "Jobs finished, by outcome", jobs.clone());
        let refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "refusals",
            "Jobs refused before running, by reason",
            refusals.clone(),
        );
        let job_seconds = Family::<OutcomeLabel, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "job_duration_seconds",
            "Time from delivery to the posted summary",
            job_seconds.clone(),
        );
        let statement_seconds = seconds_histogram();
        registry.register(
            "statement_duration_seconds",
            "Time the statement ran on the target",
            statement_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Jobs being handled now",
            in_flight.clone(),
        );
        let preflights = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "preflights",
            "Preflight requests, by outcome",
            preflights.clone(),
        );
        let reconciler = Family::<ActionLabel, Counter>::default();
        registry.register(
            "reconciler_actions",
            "Jobs the reconciler re-published, re-queued, declared unknown or re-posted",
            reconciler.clone(),
        );
        Metrics {
            registry,
            jobs,
            refusals,
            job_seconds,
            statement_seconds,
            in_flight,
            preflights,
            reconciler,
        }
    }

    /// Counts a finished job.
    pub fn job(&self, outcome: &str, seconds: f64) {
        let label = OutcomeLabel {
            outcome: outcome.to_string(),
        };
        self.jobs.get_or_create(&label).inc();
        self.job_seconds.get_or_create(&label).observe(seconds);
    }

    /// Counts a refusal.
    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a preflight request by outcome.
    pub fn preflight(&self, outcome: &str) {
        self.preflights
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts a reconciler action.
    pub fn reconciled(&self, action: &str, count: usize) {
        self.reconciler
            .get_or_create(&ActionLabel {
                action: action.to_string(),
            })
            .inc_by(count as u64);
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
