"""Error taxonomy: every message names the offending input and says what to do."""

from __future__ import annotations

from typing import Any


class CloudFreeError(Exception):
    """Base class of every error cloudfree raises on purpose.

    The CLI turns these into a one-line message and a non-zero exit code.
    """

    exit_code = 2


class InvalidAOIError(CloudFreeError, ValueError):
    """The bbox or GeoJSON area of interest cannot be used."""

    def __init__(self, aoi: object, reason: str) -> None:
        self.aoi = aoi
        super().__init__(
            f"invalid area of interest {aoi!r}: {reason}. Give a bbox as "
            "'minx,miny,maxx,maxy' in degrees (EPSG:4326, min < max) or a GeoJSON "
            "Polygon/MultiPolygon geometry."
        )


class InvalidDateWindowError(CloudFreeError, ValueError):
    """The datetime window cannot be parsed or is empty."""

    def __init__(self, window: object, reason: str) -> None:
        self.window = window
        super().__init__(
            f"invalid date window {window!r}: {reason}. Give 'YYYY-MM-DD/YYYY-MM-DD' "
            "with the start before the end."
        )


class InvalidParameterError(CloudFreeError, ValueError):
    """Any other user-supplied value out of range."""

    def __init__(self, name: str, value: object, fix: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"invalid {name} {value!r}: {fix}")


class StacApiUnreachableError(CloudFreeError, ConnectionError):
    """The STAC API did not answer."""

    def __init__(self, url: str, cause: object) -> None:
        self.url = url
        super().__init__(
            f"STAC API at {url} is unreachable ({cause}). Start the local stack with "
            "'cloudfree services up', or point CLOUDFREE_STAC_API_URL at a running API."
        )


class UnknownCollectionError(CloudFreeError, LookupError):
    """The STAC API has no collection with that id."""

    def __init__(self, collection: str, url: str, available: list[str]) -> None:
        self.collection = collection
        self.available = available
        names = ", ".join(sorted(available)) or "none"
        hint = (
            " Run 'cloudfree demo-catalog' to load the demo collection."
            if collection == "sentinel-2-l2a"
            else ""
        )
        super().__init__(
            f"unknown collection {collection!r} at {url}; available: {names}.{hint}"
        )


class NoScenesFoundError(CloudFreeError, LookupError):
    """A search matched no scenes."""

    def __init__(
        self, bbox: object, datetime: str, collection: str, max_cloud_pct: float | None
    ) -> None:
        self.bbox = bbox
        self.datetime = datetime
        self.collection = collection
        cloud = "" if max_cloud_pct is None else f" with eo:cloud_cover <= {max_cloud_pct}"
        super().__init__(
            f"no scenes in collection {collection!r} intersect {bbox} in {datetime}{cloud}. "
            "Widen the date window, raise --max-cloud, or check the area of interest."
        )


class StorageUnreachableError(CloudFreeError, ConnectionError):
    """The object store did not answer or refused the credentials."""

    def __init__(self, url: str, cause: object) -> None:
        self.url = url
        super().__init__(
            f"object storage {url} is unreachable or refused access ({cause}). Start the "
            "local stack with 'cloudfree services up', or check CLOUDFREE_S3_ENDPOINT_URL "
            "and the S3 credentials in the environment."
        )


class ServiceError(CloudFreeError, RuntimeError):
    """A local service could not be started, stopped or found."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        super().__init__(f"service {service}: {reason}")


class PublishError(CloudFreeError, RuntimeError):
    """The STAC API refused an item or collection."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        super().__init__(f"could not publish {target}: {reason}")


class InvalidCOGError(CloudFreeError, ValueError):
    """A written GeoTIFF failed COG validation; nothing was uploaded."""

    def __init__(self, target: str, errors: list[str]) -> None:
        self.target = target
        self.errors = errors
        super().__init__(f"{target} is not a valid COG: {'; '.join(errors)}")


class InvalidCaseError(CloudFreeError, ValueError):
    """An evaluation case file is missing, unreadable or not in the case format."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        super().__init__(
            f"evaluation case {str(path)!r}: {reason}. A case is an .npz with bands "
            "(T, C, H, W) float, band_names (C,), dates (T,) ISO strings, cloud_mask "
            "(T, H, W) bool and optionally paste_masks (K, H, W) bool (see DESIGN.md)."
        )


class MissingDetectorInputError(CloudFreeError, ValueError):
    """A cloud detector was asked for an input that lacks what it needs (bands, SCL,
    dates, level)."""

    def __init__(self, detector: str, lacks: list[str], band_names: list[str],
                 runnable: list[str]) -> None:
        self.detector = detector
        self.lacks = list(lacks)
        self.runnable = list(runnable)
        would = ", ".join(runnable) if runnable else "none"
        super().__init__(
            f"cloud detector {detector!r} cannot run on this input: it needs "
            f"{'; '.join(lacks)}; the input has bands {', '.join(band_names) or 'none'}. "
            f"Detectors that would run on it: {would}. Choose one with --mask, or give "
            "the bands it needs."
        )

    def __reduce__(self) -> tuple[Any, tuple[str, list[str], list[str], list[str]]]:
        return (type(self), (self.detector, self.lacks, [], self.runnable))


class DetectorWeightsError(CloudFreeError, ValueError):
    """A learned detector's weights are absent or do not fit its model."""

    def __init__(self, detector: str, path: object, reason: str) -> None:
        self.detector = detector
        self.path = path
        super().__init__(
            f"weights of cloud detector {detector!r} at {str(path)!r}: {reason}. Give the "
            "path of the model's own weights file (they are never downloaded)."
        )


class MethodOutputError(CloudFreeError, ValueError):
    """A method returned a frame of the wrong shape or without values on hidden pixels."""

    def __init__(self, method: str, case: str, target: int, reason: str) -> None:
        self.method = method
        super().__init__(
            f"method {method!r} on case {case!r}, target frame {target}: {reason}. A method "
            "must return a finite (C, H, W) reconstruction of the target frame."
        )


class KubernetesUnreachableError(CloudFreeError, ConnectionError):
    """No Kubernetes API server answered with the kubeconfig/context that was tried."""

    def __init__(self, tried: str, cause: object) -> None:
        self.tried = tried
        super().__init__(
            f"no Kubernetes cluster reachable with {tried} ({cause}). Point KUBECONFIG or "
            "--kubeconfig at a kubeconfig for a running cluster and pick a context that exists "
            "('kubectl config get-contexts'), or run inside a pod with a service account; "
            "use make_cluster('local') to run on this machine."
        )


class UnknownAssetError(CloudFreeError, LookupError):
    """A STAC item has no asset for a requested band (or for the SCL)."""

    def __init__(self, item_id: str, band: str, looked_for: str, available: list[str]) -> None:
        self.item_id = item_id
        self.band = band
        self.available = available
        super().__init__(
            f"item {item_id!r} has no asset for band {band!r} (looked for {looked_for}); its "
            f"assets are: {', '.join(sorted(available)) or 'none'}. Drop the band from --bands, "
            "or pick the catalog's profile with --source."
        )


class UndecodableItemError(CloudFreeError, ValueError):
    """The reflectance scale/offset of a STAC item's assets cannot be determined."""

    def __init__(self, item_id: str, reason: str) -> None:
        self.item_id = item_id
        super().__init__(
            f"cannot tell how to decode the digital numbers of item {item_id!r}: {reason}. "
            "Pass --assume-decoding, e.g. 'scale=0.0001,offset=-0.1' (processing baseline "
            ">= 04.00) or 'scale=0.0001,offset=0' (older, or harmonised)."
        )


class UnsupportedItemError(CloudFreeError, ValueError):
    """A STAC item is not a Sentinel-2 L2A item (Landsat, HLS, ...)."""

    def __init__(self, item_id: str, kind: str) -> None:
        self.item_id = item_id
        self.kind = kind
        acronym = kind.isupper() and kind[:1] in "AEFHILMNORSX"  # an HLS item
        article = "an" if acronym or kind[:1].lower() in "aeiou" else "a"
        super().__init__(
            f"item {item_id!r} is {article} {kind} item; cloudfree reads Sentinel-2 L2A only; "
            "no profile handles it. Search a Sentinel-2 L2A collection instead."
        )


class SigningUnavailableError(CloudFreeError, LookupError):
    """Asset hrefs need signing but the signer cannot be used."""

    def __init__(self, signer: str, reason: str) -> None:
        self.signer = signer
        super().__init__(f"cannot sign asset hrefs with signer {signer!r}: {reason}")


class BudgetExceededError(CloudFreeError, ValueError):
    """A run's plan exceeds a configured budget (tiles, scenes per tile, memory per tile);
    nothing was started."""

    def __init__(self, budget: str, figure: float, limit: float, detail: str) -> None:
        self.budget = budget
        self.figure = figure
        self.limit = limit
        super().__init__(
            f"the plan exceeds the budget {budget} ({_figure(figure)} > {_figure(limit)}): "
            f"{detail}. Or raise the budget: CLOUDFREE_{budget.upper()}={_figure(figure)} "
            f"(Settings.{budget}); 'cloudfree plan' shows the figures without starting a run."
        )


def _figure(value: float) -> str:
    """A budget figure as its environment variable takes it: whole numbers in full
    (``400000000``, never ``4e+08``), others with up to 4 significant decimals."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"


class SourceReadError(CloudFreeError, RuntimeError):
    """A source scene's asset could not be read, after GDAL's own retries.

    Carries the scene (``item_id``), the asset (the catalog's key) and the href, with any
    query string (a signature) cut; ``reason`` is the short cause. Pickles by its fields, so
    it crosses from a Dask worker intact."""

    def __init__(self, item_id: str, asset: str, href: str, cause: object) -> None:
        self.item_id = item_id
        self.asset = asset
        self.href = href.split("?", 1)[0]
        self.reason = str(cause)
        super().__init__(
            f"source scene {item_id!r} is unreadable: its asset {asset!r} ({self.href}) failed "
            f"to read: {self.reason}. If the fault is transient, re-run; to mosaic without the "
            "scene, set CLOUDFREE_READ_FAILURE_POLICY=drop (the scene is left out and listed in "
            "the item's cloudfree:dropped_sources)."
        )

    def __reduce__(self) -> tuple[type[SourceReadError], tuple[str, str, str, str]]:
        return type(self), (self.item_id, self.asset, self.href, self.reason)


class NoReadableSourceError(CloudFreeError, RuntimeError):
    """Every source scene of a tile failed to read (read failure policy ``drop``)."""

    def __init__(self, tile_id: str, dropped: list[dict[str, str]]) -> None:
        self.tile_id = tile_id
        self.dropped = dropped
        names = ", ".join(f"{d['id']} ({d['asset']}: {d['error']})" for d in dropped[:5])
        more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        super().__init__(
            f"tile {tile_id}: no source scene could be read; dropped {names}{more}. Check that "
            "the object store is reachable and the scenes' files exist, then re-run."
        )

    def __reduce__(self) -> tuple[type[NoReadableSourceError],
                                  tuple[str, list[dict[str, str]]]]:
        return type(self), (self.tile_id, self.dropped)


class SearchTooLargeError(CloudFreeError, ValueError):
    """More scenes match a search than the cap allows; nothing was truncated or started."""

    def __init__(self, url: str, collection: str, bbox: object, datetime: str,
                 max_cloud_pct: float | None, limit: int, matched: int | None) -> None:
        self.url = url
        self.limit = limit
        self.matched = matched
        self._args = (url, collection, bbox, datetime, max_cloud_pct, limit, matched)
        count = f"{matched}" if matched is not None else f"more than {limit}"
        cloud = "" if max_cloud_pct is None else f" with eo:cloud_cover <= {max_cloud_pct}"
        super().__init__(
            f"the search of {collection!r} at {url} over {bbox} in {datetime}{cloud} matches "
            f"{count} scenes, over the cap of {limit}; the run would not see them all. "
            "Narrow it: a shorter --datetime window, a smaller area (--bbox/--geojson), or "
            "a lower --max-cloud; or raise the cap: CLOUDFREE_MAX_SEARCH_ITEMS="
            f"{matched if matched is not None else 2 * limit} (Settings.max_search_items)."
        )

    def __reduce__(self) -> tuple[type[SearchTooLargeError], tuple[object, ...]]:
        return type(self), self._args


class TileTimeoutError(CloudFreeError, TimeoutError):
    """A tile ran longer than the task timeout (``task_timeout_s``); not retried."""

    def __init__(self, tile_id: str, timeout_s: float) -> None:
        self.tile_id = tile_id
        self.timeout_s = timeout_s
        super().__init__(
            f"tile {tile_id} ran over the task timeout of {timeout_s:g} s and was failed. "
            "Re-run to redo it (published tiles are skipped), with a smaller --tile-size, or "
            "raise the timeout: CLOUDFREE_TASK_TIMEOUT_S."
        )

    def __reduce__(self) -> tuple[Any, tuple[str, float]]:
        return type(self), (self.tile_id, self.timeout_s)


class TilesFailedError(CloudFreeError, RuntimeError):
    """Some tiles of a run failed; the others were published (or skipped). The run ends
    Failed after every tile was tried."""

    exit_code = 1

    def __init__(self, failed: list[tuple[str, str]], total: int) -> None:
        self.failed = failed
        self.total = total
        listed = "; ".join(f"{tile}: {error[:240]}{'...' if len(error) > 240 else ''}"
                           for tile, error in failed[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} of {total} tiles failed ({listed}{more}). The other tiles were "
            "published or already were; re-run the same command to redo only the failed "
            "tiles (the run's 'mosaic-tiles' artifact lists every tile)."
        )

    def __reduce__(self) -> tuple[Any, tuple[list[tuple[str, str]], int]]:
        return type(self), (self.failed, self.total)


class TileLockError(CloudFreeError, RuntimeError):
    """The per-item lock that keeps two runs of one tile apart could not be taken or was
    lost (another run holds it, or the object store cannot make conditional writes)."""

    def __init__(self, lock: str, reason: str) -> None:
        self.lock = lock
        self.reason = reason
        super().__init__(f"tile lock {lock}: {reason}")

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return type(self), (self.lock, self.reason)


# --------------------------------------------------------------------------- warnings


class CloudFreeWarning(UserWarning):
    """Base of cloudfree's warnings: a result was made, but degraded in a way the caller
    should know about."""


class GeomedianNotConvergedWarning(CloudFreeWarning, RuntimeWarning):
    """Some pixels reached ``max_iter`` before ``tol``; their estimate is the last iterate."""
