"""Reading a relevo server's `/metrics` the way Prometheus does.

Counters only grow (and live as long as the process), so what one period did is the difference
of two scrapes; latency percentiles are estimated from the histogram's buckets like
Prometheus' `histogram_quantile`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relevo.errors import UnavailableError

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape, keyed by sample name and labels."""

    samples: Mapping[tuple[str, Labels], float]

    def __sub__(self, earlier: Scrape) -> Scrape:
        return Scrape({k: v - earlier.samples.get(k, 0.0) for k, v in self.samples.items()})

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def where(self, name: str, **labels: str) -> dict[Labels, float]:
        wanted = set(labels.items())
        return {ls: v for (n, ls), v in self.samples.items() if n == name and wanted <= ls}

    def quantile(self, q: float, histogram: str, **labels: str) -> float | None:
        """The q-quantile of a histogram, interpolated within its bucket; None when empty."""
        buckets: dict[float, float] = {}
        for ls, count in self.where(f"{histogram}_bucket", **labels).items():
            bound = float(dict(ls)["le"])
            buckets[bound] = buckets.get(bound, 0.0) + count
        return bucket_quantile(q, buckets)


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' estimate: `buckets` maps upper bounds (+Inf included) to cumulative counts."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: that bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def scrape(url: str, timeout_s: float = 10.0) -> Scrape:
    """One scrape of `<url>/metrics`."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot read {url}/metrics: {exc}") from exc
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return Scrape(samples)
