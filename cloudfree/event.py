"""Event mode: a pre/post pair of mosaics around an event date, and the change between them.

For an event date D (a flood, a fire, an earthquake) inside a search window, every tile
gets two products (:mod:`cloudfree.event_tile` makes and publishes them):

``pre``
    per pixel, the latest clear observation at or before D (the scenes of ``[start, D]``);
``post``
    per pixel, the earliest clear observation after D (the scenes of ``[D + 1, end]``).

Each side reads only its own scenes, so no pixel of ``pre`` shows the world after the
event, nor one of ``post`` before it. The provenance is that of every mosaic:
``source_date`` (the observation's day), ``clear_count`` (the side's clear observations)
and ``fill`` (``observed``). A pixel none of whose side's observations is clear is a gap:
the run's method, aimed at the event (``pre``: D, ``post``: D + 1), fills it where it can
(:func:`can_fill`: the generator; a per-pixel method such as the default median has
nothing to fill it from) and ``fill`` records how (``generated``); else it stays
``nodata``.

The change layers, assets of the post item (:func:`change_layers`): dNBR (burn severity,
with the USGS classes as a classified asset), dNDWI (flooding) and dNDVI, each from the
two sides' reflectance, and ``change_valid``: 1 where both sides observed the pixel, 0
where either is generated or has no data. A layer whose bands the run did not mosaic is
skipped, and the item records why (``cloudfree:change_skipped``).

This module is pure: the windows, the scenes of each side, the lazy composites and the
change arithmetic; no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from cloudfree.errors import CloudFreeError, InvalidParameterError
from cloudfree.grid import DateWindow, parse_date_window
from cloudfree.methods import FILL_NODATA, FILL_OBSERVED, get_method
from cloudfree.sentinel2 import BANDS, NODATA, OFFSET, SCALE

if TYPE_CHECKING:
    from cloudfree.tile import Compose, MosaicParams

Role = Literal["pre", "post"]
#: The order a pair is made and published in: the post product first (what a responder
#: needs first), then pre.
ROLES: tuple[Role, Role] = ("post", "pre")
#: Without ``--datetime``, how far before and after the event the search looks (days):
#: about 12 revisits of each Sentinel-2 satellite on either side, enough for a clear view
#: in most seasons, and short enough that the products stay about the event.
DEFAULT_LOOK_BACK_DAYS = 60
DEFAULT_LOOK_AHEAD_DAYS = 60
#: The longest event name kept (it goes into every item of the pair).
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Event:
    """An event: its date and an optional name (``cloudfree:event`` of both items)."""

    date: dt.date
    name: str | None = None

    def as_property(self) -> dict[str, Any]:
        """``{"date": "YYYY-MM-DD", "name": ...}`` (the name only when given)."""
        return {"date": self.date.isoformat(), **({"name": self.name} if self.name else {})}

    @property
    def compact(self) -> str:
        return f"{self.date:%Y%m%d}"


def parse_event(event_date: str | dt.date, name: str | None = None) -> Event:
    """The event of ``event_date`` (``YYYY-MM-DD``) and ``name`` (blank: none)."""
    if isinstance(event_date, dt.datetime):
        event_date = event_date.date()
    if not isinstance(event_date, dt.date):
        try:
            event_date = dt.date.fromisoformat(str(event_date).strip())
        except ValueError:
            raise InvalidParameterError("event_date", event_date,
                                        "give the event's day as an ISO date, YYYY-MM-DD"
                                        ) from None
    name = " ".join(str(name).split()) if name is not None else None
    if name and len(name) > MAX_NAME_CHARS:
        raise InvalidParameterError("event_name", name[:40] + "...",
                                    f"give a name of at most {MAX_NAME_CHARS} characters")
    return Event(event_date, name or None)


def event_window(datetime: str | None, event: Event, *,
                 look_back_days: int = DEFAULT_LOOK_BACK_DAYS,
                 look_ahead_days: int = DEFAULT_LOOK_AHEAD_DAYS) -> DateWindow:
    """The search window of an event run: ``datetime`` (``YYYY-MM-DD/YYYY-MM-DD``), which
    must hold the event date and at least one day after it (the post side's first day);
    without it, from ``look_back_days`` before the event to ``look_ahead_days`` after."""
    if datetime is None or not str(datetime).strip():
        return DateWindow(event.date - dt.timedelta(days=look_back_days),
                          event.date + dt.timedelta(days=look_ahead_days))
    window = parse_date_window(datetime)
    if not window.start <= event.date < window.end:
        if event.date < window.start:
            where = "before its first day"
        elif event.date > window.end:
            where = "after its last day"
        else:
            where = "on its last day, which leaves no day after it for the post product"
        raise InvalidParameterError(
            "event_date", event.date.isoformat(),
            f"it lies outside the search window {window.start}/{window.end} ({where}); give "
            f"an --event-date from {window.start} to {window.end - dt.timedelta(days=1)}, or "
            "a --datetime window that starts on or before the event and ends after it (or "
            f"leave --datetime out: {DEFAULT_LOOK_BACK_DAYS} days before to "
            f"{DEFAULT_LOOK_AHEAD_DAYS} days after the event)")
    return window


def side_window(window: DateWindow, event: Event, role: Role) -> DateWindow:
    """A side's share of the window: ``pre`` ``[start, D]``, ``post`` ``[D + 1, end]``."""
    if role == "pre":
        return DateWindow(window.start, event.date)
    return DateWindow(event.date + dt.timedelta(days=1), window.end)


def side_target_date(event: Event, role: Role) -> str:
    """The date a targeted method aims at on a side: its day nearest the event."""
    day = event.date if role == "pre" else event.date + dt.timedelta(days=1)
    return day.isoformat()


def scene_day(item: Mapping[str, Any]) -> dt.date:
    """The UTC day of a scene (its ``datetime``, as the cube's time steps are days)."""
    return dt.date.fromisoformat(str((item.get("properties") or {}).get("datetime"))[:10])


def side_items(items: Sequence[Mapping[str, Any]], event: Event, role: Role
               ) -> list[dict[str, Any]]:
    """The scenes of a side: at or before the event day (``pre``), after it (``post``)."""
    if role == "pre":
        return [dict(it) for it in items if scene_day(it) <= event.date]
    return [dict(it) for it in items if scene_day(it) > event.date]


class NoClearObservationError(CloudFreeError, LookupError):
    """A side of an event pair has no clear observation (or no scene at all) in its
    window: the pair is refused, nothing of it is published."""

    def __init__(self, role: str, event_date: str, window: str, where: str,
                 reason: str) -> None:
        self._args = (role, event_date, window, where, reason)
        self.role = role
        side = "after" if role == "post" else "at or before"
        fix = ("widen --datetime past its end, or re-run once a clear acquisition after the "
               "event is in the catalog" if role == "post" else
               "start --datetime earlier")
        super().__init__(
            f"no clear observation {side} the event date {event_date} {where} in the search "
            f"window {window} ({reason}): the {role} product is refused, and nothing of the "
            f"event pair was published. To make it, {fix}.")

    def __reduce__(self) -> tuple[Any, tuple[str, str, str, str, str]]:
        return type(self), self._args


def check_sides(items: Sequence[Mapping[str, Any]], event: Event, window: DateWindow, *,
                where: str) -> None:
    """Refuse a search whose scenes leave a side empty (before anything is computed or
    written): :class:`NoClearObservationError`, post first."""
    span = f"{window.start}/{window.end}"
    days = sorted({scene_day(it) for it in items})
    for role in ROLES:
        if side_items(items, event, role):
            continue
        if not days:
            reason = "the search found no scene at all"
        elif role == "post":
            reason = f"no scene after the event; the last is of {days[-1]}"
        else:
            reason = f"no scene at or before the event; the first is of {days[0]}"
        raise NoClearObservationError(role, event.date.isoformat(), span, where, reason)


def check_observed(result: xr.Dataset, event: Event, role: Role, window: DateWindow, *,
                   tile_id: str) -> None:
    """Refuse a computed side without a single observed pixel (every scene of the side
    cloudy or without data over the tile): a product made of nothing but gap filling
    would show no real state of the ground after (or before) the event."""
    if bool((np.asarray(result["fill"].values) == FILL_OBSERVED).any()):
        return
    scenes = int(np.asarray(result["clear_count"].values).max(initial=0))
    raise NoClearObservationError(
        role, event.date.isoformat(), f"{window.start}/{window.end}", f"over tile {tile_id}",
        "every scene of that side is cloudy, shadowed or without data there"
        + ("" if scenes == 0 else f" (at most {scenes} clear)"))


# --------------------------------------------------------------------------- composites


def can_fill(method: str) -> bool:
    """Whether ``method`` can fill a pixel none of whose observations is clear: it reads a
    neighbourhood (a halo) and makes values that are not observations (the generator). A
    per-pixel method (median, geomedian, interpolate) or one that only picks
    observations (bap) has nothing to fill such a pixel from, and is not run."""
    spec = get_method(method, "mosaic")
    return spec.halo_px > 0 and bool(set(spec.fill_classes) - {"nodata", "observed"})


def _side_block(reflectance: NDArray[Any], clear: NDArray[Any], *, days: NDArray[np.float64],
                role: Role, nodata: int) -> NDArray[np.float32]:
    """One spatial block: uint16 DN (T, C, h, w) and clear (T, h, w) -> the (C + 3, h, w)
    stack of :func:`cloudfree.methods._provenance.stack_block`: per pixel the latest
    (``pre``) or earliest (``post``) usable observation, its day, the count, the fill."""
    from cloudfree.methods._driver import usable_block
    from cloudfree.methods._provenance import Composite, stack_block

    usable = usable_block(reflectance, clear, nodata=nodata)  # (T, h, w)
    n_times = usable.shape[0]
    if role == "pre":  # the last usable index: the first of the reversed stack
        pick = n_times - 1 - np.argmax(usable[::-1], axis=0)
    else:
        pick = np.argmax(usable, axis=0)
    seen = usable.any(axis=0)
    values = np.take_along_axis(reflectance, pick[None, None], axis=0)[0].astype(np.float32)
    values[:, ~seen] = np.nan
    count = usable.sum(axis=0)
    result = Composite(
        reflectance=values,
        clear_count=np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16),
        source_day=np.where(seen, days[pick], np.nan),
        fill=np.where(seen, FILL_OBSERVED, FILL_NODATA).astype(np.uint8),
    )
    return stack_block(result, n_bands=reflectance.shape[1])


def observation_composite(reflectance: xr.DataArray, clear: xr.DataArray, *, role: Role,
                          nodata: int = NODATA) -> xr.Dataset:
    """The side's composite of observations, lazily when the cube is dask-backed: per
    pixel the latest (``pre``) or earliest (``post``) clear observation of a (time, band,
    y, x) DN cube, the variables of every mosaic (``reflectance``, ``clear_count``,
    ``source_date``, ``fill``: ``observed``, or ``nodata`` where no date is clear)."""
    from cloudfree.methods._driver import dask_cube, prepare_cube
    from cloudfree.methods._provenance import stacked_to_dataset

    reflectance, clear, days, _ = prepare_cube(reflectance, clear, None)
    order = np.argsort(days, kind="stable")
    if (order != np.arange(days.size)).any():  # latest and earliest need time in order
        reflectance, clear, days = reflectance.isel(time=order), clear.isel(time=order), \
            days[order]
    n_bands = reflectance.sizes["band"]
    block = partial(_side_block, days=days, role=role, nodata=nodata)
    if reflectance.chunks is not None or clear.chunks is not None:
        import dask.array as da

        refl_data, clear_data, _ = dask_cube(reflectance, clear)
        stacked = da.blockwise(block, "zyx", refl_data, "tbyx", clear_data, "tyx",
                               new_axes={"z": n_bands + 3}, concatenate=True,
                               dtype=np.float32)
    else:
        stacked = block(np.asarray(reflectance.data), np.asarray(clear.data, dtype=bool))
    out = stacked_to_dataset(stacked, reflectance, n_bands=n_bands, nodata=nodata)
    out.attrs.update(nodata=nodata, parameters={"event_composite": COMPOSITE_RULE[role]})
    return out


#: What each side's composite takes, in words (the items' ``processing:expression``).
COMPOSITE_RULE: dict[str, str] = {
    "pre": "per pixel the latest clear observation at or before the event date",
    "post": "per pixel the earliest clear observation after the event date",
}


def fill_gaps(observed: xr.Dataset, filled: xr.Dataset) -> xr.Dataset:
    """``observed`` with its gaps (``fill`` nodata) taken from the method's ``filled``
    result where that has a value: reflectance, source date and fill code together. The
    result keeps ``filled``'s coordinates and attributes (a corrected method's per-tile
    choice, :func:`cloudfree.methods.corrected.record_choice`) and, when it has one, its
    ``uncertainty`` for the pixels it filled (0 where observed: an observation is exact)."""
    take = (observed["fill"] == FILL_NODATA) & (filled["fill"] != FILL_NODATA)
    out = filled.copy()
    for name in ("reflectance", "source_date", "fill"):
        out[name] = observed[name].where(~take, filled[name]).astype(observed[name].dtype)
    out["clear_count"] = observed["clear_count"]
    if "uncertainty" in filled:
        seen = observed["fill"] != FILL_NODATA
        out["uncertainty"] = filled["uncertainty"].where(~seen, 0).astype(
            filled["uncertainty"].dtype)
    out.attrs = {**filled.attrs, "parameters": {**filled.attrs.get("parameters", {}),
                                                **observed.attrs.get("parameters", {})}}
    return out


def compose_side(role: Role) -> Compose:
    """``compute_tile``'s ``compose`` for a side (:data:`cloudfree.tile.Compose`): the
    observation composite, its gaps filled by the parameters' method when it can fill
    them (:func:`can_fill`, aimed at ``params.target_date``)."""
    from cloudfree import methods

    def compose(params: MosaicParams, reflectance: xr.DataArray, clear: xr.DataArray
                ) -> xr.Dataset:
        observed = observation_composite(reflectance, clear, role=role)
        if not can_fill(params.method):
            return observed
        filled = methods.mosaic(params.method, reflectance, clear,
                                target_date=params.target_date, **params.method_options())
        return fill_gaps(observed, filled)

    return compose


# --------------------------------------------------------------------------- change layers


@dataclass(frozen=True)
class ChangeIndex:
    """One change layer: a normalized difference ``(a - b) / (a + b)`` of two bands on
    each side, differenced ``pre - post`` or ``post - pre``."""

    key: str
    index: str  # the per-side index's name
    bands: tuple[str, str]  # (a, b)
    order: Literal["pre-post", "post-pre"]
    title: str
    meaning: str


CHANGE_INDICES: dict[str, ChangeIndex] = {c.key: c for c in (
    ChangeIndex("dnbr", "NBR", ("nir", "swir22"), "pre-post",
                "differenced normalized burn ratio (dNBR)",
                "burn severity: positive where vegetation burned (the USGS classes are the "
                "dnbr_severity asset), negative where it regrew"),
    ChangeIndex("dndwi", "NDWI", ("green", "nir"), "post-pre",
                "differenced normalized difference water index (dNDWI, McFeeters)",
                "flooding: positive where the ground became wetter or water covers it"),
    ChangeIndex("dndvi", "NDVI", ("nir", "red"), "post-pre",
                "differenced normalized difference vegetation index (dNDVI)",
                "vegetation change: negative where vegetation was lost"),
)}
#: The change layers' encoding: int16 with this scale, nodata below any value (|d| <= 2).
CHANGE_SCALE = 0.0001
CHANGE_NODATA = -32768

#: The USGS burn severity classes of dNBR (Key & Benson 2006, FIREMON; the unscaled
#: thresholds), as (value, name, lower bound, colour). A class runs from its lower bound
#: up to the next one's; the ends are open (below -0.25: high regrowth; from 0.66 up: high
#: severity). 0 is nodata.
BURN_SEVERITY: tuple[tuple[int, str, float, str], ...] = (
    (1, "enhanced_regrowth_high", -np.inf, "7A8737"),
    (2, "enhanced_regrowth_low", -0.25, "ACBE4D"),
    (3, "unburned", -0.1, "0AE042"),
    (4, "low_severity", 0.1, "FFF70B"),
    (5, "moderate_low_severity", 0.27, "FFAF38"),
    (6, "moderate_high_severity", 0.44, "FF641B"),
    (7, "high_severity", 0.66, "A41FD6"),
)


@dataclass
class ChangeLayers:
    """A pair's change: each computable layer as float32 (NaN where either side has no
    data), the validity mask, the severity classes, and why any layer was skipped."""

    layers: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    valid: NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    severity: NDArray[np.uint8] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def valid_pct(self) -> float:
        return round(100.0 * float(self.valid.mean()), 3) if self.valid.size else 0.0


def _reflectance(result: xr.Dataset, band: str) -> NDArray[np.float32]:
    """A band's reflectance (>= 0), NaN where the product has no data."""
    dn = np.asarray(result["reflectance"].sel(band=band).values)
    refl = np.maximum(dn.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET), 0)
    return np.where(dn == NODATA, np.float32(np.nan), refl).astype(np.float32)


def normalized_difference(a: NDArray[np.float32], b: NDArray[np.float32]
                          ) -> NDArray[np.float32]:
    """``(a - b) / (a + b)`` in [-1, 1]; NaN where either is NaN or both are 0."""
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, (a - b) / total, np.float32(np.nan))
    return out.astype(np.float32)


def missing_bands(change: ChangeIndex, bands: Sequence[str]) -> list[str]:
    return [b for b in change.bands if b not in bands]


def skip_reason(change: ChangeIndex, bands: Sequence[str]) -> str:
    """Why a layer cannot be made from a run of ``bands``, naming the bands to add."""
    lacks = missing_bands(change, bands)
    named = ", ".join(f"{b} ({BANDS[b].s2_name})" for b in lacks)
    return (f"{change.index} needs {' and '.join(change.bands)}; the run's --bands "
            f"({','.join(bands)}) lack {named}: add them to --bands to get {change.key}")


def change_layers(pre: xr.Dataset, post: xr.Dataset, bands: Sequence[str]) -> ChangeLayers:
    """The change between two computed sides of one tile (same grid): each layer of
    :data:`CHANGE_INDICES` whose bands ``bands`` holds, ``change_valid`` (1 where both
    sides are observed), and the dNBR severity classes when dNBR is made."""
    out = ChangeLayers(valid=((np.asarray(pre["fill"].values) == FILL_OBSERVED)
                              & (np.asarray(post["fill"].values) == FILL_OBSERVED)
                              ).astype(np.uint8))
    for key, change in CHANGE_INDICES.items():
        if missing_bands(change, bands):
            out.skipped[key] = skip_reason(change, bands)
            continue
        a, b = change.bands
        before = normalized_difference(_reflectance(pre, a), _reflectance(pre, b))
        after = normalized_difference(_reflectance(post, a), _reflectance(post, b))
        out.layers[key] = (before - after) if change.order == "pre-post" else (after - before)
    if "dnbr" in out.layers:
        out.severity = burn_severity(out.layers["dnbr"])
    return out


def burn_severity(dnbr: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The USGS class of each dNBR value (:data:`BURN_SEVERITY`), 0 where dNBR is NaN."""
    # the thresholds at the layer's precision: float32 0.44 lies below float64 0.44
    edges = np.asarray([lower for _, _, lower, _ in BURN_SEVERITY[1:]], dtype=dnbr.dtype)
    classes = (np.digitize(np.nan_to_num(dnbr, nan=0.0), edges) + 1).astype(np.uint8)
    classes[np.isnan(dnbr)] = 0
    return classes


def change_asset_fields(key: str, resolution_m: float | None) -> dict[str, Any]:
    """The STAC fields of a change asset (``dnbr``, ``dndwi``, ``dndvi``,
    ``dnbr_severity``, ``change_valid``): description, ``raster:bands`` and, for the
    classified ones, ``classification:classes``."""
    res = {} if resolution_m is None else {"spatial_resolution": resolution_m}
    if key == "change_valid":
        return {
            "description": "1 where both products of the event pair observed the pixel (a "
                           "real clear observation on each side), 0 where either side is "
                           "generated or has no data: only there is the change measured.",
            "raster:bands": [{"data_type": "uint8", **res}],
            "classification:classes": [
                {"value": 0, "name": "not_comparable", "description": "either side generated "
                 "or without data", "color_hint": "000000"},
                {"value": 1, "name": "both_observed", "description": "both sides observed",
                 "color_hint": "FFFFFF"}],
        }
    if key == "dnbr_severity":
        return {
            "description": "USGS burn severity class of dNBR (Key & Benson 2006): "
                           + "; ".join(f"{v} {n} from {lo:g}" for v, n, lo, _ in BURN_SEVERITY)
                           + ". 0 = no data. Valid only where change_valid is 1.",
            "raster:bands": [{"data_type": "uint8", "nodata": 0, **res}],
            "classification:classes": [
                {"value": v, "name": n, "color_hint": colour,
                 "description": f"dNBR >= {lo:g}" if np.isfinite(lo) else "dNBR < -0.25"}
                for v, n, lo, colour in BURN_SEVERITY],
        }
    change = CHANGE_INDICES[key]
    a, b = change.bands
    formula = f"{change.index} = ({a} - {b}) / ({a} + {b}) of each side's reflectance"
    return {
        "description": f"{change.title}: {change.index}_{change.order.replace('-', ' - ')}, "
                       f"{formula} (clipped at 0). {change.meaning[0].upper()}"
                       f"{change.meaning[1:]}. Valid only where change_valid is 1.",
        "raster:bands": [{"data_type": "int16", "nodata": CHANGE_NODATA,
                          "scale": CHANGE_SCALE, "offset": 0.0, "unit": "index difference",
                          **res}],
    }


__all__ = ("BURN_SEVERITY", "CHANGE_INDICES", "CHANGE_NODATA", "CHANGE_SCALE",
           "COMPOSITE_RULE", "DEFAULT_LOOK_AHEAD_DAYS", "DEFAULT_LOOK_BACK_DAYS", "ROLES",
           "ChangeIndex", "ChangeLayers", "Event", "NoClearObservationError", "Role",
           "burn_severity", "can_fill", "change_asset_fields", "change_layers",
           "check_observed", "check_sides", "compose_side", "event_window", "fill_gaps",
           "normalized_difference", "observation_composite", "parse_event", "scene_day",
           "side_items", "side_target_date", "side_window", "skip_reason")
