"""Training series from real time cubes of any STAC source.

The cube is read once through the mosaic pipeline's own stages (search, cube, masking)
and kept in memory as reflectance. A series is a random crop of ``frames`` dates in time
order. Its truth is only known where the real scene was clear, so every batch carries a
``known`` mask beside ``clear``; the losses count hidden pixels that are known. Gaps are
simulated on top of the real clouds in two ways: real cloud masks of the cube's own
cloudy frames, cropped at random places, turned and pasted onto other frames; and
synthetic Perlin clouds, thick and thin, with displaced shadows
(:func:`cloudfree.training.data.cloud_mask`). Whole series get random quarter turns and
flips, and random band subsets, as the synthetic series do.

A source is given with its bbox and date window. Where they may be left out (the CLI and
the flow default to the local demo catalog's) is decided at the edge, which passes a
:class:`SourceDefaults`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cloudfree.cube import build_cube
from cloudfree.errors import InvalidParameterError
from cloudfree.grid import AOI, Bbox, Tile, aoi_tile, parse_bbox, parse_date_window
from cloudfree.masking import (
    DEFAULT_DILATION_M,
    S2CLOUDLESS_BANDS,
    s2cloudless_clear_mask,
    scl_clear_mask,
)
from cloudfree.models.weights import (
    BAND_ALIASES,
    MODEL_BANDS,
    canonical_band,
    day_of_year,
    default_normalisation,
)
from cloudfree.search import search_scenes
from cloudfree.sentinel2 import NODATA, to_reflectance
from cloudfree.training.data import cloud_mask, draw_band_set, draw_orientation, orient
from cloudfree.training.series_data import SeriesSource

#: The cube's largest side by default: T x C x 512 x 512 float32 stays well under a GB.
DEFAULT_CUBE_PX = 512
#: Frames whose real cloud cover lies in this range feed the pool of pasted masks: clearer
#: ones hide too little, cloudier ones are mostly overcast and teach nothing about shapes.
POOL_CLOUD_FRACTION = (0.05, 0.80)
#: A series needs one frame at least this clear inside its crop to learn from.
MIN_KNOWN_FRACTION = 0.25
#: How often a crop (or a partial gap) is drawn again before the best one is taken.
MAX_DRAWS = 20


#: A bbox as :func:`cloudfree.grid.parse_bbox` takes it: 4 numbers or "minx,miny,maxx,maxy".
BboxLike = Bbox | list[float] | str


class SourceDefaults(Protocol):
    """Decides the bbox and date window of a STAC source given without them (or without
    one of them); raises :class:`~cloudfree.errors.CloudFreeError` where it has none."""

    def __call__(
        self,
        stac_url: str,
        *,
        collection: str,
        bbox: BboxLike | None,
        datetime: str | None,
        size_px: int,
        resolution_m: float,
    ) -> tuple[Bbox, str]: ...


@dataclass(frozen=True)
class StacSource:
    """Where a training cube came from: written into the model card and the checkpoint."""

    stac_url: str
    collection: str
    bbox: Bbox
    datetime: str
    scene_ids: tuple[str, ...]
    resolution_m: float
    masking: str

    @property
    def fingerprint(self) -> str:
        """Changes when a re-read would give other scenes, so a resume can say it is not exact."""
        text = "|".join(
            [self.stac_url, self.collection, repr(self.bbox), self.datetime, *self.scene_ids]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainingCube:
    """A time cube in memory: what :class:`CubeSampler` draws series from."""

    reflectance: np.ndarray  # (T, C, H, W) float32 surface reflectance, NaN = nodata
    clear: np.ndarray  # (T, H, W) bool: a clear observation (not cloud, shadow or nodata)
    days: np.ndarray  # (T,) days since 1970-01-01, increasing
    bands: tuple[str, ...]  # model band ids of the C bands, in MODEL_BANDS order
    tile: Tile  # the grid: EPSG, bounds, resolution
    source: StacSource | SeriesSource


def model_assets(items: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Reflectance asset keys every item has -> the model band they hold (ESA ids or Earth
    Search names; one asset per band, in ``MODEL_BANDS`` order)."""
    common = set.intersection(*(set(it.get("assets", {})) for it in items))
    found: dict[str, str] = {}
    for key in sorted(common):
        if key.lower() in BAND_ALIASES or key.upper() in MODEL_BANDS:
            band = canonical_band(key)
            if band != "ndvi" and band not in found.values():
                found[key] = band
    return dict(sorted(found.items(), key=lambda kv: MODEL_BANDS.index(kv[1])))


def cube_tile(
    aoi: AOI, items: Sequence[Mapping[str, Any]], *, resolution_m: float, max_px: int
) -> Tile:
    """The cube's grid: the AOI cut to the scenes' footprint (no empty margins), then to at
    most ``max_px`` pixels a side around its centre, to bound the memory."""
    boxes = [it["bbox"] for it in items]
    footprint = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    box = (
        max(aoi.bbox[0], footprint[0]),
        max(aoi.bbox[1], footprint[1]),
        min(aoi.bbox[2], footprint[2]),
        min(aoi.bbox[3], footprint[3]),
    )
    tile = aoi_tile(
        AOI(box if box[0] < box[2] and box[1] < box[3] else aoi.bbox), resolution_m=resolution_m
    )
    height, width = tile.shape
    minx, _, _, maxy = tile.bounds
    keep_h, keep_w = min(height, max_px), min(width, max_px)
    x0 = minx + (width - keep_w) // 2 * resolution_m
    y1 = maxy - (height - keep_h) // 2 * resolution_m
    return replace(tile, bounds=(x0, y1 - keep_h * resolution_m, x0 + keep_w * resolution_m, y1))


def read_cube(
    stac_url: str,
    *,
    collection: str,
    bbox: BboxLike,
    datetime: str,
    gdal_env: dict[str, Any] | None = None,
    resolution_m: float = 10.0,
    max_px: int = DEFAULT_CUBE_PX,
    dilation_m: float = DEFAULT_DILATION_M,
    opening_m: float = 0.0,
) -> TrainingCube:
    """Search, stack and mask a STAC time cube, the way the mosaic flows do, into memory.

    Clear masks come from the SCL asset when the items have one (L2A), else from
    s2cloudless (L1C, which needs its ten bands). Reflectance is ``DN * SCALE + OFFSET``;
    ``ndvi`` ((NDVI + 1) / 2) is added when red and NIR are present.

    Raises:
        InvalidAOIError, InvalidDateWindowError: bad ``bbox`` or ``datetime``.
        NoScenesFoundError, UnknownCollectionError, StacApiUnreachableError: from the search.
        InvalidParameterError: the items have no reflectance bands or no way to mask clouds.
    """
    aoi = parse_bbox(bbox)
    window = parse_date_window(datetime)
    items = search_scenes(stac_url, collection=collection, aoi=aoi, window=window)
    assets = model_assets(items)
    has_scl = all("scl" in it.get("assets", {}) for it in items)
    if not assets or not (has_scl or set(S2CLOUDLESS_BANDS) <= set(assets.values())):
        raise InvalidParameterError(
            "collection",
            collection,
            "its items need Sentinel-2 reflectance bands and an 'scl' asset (L2A) or the ten "
            f"L1C bands s2cloudless needs; they have {sorted(items[0].get('assets', {}))}",
        )
    tile = cube_tile(aoi, items, resolution_m=resolution_m, max_px=max_px)
    cube = build_cube(
        items,
        [*assets, *(["scl"] if has_scl else [])],
        tile=tile,
        chunksize=max(tile.shape),
        gdal_env=gdal_env,
    ).compute()
    dn = cube.sel(band=list(assets)).values
    reflectance = np.where(dn == NODATA, np.nan, to_reflectance(dn.astype(np.float32)))
    band_ids = tuple(assets.values())
    if has_scl:
        clear = scl_clear_mask(
            cube.sel(band="scl"),
            resolution_m=resolution_m,
            dilation_m=dilation_m,
            opening_m=opening_m,
        ).values
    else:
        clear = s2cloudless_clear_mask(
            reflectance, band_ids, resolution_m=resolution_m, dilation_m=dilation_m
        )
    if {"B04", "B08"} <= set(band_ids):
        red, nir = reflectance[:, band_ids.index("B04")], reflectance[:, band_ids.index("B08")]
        # the -0.1 offset can make dark pixels negative: keep NDVI in its [-1, 1] range
        ndvi = np.clip((nir - red) / np.maximum(np.abs(nir + red), 1e-6), -1.0, 1.0)
        reflectance = np.concatenate([reflectance, ((ndvi + 1) / 2)[:, None]], axis=1)
        band_ids = (*band_ids, "ndvi")
    days = (cube["time"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    source = StacSource(
        stac_url=stac_url,
        collection=collection,
        bbox=aoi.bbox,
        datetime=datetime,
        scene_ids=tuple(it["id"] for it in items),
        resolution_m=resolution_m,
        masking="scl" if has_scl else "s2cloudless",
    )
    return TrainingCube(
        reflectance=reflectance.astype(np.float32),
        clear=np.asarray(clear, bool) & np.isfinite(reflectance).all(axis=1),
        days=days.astype(np.float64),
        bands=band_ids,
        tile=tile,
        source=source,
    )


@dataclass(frozen=True)
class SeriesDraw:
    """Everything random about one series; the arrays follow from it and the cube."""

    frames: np.ndarray  # (T,) cube time indices, increasing
    y: int
    x: int
    gaps: np.ndarray  # (T, S, S) bool simulated gaps, in the cube's orientation
    rotations: int
    flip: bool
    bands: tuple[str, ...]  # the band subset drawn (before keeping the cube's bands)


class CubeSampler:
    """Draws training batches from a real time cube; deterministic in (seed, step) so
    training resumes exactly. Same interface as :class:`~cloudfree.training.data.SeriesSampler`."""

    def __init__(
        self, cube: TrainingCube, *, size: int = 64, frames: int = 6, seed: int = 0,
        nearest: bool = False,
    ) -> None:
        n_dates, _, height, width = cube.reflectance.shape
        where = f"the cube of {cube.source.collection!r} over {list(cube.source.bbox)}"
        if size < 1 or size > min(height, width):
            raise InvalidParameterError(
                "size",
                size,
                f"{where} is {height}x{width} px at {cube.source.resolution_m:g} m; "
                "give a smaller crop size or a larger bbox",
            )
        if frames < 1 or frames > n_dates:
            raise InvalidParameterError(
                "frames",
                frames,
                f"{where} has {n_dates} dates in {cube.source.datetime}; "
                "ask for fewer frames or widen the datetime",
            )
        self.cube, self.size, self.frames, self.seed = cube, size, frames, seed
        #: draw a target date, then the dates nearest it with clear pixels in the crop (as
        #: inference picks them), instead of dates at random over the whole cube
        self.nearest = nearest
        self.source = cube.source
        norm = default_normalisation()
        offset = np.array([norm["offset"][b] for b in cube.bands], np.float32)[:, None, None]
        scale = np.array([norm["scale"][b] for b in cube.bands], np.float32)[:, None, None]
        valid = np.isfinite(cube.reflectance).all(axis=1)
        self.values = np.nan_to_num((cube.reflectance - offset) / scale).astype(np.float32)
        self.band_index = [MODEL_BANDS.index(b) for b in cube.bands]
        self.available = np.isin(MODEL_BANDS, cube.bands)
        self.known = cube.clear & valid
        self.cloud = ~cube.clear & valid
        self.doys = day_of_year(cube.days)
        if self.known.mean(axis=(1, 2)).max() < MIN_KNOWN_FRACTION:
            raise InvalidParameterError(
                "datetime",
                cube.source.datetime,
                f"no date of {where} is {MIN_KNOWN_FRACTION:.0%} clear: there is no truth to "
                "learn from; widen the datetime or move the bbox",
            )
        cover = self.cloud.sum(axis=(1, 2)) / np.maximum(valid.sum(axis=(1, 2)), 1)
        low, high = POOL_CLOUD_FRACTION
        self.pool_frames = np.flatnonzero((cover >= low) & (cover <= high))

    @classmethod
    def from_stac(
        cls,
        stac_url: str,
        *,
        collection: str,
        bbox: BboxLike | None = None,
        datetime: str | None = None,
        gdal_env: dict[str, Any] | None = None,
        size: int = 64,
        frames: int = 6,
        seed: int = 0,
        max_px: int = DEFAULT_CUBE_PX,
        resolution_m: float = 10.0,
        defaults: SourceDefaults | None = None,
    ) -> CubeSampler:
        """Read the cube once (see :func:`read_cube`).

        A bbox or datetime left out comes from ``defaults`` (the edge's choice, e.g. the
        demo catalog's region and season); without them both must be given, since
        searching a whole real archive is never meant.
        """
        if bbox is not None and datetime is not None:
            region, window = parse_bbox(bbox).bbox, datetime
        elif defaults is None:
            raise InvalidParameterError(
                "bbox" if bbox is None else "datetime",
                None,
                f"give both a bbox and a datetime to train on collection {collection!r} at "
                f"{stac_url}; this source has no default region and dates",
            )
        else:
            region, window = defaults(
                stac_url,
                collection=collection,
                bbox=bbox,
                datetime=datetime,
                size_px=size,
                resolution_m=resolution_m,
            )
        cube = read_cube(
            stac_url,
            collection=collection,
            bbox=region,
            datetime=window,
            gdal_env=gdal_env,
            resolution_m=resolution_m,
            max_px=max_px,
        )
        return cls(cube, size=size, frames=frames, seed=seed)

    @property
    def description(self) -> str:
        """What the series are, for the model card."""
        src, (n_dates, _, height, width) = self.source, self.values.shape
        if isinstance(src, SeriesSource):
            return (
                f"real Sentinel-2 series from the file {Path(src.path).name} (SHA-256 "
                f"{src.sha256[:12]}...): {n_dates} dates {src.datetime}, {height}x{width} px "
                f"at {src.resolution_m:g} m, bands {', '.join(self.cube.bands)}, clear "
                f"masks from {src.masking}; "
                + ("crops of a target date and the dates nearest it with clear pixels; "
                   if self.nearest else "")
                + self._gaps_text
            )
        bbox = ", ".join(f"{v:.5f}" for v in src.bbox)
        return (
            f"Sentinel-2 time cube from STAC collection {src.collection!r} at {src.stac_url}, "
            f"bbox [{bbox}], datetime {src.datetime}: {len(src.scene_ids)} scenes on "
            f"{n_dates} dates, {height}x{width} px at {src.resolution_m:g} m, bands "
            f"{', '.join(self.cube.bands)}, clear masks from {src.masking}; " + self._gaps_text
        )

    @property
    def _gaps_text(self) -> str:
        return (
            f"gaps: real cloud masks of {len(self.pool_frames)} cloudy frames (mask pool, "
            f"{POOL_CLOUD_FRACTION[0]:.0%}-{POOL_CLOUD_FRACTION[1]:.0%} cloud) pasted at "
            "random places, turned and flipped, and synthetic Perlin clouds (thick and thin) "
            "with displaced shadows; losses only on pixels clear in the real cube"
        )

    def real_cloud_crop(self, rng: np.random.Generator) -> np.ndarray:
        """(S, S) bool: a real cloud mask of one of the pool's frames, cropped at a random
        place, turned and flipped. All clear when the pool is empty."""
        s = self.size
        if not len(self.pool_frames):
            return np.zeros((s, s), bool)
        frame = self.pool_frames[rng.integers(len(self.pool_frames))]
        y = int(rng.integers(0, self.cloud.shape[1] - s + 1))
        x = int(rng.integers(0, self.cloud.shape[2] - s + 1))
        return orient(self.cloud[frame, y : y + s, x : x + s], *draw_orientation(rng)).copy()

    def _frame_gap(self, rng: np.random.Generator) -> np.ndarray:
        """One frame's simulated gap: overcast, a pasted real mask, Perlin clouds or none."""
        u = rng.random()
        if u < 0.1:
            return np.ones((self.size, self.size), bool)
        if u < 0.5 and len(self.pool_frames):
            return self.real_cloud_crop(rng)
        if u < 0.8:
            return cloud_mask((self.size, self.size), rng)
        return np.zeros((self.size, self.size), bool)

    def _partial_gap(self, rng: np.random.Generator, known: np.ndarray) -> np.ndarray:
        """A gap that hides some, but not all, of ``known`` (at least a quarter of the
        frame): the generator learns most from frames it sees part of."""
        for attempt in range(MAX_DRAWS):
            real = attempt % 2 == 0 and len(self.pool_frames)
            gap = self.real_cloud_crop(rng) if real else cloud_mask(known.shape, rng)
            if (gap & known).any() and (known & ~gap).any():
                return gap
        # no cloud fitted: a disc around a known pixel, a fifth of the frame at most
        rows, cols = np.nonzero(known)
        pick = int(rng.integers(len(rows)))
        yy, xx = np.ogrid[: self.size, : self.size]
        disc: NDArray[np.bool_] = (yy - rows[pick]) ** 2 + (xx - cols[pick]) ** 2 <= (
            self.size / 4
        ) ** 2
        return disc

    def _nearest_frames(self, rng: np.random.Generator, y: int, x: int) -> np.ndarray:
        """A random date at least :data:`MIN_KNOWN_FRACTION` clear in the crop (any date
        when none is) and the ``frames - 1`` dates nearest it with any clear pixel there,
        in time order: the series inference builds around a target."""
        s = self.size
        known = self.known[:, y : y + s, x : x + s].mean(axis=(1, 2))
        clear_enough = np.flatnonzero(known >= MIN_KNOWN_FRACTION)
        pool = clear_enough if len(clear_enough) else np.arange(len(known))
        centre = int(pool[rng.integers(len(pool))])
        others = np.flatnonzero(known > 0.02)
        others = others[others != centre]
        order = others[np.argsort(np.abs(self.cube.days[others] - self.cube.days[centre]),
                                  kind="stable")]
        chosen = list(order[: self.frames - 1]) + [centre]
        if len(chosen) < self.frames:  # too few dates with clear pixels: any others
            rest = [i for i in np.argsort(np.abs(self.cube.days - self.cube.days[centre]),
                                          kind="stable") if i not in chosen]
            chosen += rest[: self.frames - len(chosen)]
        return np.sort(np.asarray(chosen))

    def _draw(self, rng: np.random.Generator) -> SeriesDraw:
        n_dates, height, width = self.known.shape
        s, t = self.size, self.frames
        best: tuple[float, np.ndarray, int, int] | None = None
        for _ in range(MAX_DRAWS):  # a crop with at least one frame clear enough
            y, x = int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1))
            if self.nearest:
                frames = self._nearest_frames(rng, y, x)
            else:
                frames = np.sort(rng.choice(n_dates, t, replace=False))
            score = float(self.known[frames, y : y + s, x : x + s].mean(axis=(1, 2)).max())
            if best is None or score > best[0]:
                best = (score, frames, y, x)
            if score >= MIN_KNOWN_FRACTION:
                break
        assert best is not None
        _, frames, y, x = best
        known = self.known[frames, y : y + s, x : x + s]
        gaps = np.stack([self._frame_gap(rng) for _ in range(t)])
        fraction = known.mean(axis=(1, 2))
        candidates = np.flatnonzero(fraction >= min(MIN_KNOWN_FRACTION, fraction.max()))
        target = int(candidates[rng.integers(len(candidates))])
        hidden = gaps[target] & known[target]
        if not hidden.any() or not (known[target] & ~gaps[target]).any():
            gaps[target] = self._partial_gap(rng, known[target])
        rotations, flip = draw_orientation(rng)
        return SeriesDraw(
            frames=frames,
            y=y,
            x=x,
            gaps=gaps,
            rotations=rotations,
            flip=flip,
            bands=draw_band_set(rng),
        )

    def draws(self, step: int, batch_size: int) -> list[SeriesDraw]:
        """The random choices of batch ``step``: a function of (seed, step) alone."""
        rng = np.random.default_rng([self.seed, step])
        return [self._draw(rng) for _ in range(batch_size)]

    def series(self, draw: SeriesDraw) -> dict[str, np.ndarray]:
        """One series' arrays (no batch axis) from its draw."""
        s = self.size
        window = (draw.frames, slice(draw.y, draw.y + s), slice(draw.x, draw.x + s))
        truth = np.zeros((self.frames, len(MODEL_BANDS), s, s), np.float32)
        truth[:, self.band_index] = self.values[draw.frames][..., window[1], window[2]]
        known = self.known[window]
        clear = known & ~draw.gaps
        present = np.isin(MODEL_BANDS, draw.bands) & self.available
        if not present.any():  # the drawn set has none of the cube's bands
            present = self.available
        turn = (draw.rotations, draw.flip)
        return {
            "truth": orient(truth, *turn),
            "clear": orient(clear, *turn).astype(np.float32),
            "doy": self.doys[draw.frames].astype(np.float32),
            "band_present": present.astype(np.float32),
            "known": orient(known, *turn).astype(np.float32),
        }

    def batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Arrays: truth (B,T,C,H,W) normalised, clear (B,T,H,W), doy (B,T), band_present (B,C),
        known (B,T,H,W): 1 where the truth was clear in the real cube."""
        series = [self.series(d) for d in self.draws(step, batch_size)]
        return {
            key: np.ascontiguousarray(np.stack([one[key] for one in series])) for key in series[0]
        }
