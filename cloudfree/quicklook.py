"""Quicklooks: true-colour renderings of cubes and mosaics as PNG."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from cloudfree.sentinel2 import NODATA, OFFSET, SCALE


def rgb_uint8(
    red: NDArray[Any],
    green: NDArray[Any],
    blue: NDArray[Any],
    *,
    max_reflectance: float = 0.3,
    gamma: float = 1 / 1.6,
) -> NDArray[np.uint8]:
    """Stretch uint16 L2A digital numbers to an (H, W, 3) uint8 true-colour image.

    A fixed reflectance stretch (not a per-image one), so cloudy scenes and mosaics
    are directly comparable; nodata is black.
    """
    stack = np.stack([red, green, blue], axis=-1).astype(np.float32)
    nodata = (stack == NODATA).all(axis=-1)
    reflectance = np.clip(stack * SCALE + OFFSET, 0, None) / max_reflectance
    img: NDArray[np.uint8] = (np.clip(reflectance, 0, 1) ** gamma * 255).round().astype(np.uint8)
    img[nodata] = 0
    return img


def png_bytes(img: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(img: NDArray[np.uint8], *, max_px: int = 256) -> bytes:
    image = Image.fromarray(img)
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def side_by_side(panels: list[tuple[str, NDArray[np.uint8]]], *, gap_px: int = 8) -> Image.Image:
    """Panels of equal height next to each other, each with its title above."""
    title_h = 18
    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + gap_px * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + title_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, panel in panels:
        canvas.paste(Image.fromarray(panel), (x, title_h))
        draw.text((x + 4, 3), title, fill=(0, 0, 0))
        x += panel.shape[1] + gap_px
    return canvas
