"""Offline validation of Kubernetes manifests for the tests, and what they validate: the
chart rendered offline and the Prefect deployments.

Core resources: kubernetes-validate in strict mode (unknown fields are errors, as with
``kubectl apply --validate=strict``). Dask resources: the CRD schemas shipped in the
dask-kubernetes wheel, made strict the same way (the API server would prune unknown fields
silently; we reject them).
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cloudfree"
PREFECT_FILE = ROOT / "flows" / "prefect.yaml"
K8S_VERSIONS = ("1.30", "1.33")
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

_OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as strict JSON Schema: objects with ``properties`` and
    no ``additionalProperties`` reject unknown keys."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """``(apiVersion, kind) -> strict JSON schema`` from the CRDs in the dask-kubernetes wheel."""
    crd_dir = resources.files("dask_kubernetes").joinpath(
        "operator/deployment/helm/dask-kubernetes-operator/crds"
    )
    schemas: dict[tuple[str, str], dict] = {}
    for entry in crd_dir.iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        crd = yaml.safe_load(entry.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schema.setdefault("properties", {}).update(
                {
                    "apiVersion": {"const": f"{group}/{version['name']}"},
                    "kind": {"const": kind},
                    "metadata": _OBJECT_META,
                }
            )
            schema["required"] = sorted(
                {*schema.get("required", []), "apiVersion", "kind", "metadata"}
            )
            schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def validate(doc: dict, versions: Iterable[str] = K8S_VERSIONS) -> None:
    """Raise on the first problem of one manifest, for every Kubernetes version."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crd_schemas():
        jsonschema.Draft202012Validator(crd_schemas()[key]).validate(doc)
        return
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            raise AssertionError(
                f"{doc['kind']}/{doc['metadata'].get('name')} invalid for Kubernetes "
                f"{version} at {path}: {exc.message}"
            ) from None


def validate_all(docs: Iterable[dict]) -> list[dict]:
    docs = [d for d in docs if d]
    assert docs, "no manifests to validate"
    for doc in docs:
        validate(doc)
    return docs


def quantities(doc: Any) -> Iterator[tuple[str, Any]]:
    """Every ``resources.requests/limits`` entry in a manifest: ``(name, value)``."""
    if isinstance(doc, dict):
        res = doc.get("resources")
        if isinstance(res, dict):
            for part in ("requests", "limits"):
                yield from (res.get(part) or {}).items()
        for value in doc.values():
            yield from quantities(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from quantities(value)


def pod_specs(doc: Any) -> Iterator[dict]:
    """Every pod spec in a manifest (any dict with a ``containers`` list)."""
    if isinstance(doc, dict):
        if isinstance(doc.get("containers"), list):
            yield doc
        for value in doc.values():
            yield from pod_specs(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from pod_specs(value)


def assert_restricted(doc: dict) -> None:
    """Restricted pod security on every pod and container of a manifest."""
    name = doc["metadata"].get("name") or doc["metadata"].get("generateName")
    for pod in pod_specs(doc):
        ctx = pod.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True, name
        assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container.get("securityContext", {})
            where = f"{doc['kind']}/{name}/{container['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where


def load_all(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render_chart(values: dict | None = None, *, namespace: str = "cloudfree") -> list[dict]:
    """The chart's manifests for ``values`` as release ``cf``, rendered offline with Helm's
    library (helm-python-sdk), in the order of their template paths."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="cf", namespace=namespace)
    return [
        d
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for d in load_all(text)
    ]


def prefect_deployments() -> list[dict]:
    """The deployments of ``flows/prefect.yaml``."""
    return yaml.safe_load(PREFECT_FILE.read_text())["deployments"]


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize(path: Path) -> list[dict]:
    exe = kubectl()
    assert exe, "kubectl (client) is needed for 'kubectl kustomize'"
    out = subprocess.run(
        [exe, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return load_all(out.stdout)
