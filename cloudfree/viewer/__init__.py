"""The map viewer, ``cloudfree view``: a page on 127.0.0.1 that shows the output
collection's mosaics (true and false colour), their provenance layers, event pairs with a
before/after swipe and their change layers, and where a clicked pixel came from.

Tiles come from titiler (``titiler.core``) in the same process, reading the COGs from S3
with the read-only key; the page's JavaScript (MapLibre GL JS) is vendored at set-up, so
nothing is fetched from outside 127.0.0.1. :mod:`cloudfree.viewer.browser` drives headless
Chromium over the DevTools protocol (the browser test, the README's screenshot).
"""

from cloudfree.viewer._catalog import LAYER_IDS, LAYERS, Layer, build_catalog, layer_query
from cloudfree.viewer._server import HOST, check_vendored, create_app, list_items, serve

__all__ = [
    "HOST",
    "LAYERS",
    "LAYER_IDS",
    "Layer",
    "build_catalog",
    "check_vendored",
    "create_app",
    "layer_query",
    "list_items",
    "serve",
]
