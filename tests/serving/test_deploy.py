"""The Kubernetes manifests under deploy/: valid against the Kubernetes schemas (offline,
strict), CRDs with their required fields, probes and resources as documented, generated
files up to date."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.config import load_config, parse_config, resolve
from visionmon.cli import parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent
MANIFESTS = ("sidecar.yaml", "daemon.yaml", "bridge.yaml", "servicemonitor.yaml",
             "prometheusrule.yaml")


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"visionmon_deploy_{name}",
                                                  DEPLOY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def all_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(name, d) for name in MANIFESTS for d in docs(name)]


def one(name: str, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs(name) if d["kind"] == kind]
    return doc


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
            if c["name"] == name]
    return c


CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
                       "properties": {
                           "apiVersion": {"const": "monitoring.coreos.com/v1"},
                           "spec": {"type": "object", "required": ["selector", "endpoints"],
                                    "properties": {"endpoints": {
                                        "type": "array", "minItems": 1,
                                        "items": {"type": "object", "required": ["port"]}}}}}},
    "PrometheusRule": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
                       "properties": {
                           "apiVersion": {"const": "monitoring.coreos.com/v1"},
                           "spec": {"type": "object", "required": ["groups"], "properties": {
                               "groups": {"type": "array", "minItems": 1, "items": {
                                   "type": "object", "required": ["name", "rules"],
                                   "properties": {"rules": {
                                       "type": "array", "minItems": 1, "items": {
                                           "type": "object", "required": ["expr"],
                                           "oneOf": [{"required": ["record"]},
                                                     {"required": ["alert"]}]}}}}}}}}},
    "InferenceService": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
                         "properties": {
                             "apiVersion": {"const": "serving.kserve.io/v1beta1"},
                             "spec": {"type": "object", "required": ["predictor"],
                                      "properties": {"predictor": {
                                          "type": "object", "required": ["logger"],
                                          "properties": {"logger": {
                                              "type": "object", "required": ["url"],
                                              "properties": {"mode": {
                                                  "enum": ["all", "request",
                                                           "response"]}}}}}}}}},
}


@pytest.mark.parametrize(("name", "doc"), all_docs(),
                         ids=[f"{n}:{d['kind']}" for n, d in all_docs()])
def test_every_resource_is_valid(name: str, doc: dict[str, Any]) -> None:
    assert doc["metadata"]["name"]
    if doc["kind"] in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
        return
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kv.validate(doc, kv.latest_version(), strict=True)


@pytest.mark.parametrize("name", ["sidecar.yaml", "daemon.yaml"])
def test_daemon_memory_is_derived_from_the_config_it_runs(name: str) -> None:
    sizing = _module("sizing")
    config = yaml.safe_load(one(name, "ConfigMap")["data"]["visionmon.yaml"])
    loaded = resolve(parse_config(config, f"{name}:ConfigMap"))
    expected = sizing.quantity(sizing.memory_bound(loaded).request)
    resources = container(one(name, "Deployment"), "visionmon")["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == expected
    assert loaded.config.http.bind == "0.0.0.0", "probes and scrapes reach the pod IP"


def test_sizing_formula_on_the_example_config() -> None:
    sizing = _module("sizing")
    bound = sizing.memory_bound(load_config(ROOT / "examples" / "visionmon.yaml"))
    mib = 1024 * 1024
    assert (bound.base, bound.fetch, bound.reference) == (160 * mib, 128 * mib, 0)
    assert bound.joins == 3 * 200_000 * 300  # predictions, early labels, joined requests
    assert bound.windows == 9 * 4 * 3 * 60 * 12 * 8
    assert bound.request % (16 * mib) == 0 and bound.request >= bound.total * 1.2
    assert sizing.quantity(bound.request) == "560Mi"


@pytest.mark.parametrize(("mode", "device", "workers_counted"), [
    ("processes", "cpu", True), ("auto", "auto", True), ("auto", "cuda", True),
    ("auto", "cpu", False), ("threads", "cuda", False),
])
def test_sizing_counts_decode_processes_when_the_daemon_starts_them(
        mode: str, device: str, workers_counted: bool) -> None:
    from reference_model.decode_pool import DECODE_CHUNK

    sizing = _module("sizing")
    assert sizing.DECODE_CHUNK == DECODE_CHUNK
    config = yaml.safe_load((ROOT / "examples" / "visionmon.yaml").read_text())
    config["reference"] = {"model": config["models"][0]["name"], "path": "ref.pt2",
                           "sha256": "0" * 64, "input_size": 224, "batch_size": 64,
                           "decode_workers": 4, "decode_mode": mode, "device": device}
    bound = sizing.memory_bound(resolve(parse_config(config, "test.yaml"),
                                        str(ROOT / "examples" / "test.yaml")))
    mib = 1024 * 1024
    in_flight = 4 * 8 if workers_counted else 4  # decoded images held by decode threads
    queued = 256 * mib + (2 * 64 + in_flight) * 224 * 224 * 12 + 512 * mib
    workers = 4 * (64 * mib + 8 * 224 * 224 * 3)
    assert bound.reference == queued + (workers if workers_counted else 0)


@pytest.mark.parametrize(("device", "batch"), [("cpu", 4), ("auto", 64), ("cuda", 64)])
def test_sizing_takes_the_batch_that_auto_can_become_on_the_device(device: str,
                                                                   batch: int) -> None:
    sizing = _module("sizing")
    config = yaml.safe_load((ROOT / "examples" / "visionmon.yaml").read_text())
    config["reference"] = {"model": config["models"][0]["name"], "path": "ref.pt2",
                           "sha256": "0" * 64, "input_size": 224, "decode_workers": 1,
                           "decode_mode": "threads", "device": device}  # batch_size: auto
    bound = sizing.memory_bound(resolve(parse_config(config, "test.yaml"),
                                        str(ROOT / "examples" / "test.yaml")))
    mib = 1024 * 1024
    assert bound.reference == 256 * mib + (2 * batch + 1) * 224 * 224 * 12 + 512 * mib


def _probe(c: dict[str, Any], kind: str) -> tuple[str, str] | None:
    probe = c.get(kind)
    return None if probe is None else (probe["httpGet"]["path"], probe["httpGet"]["port"])


def test_probes_are_on_healthz_and_readyz_except_readiness_of_the_sidecar() -> None:
    daemon = container(one("daemon.yaml", "Deployment"), "visionmon")
    assert _probe(daemon, "livenessProbe") == ("/healthz", "metrics")
    assert _probe(daemon, "readinessProbe") == ("/readyz", "metrics")
    sidecar = container(one("sidecar.yaml", "Deployment"), "visionmon")
    assert _probe(sidecar, "livenessProbe") == ("/healthz", "metrics")
    assert _probe(sidecar, "readinessProbe") is None, "must not gate the model server's pod"
    bridge = container(one("bridge.yaml", "Deployment"), "bridge")
    assert _probe(bridge, "livenessProbe") == ("/healthz", "http")
    assert _probe(bridge, "readinessProbe") == ("/readyz", "http")
    for c in (daemon, sidecar, bridge):
        names = {p["name"] for p in c["ports"]}
        assert {_probe(c, "livenessProbe")[1]} <= names  # type: ignore[index]


def test_container_arguments_are_accepted_by_the_cli() -> None:
    cli = parser()
    for name in ("sidecar.yaml", "daemon.yaml"):
        args = cli.parse_args(container(one(name, "Deployment"), "visionmon")["args"])
        assert args.command == "run"
    args = cli.parse_args(container(one("bridge.yaml", "Deployment"), "bridge")["args"])
    assert args.command == "bridge"
    models = {m["name"] for m in yaml.safe_load(
        one("daemon.yaml", "ConfigMap")["data"]["visionmon.yaml"])["models"]}
    assert {target for _, target in args.model} <= models


def test_services_select_their_pods_and_the_servicemonitor_selects_the_services() -> None:
    monitor = one("servicemonitor.yaml", "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    port = monitor["spec"]["endpoints"][0]["port"]
    for name in ("sidecar.yaml", "daemon.yaml", "bridge.yaml"):
        service = one(name, "Service")
        labels = one(name, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert wanted.items() <= service["metadata"]["labels"].items(), name
        assert port in {p["name"] for p in service["spec"]["ports"]}, name


def test_the_prometheusrule_is_the_generated_one(tmp_path: Path) -> None:
    generator = _module("prometheus_rule")
    config = "examples/visionmon.yaml"
    fresh = generator.render(load_config(ROOT / config), config)
    assert fresh == (DEPLOY / "prometheusrule.yaml").read_text(), (
        "deploy/prometheusrule.yaml is stale: run .venv/bin/python deploy/prometheus_rule.py "
        "examples/visionmon.yaml deploy/prometheusrule.yaml")
