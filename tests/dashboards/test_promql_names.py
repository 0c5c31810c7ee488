"""The PromQL name extractor the dashboard tests rely on."""

from __future__ import annotations

import pytest
from generator.promql import (  # dashboards/generator; conftest puts it on sys.path
    PromQLSyntaxError,
    legend_labels,
    usage,
    variable_usage,
)


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        ("up", {"up"}, set()),
        ('sum by (severity) (rate(vedette_alerts_total{job=~"$job"}[$__rate_interval]))',
         {"vedette_alerts_total"}, {"severity", "job"}),
        ("sum(rate(a_total[5m])) without (mode, cpu)", {"a_total"}, {"mode", "cpu"}),
        ('histogram_quantile(0.99, sum by (le) (rate(x_bucket{i="a,b}"}[1m:10s])))',
         {"x_bucket"}, {"le", "i"}),
        ("a / on (instance) group_left (version) b", {"a", "b"}, {"instance", "version"}),
        ("a * ignoring (mode) group_right b", {"a", "b"}, {"mode"}),
        ("count(up == 0) or vector(0)", {"up"}, set()),
        ("a offset 1h30m and b @ 1609746000 unless c @ start()", {"a", "b", "c"}, set()),
        ("changes(vedette_start_time_seconds[1h]) > bool 0", {"vedette_start_time_seconds"},
         set()),
        ('{__name__="vedette_build_info", version!=""}', {"vedette_build_info"}, {"version"}),
        ('label_replace(up, "host", "$1", "instance", "(.*):.*")', {"up"}, set()),
        ('count_values("v", vedette_build_info)', {"vedette_build_info"}, set()),
        ("topk(10, sum by (rule) (increase(m:recorded:rate5m[${__range}])))",
         {"m:recorded:rate5m"}, {"rule"}),
        ("time() - max(x) > 1e3 and y < 0x1F or z != -Inf", {"x", "y", "z"}, set()),
        ('a{l=~"$instance"} or on () sum(b) * 0', {"a", "b"}, {"l"}),
        ("SUM BY (a) (m) OR m2", {"m", "m2"}, {"a"}),
    ],
)
def test_usage(expr: str, metrics: set[str], labels: set[str]) -> None:
    found = usage(expr)
    assert found.metrics == metrics
    assert found.labels == labels


@pytest.mark.parametrize(
    "expr",
    ["sum by severity (x)", "a{job=}", "a{job~\"x\"}", "rate(x[5m]", "a]", "a{b=\"c\"",
     "sum by (a", "a # comment", "a{b=5}", '{__name__=~"vedette_.*"}'],
)
def test_bad_expressions_fail_loudly(expr: str) -> None:
    with pytest.raises(PromQLSyntaxError):
        usage(expr)


def test_variable_queries() -> None:
    u = variable_usage('label_values(vedette_build_info{job=~"$job"}, instance)')
    assert u.metrics == {"vedette_build_info"}
    assert u.labels == {"job", "instance"}
    assert variable_usage("label_values(job)").metrics == set()
    assert variable_usage("query_result(max(up))").metrics == {"up"}


def test_legend_labels() -> None:
    assert legend_labels("{{instance}} {{ sink }} failed") == {"instance", "sink"}
    assert legend_labels("__auto") == set()
