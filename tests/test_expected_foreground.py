"""ForegroundPatchScore(expected=...): patches that are foreground in the shots are scored even
where the test image has background, so missing material counts (features/foreground_patch.py)."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import train_images
from locoad.aligners.hungarian import HungarianAligner
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.features.shared_patch_bank import SharedPatchBank
from locoad.fusion.loo import LeaveOneOutSum
from locoad.models.seven_feature.torch_model import SevenFeatureModel
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter
from locoad.types import ParsedImage

G = 8


def grid(*boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """(G, G) bool, True inside the (row0, row1, col0, col1) boxes."""
    out = torch.zeros(G, G, dtype=torch.bool)
    for r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = True
    return out


def image(seed: int, fg: torch.Tensor) -> ParsedImage:
    """Part patches near one direction, background patches near another (cosine-far apart)."""
    rng = np.random.default_rng(seed)
    part, back = np.eye(6)[0], np.eye(6)[1]
    feats = np.where(fg.numpy()[..., None], part, back) + 0.05 * rng.normal(size=(G, G, 6))
    cls = fg.long()
    rgb = np.zeros((G, G, 3), np.uint8)
    return ParsedImage(rgb, rgb.astype(np.float32), cls.numpy(), torch.from_numpy(feats).permute(2, 0, 1).float(), cls, 2,
                       foreground=fg)


def test_expected_region_counts_shots_and_erodes() -> None:
    shots = torch.stack([grid((1, 7, 1, 7)), grid((1, 7, 1, 7)), grid((2, 7, 1, 7))])
    assert torch.equal(ForegroundPatchScore(expected=1.0, expected_erode=0).expected_region(shots), grid((2, 7, 1, 7)))
    assert torch.equal(ForegroundPatchScore(expected=0.6, expected_erode=0).expected_region(shots), grid((1, 7, 1, 7)))
    assert torch.equal(ForegroundPatchScore(expected=1.0, expected_erode=1).expected_region(shots), grid((3, 6, 2, 6)))
    # the grid's edge is not background: a part that fills a side keeps its edge patches
    edge = torch.stack([grid((0, 8, 0, 4))])
    assert torch.equal(ForegroundPatchScore(expected=1.0, expected_erode=1).expected_region(edge), grid((0, 8, 0, 3)))


def test_missing_material_is_scored_only_with_expected() -> None:
    part = grid((1, 7, 1, 7))
    shots = [image(i, part) for i in range(3)]
    normal, bitten = image(10, part), image(11, grid((1, 7, 1, 4), (1, 4, 4, 7)))  # a 3x3 bite out of a corner
    plain, expected = ForegroundPatchScore(top_percent=10.0), ForegroundPatchScore(top_percent=10.0, expected=1.0, expected_erode=0)
    bank_plain, bank_expected = plain.fit(shots), expected.fit(shots)
    assert plain.score(bitten, bank_plain).value < 0.1  # what is left of the part is normal
    assert expected.score(bitten, bank_expected).value > 0.5  # the bite is background where parts belong
    assert expected.score(normal, bank_expected).value == pytest.approx(plain.score(normal, bank_plain).value)


@pytest.mark.parametrize("erode", [0, 1])
def test_expected_equals_the_plain_score_of_the_widened_foreground(erode: int) -> None:
    """The same distances and map as the plain score of an image whose foreground is its own
    plus the shots' region; leave-one-out reads the region of the other shots only."""
    fgs = [grid((1, 7, 1, 7)), grid((1, 6, 2, 7)), grid((2, 7, 1, 6)), grid((1, 7, 1, 5))]
    shots = [image(i, fg) for i, fg in enumerate(fgs)]
    f = ForegroundPatchScore(top_percent=10.0, expected=0.6, expected_erode=erode)
    plain = ForegroundPatchScore(top_percent=10.0)
    bank = SharedPatchBank({"foreground_patch": f}, shots)
    widened = lambda p, others: dataclasses.replace(  # noqa: E731
        p, foreground=p.foreground | f.expected_region(torch.stack([s.foreground for s in others])))
    for t in (image(20, grid((3, 5, 3, 5))), image(21, grid((1, 7, 1, 7)))):
        got, want = bank.score(t)["foreground_patch"], plain.score(widened(t, shots), plain.fit(shots))
        assert got.value == pytest.approx(want.value, abs=1e-6)
        torch.testing.assert_close(got.anomaly_map, want.anomaly_map)
    loo = bank.loo_scores(shots, [0, 1, 2, 3])["foreground_patch"]
    for i in range(4):
        others = shots[:i] + shots[i + 1 :]
        assert loo[i] == pytest.approx(plain.score(widened(shots[i], others), plain.fit(others)).value, abs=1e-6)


def test_moved_shot_copies_do_not_widen_the_region() -> None:
    shots = [image(0, grid((1, 7, 1, 7))), image(1, grid((0, 8, 0, 8)))]  # the second: a moved copy of the first
    bank = SharedPatchBank({"foreground_patch": ForegroundPatchScore(expected=1.0)}, shots, owners=[0, 0])
    assert torch.equal(bank.shot_foreground, grid((1, 7, 1, 7))[None])


@pytest.mark.parametrize("kw, match", [({"expected": 0.0}, "expected must be in"), ({"expected": 1.5}, "expected must be in"),
                                       ({"expected": 1.0, "expected_erode": -1}, "expected_erode must be")])
def test_bad_settings_name_the_key(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ForegroundPatchScore(**kw)


def test_the_model_reads_the_region_of_its_shots_not_of_their_moved_copies(loco_root):
    images = train_images(loco_root, 4)
    f = ForegroundPatchScore(expected=1.0)
    m = SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                          {"foreground_patch": f}, LeaveOneOutSum(), work_size=64, shot_augment={"rotations": [-8, 8]})
    m.fit(m.encode(images[:3], shots=True))
    bank = m.patch_banks[0]
    assert len(bank.owner) == 3 * sum(p.class_grid.numel() for p in m.parsed_shots)  # the copies are in memory
    assert torch.equal(bank.shot_foreground.cpu(), torch.stack([p.foreground_grid.cpu() for p in m.parsed_shots]))
    assert np.isfinite(m.score(m.encode(images[3:]))[0]["foreground_patch"])
    assert np.isfinite(m.loo_scores["foreground_patch"]).all()


def test_memory_all_matches_a_foreground_patch_that_the_shots_have_as_background() -> None:
    """A test patch that the segmenter calls foreground but that looks like the shots' background
    (an edge the shots' foreground left out) is far from the shots' foreground patches and near
    their background: only ``memory="all"`` finds its match; the queries stay the foreground."""
    part = grid((1, 7, 1, 7))
    shots = [image(i, part) for i in range(3)]
    test = image(10, part)
    wide = dataclasses.replace(test, foreground=grid((1, 7, 1, 8)))  # column 7 is background-looking
    fg_memory, all_memory = ForegroundPatchScore(top_percent=10.0), ForegroundPatchScore(top_percent=10.0, memory="all")
    assert fg_memory.score(wide, fg_memory.fit(shots)).value > 0.5
    assert all_memory.score(wide, all_memory.fit(shots)).value < 0.1
    assert torch.equal(all_memory.query_labels(test, torch.zeros(0, G, G, dtype=torch.bool)), fg_memory.labels(test))
    with pytest.raises(ValueError, match="memory"):
        ForegroundPatchScore(memory="shots")


def test_lookalikes_score_a_part_that_the_segmentation_left_in_the_background() -> None:
    """A part put down outside its place, merged into the background by the segmentation: its
    patches look like the shots' parts (nearest shot patch on a part), so ``lookalikes`` scores
    them; the plain foreground score never reads them. A good image scores as before, and the
    leave-one-out scores follow the same rule."""
    part = grid((1, 5, 1, 5))
    shots = [image(i, part) for i in range(3)]
    good = image(10, part)
    outside = image(11, grid((1, 5, 1, 5), (6, 8, 6, 8)))  # a 2x2 part in the bottom-right corner
    outside.features[:, 6:8, 6:8] += torch.tensor([0, 0, 1.0, 0, 0, 0])[:, None, None]  # not quite a shot's part
    outside = dataclasses.replace(outside, foreground=part)  # the segmentation merged it into the background
    plain = ForegroundPatchScore(top_percent=10.0, memory="all")
    look = ForegroundPatchScore(top_percent=10.0, memory="all", lookalikes=True)
    bank_plain, bank_look = plain.fit(shots), look.fit(shots)
    assert plain.score(outside, bank_plain).value < 0.1
    assert look.score(outside, bank_look).value > 0.2
    assert look.score(good, bank_look).value == pytest.approx(plain.score(good, bank_plain).value, abs=1e-6)
    _, labels = bank_look.distances(outside)["foreground_patch"]
    assert torch.equal(labels.view(G, G) >= 0, grid((1, 5, 1, 5), (6, 8, 6, 8)))
    loo = bank_look.loo_scores(shots, [0, 1, 2])["foreground_patch"]
    np.testing.assert_allclose(loo, bank_plain.loo_scores(shots, [0, 1, 2])["foreground_patch"], atol=1e-6)
    with pytest.raises(ValueError, match="lookalikes needs memory=all"):
        ForegroundPatchScore(lookalikes=True)
