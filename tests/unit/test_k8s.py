"""deploy/k8s, checked without a cluster: every manifest against Kubernetes' own JSON
schemas (kubernetes-validate ships them: no network), and held to the code it deploys:
each container gets only its process's settings, secrets only by reference, the broker
asks the API's real auth endpoints, names that refer to each other exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy_files import (
    DEPLOY,
    RABBITMQ_CONF,
    api_only_setting_names,
    api_setting_names,
    broker_auth_paths,
    rabbitmq_directives,
    worker_setting_names,
)

K8S = DEPLOY / "k8s"
# The oldest release the manifests are written for (pod-index label: 1.28); validated
# against a current one, strict (unknown fields are errors).
KUBERNETES_VERSION = "1.33"
NAMESPACE = "iot"
# What may carry a secret: credentials, keys, and the data stores' URLs (they may hold logins).
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY$|COOKIE|^(MONGODB|REDIS|AMQP)_URL$")


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


DOCUMENTS = [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load(path)]


def named(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name)


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] in kinds]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def container_env(container: dict[str, Any]) -> set[str]:
    """Every variable a container gets: its ConfigMaps' keys and its own `env` names."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        assert "configMapRef" in source, f"{container['name']}: whole Secrets hide what it gets"
        names |= set(named("ConfigMap", ref["name"])["data"])
    return names


def test_manifests_exist_for_api_worker_and_broker() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}
    assert {
        ("Deployment", "api"),
        ("Service", "api"),
        ("StatefulSet", "ingest"),
        ("StatefulSet", "rabbitmq"),
        ("Service", "rabbitmq"),
    } <= kinds


@pytest.mark.parametrize(
    "document",
    [doc for _, doc in DOCUMENTS],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in DOCUMENTS],
)
def test_manifest_valid_against_kubernetes_schema(document: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_validator_refuses_an_unknown_field() -> None:
    """The check above can fail: a misspelt field is refused, offline."""
    broken = yaml.safe_load(yaml.safe_dump(named("Deployment", "api")))
    broken["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_everything_in_the_platform_namespace() -> None:
    for _, document in DOCUMENTS:
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == NAMESPACE, document["metadata"]


def test_api_container_gets_only_api_settings() -> None:
    (api,) = containers(named("Deployment", "api"))
    assert api["command"] == ["python", "-m", "api"]
    unknown = container_env(api) - api_setting_names()
    assert not unknown, f"the API gets variables ApiSettings does not read: {sorted(unknown)}"
    # RabbitMQ asks the API over HTTP: the API must not wait for a dynsec plugin.
    assert named("ConfigMap", "iot-api")["data"]["BROKER_IDENTITIES"] == "http"


def test_worker_container_gets_only_worker_settings_and_no_api_secret() -> None:
    (worker,) = containers(named("StatefulSet", "ingest"))
    script = " ".join(worker["command"])
    assert "exec python -m ingest" in script
    exported = set(re.findall(r"\b([A-Z_]+)=", script)) - {"n"}
    names = (container_env(worker) - {"POD_INDEX"}) | exported
    assert {"MQTT_USERNAME", "INGEST_CLIENT_ID", "AMQP_URL", "INGEST_SOURCE"} <= names
    unknown = names - worker_setting_names()
    assert not unknown, f"a worker gets variables WorkerSettings does not read: {sorted(unknown)}"
    held = names & api_only_setting_names()
    assert not held, f"a worker holds API settings: {sorted(held)}"


def test_worker_identity_follows_its_ordinal_and_count_matches_the_api() -> None:
    """Pod ingest-0 is worker 1 (iot-ingest-1, client id ingest-1), as the API provisions."""
    workers = named("StatefulSet", "ingest")
    (worker,) = containers(workers)
    index = next(e for e in worker["env"] if e["name"] == "POD_INDEX")
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    script = " ".join(worker["command"])
    assert "n=$$((POD_INDEX + 1))" in script  # `$$`: not expanded by Kubernetes
    assert 'MQTT_USERNAME="iot-ingest-$n" INGEST_CLIENT_ID="ingest-$n"' in script
    assert "amqp://iot-ingest-$n:$MQTT_PASSWORD@rabbitmq:5672/" in script
    assert named("ConfigMap", "iot-api")["data"]["INGEST_WORKERS"] == str(
        workers["spec"]["replicas"]
    )


def test_secrets_only_by_reference() -> None:
    """No Secret is defined here, no secret-like value is written in clear."""
    assert not of_kind("Secret")
    for workload in of_kind("Deployment", "StatefulSet"):
        for container in containers(workload):
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert "valueFrom" in item or "$(" in item.get("value", ""), item
    for config in of_kind("ConfigMap"):
        for key in config["data"]:
            assert not SECRET_NAME.search(key), f"{key} in a ConfigMap"


def test_referenced_secret_keys_are_documented() -> None:
    """Every Secret key a container reads is one README.md tells the operator to create."""
    readme = (K8S / "README.md").read_text()
    for workload in of_kind("Deployment", "StatefulSet"):
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    block = readme.split(f"secret generic {ref['name']} ", 1)
                    assert len(block) == 2, f"Secret {ref['name']} not in README.md"
                    creating = block[1].split("kubectl", 1)[0]
                    assert f"{ref['key']}=" in creating, f"{ref['name']}/{ref['key']}"


def test_config_maps_and_services_refer_to_what_exists() -> None:
    config_maps = {d["metadata"]["name"] for d in of_kind("ConfigMap")}
    workloads = of_kind("Deployment", "StatefulSet")
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"]
        for container in containers(workload):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {service['metadata']['name']} selects no pods"
        ports = {p["name"] for w in targets for c in containers(w) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["name"]) in ports | {port["port"]}, port
    for workload in of_kind("StatefulSet"):
        headless = named("Service", workload["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None"


def rabbitmq_config() -> dict[str, str]:
    data: dict[str, str] = named("ConfigMap", "rabbitmq-config")["data"]
    return data


def test_rabbitmq_config_is_the_compose_one_with_this_clusters_node_names() -> None:
    deployed = rabbitmq_directives(rabbitmq_config()["10-platform.conf"])
    composed = rabbitmq_directives(RABBITMQ_CONF.read_text())
    node_key = re.compile(r"cluster_formation\.classic_config\.nodes\.\d+")
    assert {k: v for k, v in deployed.items() if not node_key.fullmatch(k)} == {
        k: v for k, v in composed.items() if not node_key.fullmatch(k)
    }
    broker = named("StatefulSet", "rabbitmq")
    domain = f"{broker['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
    nodes = sorted(v for k, v in deployed.items() if node_key.fullmatch(k))
    assert nodes == [f"rabbit@rabbitmq-{i}.{domain}" for i in range(broker["spec"]["replicas"])]
    (_, node) = containers(broker)
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["RABBITMQ_NODENAME"] == f"rabbit@$(POD_NAME).{domain}"
    assert env["RABBITMQ_USE_LONGNAME"] == "true"
    assert env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] == "-setcookie $(RABBITMQ_ERLANG_COOKIE)"
    plugins = rabbitmq_config()["enabled_plugins"]
    assert (DEPLOY / "rabbitmq" / "enabled_plugins").read_text() == plugins


def test_rabbitmq_asks_the_api_service_for_every_check() -> None:
    template = rabbitmq_directives(rabbitmq_config()["20-auth.conf.template"])
    api = named("Service", "api")
    (api_port,) = (p["port"] for p in api["spec"]["ports"])
    urls = {k: urlsplit(v) for k, v in template.items() if k.startswith("auth_http.")}
    assert {url.path for url in urls.values()} == broker_auth_paths("rabbitmq")
    for url in urls.values():
        assert url.hostname == f"api.{NAMESPACE}.svc.cluster.local" and url.port == api_port
        assert url.password == "@BROKER_AUTH_SECRET@"  # rendered by the init container
    management = named("ConfigMap", "iot-api")["data"]
    assert template["default_user"] == management["BROKER_MANAGEMENT_USERNAME"]
    assert urlsplit(management["BROKER_MANAGEMENT_URL"]).port == 15672
    assert rabbitmq_directives(rabbitmq_config()["10-platform.conf"])["auth_backends.1"] == "http"


def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """What Kubernetes does to a command: `$$` is `$`, `$(NAME)` a defined variable."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]),
        text,
    )


def test_worker_command_takes_the_identity_of_its_ordinal() -> None:
    """The worker's shell line, expanded as Kubernetes does and run by sh, for pod 2."""
    (worker,) = containers(named("StatefulSet", "ingest"))
    env = {"POD_INDEX": "2", "MQTT_PASSWORD": "pw-3"}
    shell, flag, script = (kubernetes_expand(part, env) for part in worker["command"])
    # `env` in place of the worker: it prints what the worker would have been given.
    script = script.replace("exec python -m ingest", "exec env")
    ran = subprocess.run(
        [shutil.which(shell) or shell, flag, script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    exported = dict(line.split("=", 1) for line in ran.stdout.splitlines() if "=" in line)
    assert exported["MQTT_USERNAME"] == "iot-ingest-3"
    assert exported["INGEST_CLIENT_ID"] == "ingest-3"
    assert exported["AMQP_URL"] == "amqp://iot-ingest-3:pw-3@rabbitmq:5672/%2F"
