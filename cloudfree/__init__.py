"""cloudfree: cloud-free Sentinel-2 mosaics from any STAC API, published as COGs to STAC."""

__version__ = "0.1.0"
