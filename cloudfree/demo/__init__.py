"""The demo world: a synthetic Sentinel-2 L2A catalog in the local stack, and a run over it."""

from cloudfree.demo.catalog import GENERATOR_VERSION, build_demo_catalog
from cloudfree.demo.items import ASSETS, build_collection, build_item, item_id
from cloudfree.demo.layout import (
    SEASON,
    Acquisition,
    DemoTile,
    demo_acquisitions,
    demo_plan,
    demo_tiles,
)
from cloudfree.demo.run import run_demo
from cloudfree.demo.scenes import generate_scenes, render_scene, to_dn
from cloudfree.demo.source import demo_defaults, demo_region

__all__ = [
    "ASSETS",
    "GENERATOR_VERSION",
    "SEASON",
    "Acquisition",
    "DemoTile",
    "build_collection",
    "build_demo_catalog",
    "build_item",
    "demo_acquisitions",
    "demo_defaults",
    "demo_plan",
    "demo_region",
    "demo_tiles",
    "generate_scenes",
    "item_id",
    "render_scene",
    "run_demo",
    "to_dn",
]
