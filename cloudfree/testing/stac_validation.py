"""Offline STAC validation: items, collections and catalogs against the JSON Schema files
in ``../shared/data/stac-schemas`` (beside the checkout), or ``$CLOUDFREE_STAC_SCHEMAS``.

Validators such as stac-validator download each schema from its ``$id``; with no network,
:func:`load_registry` maps every ``$id`` found in the schema directory to its file, and
:func:`validate` checks a document against the core schema of its type and against each
extension it declares in ``stac_extensions``, the way stac-validator does.

What cannot be checked offline is said, never skipped silently: the result's
``not_validated`` lists it. Classification v2.0.0 is not in the directory, so parts that
declare it are validated against v1.1.0 (:data:`SUBSTITUTES`) and v2's stricter rule,
that every class has a ``name`` of ``[0-9A-Za-z-_]+``, is checked here by hand; v1.1.0's
own rule that every class has a ``description`` is dropped with it, since v2 made that
optional. A ``$ref`` to a schema not in the directory (projection's PROJJSON) is listed
when a document reaches it. The schemas are read where they are: never copied into the
repository.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

from cloudfree.errors import CloudFreeError

#: Environment variable that points at the schema directory.
SCHEMAS_ENV = "CLOUDFREE_STAC_SCHEMAS"

#: The core schema of each STAC object type, by ``stac_version`` (only 1.0.0 is offline).
CORE = {
    ("Feature", "1.0.0"): "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json",
    ("Collection", "1.0.0"):
        "https://schemas.stacspec.org/v1.0.0/collection-spec/json-schema/collection.json",
    ("Catalog", "1.0.0"):
        "https://schemas.stacspec.org/v1.0.0/catalog-spec/json-schema/catalog.json",
}

CLASSIFICATION_V2 = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
CLASSIFICATION_V1_1 = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
#: Declared extension schema -> the offline one it is validated against instead.
SUBSTITUTES = {CLASSIFICATION_V2: CLASSIFICATION_V1_1}
#: Classification v2.0.0's rule for a class name.
CLASS_NAME = re.compile(r"^[0-9A-Za-z-_]+$")


class StacValidationError(CloudFreeError, ValueError):
    """A STAC document does not validate against the offline schemas."""

    def __init__(self, what: str, errors: list[str]) -> None:
        self.what = what
        self.errors = errors
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5
                                         else "")
        super().__init__(f"{what} is not valid STAC: {shown}. Fix the fields named.")


class SchemaDirectoryMissingError(CloudFreeError, FileNotFoundError):
    """The offline schema directory is not on this machine."""

    def __init__(self, tried: list[str]) -> None:
        self.tried = tried
        super().__init__(
            f"no STAC schema directory at {', '.join(tried)}; put the schemas in "
            f"../shared/data/stac-schemas beside the checkout or set {SCHEMAS_ENV}."
        )


@dataclass
class StacValidation:
    """What :func:`validate` found for one document."""

    #: ``Feature``, ``Collection`` or ``Catalog``, and the document's id.
    type: str
    id: str
    #: The schemas the document was validated against (after substitution).
    validated: list[str] = field(default_factory=list)
    #: What could not be validated offline, and why.
    not_validated: list[str] = field(default_factory=list)
    #: Every violation, as ``schema: path: message``.
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> StacValidation:
        """Raise :class:`StacValidationError` when there are errors; else return self."""
        if self.errors:
            raise StacValidationError(f"{self.type} {self.id!r}", self.errors)
        return self


def _candidates() -> list[Path]:
    env = os.environ.get(SCHEMAS_ENV)
    if env:
        return [Path(env)]
    # cloudfree/testing/stac_validation.py -> the checkout -> its parent's shared/
    return [Path(__file__).resolve().parents[3] / "shared" / "data" / "stac-schemas"]


def schema_dir() -> Path | None:
    """The schema directory (``$CLOUDFREE_STAC_SCHEMAS``, else ``../shared/data/stac-schemas``
    beside the checkout), or ``None`` when it is not on this machine."""
    return next((p for p in _candidates() if p.is_dir()), None)


def _resolve_dir(schemas: str | os.PathLike[str] | None) -> Path:
    if schemas is not None:
        path = Path(schemas)
        if not path.is_dir():
            raise SchemaDirectoryMissingError([str(path)])
        return path
    found = schema_dir()
    if found is None:
        raise SchemaDirectoryMissingError([str(p) for p in _candidates()])
    return found


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> tuple[Registry[Any], frozenset[str]]:
    registry: Registry[Any] = Registry()
    ids = set()
    for path in sorted(Path(directory).rglob("*.json")):
        contents = json.loads(path.read_text())
        if not isinstance(contents, dict) or "$id" not in contents:
            continue
        uri = str(contents["$id"]).rstrip("#")
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        registry = registry.with_resource(uri, resource)
        ids.add(uri)
    return registry.crawl(), frozenset(ids)


def load_registry(schemas: str | os.PathLike[str] | None = None) -> tuple[Registry[Any],
                                                                         frozenset[str]]:
    """A ``referencing`` registry of every schema in the directory, by its ``$id`` (without
    the trailing ``#``), and the set of those ids."""
    return _load(str(_resolve_dir(schemas).resolve()))


def _classification_names(document: Mapping[str, Any]) -> list[str]:
    """Classification v2.0.0's rule, checked by hand: every class (in properties, assets,
    item_assets, raster bands, summaries and bit fields) has a ``name`` of
    ``[0-9A-Za-z-_]+``."""
    errors: list[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "classification:classes" and isinstance(value, list):
                    for i, cls in enumerate(value):
                        check(cls, f"{path}/{key}/{i}")
                elif key == "classification:bitfields" and isinstance(value, list):
                    for i, bits in enumerate(value):
                        for j, cls in enumerate((bits or {}).get("classes", [])):
                            check(cls, f"{path}/{key}/{i}/classes/{j}")
                else:
                    visit(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{path}/{i}")

    def check(cls: Any, path: str) -> None:
        name = cls.get("name") if isinstance(cls, Mapping) else None
        if not isinstance(name, str) or not CLASS_NAME.match(name):
            errors.append(f"{CLASSIFICATION_V2}: {path}: a class needs a 'name' matching "
                          f"{CLASS_NAME.pattern} (v2.0.0, checked by hand), got {name!r}")

    visit(document, "")
    return errors


def _without_class_descriptions(document: Any) -> Any:
    """The document with a placeholder ``description`` on each class lacking one: v1.1.0
    requires it, v2.0.0 (which the document declares) does not."""
    if isinstance(document, dict):
        out = {}
        for key, value in document.items():
            if key == "classification:classes" and isinstance(value, list):
                value = [{"description": "-", **c} if isinstance(c, dict) else c for c in value]
            out[key] = _without_class_descriptions(value)
        return out
    if isinstance(document, list):
        return [_without_class_descriptions(v) for v in document]
    return document


def _errors_against(uri: str, instance: Mapping[str, Any], registry: Registry[Any],
                    report: StacValidation) -> None:
    validator = Draft7Validator({"$ref": uri}, registry=registry)
    try:
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            # a oneOf/anyOf hides the reason: name the deepest one
            causes = sorted(error.context or [], key=lambda e: -len(list(e.absolute_path)))
            reason = causes[0].message if causes else error.message
            where = ("/" + "/".join(str(p) for p in causes[0].absolute_path)) if causes else where
            if reason.endswith("should not be valid under {}"):  # a schema's `not: {}`
                reason = ("must be absent here" + (" unless a link has rel 'collection'"
                                                  if where == "/collection" else ""))
            report.errors.append(f"{uri}: {where}: {reason[:300]}")
    except Unresolvable as exc:
        report.not_validated.append(f"{uri}: a $ref to a schema not available offline "
                                    f"({exc.ref}); the parts under it were not validated")
        return
    report.validated.append(uri)


def validate(document: Mapping[str, Any], *,
             schemas: str | os.PathLike[str] | None = None) -> StacValidation:
    """Validate one STAC item, collection or catalog (a dict) offline: against the core
    schema of its ``type`` and ``stac_version``, and each extension in ``stac_extensions``
    (classification v2.0.0 against v1.1.0 plus the hand check of :func:`_classification_names`).

    Returns what was validated, what could not be and every error; call
    ``.raise_for_errors()`` to raise :class:`StacValidationError`.

    Raises:
        SchemaDirectoryMissingError: when the schema directory is not on this machine.
    """
    registry, available = load_registry(schemas)
    kind = str(document.get("type", "?"))
    report = StacValidation(type=kind, id=str(document.get("id", "?")))
    core = CORE.get((kind, str(document.get("stac_version"))))
    if core is None:
        report.errors.append(
            f"core: no offline core schema for type {kind!r}, stac_version "
            f"{document.get('stac_version')!r}; offline: "
            + ", ".join(f"{t} {v}" for t, v in CORE))
        return report
    _errors_against(core, document, registry, report)
    declared = document.get("stac_extensions") or []
    for uri in declared:
        if not isinstance(uri, str):
            continue  # the core schema reported it
        target = SUBSTITUTES.get(uri, uri)
        instance: Mapping[str, Any] = document
        if target != uri:
            substituted = copy.deepcopy(dict(document))
            substituted["stac_extensions"] = [target if u == uri else u for u in declared]
            instance = _without_class_descriptions(substituted)
            report.not_validated.append(
                f"{uri}: not available offline; validated against {target}, and its "
                "required class 'name' checked by hand")
            report.errors.extend(_classification_names(document))
        if target.rstrip("#") not in available:
            report.not_validated.append(f"{uri}: schema not available offline")
            continue
        _errors_against(target, instance, registry, report)
    return report


def validate_all(documents: Iterable[Mapping[str, Any]], *,
                 schemas: str | os.PathLike[str] | None = None) -> list[StacValidation]:
    """:func:`validate` each document."""
    return [validate(doc, schemas=schemas) for doc in documents]


__all__ = ("CORE", "SCHEMAS_ENV", "SUBSTITUTES", "SchemaDirectoryMissingError", "StacValidation",
           "StacValidationError", "load_registry", "schema_dir", "validate", "validate_all")
