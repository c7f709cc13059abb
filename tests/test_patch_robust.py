"""Capture-robust patch features: the backbone's per-image white balance (``model.photometric``)
and moved copies of the shots in the patch memory (``model.shot_augment``)."""

import numpy as np
import pytest
import torch

from conftest import train_images
from locoad.aligners.hungarian import HungarianAligner
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.cache import StageCache
from locoad.colour import (
    cast_and_level,
    divide_smooth_light,
    flatten_light,
    gray_world,
    white_patch,
)
from locoad.components.augment import RigidMove, move_images, move_labels, plan_moves
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.class_aware_patch import ClassAwarePatchScore
from locoad.features.class_histogram import ClassHistogramScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.fusion.loo import LeaveOneOutSum
from locoad.models.seven_feature import stored
from locoad.models.seven_feature.torch_model import SevenFeatureModel, to_uint8
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter


def small_model(backbone=None, **kwargs) -> SevenFeatureModel:
    feats = {"class_agnostic_patch": ClassAgnosticPatchScore(), "class_aware_patch": ClassAwarePatchScore(),
             "foreground_patch": ForegroundPatchScore(), "class_histogram": ClassHistogramScore()}
    return SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(),
                             backbone or HandcraftedBackbone(image_size=112), feats, LeaveOneOutSum(),
                             work_size=64, **kwargs)


@pytest.fixture
def images(loco_root):
    return train_images(loco_root, 4)


# -- photometric ------------------------------------------------------------------------------


def test_gray_world_is_numpys_median_white_balance():
    """The shared helper reproduces the colour classes' former numpy formula
    (components/colour_kinds.py) bit for bit (even and odd pixel counts), so sharing it changed
    no composition or instance_set score."""
    rng = np.random.default_rng(0)
    for h in (16, 15):
        rgb = (rng.integers(0, 256, (h, 17, 3)).astype(np.float32) / 255.0)
        med = np.median(rgb.reshape(-1, 3), axis=0)
        expected = np.clip(rgb * (0.6 / np.maximum(med, 1e-3)), 0.0, 1.0)
        np.testing.assert_array_equal(gray_world(torch.from_numpy(rgb), channel_dim=-1).numpy(), expected)


def test_white_patch_keeps_a_dark_background_dark():
    """Mapping the median of a dark-background image to mid-grey (gray_world) saturates every
    part; mapping the bright end (white_patch) keeps the image's contrast, and either removes a
    per-channel gain."""
    img = torch.full((1, 3, 40, 40), 0.05)
    img[..., 10:14, 10:30] = torch.tensor([0.6, 0.5, 0.4]).view(1, 3, 1, 1)  # a part on 5 % of the image
    gained = img * torch.tensor([0.8, 1.1, 0.9]).view(1, 3, 1, 1)
    wp, gw = white_patch(img), gray_world(img)
    assert torch.allclose(white_patch(gained), wp, atol=1e-6) and torch.allclose(gray_world(gained), gw, atol=1e-6)
    assert wp[..., 0, 0].max() < 0.15 and torch.allclose(wp[..., 12, 20], torch.tensor(0.9))  # background dark, part white
    assert (gw[..., 12, 20] == 1.0).all()  # gray_world: the part is clipped
    wl = white_patch(gained, per_channel=False)  # one gain: the brightest channel's bright end at 0.9
    assert torch.allclose(wl[0, :, 12, 20], gained[0, :, 12, 20] * 0.9 / gained[0, :, 12, 20].max())


@pytest.mark.parametrize("photometric, gain", [("gray_world", (0.7, 0.8, 0.9)), ("white_patch", (0.7, 0.8, 0.9)),
                                               ("white_level", (0.75, 0.75, 0.75)),
                                               ("flat_white_level", (0.75, 0.75, 0.75)),
                                               ("smooth_white_level", (0.75, 0.75, 0.75))])
def test_photometric_input_makes_features_blind_to_exposure_and_cast(images, photometric, gain):
    """A darker, tinted capture of the same scene (``white_level``: only darker) gives the
    backbone the same input with a photometric normalisation (up to rounding), and a different
    one without."""
    cast = images * torch.tensor(gain).view(1, 3, 1, 1)
    for setting, same in ((photometric, True), ("none", False)):
        m = small_model(photometric=setting)
        a, b = m.encode(images), m.encode(cast)
        close = all(torch.allclose(x.features, y.features, atol=1e-3) for x, y in zip(a, b))
        assert close == same, setting
        # the segmenter still reads the untouched image
        assert all(np.array_equal(x.rgb, r) for x, r in zip(a, to_uint8(images, 64)))


def lit_from_one_side(img: torch.Tensor, slope: float = 0.35) -> torch.Tensor:
    """``img`` under light that falls off across it: exp(slope * x), x from -1 to 1."""
    h, w = img.shape[-2:]
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return img * torch.exp(slope * gx - 0.5 * slope * gy)


def test_flatten_light_removes_a_gradient_and_leaves_even_light():
    """A part on a plain background, lit from one side: the background is even again and the
    part keeps its contrast to it; under even light nothing changes; a part that reaches into
    the border ring does not make a gradient of its own."""
    img = torch.full((2, 3, 60, 100), 0.3)
    img[..., 20:40, 10:60] = torch.tensor([0.8, 0.6, 0.4]).view(3, 1, 1)
    flat = flatten_light(lit_from_one_side(img))
    assert torch.allclose(flat[..., 2, 2], flat[..., -3, -3], rtol=1e-3)  # opposite corners alike
    assert torch.allclose(flat[..., 30, 30] / flat[..., 2, 50], img[..., 30, 30] / img[..., 2, 50], rtol=1e-3)
    assert torch.allclose(flatten_light(img), img, atol=1e-4)
    reaching = img.clone()
    reaching[..., 20:40, 0:10] = 0.8  # the part runs to the left edge
    assert torch.allclose(flatten_light(reaching)[..., 2, :], reaching[..., 2, :], rtol=0.02)
    assert torch.allclose(flatten_light(img.permute(0, 2, 3, 1), channel_dim=-1), flatten_light(img).permute(0, 2, 3, 1))


def test_flat_white_level_makes_features_blind_to_a_lighting_gradient(images):
    """The same scene lit from one side: ``flat_white_level`` gives the backbone (nearly) the
    input of the evenly lit capture, ``white_level`` (one gain) does not."""
    lit = lit_from_one_side(images)
    err = {}
    for setting in ("flat_white_level", "white_level"):
        m = small_model(photometric=setting)
        err[setting] = (m.backbone_input(lit) - m.backbone_input(images)).abs().mean().item()
    assert err["flat_white_level"] < 0.2 * err["white_level"], err


def lit_by_a_spot(img: torch.Tensor, gain: float = 0.4) -> torch.Tensor:
    """``img`` under a light spot at its centre: 1 + gain there, falling off as a Gaussian of
    0.4 of the image. No plane fits it (:func:`flatten_light` leaves it as it is)."""
    h, w = img.shape[-2:]
    gy, gx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return img * (1 + gain * torch.exp(-((gy - 0.5) ** 2 + (gx - 0.5) ** 2) / (2 * 0.4**2)))


def test_divide_smooth_light_removes_a_light_spot_keeps_colours_and_even_light():
    """A part on a plain background under a light spot: the background is (nearly) even again,
    every pixel keeps its colour (one gain for all channels), an evenly lit plain image is
    unchanged, and channels may come last."""
    img = torch.full((2, 3, 60, 100), 0.3)
    img[..., 5:20, 5:30] = torch.tensor([0.6, 0.45, 0.3]).view(3, 1, 1)
    lit = lit_by_a_spot(img)
    out = divide_smooth_light(lit)
    spot, corner = (30, 50), (-3, -3)  # background under the spot, and far from it
    before = lit[0, 0][spot] / lit[0, 0][corner]
    after = out[0, 0][spot] / out[0, 0][corner]
    flat = flatten_light(lit)[0, 0]
    plane = flat[spot] / flat[corner]
    assert before > 1.2 and abs(after - 1) < 0.5 * (before - 1) and plane > 1 + 0.9 * (before - 1), (before, after, plane)
    assert torch.allclose(out[:, 0] / out[:, 2], lit[:, 0] / lit[:, 2], rtol=1e-4)  # colours kept
    plain = torch.full((1, 3, 40, 50), 0.4)
    assert torch.allclose(divide_smooth_light(plain), plain, atol=1e-5)
    assert torch.allclose(divide_smooth_light(lit.permute(0, 2, 3, 1), channel_dim=-1),
                          out.permute(0, 2, 3, 1), atol=1e-6)
    assert torch.allclose(divide_smooth_light(lit[0]), out[0], atol=1e-6)  # one image, no batch


def test_smooth_white_level_makes_features_blind_to_a_light_spot(images):
    """The same scene under a light spot: ``smooth_white_level`` gives the backbone an input
    much closer to the evenly lit capture's than ``flat_white_level`` (a plane) does."""
    lit = lit_by_a_spot(images, gain=0.25)  # (stronger light saturates the scene's bright parts)
    err = {}
    for setting in ("smooth_white_level", "flat_white_level"):
        m = small_model(photometric=setting)
        err[setting] = (m.backbone_input(lit) - m.backbone_input(images)).abs().mean().item()
    assert err["smooth_white_level"] < 0.6 * err["flat_white_level"], err


def test_photometric_setting_is_part_of_the_cached_features(images, tmp_path):
    """Features stored for one photometric setting are never served to another: the stored
    backbone is keyed by the input the backbone really sees."""
    cache = StageCache(tmp_path / "stages")
    fresh = small_model(photometric="gray_world").encode(images)
    plain = small_model(backbone=stored.StoredBackbone(HandcraftedBackbone(image_size=112), cache)).encode(images)
    cached = small_model(backbone=stored.StoredBackbone(HandcraftedBackbone(image_size=112), cache),
                         photometric="gray_world").encode(images)
    for f, p, c in zip(fresh, plain, cached):
        assert torch.equal(c.features, f.features)
        assert not torch.allclose(c.features, p.features)


def test_bad_photometric_is_a_clear_error():
    with pytest.raises(ValueError, match="model.photometric must be one of none, white_level, white_patch, gray_world"):
        small_model(photometric="grey")


# -- moves --------------------------------------------------------------------------------------


def test_rotation_turns_counter_clockwise_and_labels_follow_the_image():
    img = torch.zeros(1, 1, 21, 31)
    img[0, 0, 10, 25] = 1.0  # right of the centre (10, 15)
    up = move_images(img, RigidMove(angle=90.0))[0, 0]
    y, x = np.unravel_index(int(up.argmax()), up.shape)
    assert x == pytest.approx(15, abs=1) and y < 10  # turned up: counter-clockwise on screen
    labels = torch.zeros(21, 31, dtype=torch.long)
    labels[8:13, 22:28] = 3
    for mv in (RigidMove(angle=6.0), RigidMove(dy=0.1, dx=-0.05), RigidMove(flip=True), RigidMove(angle=-5, flip=True)):
        moved = move_labels(labels, mv)
        assert set(moved.unique().tolist()) <= {0, 3}  # nearest: no label blends into another
        img_moved = move_images((labels == 3).float()[None, None], mv)[0, 0]
        assert ((img_moved > 0.5) == (moved == 3)).float().mean() > 0.97
    shifted = move_labels(labels, RigidMove(dy=2 / 21, dx=3 / 31))
    assert torch.equal(shifted[10:15, 25:31], labels[8:13, 22:28])  # down 2, right 3 pixels
    assert torch.equal(move_labels(labels, RigidMove(flip=True)), labels.flip(-1))


def test_quarter_turns_are_exact_on_square_maps():
    """A quarter / half turn resamples no pixel between two others: the moved map is the
    turned map (counter-clockwise on screen for a positive angle, as ``torch.rot90``)."""
    labels = torch.arange(24 * 24).reshape(24, 24)
    assert torch.equal(move_labels(labels, RigidMove(angle=90.0)), torch.rot90(labels, 1, dims=(0, 1)))
    assert torch.equal(move_labels(labels, RigidMove(angle=-90.0)), torch.rot90(labels, -1, dims=(0, 1)))
    assert torch.equal(move_labels(labels, RigidMove(angle=180.0)), torch.rot90(labels, 2, dims=(0, 1)))
    image = torch.rand(1, 3, 24, 24)
    assert torch.allclose(move_images(image, RigidMove(angle=90.0)), torch.rot90(image, 1, dims=(2, 3)), atol=1e-5)


def _bar(h: int, w: int, vertical: bool, size: int = 64) -> torch.Tensor:
    """A centred 30 x 4 bar in an (h, w) capture, squeezed to (size, size) as the data sets do."""
    capture = torch.zeros(1, 1, h, w)
    cy, cx = h // 2, w // 2
    if vertical:
        capture[..., cy - 15 : cy + 15, cx - 2 : cx + 2] = 1.0
    else:
        capture[..., cy - 2 : cy + 2, cx - 15 : cx + 15] = 1.0
    return torch.nn.functional.interpolate(capture, size=(size, size), mode="bilinear", align_corners=False)


def test_a_turn_of_a_squeezed_capture_is_a_turn_of_the_capture():
    """On a 40 x 80 capture squeezed to a square, a quarter turn with the capture's aspect gives
    what the camera would see of the turned part; turning the square as it is does not (the
    squeeze changes axes: the bar comes out twice as long and half as thick). Compared in the
    middle half of the width: the turned capture does not fill the frame, and the sides show the
    reflection of what lies beyond it."""
    lying, standing = _bar(40, 80, vertical=False), _bar(40, 80, vertical=True)[0, 0, :, 16:48] > 0.5
    turned = move_images(lying, RigidMove(angle=90.0), aspects=[0.5])[0, 0, :, 16:48] > 0.5
    naive = move_images(lying, RigidMove(angle=90.0))[0, 0, :, 16:48] > 0.5

    def iou(a, b):
        return float((a & b).sum() / (a | b).sum())

    assert iou(turned, standing) > 0.8
    assert iou(naive, standing) < 0.5
    labels = (lying[0, 0] > 0.5).long() * 3
    moved = move_labels(labels, RigidMove(angle=90.0), aspect=0.5)[:, 16:48]
    assert iou(moved == 3, turned) > 0.9  # the label map turns with its image
    with pytest.raises(ValueError, match="aspects"):
        move_images(lying, RigidMove(angle=90.0), aspects=[0.5, 1.0])


def test_plan_moves_and_bad_specs():
    assert plan_moves(None, 37) == [] and plan_moves({}, 37) == []
    moves = plan_moves({"rotations": [-6, 6], "shifts": [[0.5, 0.5]], "flip": True}, 37)
    assert moves == [RigidMove(angle=-6.0), RigidMove(angle=6.0), RigidMove(dy=0.5 / 37, dx=0.5 / 37), RigidMove(flip=True)]
    for spec, msg in (({"rotation": [5]}, "unknown keys"), ({"rotations": [200]}, "within ±180"),
                      ({"rotations": [0]}, "non-zero"), ({"shifts": [[1]]}, r"\[dy, dx\] pair")):
        with pytest.raises(ValueError, match=msg):
            plan_moves(spec, 37)


# -- shot augmentation ----------------------------------------------------------------------


def test_copies_join_the_patch_bank_and_leave_one_out_leaves_them_out(images):
    """Identity copies (a zero shift) duplicate every bank row: the nearest neighbours, hence the
    test scores and the leave-one-out scores, stay those of the plain model. Were a shot's own
    copies left in its leave-one-out memory, its patch distances would drop to zero."""
    plain = small_model()
    dup = small_model(shot_augment={"shifts": [[0.0, 0.0]]})
    shots_p, shots_d = plain.encode(images[:3]), dup.encode(images[:3], shots=True)
    assert all(s.augmented is None for s in shots_p)
    assert all(s.augmented.shape == (1, *s.features.shape) for s in shots_d)
    plain.fit(shots_p)
    dup.fit(shots_d)
    assert len(dup.patch_banks[0].owner) == 2 * len(plain.patch_banks[0].owner)
    assert sorted(np.bincount(dup.patch_banks[0].owner)) == sorted(2 * np.bincount(plain.patch_banks[0].owner))
    for n in plain.features:
        np.testing.assert_allclose(dup.loo_scores[n], plain.loo_scores[n], atol=1e-4)
        if n != "class_histogram":
            assert (dup.loo_scores[n] > 1e-3).all(), n
    test = plain.encode(images[3:])
    a, b = plain.score(test)[0], dup.score(test)[0]
    for n in plain.features:
        np.testing.assert_allclose(a[n], b[n], atol=1e-4)


def test_rotated_copies_only_change_the_patch_scores(images):
    plain = small_model()
    aug = small_model(shot_augment={"rotations": [-8, 8], "flip": True})
    plain.fit(plain.encode(images[:3]))
    aug.fit(aug.encode(images[:3], shots=True))
    assert len(aug.patch_banks[0].owner) == 4 * len(plain.patch_banks[0].owner)
    assert len(aug.parsed_shots) == 3  # the class scores fit on the shots alone
    test = plain.encode(images[3:])
    (a, _, maps_a, _), (b, _, maps_b, _) = plain.score_with_maps(test), aug.score_with_maps(test)
    assert a["class_histogram"] == pytest.approx(b["class_histogram"])
    # more memory: a test patch is never farther from its nearest neighbour, and some are nearer
    da, db = maps_a["class_agnostic_patch"], maps_b["class_agnostic_patch"]
    assert (db <= da + 1e-6).all() and (db < da - 1e-3).any()


def test_shots_without_their_copies_are_a_clear_error(images):
    m = small_model(shot_augment={"rotations": [5]})
    with pytest.raises(ValueError, match=r"encode\(images, shots=True\)"):
        m.fit(m.encode(images[:3]))


def test_stored_scores_are_keyed_by_the_shot_augmentation(images, tmp_path):
    """Leave-one-out scores stored for a fit without copies are not served to a fit with them."""
    cache = StageCache(tmp_path / "stages")

    def fitted(spec):
        m = small_model(shot_augment=spec)
        scorer = stored.StoredScores(m, cache)
        cache.reset_stats()
        scorer.fit(m.encode(images[:3], shots=True))
        return m.loo_scores, dict(cache.stats["scores"])

    first, st = fitted(None)
    assert st["hits"] == 0
    again, st = fitted(None)
    assert st["hits"] == 1
    rotated, st = fitted({"rotations": [-8, 8]})
    assert st["hits"] == 0
    assert not np.allclose(rotated["class_agnostic_patch"], first["class_agnostic_patch"])


def test_checkpoint_keeps_the_copies_and_refits_the_same_banks(images):
    """The checkpoint stores the shots' moved copies: loading refits identical patch banks."""
    from locoad.models.seven_feature.lightning_model import SevenFeatureModule

    def module():
        m = small_model()
        return SevenFeatureModule(m.segmenter, m.aligner, m.backbone, m.features, m.fusion, work_size=64,
                                  shot_augment={"rotations": [-6, 6]})

    fitted = module()
    fitted.on_train_epoch_start()
    aspects = torch.tensor([0.5, 0.5, 0.8], dtype=torch.float64)  # as a data loader batches them
    fitted.training_step({"image": images[:3], "parts": torch.full((3, 8, 8), -1), "aspect": aspects}, 0)
    fitted.on_train_epoch_end()
    assert [s.aspect for s in fitted.model.shots] == aspects.tolist()
    ckpt = {"state_dict": fitted.state_dict()}
    fitted.on_save_checkpoint(ckpt)
    assert ckpt["seven_feature_shots"]["augmented"].shape[:2] == (3, 2)
    loaded = module()
    loaded.on_load_checkpoint(ckpt)
    loaded.prepare()
    assert [s.aspect for s in loaded.model.shots] == aspects.tolist()
    assert torch.equal(loaded.model.patch_banks[0].bank, fitted.model.patch_banks[0].bank)
    for n, v in fitted.model.loo_scores.items():
        np.testing.assert_array_equal(loaded.model.loo_scores[n], v)


def test_cast_and_level_keeps_light_parts_apart_on_a_dark_background():
    """gray_world maps a dark background's median to mid-grey: a light-blue bag and the grey bolt
    on it both saturate to about the same white. cast_and_level keeps them apart and, like
    gray_world, removes a colour cast and an exposure change."""
    img = torch.zeros(40, 40, 3)
    img[:] = torch.tensor([0.20, 0.24, 0.27])  # dark blue-grey background
    img[10:26, 8:32] = torch.tensor([0.65, 0.75, 0.83])  # light-blue bag, 24 % ...
    img[14:20, 12:28] = torch.tensor([0.48, 0.52, 0.55])  # ... with a grey bolt
    bag, bolt = (slice(21, 26), slice(8, 32)), (slice(15, 19), slice(13, 27))

    def gap(x):
        return (x[bag].mean((0, 1)) - x[bolt].mean((0, 1))).abs().max().item()

    assert gap(gray_world(img.clone(), channel_dim=-1)) < 0.05  # clipped into one white
    balanced = cast_and_level(img, channel_dim=-1)
    assert gap(balanced) > 0.2
    cast = img * torch.tensor([1.15, 1.0, 0.85]) * 0.7  # a colour cast, darker exposure
    torch.testing.assert_close(cast_and_level(cast, channel_dim=-1), balanced, atol=1e-5, rtol=1e-5)
    batched = cast_and_level(torch.stack([img, cast]).movedim(-1, 1))  # (B, 3, H, W)
    torch.testing.assert_close(batched[1].movedim(0, -1), balanced, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [ClassAgnosticPatchScore, ForegroundPatchScore, ClassAwarePatchScore])
def test_median_baseline_ignores_a_lift_of_every_patch_and_keeps_a_defect(cls) -> None:
    """``baseline="median"``: every patch of an image farther from the shots by the same amount
    (a tint, blur) leaves the score as it was; a few far patches (a defect) still count."""
    g = torch.Generator().manual_seed(0)
    dist = 0.1 + 0.05 * torch.rand(2, 400, generator=g)
    labels = torch.randint(0, 2, (2, 400), generator=g)
    labels[:, :20] = -1  # patches in no group
    dist[:, :20] = float("nan")
    lifted, defect = dist + 0.2, dist.clone()
    defect[:, 100:104] += 0.5
    plain, med = cls(top_percent=1.0), cls(top_percent=1.0, baseline="median")
    for f in (plain, med):
        base = f.aggregate_batch(dist, labels, 2)[0]
        assert (f.aggregate_batch(defect, labels, 2)[0] > base + 0.2).all()
        if f is med:
            assert torch.allclose(f.aggregate_batch(lifted, labels, 2)[0], base, atol=1e-6)
            amap = f.aggregate_batch(lifted, labels, 2)[1]
            assert torch.allclose(amap, f.aggregate_batch(dist, labels, 2)[1], atol=1e-6) and (amap >= 0).all()
        else:
            assert torch.allclose(f.aggregate_batch(lifted, labels, 2)[0], base + 0.2, atol=1e-6)
    with pytest.raises(ValueError, match="baseline must be 'none' or 'median'"):
        cls(baseline="mean")


def test_default_patch_scores_ignore_a_lift_of_every_patch(tmp_path) -> None:
    """The shipped ``features=robust``: the class-agnostic and foreground scores subtract the
    image's median patch distance (a capture lifting every patch is no evidence); class-aware does not."""
    from conftest import compose_cfg
    from locoad.utils import build

    cfg = compose_cfg(["logger=none"], tmp_path / "run")
    dist = 0.1 + 0.05 * torch.rand(1, 400, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(1, 400, dtype=torch.long)
    lifted = {}
    for name in ("class_agnostic_patch", "foreground_patch", "class_aware_patch"):
        f = build(cfg.features[name])
        lifted[name] = (f.aggregate_batch(dist + 0.2, labels, 1)[0] - f.aggregate_batch(dist, labels, 1)[0]).item()
    assert lifted == pytest.approx({"class_agnostic_patch": 0.0, "foreground_patch": 0.0, "class_aware_patch": 0.2}, abs=1e-6)
