"""infra/ checked where no Docker engine or cluster runs: the compose file validates and points
every processor at real services, Prometheus accepts its config and rules (and the alerts fire on
the series they should), the Grafana dashboard is well-formed with the panels an operator needs,
and the Kubernetes manifests reference images, ports, commands and FLYWHEEL_* variables that exist.

Whether the dashboard's and rules' metric names are really exported is tests/test_infra_live.py.
"""
import ast
import dataclasses
import functools
import importlib
import json
import re
import shutil
import subprocess
import tomllib
import types
import typing
from pathlib import Path

import pytest
import yaml
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog

from flywheel.cli import build_parser
from flywheel.config import ALIASES, env_names, load_config
from flywheel.sections import SECTIONS
from flywheel.web.settings import ConsoleSettings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
PROM = INFRA / "prometheus"
RULES = PROM / "rules" / "flywheel.rules.yml"
DASHBOARD = INFRA / "grafana" / "dashboards" / "flywheel.json"
K8S = INFRA / "k8s"
PROCESSORS = {"worker", "joiner", "monitor", "trigger", "retrainer", "rollout", "console"}
OPTIONAL_K8S = {"secret.example.yaml", "podmonitor.yaml"}   # documented, applied by hand


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (infra/install-test-tools.sh installs it)")
    return path


def run(*cmd, cwd=INFRA) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


# ---- compose ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as docker-compose resolves it (anchors merged, paths absolute)."""
    need("docker-compose")
    check = run("docker-compose", "-f", str(COMPOSE), "config", "-q")
    assert check.returncode == 0, check.stderr
    # The full render catches what -q lets through (it formats every duration and port).
    rendered = run("docker-compose", "-f", str(COMPOSE), "config")
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)


@pytest.fixture(scope="module")
def compose_file() -> dict:
    """The compose file as YAML reads it (merge keys resolved), for checks that need no docker-compose."""
    return yaml.safe_load(COMPOSE.read_text())


def flywheel_services(compose: dict) -> dict[str, dict]:
    image = compose["services"]["migrate"]["image"]
    return {name: s for name, s in compose["services"].items() if s.get("image") == image}


def test_compose_runs_every_processor_from_the_dockerfile_image(compose):
    services = flywheel_services(compose)
    build = compose["services"]["migrate"]["build"]
    assert Path(build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == INFRA / "Dockerfile"
    assert set(services) - {"migrate"} == PROCESSORS
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert compose["services"]["migrate"]["image"] == f"flywheel:{version}"


def test_compose_start_order_is_infrastructure_healthy_then_migrate_then_processors(compose):
    services = compose["services"]
    migrate_deps = services["migrate"]["depends_on"]
    assert set(migrate_deps) == {"kafka", "schema-registry", "cassandra"}
    for dep, rule in migrate_deps.items():
        assert rule["condition"] == "service_healthy"
        assert services[dep]["healthcheck"]["test"], f"{dep} has no health check"
    for name in PROCESSORS:
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["migrate"]["restart"] == "no"


def test_compose_points_flywheel_at_the_real_services_not_embedded_ones(compose):
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    internal = next(x for x in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",") if x.startswith("PLAINTEXT://"))
    registry_port = services["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    for name, service in flywheel_services(compose).items():
        env = service["environment"]
        assert env["FLYWHEEL_BOOTSTRAP"] == internal.removeprefix("PLAINTEXT://"), name
        assert env["FLYWHEEL_SCHEMA_REGISTRY_URL"] == f"http://schema-registry:{registry_port}", name
        assert env["FLYWHEEL_STORE_BACKEND"] == "cassandra", name
        assert env["FLYWHEEL_CASSANDRA_HOSTS"] == "cassandra", name
        assert env["FLYWHEEL_STORE_CASSANDRA_LOCAL_DC"] == services["cassandra"]["environment"]["CASSANDRA_DC"], name
        assert any(v.startswith("flywheel-data:/data") for v in service["volumes"]), name
        assert env["FLYWHEEL_DATA_DIR"] == "/data"


def test_compose_bind_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"


def test_compose_commands_are_flywheel_commands(compose):
    invocations = []
    for name, service in flywheel_services(compose).items():
        command = service["command"]
        if service.get("entrypoint") == ["sh", "-c"]:
            for step in command[0].split("&&"):
                words = step.split()
                assert words[0] == "flywheel", step
                invocations.append((words[1:], f"compose {name}"))
        else:
            invocations.append((command, f"compose {name}"))
    assert_cli_accepts(invocations)


def test_prometheus_scrapes_every_compose_processor(compose):
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "flywheel")
    names = {n for sd in job["dns_sd_configs"] for n in sd["names"]}
    ports = {sd["port"] for sd in job["dns_sd_configs"]}
    assert names == set(flywheel_services(compose)) - {"migrate"}
    assert ports == {int(compose["services"]["worker"]["environment"]["FLYWHEEL_METRICS_PORT"])}
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith(f"{PROM / 'prometheus.yml'}:/etc/prometheus/prometheus.yml") for m in mounts)
    assert any(m.startswith(f"{PROM / 'rules'}:/etc/prometheus/rules") for m in mounts)


# ---- Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_copies_every_package_and_runs_the_console_script():
    text = (INFRA / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {src for line in text.splitlines() if line.startswith("COPY ")
              for src in line.split()[1:-1]}
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    layers = ast.literal_eval(re.search(r"^LAYERS = (.*)$", (ROOT / "setup.py").read_text(), re.M).group(1))
    packages = {"flywheel", "setup.py", *layers}           # setup.py installs each layer as flywheel.<layer>
    assert packages <= copied, f"packages not copied: {packages - copied}"
    assert "pyproject.toml" in copied and project["project"]["readme"] in copied
    assert 'ENTRYPOINT ["flywheel"]' in text and "flywheel" in project["project"]["scripts"]
    # The processors need the extras; the bare dependencies are only the client.
    assert all(f"'{extra}'" in text for extra in ("serve", "train", "cassandra"))
    assert re.search(r"^EXPOSE 9400$", text, re.M) and "FLYWHEEL_METRICS_PORT=9400" in text


# ---- Prometheus ------------------------------------------------------------------------------

def test_promtool_accepts_the_config_with_its_rules(tmp_path):
    promtool = need("promtool")
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    # Point the rule glob at the repository so `check config` also loads and checks the rules.
    config["rule_files"] = [str(PROM / "rules" / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout + result.stderr


def test_promtool_checks_rules_and_their_unit_tests_pass():
    promtool = need("promtool")
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    tests = run(promtool, "test", "rules", str(PROM / "tests" / "flywheel.rules.test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_rules_cover_what_an_operator_must_hear_about():
    alerts = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"FlywheelConsumerLagGrowing", "FlywheelDeadLetterRate", "FlywheelNoPredictions",
            "FlywheelAccuracyBelowThreshold", "FlywheelDriftFlagged", "FlywheelRetrainFailed"} <= set(alerts)
    cases = yaml.safe_load((PROM / "tests" / "flywheel.rules.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in cases
              for t in case["alert_rule_test"]}
    untested = set(alerts) - tested - {"FlywheelDriftFlagged", "FlywheelLatencyHigh"}  # single-series thresholds
    assert not untested, f"alerts without a promtool unit test: {sorted(untested)}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name


# ---- Grafana ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_has_the_panels_an_operator_needs(dashboard):
    titles = [p["title"].lower() for p in panels(dashboard)]
    for words in (["throughput"], ["lag"], ["latency", "percentiles"], ["dead letters", "reason"],
                  ["accuracy", "model version"], ["drift", "feature"]):
        assert any(all(w in t for w in words) for t in titles), f"no panel titled with {words}: {titles}"
    latency = next(p for p in panels(dashboard) if "end-to-end latency" in p["title"].lower())
    quantiles = {re.search(r"histogram_quantile\(([\d.]+)", t["expr"]).group(1) for t in latency["targets"]}
    assert quantiles == {"0.5", "0.95", "0.99"}


def test_dashboard_marks_model_events_as_annotations(dashboard):
    annotations = [a for a in dashboard["annotations"]["list"] if "expr" in a]
    events = next(a for a in annotations if "flywheel_model_events_total" in a["expr"])
    assert events["enable"] and "{{kind}}" in events["titleFormat"]
    assert set(events["tagKeys"].split(",")) == {"model", "kind"}


def test_dashboard_layout_and_datasource_are_consistent(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    provisioned = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == uid and variable["query"] == provisioned["datasources"][0]["type"]
    for p in panels(dashboard):
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    provider = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/flywheel.yml").read_text())
    compose_text = COMPOSE.read_text()
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}" in compose_text


def test_every_dashboard_query_is_valid_promql(dashboard, tmp_path):
    """promtool parses PromQL when it checks rules, so each query becomes a recording rule."""
    promtool = need("promtool")
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables as Grafana would, and wrap label_values() queries."""
    if m := re.fullmatch(r"label_values\((\w+), *(\w+)\)", expr):
        return f"count by ({m.group(2)}) ({m.group(1)})"
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$model", ".*").replace("$statistic", ".*"))


# ---- Kubernetes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict]]:
    """Every manifest under infra/k8s, by file, parsed."""
    found = {str(p.relative_to(K8S)): [d for d in yaml.safe_load_all(p.read_text()) if d]
             for p in sorted(K8S.rglob("*.yaml"))}
    assert found
    return found


def objects(manifests, kind: str) -> list[dict]:
    return [d for docs in manifests.values() for d in docs if d.get("kind") == kind]


def pod_specs(manifests) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"])
            for kind in ("Deployment", "Job") for d in objects(manifests, kind)]


def test_kustomizations_list_every_manifest_and_only_existing_ones(manifests):
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec["resources"]:
            target = (kustomization.parent / resource).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {resource} missing"
            if target.is_file():
                listed.add(str(target.relative_to(K8S)))
        assert [i["name"] for i in spec.get("images", [])] in ([], ["flywheel"])
    unlisted = {m for m in manifests if not m.endswith("kustomization.yaml")} - listed - OPTIONAL_K8S
    assert not unlisted, f"manifests in no kustomization: {sorted(unlisted)}"


@pytest.mark.parametrize("directory, kinds", [
    ("", {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "PodDisruptionBudget", "ScaledObject",
          "Service"}),
    ("migrate", {"Namespace", "ConfigMap", "Job"}),
])
def test_kubectl_kustomize_renders_each_application(directory, kinds, compose_file):
    kubectl = need("kubectl")
    result = run(kubectl, "kustomize", str(K8S / directory))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in docs} == kinds
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "flywheel", d["metadata"]["name"]
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {compose_file["services"]["migrate"]["image"]}


def test_a_deployment_per_processor_on_the_image_with_its_metrics_port(manifests, compose_file):
    deployments = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
                   for d in objects(manifests, "Deployment")}
    assert set(deployments) == PROCESSORS
    config = configmap(manifests)
    port = int(config["FLYWHEEL_METRICS_PORT"])
    invocations = []
    for name, d in deployments.items():
        pod = d["spec"]["template"]
        assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), name
        (container,) = pod["spec"]["containers"]
        assert container["image"] == compose_file["services"]["migrate"]["image"], name
        assert container["ports"][0] == {"name": "metrics", "containerPort": port}, name
        served = [{"name": "http", "containerPort": ConsoleSettings().port}] if name == "console" else []
        assert container["ports"][1:] == served, name
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port), name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, name
        assert container["args"][0] == name
        invocations.append((container["args"], f"k8s {name}"))
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims <= {o["metadata"]["name"] for o in objects(manifests, "PersistentVolumeClaim")}
    (job,) = objects(manifests, "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    invocations += [(step.split()[1:], "k8s migrate job") for step in script.split("&&")]
    assert_cli_accepts(invocations)


def test_configuration_and_secrets_are_by_reference_and_exist(manifests):
    configmaps = {o["metadata"]["name"] for o in objects(manifests, "ConfigMap")}
    secret_keys = {(s["metadata"]["name"], k) for s in objects(manifests, "Secret") for k in s["stringData"]}
    for name, spec in pod_specs(manifests):
        for container in spec["containers"]:
            refs = {e["configMapRef"]["name"] for e in container["envFrom"]}
            assert refs <= configmaps, name
            for var in container["env"]:
                if "fieldRef" in var["valueFrom"]:               # the pod's own name
                    continue
                ref = var["valueFrom"]["secretKeyRef"]          # no literal values in pod specs
                assert (ref["name"], ref["key"]) in secret_keys, f"{name}: {ref}"


def test_every_flywheel_variable_given_is_one_flywheel_reads(manifests, compose_file):
    accepted = accepted_env_names()
    given = {"k8s ConfigMap": set(configmap(manifests))}
    for name, spec in pod_specs(manifests):
        given[f"k8s {name}"] = {v["name"] for c in spec["containers"] for v in c["env"]}
    for name, service in flywheel_services(compose_file).items():
        given[f"compose {name}"] = set(service["environment"])
    unknown = {where: sorted(names - accepted) for where, names in given.items() if names - accepted}
    assert not unknown, f"FLYWHEEL_* names Flywheel does not read: {unknown}"


def test_configured_values_parse_to_the_types_flywheel_expects(manifests, compose_file):
    envs = [configmap(manifests), flywheel_services(compose_file)["worker"]["environment"]]
    for env in envs:
        config = load_config(None, env={k: str(v) for k, v in env.items()})
        assert str(config.data_dir) == env["FLYWHEEL_DATA_DIR"]
        assert config.metrics_port == int(env["FLYWHEEL_METRICS_PORT"])
        assert config.metrics_addr == "0.0.0.0"     # set explicitly: the default is loopback
        for section, cls in settings_sections().items():
            settings = config.section(cls, section)
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                expected = typing.get_origin(hints[f.name]) or hints[f.name]
                value = getattr(settings, f.name)
                names = {f"FLYWHEEL_{section}_{f.name}".upper()} | \
                    {a for a, t in ALIASES.items() if t == (section, f.name)}
                if expected in (types.UnionType, typing.Union) or not names & set(env):
                    continue    # only what the environment set, and only plain types
                assert isinstance(value, (int, float) if expected is float else expected), \
                    f"[{section}] {f.name} = {value!r} from the environment is not a {expected.__name__}"


def test_worker_autoscaling_is_on_consumer_lag_capped_at_the_partition_count(manifests):
    (scaled,) = objects(manifests, "ScaledObject")
    config = configmap(manifests)
    target = scaled["spec"]["scaleTargetRef"]["name"]
    (worker,) = [d for d in objects(manifests, "Deployment") if d["metadata"]["name"] == target]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
    assert "replicas" not in worker["spec"], "KEDA owns the worker's replicas"
    assert scaled["spec"]["maxReplicaCount"] == int(config["FLYWHEEL_KAFKA_PARTITIONS"])
    loaded = load_config(None, env=config)
    group = loaded.section(settings_sections()["worker"], "worker").group_id
    catalog = TopicCatalog(loaded.kafka)
    triggers = scaled["spec"]["triggers"]
    assert triggers and {t["type"] for t in triggers} == {"kafka"}
    for t in triggers:
        assert t["metadata"]["bootstrapServers"] == config["FLYWHEEL_BOOTSTRAP"]
        assert t["metadata"]["consumerGroup"] == group
        assert catalog.record_name(t["metadata"]["topic"]) == "InferenceRequest", t["metadata"]["topic"]
        assert t["metadata"]["allowIdleConsumers"] == "false"
        assert int(t["metadata"]["lagThreshold"]) > 0


def test_disruption_budgets_select_existing_deployments(manifests):
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in objects(manifests, "Deployment")]
    budgets = objects(manifests, "PodDisruptionBudget")
    assert budgets
    for pdb in budgets:
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= pod.items() for pod in labels), pdb["metadata"]["name"]
        assert pdb["spec"]["maxUnavailable"] == 1


# ---- helpers: what Flywheel itself accepts ---------------------------------------------------

def configmap(manifests) -> dict[str, str]:
    (config,) = [c for c in objects(manifests, "ConfigMap") if c["metadata"]["name"] == "flywheel-config"]
    return config["data"]


@functools.cache
def cli_parser():
    return build_parser()


def cli_problem(argv: list[str], where: str) -> str | None:
    """Why the CLI would refuse `flywheel ARGV`, or None if it accepts it."""
    parser = cli_parser()
    commands = parser._subparsers._group_actions[0].choices
    if argv[0] not in commands:
        return f"{where}: `flywheel {argv[0]}` is not a command"
    try:
        parser.parse_args(argv)
    except SystemExit:
        return f"{where}: `flywheel {' '.join(argv)}` is rejected by the CLI"
    return None


def assert_cli_accepts(invocations: list[tuple[list[str], str]]) -> None:
    problems = [p for argv, where in invocations if (p := cli_problem(argv, where))]
    assert not problems, "\n".join(problems)


@functools.cache
def settings_sections() -> dict[str, type]:
    """Every `config.section(Cls, "name")` in our packages: the sections FLYWHEEL_<NAME>_<FIELD> fills."""
    found = {"kafka": KafkaSettings}
    for package in ("flywheel", "processors", "feature_store", "streams"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "section" and len(node.args) >= 2
                        and isinstance(node.args[0], ast.Name) and isinstance(node.args[1], ast.Constant)):
                    found[node.args[1].value] = _resolve(node.args[0].id, tree, path)
    return found


def _resolve(name: str, tree: ast.Module, path: Path) -> type:
    """The class `name` refers to in that file: imported (at top or inside a function) or defined there."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and any(a.name == name for a in node.names):
            return getattr(importlib.import_module(node.module), name)
    return getattr(importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts)), name)


def accepted_env_names() -> set[str]:
    found = env_names()
    assert {"FLYWHEEL_DATA_DIR", "FLYWHEEL_METRICS_PORT", "FLYWHEEL_STORE_CASSANDRA_LOCAL_DC"} <= found
    return found


def test_every_section_a_process_builds_is_checked_up_front():
    assert {name: SECTIONS.get(name) for name in settings_sections()} == settings_sections()
