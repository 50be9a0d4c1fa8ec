"""The public API: ``cloudfree.__all__`` resolves, and ``import cloudfree`` stays light."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cloudfree

INIT = Path(cloudfree.__file__)
#: What ``import cloudfree`` alone must not load: the heavy libraries and the edges.
HEAVY = ("torch", "prefect", "dask", "distributed", "xarray", "cloudfree.demo",
         "cloudfree.localstack", "cloudfree.cli", "flows")


@pytest.mark.parametrize("name", cloudfree.__all__)
def test_every_public_name_resolves(name):
    value = getattr(cloudfree, name)
    assert value is not None
    if name != "__version__":
        module = cloudfree._EXPORTS[name]
        assert value is getattr(sys.modules[module], name)


def test_all_the_lazy_table_and_the_type_checking_imports_agree():
    """``__all__`` (for tools), ``_EXPORTS`` (for the lazy import) and the
    ``if TYPE_CHECKING:`` imports (for type checkers) name the same things, from the same
    modules."""
    assert len(set(cloudfree.__all__)) == len(cloudfree.__all__)
    assert set(cloudfree.__all__) == {"__version__", *cloudfree._EXPORTS}
    tree = ast.parse(INIT.read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If)
                   and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    imported = {alias.name: node.module for node in guarded.body
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert imported == cloudfree._EXPORTS


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        cloudfree.no_such_thing  # noqa: B018
    assert set(cloudfree.__all__) <= set(dir(cloudfree))


def test_import_cloudfree_is_light():
    script = (
        "import json, sys\n"
        "import cloudfree\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if m in heavy or m.startswith(tuple(h + '.' for h in heavy)))))\n"
        "print(cloudfree.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=INIT.parent.parent)
    loaded, version = out.stdout.strip().splitlines()[-2:]
    assert json.loads(loaded) == []
    assert version == cloudfree.__version__


def test_a_public_name_loads_its_module_on_first_use():
    script = (
        "import sys\n"
        "import cloudfree\n"
        "assert 'cloudfree.grid' not in sys.modules\n"
        "tile = cloudfree.aoi_tile(cloudfree.parse_bbox('14.0,46.0,14.1,46.1'), resolution_m=10)\n"
        "print(tile.epsg, 'cloudfree.grid' in sys.modules, 'cloudfree.tile' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=INIT.parent.parent)
    assert out.stdout.split() == ["32633", "True", "False"]
