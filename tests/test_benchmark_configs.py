"""The benchmarks' locoad pipelines compose from conf/ as written, so a GPU session can run them
in one call (they cannot run in CI: SAM vit_h and ViT-G/14 take minutes per image on a CPU)."""

from __future__ import annotations

import peer_benchmark
import pytest

from conftest import compose_cfg


@pytest.mark.parametrize("name", list(peer_benchmark.LOCOAD))
def test_peer_benchmark_pipelines_compose_with_random_weights(name, tmp_path):
    overrides = peer_benchmark.locoad_overrides(name, True, 224, ["backbone.dtype=bfloat16"])
    model = compose_cfg(overrides, tmp_path).model
    assert model.backbone.pretrained is False and model.backbone.image_size == 224
    assert model.backbone.dtype == "bfloat16"
    if name == "locoad_seed_full":
        assert model.segmenter.model_type == "vit_h" and model.backbone.variant == "vitg14"
        assert model.segmenter.checkpoint is None and model.segmenter.allow_random_weights
        assert model.aligner._target_.endswith("DeAOTAligner") and model.aligner.checkpoint is None
    expected = {"locoad_anomalydino": ["anomalydino"]}.get(name)
    assert list(model.features) == (expected or ["class_agnostic_patch", "class_aware_patch", "foreground_patch",
                                                 "class_embedding", "class_histogram", "class_colour", "class_location"])


def test_peer_benchmark_keeps_weights_without_random_flag(tmp_path):
    model = compose_cfg(peer_benchmark.locoad_overrides("locoad_seed_full", False, 518, []), tmp_path).model
    assert model.segmenter.checkpoint.endswith("sam_vit_h_4b8939.pth") and not model.segmenter.allow_random_weights
    assert model.backbone.pretrained is True
