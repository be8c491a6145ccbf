//! foyer reports its own metrics through mixtrics' registry trait; this
//! bridge hands them to the `metrics` recorder, so they appear on the
//! admin port beside Ferry's under foyer's names (`foyer_*`). The disk
//! writes foyer drops because its flush buffers or queue are full are
//! also counted under Ferry's own name, since a dropped write is a future
//! miss that nothing else would explain.

use std::borrow::Cow;

use mixtrics::metrics::{
    BoxedCounter, BoxedCounterVec, BoxedGauge, BoxedGaugeVec, BoxedHistogram, BoxedHistogramVec,
    CounterOps, CounterVecOps, GaugeOps, GaugeVecOps, HistogramOps, HistogramVecOps, RegistryOps,
};

use crate::metrics as m;

#[derive(Debug)]
pub(super) struct MetricsBridge;

/// One metric family: its name and label names.
#[derive(Debug)]
struct Family {
    name: &'static str,
    labels: &'static [&'static str],
}

impl Family {
    fn new(name: Cow<'static, str>, labels: &'static [&'static str]) -> Self {
        // Families are registered once per cache; leaking the name gives the
        // `'static` the `metrics` macros want without a copy per update.
        let name: &'static str = match name {
            Cow::Borrowed(name) => name,
            Cow::Owned(name) => Box::leak(name.into_boxed_str()),
        };
        Family { name, labels }
    }

    fn labels(&self, values: &[Cow<'static, str>]) -> Vec<metrics::Label> {
        self.labels
            .iter()
            .zip(values)
            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
            .collect()
    }
}

#[derive(Debug)]
struct Counter {
    inner: metrics::Counter,
    /// Ferry's count of dropped disk writes, when this is one.
    dropped: Option<metrics::Counter>,
}

impl CounterOps for Counter {
    fn increase(&self, val: u64) {
        self.inner.increment(val);
        if let Some(dropped) = &self.dropped {
            dropped.increment(val);
        }
    }
}

impl CounterVecOps for Family {
    fn counter(&self, values: &[Cow<'static, str>]) -> BoxedCounter {
        let op = self
            .labels
            .iter()
            .zip(values)
            .find(|(k, _)| **k == "op")
            .map(|(_, v)| v.as_ref());
        // foyer counts a write it drops as a buffer or channel overflow.
        let reason = match op {
            Some("buffer_overflow") => Some("buffer_full"),
            Some("channel_overflow") => Some("queue_full"),
            _ => None,
        };
        Box::new(Counter {
            inner: metrics::counter!(self.name, self.labels(values)),
            dropped: reason.map(|r| metrics::counter!(m::CACHE_DISK_WRITES_DROPPED, "reason" => r)),
        })
    }
}

#[derive(Debug)]
struct Gauge(metrics::Gauge);

impl GaugeOps for Gauge {
    fn increase(&self, val: u64) {
        self.0.increment(val as f64);
    }

    fn decrease(&self, val: u64) {
        self.0.decrement(val as f64);
    }

    fn absolute(&self, val: u64) {
        self.0.set(val as f64);
    }
}

impl GaugeVecOps for Family {
    fn gauge(&self, values: &[Cow<'static, str>]) -> BoxedGauge {
        Box::new(Gauge(metrics::gauge!(self.name, self.labels(values))))
    }
}

#[derive(Debug)]
struct Histogram(metrics::Histogram);

impl HistogramOps for Histogram {
    fn record(&self, val: f64) {
        self.0.record(val);
    }
}

impl HistogramVecOps for Family {
    fn histogram(&self, values: &[Cow<'static, str>]) -> BoxedHistogram {
        Box::new(Histogram(metrics::histogram!(
            self.name,
            self.labels(values)
        )))
    }
}

impl RegistryOps for MetricsBridge {
    fn register_counter_vec(
        &self,
        name: Cow<'static, str>,
        desc: Cow<'static, str>,
        labels: &'static [&'static str],
    ) -> BoxedCounterVec {
        let family = Family::new(name, labels);
        metrics::describe_counter!(family.name, desc.into_owned());
        Box::new(family)
    }

    fn register_gauge_vec(
        &self,
        name: Cow<'static, str>,
        desc: Cow<'static, str>,
        labels: &'static [&'static str],
    ) -> BoxedGaugeVec {
        let family = Family::new(name, labels);
        metrics::describe_gauge!(family.name, desc.into_owned());
        Box::new(family)
    }

    fn register_histogram_vec(
        &self,
        name: Cow<'static, str>,
        desc: Cow<'static, str>,
        labels: &'static [&'static str],
    ) -> BoxedHistogramVec {
        let family = Family::new(name, labels);
        metrics::describe_histogram!(family.name, desc.into_owned());
        Box::new(family)
    }

    fn register_histogram_vec_with_buckets(
        &self,
        name: Cow<'static, str>,
        desc: Cow<'static, str>,
        labels: &'static [&'static str],
        _buckets: Vec<f64>,
    ) -> BoxedHistogramVec {
        // Buckets are the exporter's choice (`metrics` has no per-histogram
        // buckets).
        self.register_histogram_vec(name, desc, labels)
    }
}
