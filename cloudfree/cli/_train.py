"""``cloudfree train``: its arguments are generated from
:class:`~cloudfree.training.options.TrainOptions`, then the library trains."""

from __future__ import annotations

import argparse
import json
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Literal

from cloudfree.training.options import TrainOptions

DESCRIPTION = ("Train the cloud-removal generator (GAN) on Sentinel-2 series with simulated "
               "gaps: synthetic ones, or time cubes of a STAC source. Resumable.")


def _value_kind(hint: Any) -> dict[str, Any]:
    """argparse's ``type`` or ``choices`` for a field's type (``X | None`` as ``X``); a
    string otherwise (the bbox, which :class:`TrainOptions` parses itself)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        given = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = given[0] if len(given) == 1 else str
    if typing.get_origin(hint) is Literal:
        return {"choices": typing.get_args(hint)}
    return {"type": hint} if hint in (int, float) else {}


def _argument(option: Field[Any], hint: Any) -> tuple[str, dict[str, Any]]:
    """The flag and ``add_argument`` keywords of one :class:`TrainOptions` field."""
    meta = option.metadata
    default = None if option.default is MISSING else option.default
    shown = "" if default is None else f" (default {default})"
    kwargs = {"dest": option.name, "default": default, "help": meta["description"] + shown,
              **_value_kind(hint)}
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    return meta["flag"] or "--" + option.name.replace("_", "-"), kwargs


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train the generator (resumable)", description=DESCRIPTION)
    hints = typing.get_type_hints(TrainOptions)
    for option in fields(TrainOptions):
        flag, kwargs = _argument(option, hints[option.name])
        p.add_argument(flag, **kwargs)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = TrainOptions(**{option.name: getattr(args, option.name)
                              for option in fields(TrainOptions)})
    from cloudfree.demo import demo_defaults
    from cloudfree.settings import Settings
    from cloudfree.training.loop import train

    settings = None if options.data == "synth" else Settings()
    result = train(options, settings=settings, source_defaults=demo_defaults)
    print(json.dumps(result, indent=2))
    return 0
