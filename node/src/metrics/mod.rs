//! Prometheus metrics of a node (`serve --metrics ADDR`): counters and histograms the shell
//! records as requests, calls and group commits happen ([`ShellMetrics`]), gauges and
//! report counters gathered from the node at each scrape ([`scrape`]), served in Prometheus
//! text format with `GET /health` beside it ([`http`]).
//!
//! Each node has its own recorder (no process-wide one), so several nodes embedded in one
//! process keep their figures apart. Labels take values from small fixed sets (request
//! kinds, outcomes, member states) or from shards and members of the ring; never keys.

mod http;
mod scrape;
mod shell;

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub(crate) use http::{bind, serve};
pub(crate) use scrape::Scraper;
pub(crate) use shell::{peer_kind, CallTiming, ShellMetrics, Started};

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Group-commit batch size buckets (responses released by one fsync).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so memory
/// stays bounded when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

/// One recorder: the node's long-lived one, or a scrape's short-lived one for gauges.
#[derive(Clone)]
pub(crate) struct Registry {
    recorder: Arc<PrometheusRecorder>,
}

impl Registry {
    /// A recorder whose `_seconds` histograms use latency buckets.
    pub(crate) fn new() -> Registry {
        let builder = PrometheusBuilder::new();
        // Both calls fail only on an empty bucket list; the lists above are not.
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        Registry {
            recorder: Arc::new(builder.build_recorder()),
        }
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect();
        Key::from_parts(name, labels)
    }

    /// The counter `name` with these labels, with its help text.
    pub(crate) fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        self.recorder.describe_counter(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    /// The gauge `name` with these labels, with its help text.
    pub(crate) fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> ::metrics::Gauge {
        self.recorder.describe_gauge(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    /// The histogram `name` with these labels, with its help text.
    pub(crate) fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Histogram {
        self.recorder.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds).filter(|_| name.ends_with("_seconds")),
            SharedString::const_str(help),
        );
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    fn handle(&self) -> PrometheusHandle {
        self.recorder.handle()
    }
}

/// Folds histogram samples into buckets every few seconds, for as long as the node runs.
pub(crate) fn spawn_upkeep(registry: &Registry) -> tokio::task::JoinHandle<()> {
    let handle = registry.handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Group-commit figures, recorded by the committer.
#[derive(Clone)]
pub(crate) struct CommitMetrics {
    /// Time of each fsync.
    pub fsync: Histogram,
    /// Responses and pushes one fsync released.
    pub batch: Histogram,
}

impl CommitMetrics {
    pub(crate) fn new(registry: &Registry) -> Self {
        CommitMetrics {
            fsync: registry.histogram(
                "ringkv_store_fsync_duration_seconds",
                "Time of each group-commit fsync of the store.",
                &[],
            ),
            batch: registry.histogram(
                "ringkv_group_commit_batch_size",
                "Replica responses and repair pushes released by one group-commit fsync.",
                &[],
            ),
        }
    }
}
