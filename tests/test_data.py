import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from locoad.data.datamodule import LocoDataModule, select_shots
from locoad.data.image_io import ImageReadError, read_mask_values, read_rgb, read_size
from locoad.data.layout import DataLayoutError, category_dir, list_categories, list_split
from locoad.errors import ConfigError


def test_layout_lists_splits_types_and_masks(loco_root):
    cdir = category_dir(loco_root, "widgets")
    assert len(list_split(cdir, "train")) == 5
    assert len(list_split(cdir, "validation")) == 2
    test = list_split(cdir, "test")
    kinds = {s.anomaly_type for s in test}
    assert kinds == {"good", "logical_anomalies", "structural_anomalies"}
    for s in test:
        assert s.label == int(s.anomaly_type != "good")
        assert len(s.masks) == {"good": 0, "logical_anomalies": 1, "structural_anomalies": 2}[s.anomaly_type]
        assert s.part_labels is not None


def test_dataset_items_and_merged_masks(loco_root):
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=2, image_size=64, batch_size=4)
    dm.setup()
    items = [dm.dataset("test")[i] for i in range(len(dm.dataset("test")))]
    for it in items:
        assert it["image"].shape == (3, 64, 64) and it["image"].dtype == torch.float32
        assert 0 <= it["image"].min() and it["image"].max() <= 1
        assert it["mask"].shape == (64, 64)
        assert (it["mask"].sum() > 0) == (it["label"] == 1)
    structural = [it for it in items if it["anomaly_type"] == "structural_anomalies"][0]
    assert structural["num_regions"] == 2
    # the two region masks are mirror images: the merged mask is their union
    assert torch.equal(structural["mask"], torch.maximum(structural["mask"], structural["mask"].flip(0)))
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and len(batch["path"]) == 4


def test_k_shot_selection_is_reproducible_and_nested(loco_root):
    samples = list_split(category_dir(loco_root, "widgets"), "train")
    a = select_shots(samples, 4, seed=3)
    assert a == select_shots(samples, 4, seed=3)
    assert select_shots(samples, 2, seed=3) == a[:2]  # same reference across k
    assert select_shots(samples, 4, seed=4) != a or len(samples) < 3
    assert select_shots(samples, None, seed=0) == samples


def test_k_shot_larger_than_train_set(loco_root):
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=50)
    with pytest.raises(DataLayoutError, match="only 5 training images"):
        dm.setup()


@pytest.mark.parametrize("k", [0, -2, 1.5])
def test_k_shot_below_one_is_rejected_not_full_shot(loco_root, k):
    # k=0 used to run silently as full-shot; null is the only way to ask for every image.
    with pytest.raises(DataLayoutError, match=r"data.k_shot must be a whole number >= 1.*null for full-shot"):
        LocoDataModule(str(loco_root), "widgets", k_shot=k).setup()
    samples = list_split(category_dir(loco_root, "widgets"), "train")
    with pytest.raises(DataLayoutError, match="k_shot"):
        select_shots(samples, k, seed=0)


@pytest.mark.parametrize("key, value", [("image_size", -5), ("image_size", 0), ("image_size", 224.5),
                                        ("batch_size", 0), ("num_workers", -1)])
def test_loader_settings_out_of_range_stop_before_any_image_is_read(loco_root, key, value):
    with pytest.raises(ConfigError, match=rf"data.{key} must be a whole number >= [01], got {value}"):
        LocoDataModule(str(loco_root), "widgets", **{key: value})


def test_masks_of_another_shape_stop_at_setup_and_scaled_ones_pass(loco_root):
    from PIL import Image

    mask = next((loco_root / "widgets" / "ground_truth" / "logical_anomalies").glob("*/000.png"))
    full = np.asarray(Image.open(mask))
    h, w = full.shape[:2]
    Image.fromarray(full[::2, ::2]).save(mask)  # half size, same aspect ratio: the map is resized onto it
    LocoDataModule(str(loco_root), "widgets").setup()
    Image.fromarray(full[:, : w // 2]).save(mask)  # half the width: no map can be laid on it
    with pytest.raises(DataLayoutError, match=rf"masks of .* are {w // 2}x{h} px, the image {w}x{h} px: another aspect ratio"):
        LocoDataModule(str(loco_root), "widgets").setup()


def test_missing_root_says_where_and_how(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist.*mvtec.*data=synthetic"):
        LocoDataModule(str(tmp_path / "nope"), "breakfast_box").setup()


def test_unknown_category_lists_found(loco_root):
    with pytest.raises(DataLayoutError, match="unknown category 'gadgets'.*Categories found: widgets"):
        LocoDataModule(str(loco_root), "gadgets").setup()
    assert list_categories(loco_root) == ["widgets"]
    # the category folder itself as the root: the error says which root and category to give
    with pytest.raises(DataLayoutError, match=f"is itself a category folder: set data.root={loco_root} data.category=widgets"):
        LocoDataModule(str(loco_root / "widgets"), "breakfast_box").setup()


def test_unreadable_image_names_file(loco_root):
    bad = loco_root / "widgets" / "test" / "good" / "000.png"
    bad.write_bytes(b"not a png")
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=1, image_size=32)
    dm.setup()
    with pytest.raises(ImageReadError, match="000.png"):
        [dm.dataset("test")[i] for i in range(len(dm.dataset("test")))]


def test_truncated_image(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(ImageReadError, match="t.png"):
        read_rgb(p)


@pytest.mark.parametrize(
    "array,mode",
    [
        (np.full((8, 8), 128, np.uint8), "L"),
        (np.full((8, 8, 4), [255, 0, 0, 255], np.uint8), "RGBA"),
        (np.full((8, 8), 65535 // 2, np.uint16), "I;16"),
    ],
)
def test_odd_images_become_rgb_uint8(tmp_path, array, mode):
    p = tmp_path / "odd.png"
    Image.fromarray(array).save(p)
    assert Image.open(p).mode.startswith(mode[0])
    rgb = read_rgb(p)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    if mode == "I;16":
        assert abs(int(rgb[0, 0, 0]) - 128) <= 1  # scaled by the 16-bit range
    if mode == "RGBA":
        assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_a_12_bit_camera_in_16_bit_files(tmp_path, caplog, monkeypatch):
    """Values of 0-4095 in a 16-bit file read nearly black (scaled from 65535) without a word;
    ``data.bit_depth=12`` scales them from their own range."""
    import locoad.data.image_io as image_io

    monkeypatch.setattr(image_io, "_LOW_RANGE_SAID", False)
    p = tmp_path / "twelve.png"
    Image.fromarray(np.full((8, 8), 2048, np.uint16)).save(p)
    with caplog.at_level("WARNING", logger="locoad.data.image_io"):
        dark = read_rgb(p)
        read_rgb(p)
    assert int(dark[0, 0, 0]) == 8 and caplog.text.count("data.bit_depth=10 or 12") == 1  # said once
    assert abs(int(read_rgb(p, bit_depth=12)[0, 0, 0]) - 128) <= 1
    with pytest.raises(ImageReadError, match="above data.bit_depth=10"):
        read_rgb(p, bit_depth=10)
    with pytest.raises(ConfigError, match="data.bit_depth"):
        LocoDataModule(root=str(tmp_path), category="x", bit_depth=20)


def _saved_mask(tmp_path, mode: str) -> Image.Image:
    """A 4 x 4 mask of ``mode`` with one defect pixel of value 200, fully opaque where it has alpha."""
    grey = np.zeros((4, 4), np.uint8)
    grey[1, 2] = 200
    if mode == "L":
        return Image.fromarray(grey)
    if mode == "LA":
        return Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA")
    if mode == "RGBA":
        return Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)]), "RGBA")
    im = Image.fromarray((grey > 0).astype(np.uint8), "P")  # indices 0, 1 showing the greys 0 and 200
    im.putpalette([0, 0, 0, 200, 200, 200])
    return im


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_mask_values_ignore_alpha_and_read_palette_colours(tmp_path, mode):
    p = tmp_path / f"mask_{mode}.png"
    _saved_mask(tmp_path, mode).save(p)
    assert Image.open(p).mode == mode
    values = read_mask_values(p)
    assert values.shape == (4, 4)
    assert (values > 0).sum() == 1 and values[1, 2] == 200  # the alpha channel marks nothing


def test_items_carry_the_captures_aspect(tmp_path):
    """Images are squeezed to a square; ``aspect`` (height / width as captured) lets the shot
    moves turn the capture rather than the square (components/augment.py)."""
    from locoad.data.dataset import LocoDataset
    from locoad.data.layout import Sample

    p = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(p)
    item = LocoDataset([Sample(path=p, split="train", anomaly_type="good", masks=(), part_labels=None)], image_size=32)[0]
    assert item["image"].shape == (3, 32, 32) and item["aspect"] == pytest.approx(0.4)
    batch = torch.utils.data.default_collate([item, item])
    assert batch["aspect"].tolist() == pytest.approx([0.4, 0.4])


def test_an_image_already_at_the_working_size_reads_without_a_torch_warning(tmp_path):
    """An image stored at data.image_size is not resized, and the reader's array is read-only:
    torch.from_numpy warned "The given NumPy array is not writable" on every such item (ULSAD at
    64 px on 64 px synthetic data printed it in every run)."""
    import warnings

    from locoad.data.dataset import LocoDataset
    from locoad.data.layout import Sample

    p = tmp_path / "square.png"
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = LocoDataset([Sample(path=p, split="train", anomaly_type="good", masks=(), part_labels=None)], image_size=32)[0]
    assert item["image"].shape == (3, 32, 32) and float(item["image"][0, 0, 0]) == pytest.approx(7 / 255)


def test_a_float_image_is_read_on_its_own_scale(tmp_path):
    """A 0-1 float image with a little overshoot (1.05 after processing) was taken as a 0-255
    image and read nearly black; one far above 255 was clipped to white."""
    ramp = np.linspace(0, 1.05, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")
    a = read_rgb(tmp_path / "unit.tif")
    assert a.max() == 255 and abs(int(a[32, 0, 0]) - round(255 * float(ramp[32, 0]))) <= 1
    Image.fromarray(ramp * 200, mode="F").save(tmp_path / "byte.tif")  # a 0-255 float image stays as it is
    assert read_rgb(tmp_path / "byte.tif")[63, 63, 0] == 210
    Image.fromarray(ramp * 60000, mode="F").save(tmp_path / "raw.tif")
    with pytest.raises(ImageReadError, match=r"raw.tif has values up to 63000, on neither a 0-1 nor a 0-255 scale"):
        read_rgb(tmp_path / "raw.tif")


def test_an_exif_turned_photo_is_read_as_a_viewer_shows_it(tmp_path):
    """A phone or camera JPEG keeps the sensor's pixels and tags the turn (EXIF orientation 6: turn
    90 degrees clockwise to view): read upright, so it matches masks drawn on the shown image."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :10] = 255  # a bright band on the stored image's left edge
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    p = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(p, exif=exif, quality=95)
    rgb = read_rgb(p)
    assert rgb.shape == (60, 40, 3)  # upright: the stored width is the height
    assert rgb[:10].mean() > 200 and rgb[20:].mean() < 30  # the left band is now on top
    assert read_size(p) == (60, 40)
    Image.fromarray(stored).save(tmp_path / "plain.jpg")
    assert read_rgb(tmp_path / "plain.jpg").shape == (40, 60, 3) and read_size(tmp_path / "plain.jpg") == (40, 60)


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_turned_image_its_size_and_its_mask_agree_in_every_format(tmp_path, suffix):
    """A turned image, its size and its mask agree, whatever the format."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = 255  # top-left of the stored pixels: top-right once turned to view
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(stored).save(tmp_path / f"image{suffix}", exif=exif)
    Image.fromarray(stored[..., 0]).save(tmp_path / f"mask{suffix}", exif=exif)
    rgb, mask = read_rgb(tmp_path / f"image{suffix}"), read_mask_values(tmp_path / f"mask{suffix}")
    assert rgb.shape == (60, 40, 3) and read_size(tmp_path / f"image{suffix}") == (60, 40) == mask.shape
    assert rgb[:10, -10:].mean() > 200 and mask[:10, -10:].mean() > 200 and mask[-10:, :10].max() == 0


def test_a_tagged_tiff_is_refused_not_misread(tmp_path):
    """Pillow turns a tagged RGB TIFF as it decodes it (and reports the turned size before), but
    drops a grey one's tag unturned: read_size swapped its sides again and masks were turned twice,
    so a correct mask was refused as another aspect ratio. Such a file is now one clear error."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "image.tif", exif=exif)
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(tmp_path / "mask.tif", exif=exif)
    for read, name in ((read_rgb, "image.tif"), (read_size, "image.tif"), (read_mask_values, "mask.tif")):
        with pytest.raises(ImageReadError, match=r"orientation tag \(6\).*save it upright"):
            read(tmp_path / name)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "plain.tif")
    assert read_rgb(tmp_path / "plain.tif").shape == (40, 60, 3) and read_size(tmp_path / "plain.tif") == (40, 60)


def _png16(path, a: np.ndarray) -> None:
    """A 16-bit colour PNG, RGB or RGBA as ``a`` has 3 or 4 channels (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = a.shape
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[a.shape[2]], 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_sixteen_bit_colour_images_honour_bit_depth_or_say_why_not(tmp_path, caplog, monkeypatch):
    """Pillow reads 48-bit colour as 8-bit RGB, its top byte: a 12-bit camera's colour images read
    nearly black and data.bit_depth was ignored, with no word."""
    import tifffile

    import locoad.data.image_io as image_io

    a = np.zeros((20, 30, 3), np.uint16)
    a[..., 0], a[..., 1] = 4095, 2048
    tifffile.imwrite(tmp_path / "c.tif", a)
    assert read_rgb(tmp_path / "c.tif", bit_depth=12)[0, 0].tolist() == [255, 128, 0]
    assert read_rgb(tmp_path / "c.tif")[0, 0].tolist() == [16, 8, 0]  # the full 16-bit range
    _png16(tmp_path / "c.png", a)
    with pytest.raises(ImageReadError, match="16-bit colour PNG.*data.bit_depth=12 cannot scale it"):
        read_rgb(tmp_path / "c.png", bit_depth=12)
    monkeypatch.setattr(image_io, "_LOW_RANGE_SAID", False)
    with caplog.at_level("WARNING", logger="locoad.data.image_io"):
        assert read_rgb(tmp_path / "c.png")[0, 0].tolist() == [15, 8, 0]  # its top byte
    assert "nearly black" in caplog.text and "16-bit TIFF" in caplog.text
    a[..., 0] = 65535
    _png16(tmp_path / "full.png", a)
    assert read_rgb(tmp_path / "full.png")[0, 0, 0] == 255


@pytest.mark.parametrize("seed", [None, -1, 1.5, "3", True])
def test_a_seed_that_draws_no_fixed_shots_is_refused(loco_root, seed):
    """data.seed=null drew other shots on every run under one name; -1 or 1.5 failed in numpy."""
    with pytest.raises(ConfigError, match="data.seed must be a whole number >= 0"):
        LocoDataModule(str(loco_root), "widgets", k_shot=2, seed=seed)


@pytest.mark.parametrize("k_shot", [None, 2])
def test_an_empty_training_folder_is_named(loco_root, k_shot):
    """Full-shot fitted on no image at all; k shots said to use data.k_shot<=0, itself refused."""
    import shutil

    good = category_dir(loco_root, "widgets") / "train" / "good"
    shutil.rmtree(good)
    good.mkdir()
    with pytest.raises(DataLayoutError, match="train/good holds no image"):
        LocoDataModule(str(loco_root), "widgets", k_shot=k_shot).setup("fit")


def test_read_size_reads_the_header_only(tmp_path, monkeypatch):
    """Pillow decodes a whole PNG to look for EXIF after its pixels; read_size asked for it, so
    checking a data set's masks decoded every test image and mask (50-80 ms each at LOCO's sizes)."""
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "plain.png")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("read_size decoded the pixels"))
    assert read_size(tmp_path / "plain.png") == (30, 50)


def test_one_bit_and_transparent_masks_read_as_they_show(tmp_path):
    """A 1-bit mask's white is 255 (it read as 1, a value defects_config.json does not name), and a
    mask whose transparent background is coloured marks only its opaque pixels (it marked all)."""
    a = np.zeros((20, 30), bool)
    a[5:10, 5:10] = True
    Image.fromarray(a).save(tmp_path / "one_bit.png")
    assert Image.open(tmp_path / "one_bit.png").mode == "1"
    assert set(np.unique(read_mask_values(tmp_path / "one_bit.png"))) == {0, 255}
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, opaque only on the defect
    rgba[5:10, 5:10, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert (read_mask_values(tmp_path / "rgba.png") > 0).sum() == 25


def test_a_test_folder_outside_the_loco_names_is_said(loco_root, caplog):
    """A misspelt type folder (``logical_anomaly``) was counted as anomalous without a word,
    outside the logical / structural split."""
    cdir = category_dir(loco_root, "widgets")
    with caplog.at_level("WARNING", logger="locoad.data.layout"):
        list_split(cdir, "test")
    assert not caplog.records  # the LOCO names: nothing to say
    (cdir / "test" / "logical_anomalies").rename(cdir / "test" / "logical_anomaly")
    with caplog.at_level("WARNING", logger="locoad.data.layout"):
        samples = list_split(cdir, "test")
    assert "logical_anomaly}" in caplog.text and "rename a misspelt folder" in caplog.text
    assert {s.label for s in samples if s.anomaly_type == "logical_anomaly"} == {1}  # still read, as anomalous


def test_files_that_are_not_read_are_said(loco_root, caplog):
    """A WebP export, or images put straight into test/, were left out of the data without a word."""
    cdir = category_dir(loco_root, "widgets")
    with caplog.at_level("WARNING", logger="locoad.data.layout"):
        before = list_split(cdir, "test")
    assert not caplog.records
    (cdir / "test" / "good" / "extra.webp").write_bytes(b"")
    (cdir / "test" / "good" / ".DS_Store").write_bytes(b"")  # hidden: nothing to say
    (cdir / "test" / "stray.png").write_bytes(b"")
    with caplog.at_level("WARNING", logger="locoad.data.layout"):
        assert list_split(cdir, "test") == before
    assert "1 file(s) skipped (.webp)" in caplog.text and "outside a type folder (e.g. stray.png)" in caplog.text
    assert "DS_Store" not in caplog.text


def test_bit_depth_reaches_the_datasets(loco_root):
    from conftest import compose_cfg

    cfg = compose_cfg(["data=mvtec_loco", f"data.root={loco_root}", "data.category=widgets", "data.bit_depth=12"],
                      loco_root.parent / "out")
    dm = LocoDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    assert dm.dataset("test").bit_depth == 12 and dm.dataset("train").bit_depth == 12


def test_sixteen_bit_colour_with_alpha_reads_as_eight_bit_alpha_does(tmp_path):
    """Alpha is composited on black for every image: 16-bit colour TIFF and PNG once dropped it,
    so a transparent background read as whatever colour lay under it."""
    import tifffile

    a = np.zeros((20, 30, 4), np.uint16)
    a[..., 0], a[..., 3] = 65535, 65535
    a[:, 15:, 3] = 0  # the right half transparent
    tifffile.imwrite(tmp_path / "c.tif", a)
    Image.fromarray((a >> 8).astype(np.uint8), "RGBA").save(tmp_path / "c8.png")
    eight = read_rgb(tmp_path / "c8.png")
    assert eight[0, 0].tolist() == [255, 0, 0] and eight[0, -1].tolist() == [0, 0, 0]
    assert np.array_equal(read_rgb(tmp_path / "c.tif"), eight)
    _png16(tmp_path / "c64.png", a)
    assert np.array_equal(read_rgb(tmp_path / "c64.png"), eight)
