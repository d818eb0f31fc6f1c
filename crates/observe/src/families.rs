//! Metric families built from values read at scrape time (the broker's snapshot), rather than
//! kept in live counters.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// The families of one scrape, built one sample at a time.
#[derive(Default)]
pub struct Families {
    families: Vec<MetricFamily>,
}

impl Families {
    /// Starts a gauge family; its samples follow with [`Families::sample`].
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Self {
        self.start(name, help, MetricType::GAUGE)
    }

    /// Starts a counter family (`name` ends in `_total`).
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Self {
        debug_assert!(name.ends_with("_total"), "counter {name} without _total");
        self.start(name, help, MetricType::COUNTER)
    }

    fn start(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Self {
        debug_assert!(name.starts_with("ferry_"), "metric {name} outside ferry_");
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        self.families.push(family);
        self
    }

    /// A sample of the family started last.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let family = self.families.last_mut().expect("a family was started");
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*name).to_owned());
                    pair.set_value((*value).to_owned());
                    pair
                })
                .collect(),
        );
        match family.get_field_type() {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        family.mut_metric().push(metric);
        self
    }

    /// The families built; one without samples is left out (the text format would show a
    /// TYPE line with nothing under it).
    pub fn finish(self) -> Vec<MetricFamily> {
        self.families
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

/// A Kafka error code as Kafka names it (`UNKNOWN_TOPIC_OR_PARTITION`), for a label.
pub fn error_name(code: i16) -> String {
    use kafka_protocol::error::ResponseError;
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("UNKNOWN_CODE_{code}"),
        Some(error) => upper_snake(&format!("{error:?}")),
    }
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        for (code, name) in [
            (3, "UNKNOWN_TOPIC_OR_PARTITION"),
            (45, "OUT_OF_ORDER_SEQUENCE_NUMBER"),
            (47, "INVALID_PRODUCER_EPOCH"),
            (2, "CORRUPT_MESSAGE"),
            (-1, "UNKNOWN_SERVER_ERROR"),
            (9999, "UNKNOWN_CODE_9999"),
        ] {
            assert_eq!(error_name(code), name, "code {code}");
        }
    }

    #[test]
    fn families_without_samples_are_left_out() {
        let mut families = Families::default();
        families.gauge("ferry_empty", "Nothing.");
        families
            .counter("ferry_things_total", "Things.")
            .sample(&[("kind", "a")], 2.0)
            .sample(&[("kind", "b")], 3.0);
        let families = families.finish();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "ferry_things_total");
        assert_eq!(families[0].get_metric().len(), 2);
        assert_eq!(families[0].get_metric()[1].get_counter().get_value(), 3.0);
    }
}
