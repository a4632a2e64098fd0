"""The Helm chart: `helm lint` and `helm template` pass, and every rendered manifest is valid
against the Kubernetes JSON schemas (kubernetes-validate ships them: no network needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_env

CHART = Path(__file__).resolve().parent.parent / "helm" / "mamori"
K8S_VERSION = "1.30.0"

VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "production": [
        "--set", r"kafka.bootstrap=kafka-0.kafka:9092\,kafka-1.kafka:9092",
        "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.saslMechanism=SCRAM-SHA-512",
        "--set", "kafka.saslUsername=mamori", "--set", "kafka.saslPasswordSecret.name=kafka-creds",
        "--set", "postgresql.urlSecret.name=mamori-db", "--set", "secrets.existingSecret=mamori",
        "--set", "secrets.apiKeysKey=api-keys", "--set", "ports.smpp.enabled=true",
        "--set", "ports.smpp.upstream=smsc:2775", "--set", "persistence.enabled=true",
        "--set", "autoscaling.enabled=false", "--set", "replicaCount=3",
        "--set-string", "config.extraEnv.MAMORI_PIPELINE__DEADLINE=4",
        "--set-string", "config.scoresToml=[weights]",
    ],
}


@pytest.fixture(scope="module")
def helm() -> str:
    return service_env("MAMORI_TEST_HELM")


def run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, extra: list[str]) -> list[dict[str, Any]]:
    out = run(helm, "template", "mamori", str(CHART), "--namespace", "mail",
              "--kube-version", K8S_VERSION, *extra)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_lint(helm: str) -> None:
    for name, extra in VARIANTS.items():
        out = run(helm, "lint", "--strict", str(CHART), *extra)
        assert out.returncode == 0, f"{name}: {out.stdout}{out.stderr}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_match_kubernetes_schemas(helm: str, variant: str) -> None:
    import kubernetes_validate

    docs = render(helm, VARIANTS[variant])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceAccount"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment")


def test_deployment_contract(helm: str) -> None:
    docs = render(helm, ["--set", "ports.smpp.enabled=true", "--set", "kafka.bootstrap=k:9092",
                         "--set", "secrets.existingSecret=s"])
    pod = _deployment(docs)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert [p["name"] for p in c["ports"]] == ["smtp", "milter", "smpp", "http"]
    svc = next(d for d in docs if d["kind"] == "Service")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["smtp", "milter", "smpp", "http", "metrics"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["lifecycle"]["preStop"]["exec"]["command"][-1] == "sleep 20"
    assert pod["terminationGracePeriodSeconds"] > 20
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["MAMORI_KAFKA__BOOTSTRAP"]["value"] == "k:9092"
    assert env["MAMORI_SMPP__LISTEN"]["value"] == "0.0.0.0:2775"
    assert env["MAMORI_HASH_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "hash-key"}
    assert env["MAMORI_RETENTION__VERDICTS_DAYS"]["value"] == "180"
    assert env["MAMORI_RETENTION__QUARANTINE_DAYS"]["value"] == "7"
    # every MAMORI_ variable the chart sets is a real setting
    from gateway.config import describe_settings

    known = {row[0] for row in describe_settings()}
    assert {n for n in env if n.startswith("MAMORI_")} <= known


def test_values_schema_rejects_bad_values(helm: str) -> None:
    out = run(helm, "template", "mamori", str(CHART), "--set", "ports.smtp.port=70000")
    assert out.returncode != 0 and "values don't meet the specifications" in out.stderr
    out = run(helm, "template", "mamori", str(CHART), "--set", "kafka.acks=2")
    assert out.returncode != 0


def test_values_schema_is_json_schema() -> None:
    from jsonschema import Draft7Validator

    schema = json.loads((CHART / "values.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_schema_validation_catches_a_bad_manifest(helm: str) -> None:
    import kubernetes_validate

    dep = _deployment(render(helm, []))
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "smtp"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = _deployment(render(helm, []))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
