"""Name -> backbone factory in the style of ``timm.create_model`` / ``timm.list_models``."""

from __future__ import annotations

import fnmatch
import importlib
from typing import Any

from locoad.backbones.base import Backbone
from locoad.errors import ConfigError

# name -> ("module:Class", default kwargs). Classes are imported lazily, so a registered module
# that is missing or heavy costs nothing until that backbone is actually created.
_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {}


def register_backbone(name: str, target: str, **defaults: Any) -> None:
    """Register ``name`` -> ``"package.module:ClassName"`` with default constructor kwargs."""
    if ":" not in target:
        raise ConfigError(f"target must look like 'package.module:ClassName', got {target!r}")
    _REGISTRY[name] = (target, defaults)


def list_backbones(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style wildcard (e.g. ``"dinov2*"``)."""
    names = sorted(_REGISTRY)
    return fnmatch.filter(names, pattern) if pattern else names


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Instantiate a registered backbone; ``kwargs`` override the registered defaults."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}"
        )
    target, defaults = _REGISTRY[name]
    module_name, class_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ImportError(
            f"backbone {name!r} is registered as {target} but it cannot be imported: {err}"
        ) from err
    return cls(**{**defaults, **kwargs})


for _variant in ("vits14", "vitb14", "vitl14", "vitg14"):
    register_backbone(
        f"dinov2_{_variant}", "locoad.backbones.dinov2:DinoV2Backbone", variant=_variant
    )
register_backbone(
    "wide_resnet50", "locoad.backbones.cnn:TimmCNNBackbone", model_name="wide_resnet50_2"
)
for _variant in ("lite0", "lite1", "lite2"):
    register_backbone(
        f"efficientnet_{_variant}",
        "locoad.backbones.efficientnet_lite:EfficientNetLiteBackbone",
        variant=_variant,
    )
register_backbone("handcrafted", "locoad.backbones.handcrafted:HandcraftedBackbone")
