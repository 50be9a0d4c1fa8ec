"""The OmniCloudMask detector: a learned single-date cloud and shadow segmenter (Wright et
al. 2025) on red, green and NIR, from weights at a local path only.

**What it needs.** The ``omnicloudmask`` package (it builds the network: a fastai-style
DynamicUnet over a timm encoder, or a segmentation-models-pytorch U-Net in its later
versions, and runs it with ``predict_from_array(..., custom_models=model)``), and the
weights of that network as a torch state dict (``.pth``) or a ``.safetensors`` file at a
local path: ``weights=`` or the environment variable :data:`WEIGHTS_ENV`. Nothing is ever
downloaded: the package's own loader would fetch its weights from the internet at first
use; this adapter never calls it. Bands: B04 (red), B03 (green) and B8A or B08 (NIR), as
the registry declares; the model normalises each band per patch, so L1C and L2A both work.
Its four classes are 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow.

**What was checked.** The error paths (no path, no such file, a file that is no state dict,
a state dict whose layout or keys and shapes do not fit the network, the package missing)
are tested. The network itself was **not run** in this project: the package is not
installed here (it pulls a CUDA build of torch) and its weights are not in the repository.
The mapping of its classes and inputs follows the package's documentation and source.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cloudfree.detection._registry import Detection, DetectionInput
from cloudfree.errors import DetectorWeightsError, InvalidParameterError
from cloudfree.masking import dilate

NAME = "omnicloudmask"
#: The environment variable naming the weights file when ``weights=`` is not given.
WEIGHTS_ENV = "CLOUDFREE_OMNICLOUDMASK_WEIGHTS"
#: The network's inputs, in its order, and its classes.
INPUTS = ("red", "green", "nir")
CLASSES = {0: "clear", 1: "thick cloud", 2: "thin cloud", 3: "cloud shadow"}
CLOUD_CLASSES = (1, 2)
SHADOW_CLASSES = (3,)
#: The package's own defaults for a 10 m scene (not tuned here).
DEFAULT_PATCH_SIZE = 1000
DEFAULT_PATCH_OVERLAP = 300
#: The package's first published network (model version 1: regnety_004, fastai layout);
#: give ``architecture``/``model_library`` to match other weights.
DEFAULT_ARCHITECTURE = "regnety_004"
DEFAULT_LIBRARY = "fastai"
_INSTALL = ("install the omnicloudmask package into this environment, e.g. 'pip install "
            "omnicloudmask' (it needs torch, timm and segmentation-models-pytorch; install "
            "the CPU build of torch first to keep the CUDA one out)")


def reach_m(params: dict[str, Any]) -> float:
    """The dilation plus the patch overlap at 10 m. The network sees a whole patch, and
    normalises it per patch, so no finite halo makes two tiles' masks exactly equal."""
    return float(params.get("dilation_m", 0.0)) + 10.0 * float(
        params.get("patch_overlap", DEFAULT_PATCH_OVERLAP))


def weights_path(weights: str | os.PathLike[str] | None) -> Path:
    """The weights file: ``weights``, else :data:`WEIGHTS_ENV`; a
    :class:`DetectorWeightsError` when neither names an existing file."""
    given = weights if weights else os.environ.get(WEIGHTS_ENV)
    if not given:
        raise DetectorWeightsError(NAME, "(none given)", "no weights file was given; pass "
                                   f"--weights PATH or set {WEIGHTS_ENV}")
    path = Path(given).expanduser()
    if not path.is_file():
        raise DetectorWeightsError(NAME, path, "no such file")
    return path


def load_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a ``.pth`` state dict (read with ``weights_only``: no code runs) or a
    ``.safetensors`` file; :class:`DetectorWeightsError` for anything else."""
    import torch

    if path.suffix == ".safetensors":
        try:
            safetensors_torch = importlib.import_module("safetensors.torch")
        except ImportError as exc:
            raise InvalidParameterError("weights", str(path), "reading .safetensors needs "
                                        "the safetensors package; " + _INSTALL) from exc
        try:
            state: Any = safetensors_torch.load_file(str(path))
        except Exception as exc:  # safetensors raises its own kinds for a bad file
            raise DetectorWeightsError(NAME, path, f"not a safetensors file ({exc})") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a file that is no state dict
            reason = " ".join(str(exc).split())[:200]
            raise DetectorWeightsError(NAME, path, "cannot be read as a torch state dict "
                                       f"({type(exc).__name__}: {reason})") from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, Mapping) or not state:
        kind = (f"a {type(state).__name__}" if not isinstance(state, Mapping)
                else "an empty mapping")
        raise DetectorWeightsError(NAME, path, f"holds {kind}, not a state dict (a mapping "
                                   "of parameter names to tensors)")
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise DetectorWeightsError(NAME, path, "is not a state dict of tensors: "
                                   f"{', '.join(not_tensors[:3])} are not tensors")
    return {str(k): v for k, v in state.items()}


def check_layout(state: Mapping[str, Any], path: Path) -> None:
    """What any OmniCloudMask network's weights have, checked without the package: a
    first convolution over 3 inputs (red, green, NIR) and a last one onto 4 classes."""
    convolutions = [(key, tuple(value.shape)) for key, value in state.items()
                    if key.endswith("weight") and value.ndim == 4]
    if not convolutions:
        raise DetectorWeightsError(NAME, path, "has no convolution weights (4-D tensors); "
                                   "a segmentation network's state dict has many")
    first_key, first = convolutions[0]
    if first[1] != len(INPUTS):
        raise DetectorWeightsError(NAME, path, f"its first convolution {first_key} "
                                   f"{list(first)} takes {first[1]} input channels; "
                                   f"OmniCloudMask takes {len(INPUTS)} ({', '.join(INPUTS)})")
    last_key, last = convolutions[-1]
    if last[0] != len(CLASSES):
        raise DetectorWeightsError(NAME, path, f"its last convolution {last_key} {list(last)} "
                                   f"gives {last[0]} classes; OmniCloudMask gives "
                                   f"{len(CLASSES)} ({', '.join(CLASSES.values())})")


def fit_model(state: Mapping[str, Any], path: Path, *, architecture: str,
              model_library: str) -> Any:
    """The package's network for ``architecture`` with ``state`` loaded, in eval mode; a
    :class:`DetectorWeightsError` naming the keys and shapes that do not fit."""
    try:
        model_utils = importlib.import_module("omnicloudmask.model_utils")
    except ImportError as exc:
        raise InvalidParameterError("mask", NAME, _INSTALL) from exc
    build = getattr(model_utils, "build_model", None)
    if build is None:
        raise InvalidParameterError("mask", NAME, "this omnicloudmask version has no "
                                    "model_utils.build_model; install a newer one")
    try:
        model = build(model_name=architecture, model_library=model_library,
                      in_chans=len(INPUTS), n_out=len(CLASSES))
    except Exception as exc:  # an unknown timm name, a missing fastai for the old layout
        raise InvalidParameterError("architecture", f"{model_library}:{architecture}",
                                    f"omnicloudmask cannot build it ({exc})") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} (network: {list(shape)})"
              for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected),
                       ("of another shape", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} keys {what}: {', '.join(keys[:3])}{more}")
    if problems:
        raise DetectorWeightsError(NAME, path, f"they do not fit the {model_library} "
                                   f"{architecture} network ({'; '.join(problems)}); give "
                                   "architecture=/model_library= matching the weights")
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    return model


def detect(inp: DetectionInput, *, weights: str | os.PathLike[str] | None = None,
           architecture: str = DEFAULT_ARCHITECTURE, model_library: str = DEFAULT_LIBRARY,
           patch_size: int = DEFAULT_PATCH_SIZE, patch_overlap: int = DEFAULT_PATCH_OVERLAP,
           dilation_m: float = 0.0, device: str = "cpu") -> Detection:
    """Classes per date from the network; cloud = thick or thin cloud (dilated by
    ``dilation_m``, none by default: the network was trained on its own edges), shadow =
    the shadow class; no data (NaN or 0 in every band) is never either."""
    path = weights_path(weights)
    state = load_state_dict(path)
    check_layout(state, path)
    model = fit_model(state, path, architecture=architecture, model_library=model_library)
    cloud_mask = importlib.import_module("omnicloudmask")
    red, green = inp.band("B04"), inp.band("B03")
    nir = inp.band("B8A", "B08")
    if red is None or green is None or nir is None:
        raise InvalidParameterError("band_names", list(inp.band_names),
                                    "OmniCloudMask needs B04, B03 and B8A or B08")
    if min(inp.bands.shape[-2:]) < 32:
        raise InvalidParameterError("shape", list(inp.bands.shape[-2:]),
                                    "OmniCloudMask needs at least 32 x 32 pixels")
    nodata = inp.nodata
    classes = np.zeros(nodata.shape, np.uint8)
    for t in range(nodata.shape[0]):
        frame = np.nan_to_num(np.stack([red[t], green[t], nir[t]]), nan=0.0)
        if nodata[t].all():
            continue
        pred = cloud_mask.predict_from_array(
            frame.astype(np.float32), patch_size=patch_size, patch_overlap=patch_overlap,
            inference_device=device, no_data_value=0, apply_no_data_mask=True,
            custom_models=model, pred_classes=len(CLASSES))
        classes[t] = np.asarray(pred)[0]
    cloud = np.isin(classes, CLOUD_CLASSES)
    cloud = dilate(cloud, radius_px=dilation_m / inp.resolution_m) & ~nodata
    shadow = np.isin(classes, SHADOW_CLASSES) & ~cloud & ~nodata
    return Detection(cloud=cloud, shadow=shadow, nodata=nodata, parameters={
        "weights": path.name, "architecture": architecture, "model_library": model_library,
        "patch_size": int(patch_size), "patch_overlap": int(patch_overlap),
        "dilation_m": float(dilation_m)})
