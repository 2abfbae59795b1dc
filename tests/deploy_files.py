"""Readers of the deployment files (docker/, k8s/) for the tests that check them: environment
files as compose reads them, Kubernetes objects, and the PromQL of the Grafana dashboard and
the alert rules with the metric names each query selects."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
K8S = ROOT / "k8s"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "pygw.json"
ALERTS = DOCKER / "prometheus" / "alerts.yml"

EXTERNAL_METRICS = frozenset({"up", "redis_up"})
"""Metrics the queries may use that pygw does not expose: Prometheus' own scrape status and the
Redis exporter's (docker/compose.yaml, profile monitoring)."""

_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as compose's ``env_file`` reads them (comments and blank lines
    skipped, the value taken literally to the end of the line); ValueError on anything else."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        env[match.group(1)] = match.group(2)
    return env


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of every manifest under k8s/, by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


@dataclass(frozen=True)
class Query:
    where: str
    """Which panel or alert the query belongs to (for messages)."""
    expr: str


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[Query]:
    return [
        Query(f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def template_metrics() -> list[str]:
    """Metrics the dashboard's variables read (``label_values(metric, label)``)."""
    names = []
    for variable in dashboard()["templating"]["list"]:
        names += re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", variable["definition"])
    return names


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values Prometheus accepts."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]
    """Label names the selector matches on."""


def selectors(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression (functions, aggregations, grouping labels,
    strings and ranges are not metrics)."""
    text = _GROUPING.sub(" ", _RANGE.sub("", _STRING.sub('""', expr)))
    found = []
    for match in _TOKEN.finditer(text):
        name, matchers, call = match.groups()
        if (call and not matchers) or name.lower() in _KEYWORDS:
            continue
        labels = frozenset(_MATCHER_LABEL.findall(matchers or ""))
        found.append(Selector(name, labels))
    return found
