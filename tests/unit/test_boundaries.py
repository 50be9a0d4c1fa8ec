"""The layout's promises, checked: the pipeline stands alone, and one registry lists the methods."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cloudfree
from cloudfree.methods import METHODS, list_methods

PACKAGE = Path(cloudfree.__file__).parent
#: The edges: they may import the pipeline, never the reverse.
EDGES = ("cli", "demo", "localstack", "testing")
FORBIDDEN = ("cloudfree.demo", "cloudfree.localstack", "cloudfree.cli", "prefect", "flows")


def pipeline_modules() -> list[str]:
    """Every module of the package outside the edges, by walking the source tree."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in EDGES:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("cloudfree", *parts)))
    return names


def test_the_pipeline_never_imports_the_local_stack_the_demo_or_prefect():
    modules = pipeline_modules()
    assert "cloudfree.tile" in modules and "cloudfree.methods.generator" in modules
    assert not any(m.startswith(("cloudfree.demo", "cloudfree.localstack")) for m in modules)
    # every pipeline module, then every function-level import the methods and the tile
    # make on a real run would still be checked by the tests that run them; here the
    # module level, in a fresh interpreter
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or "
        f"m.startswith({FORBIDDEN!r}))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent.parent)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_learned_methods_load_torch_only_when_used():
    script = ("import sys, cloudfree.tile, cloudfree.evaluation.harness, cloudfree.methods\n"
              "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_one_registry_lists_the_methods():
    from cloudfree.cli import build_parser
    from cloudfree.evaluation.harness import METHODS as EVALUATION_METHODS
    from cloudfree.tile import MosaicParams

    assert tuple(EVALUATION_METHODS) == list_methods("evaluation") == tuple(
        name for name, spec in METHODS.items() if "evaluation" in spec.uses)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    mosaic = sub.choices["mosaic"]
    method = next(a for a in mosaic._actions if a.dest == "method")  # noqa: SLF001
    assert tuple(method.choices) == list_methods("mosaic")
    for name in list_methods("mosaic"):
        assert MosaicParams(method=name).method == name
    assert "generator_no_tta" not in list_methods("mosaic")


def test_the_flows_accept_exactly_the_registry_mosaic_methods():
    import jsonschema
    from prefect.utilities.callables import parameter_schema

    from flows.aoi_mosaic import aoi_mosaic
    from flows.regional_mosaic import regional_mosaic

    for flow in (aoi_mosaic, regional_mosaic):
        schema = parameter_schema(flow.fn).model_dump()
        method = schema["properties"]["method"]
        assert method["enum"] == list(list_methods("mosaic")), flow.name
        jsonschema.validate("interpolate_corrected", method)
        with pytest.raises(jsonschema.ValidationError):  # evaluation only
            jsonschema.validate("generator_no_tta", method)


def test_the_shared_test_builders_stand_alone():
    """``cloudfree.testing`` serves every kind of test: importing it starts or loads no
    local stack, demo world, Prefect or torch (a model builder imports torch when called)."""
    script = ("import json, sys, cloudfree.testing\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'prefect', 'flows') or m.startswith(('cloudfree.localstack', "
              "'cloudfree.demo')))))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent.parent)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_declared_halos_are_the_codes_reach():
    """Each method's declared neighbourhood equals what its code reads at its defaults."""
    from cloudfree.methods import bap
    from cloudfree.methods.correction import SIGMAS_PX, kernel_radius
    from cloudfree.models.head import HALO_PX
    from cloudfree.models.inference import DEFAULT_TILE_PX, _geometry, cached_generator

    correction = kernel_radius(max(SIGMAS_PX))
    network = _geometry(cached_generator("default", "cpu")[0], DEFAULT_TILE_PX, None)[2]
    expected = {"median": 0, "geomedian": 0, "interpolate": 0,
                "bap": bap.halo_px(dict(bap.DEFAULTS)),
                "interpolate_corrected": correction,
                "generator": network + HALO_PX + correction, "generator_no_tta": network,
                "network": network}
    assert {name: spec.halo_px for name, spec in METHODS.items()} == expected
