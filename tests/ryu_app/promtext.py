"""Prometheus text read back with prometheus_client's own parser: tests compare samples by
name, labels and value, never by how a line happens to be spelled (label order, ``7`` or
``7.0``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict:
    """Family name (counters without ``_total``) -> prometheus_client's Metric."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels as a frozenset of pairs) -> value, for every sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"sample {key} twice"
            found[key] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels``; None if there is none."""
    return samples(text).get((name, frozenset(labels.items())))
