"""The metric names a PromQL expression reads, and the names a registry exports.

The alert rules and the Grafana dashboard are text that nothing compiles against
`Metrics`: a renamed metric leaves a panel empty and an alert silent without any error.
These two functions let a check compare the names the queries read with the names the
code exports. The parser is deliberately small, enough for the queries shipped here
(selectors, functions, aggregations, binary operators), not a PromQL implementation.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

__all__ = ["exported_sample_names", "metric_names"]

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> frozenset[str]:
    """The metric and recording-rule names that ``expr`` selects.

    Grafana variables (``$agency``, ``${__rate_interval}``) are removed first, so a
    dashboard query can be read as it is stored.
    """
    text = _GRAFANA_VARIABLES.sub("", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPINGS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return frozenset(names)


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def exported_sample_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every sample name ``registry`` can expose, whether or not a sample exists yet.

    Derived from each family's type (a histogram ``x`` exposes ``x_bucket``, ``x_count``
    and ``x_sum``), because a labelled metric has no sample before its first use.
    """
    return frozenset(
        family.name + suffix
        for family in registry.collect()
        for suffix in _SUFFIXES.get(family.type, ("",))
    )
