"""Answered queries into Locust's stats in bulk.

Firing Locust's request event costs about 3 µs per call, a third of the budget per query at
100k queries/s. Answered queries are therefore merged into the stats as one `StatsEntry` per
batch and name, through `StatsEntry.extend`, the path Locust's master uses to merge its workers'
stats; the web UI, --csv, --html and distributed mode see them as usual. Failures (timeouts,
wrong RCODEs, errors) still fire the request event one by one, so they reach every listener and
the error report.
"""

from __future__ import annotations

from collections import Counter

from locust import stats as locust_stats


def add_answered(stats: locust_stats.RequestStats, method: str, name: str, times_ms: list[float],
                 now: float) -> None:
    """Count `times_ms` (one response time per answered query) as successful requests at `now`."""
    if not times_ms:
        return
    batch = locust_stats.StatsEntry(stats, name, method)
    batch.num_requests = len(times_ms)
    batch.total_response_time = sum(times_ms)
    batch.min_response_time = min(times_ms)
    batch.max_response_time = max(times_ms)
    batch.response_times = dict(Counter(map(locust_stats.bucket_response_time, times_ms)))
    batch.num_reqs_per_sec = {int(now): len(times_ms)}
    batch.start_time = batch.last_request_timestamp = now
    stats.entries[(name, method)].extend(batch)
    stats.total.extend(batch)
