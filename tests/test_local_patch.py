"""The local patch score: each patch against the shots' patches near the same place."""

import numpy as np
import pytest
import torch

from locoad.errors import ConfigError
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.local_patch import LocalPatchScore, local_nn_distance
from locoad.types import ParsedImage

G, D = 12, 6


def parsed(features: torch.Tensor) -> ParsedImage:
    rgb = np.zeros((G, G, 3), np.uint8)
    grid = torch.ones(G, G, dtype=torch.long)
    return ParsedImage(rgb, rgb.astype(np.float32), grid.numpy(), features, grid, 2)


def test_a_shift_within_the_radius_costs_nothing_and_one_beyond_it_does() -> None:
    bank = torch.randn(3, D, G, G, generator=torch.Generator().manual_seed(0))
    query = torch.roll(bank[1], shifts=(2, 1), dims=(1, 2))
    inside = (slice(2, None), slice(1, None))  # the cells the roll did not wrap
    assert local_nn_distance(query, bank, radius=2)[inside].max() < 1e-5
    assert local_nn_distance(query, bank, radius=1)[inside].min() > 1e-3  # no exact match nearer


def test_border_patches_reach_the_same_distances_as_inner_ones() -> None:
    """The window was zero-padded and a padded zero vector was a neighbour at similarity 0, so a
    border patch's distance stopped at 1 while inner ones reached 2 (negative similarities are
    common with feature_norm=center or standardize)."""
    v = torch.randn(D, 1, 1, generator=torch.Generator().manual_seed(1))
    bank = v.expand(D, G, G)[None]  # one patch everywhere
    dist = local_nn_distance(-bank[0], bank, radius=1)  # its opposite everywhere: similarity -1
    torch.testing.assert_close(dist, torch.full((G, G), 2.0))


def test_two_parts_swapped_are_seen_here_and_not_by_the_global_search() -> None:
    # two kinds of patch, each in its own corner of every shot; the test image swaps them
    gen = torch.Generator().manual_seed(1)
    a, b, bg = torch.randn(3, D, generator=gen)
    shot = bg[:, None, None].repeat(1, G, G)
    shot[:, :3, :3] = a[:, None, None]
    shot[:, -3:, -3:] = b[:, None, None]
    swapped = shot.clone()
    swapped[:, :3, :3], swapped[:, -3:, -3:] = b[:, None, None], a[:, None, None]
    shots = [parsed(shot + 0.01 * torch.randn(D, G, G, generator=gen)) for _ in range(3)]
    local = LocalPatchScore(radius=2, baseline="none")
    glob = ClassAgnosticPatchScore(top_percent=1.0)
    assert local.score(parsed(shot), local.fit(shots)).value < 0.01
    assert local.score(parsed(swapped), local.fit(shots)).value > 0.5
    assert glob.score(parsed(swapped), glob.fit(shots)).value < 0.01


def test_leave_one_out_scores_each_shot_against_the_others() -> None:
    gen = torch.Generator().manual_seed(2)
    shots = [parsed(torch.randn(D, G, G, generator=gen)) for _ in range(3)]
    shots.append(parsed(shots[0].features.clone()))  # a twin: 0 and 3 have a match, 1 and 2 none
    loo = LocalPatchScore(radius=0, baseline="none").loo_scores(shots, [0, 1, 2, 3])
    assert loo[0] < 1e-5 and loo[3] < 1e-5 and min(loo[1], loo[2]) > 0.3


@pytest.mark.parametrize("kwargs, match", [({"radius": -1}, "radius"), ({"radius": 1.5}, "radius"),
                                           ({"radius": True}, "radius"), ({"top_percent": 0}, "top_percent"),
                                           ({"baseline": "mean"}, "baseline")])
def test_bad_settings_say_which(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        LocalPatchScore(**kwargs)


def test_its_map_joins_the_fused_map_and_its_memory_moves_with_the_model(loco_root) -> None:
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.data.datamodule import LocoDataModule
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=3, image_size=112)
    dm.setup()
    images = next(iter(dm.train_dataloader()))["image"]
    model = SevenFeatureModel(FelzenszwalbSegmenter(), HungarianAligner(), HandcraftedBackbone(image_size=112),
                              {"local_patch": LocalPatchScore(radius=1)}, LeaveOneOutSum(), work_size=64)
    model.fit(model.encode(images, shots=True))
    scores, amap, maps, _ = model.score_with_maps(model.encode(images[:2]))
    assert amap is not None and amap.shape == maps["local_patch"].shape == (2, *model.parsed_shots[0].class_grid.shape)
    weight = model.fusion.map_weight("local_patch")
    assert torch.allclose(amap, maps["local_patch"] * weight)
    # the map's top 1 % after the median is the image score
    flat = maps["local_patch"][0].flatten()
    n = max(1, round(flat.numel() / 100))
    assert flat.topk(n).values.mean().item() == pytest.approx(scores["local_patch"][0], rel=1e-5)
    # its memory moves with the model, as the patch banks do
    assert model.states["local_patch"].dtype == torch.float32
    model.double()
    assert model.states["local_patch"].dtype == torch.float64
