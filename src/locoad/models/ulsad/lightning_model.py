"""ULSAD as a locoad :class:`~locoad.models.base.AnomalyModule` trained by Lightning's fit loop.

Fitting order: feature standardisation on the training images (``on_train_start``, once), the
branches by gradient descent, then the map quantiles on validation/good images at the end of
the last training epoch. That hook runs before ModelCheckpoint's, so the quantiles (buffers)
are in ``last.ckpt`` and ``train=false ckpt_path=...`` tests without retraining.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence

import torch
from lightning.pytorch.trainer.states import TrainerFn

from locoad.backbones.base import Backbone
from locoad.errors import ConfigError
from locoad.models.base import AnomalyModule, ScoreOutput
from locoad.models.seven_feature.lightning_model import STATE_KEY as SEVEN_FEATURE_STATE
from locoad.models.ulsad.torch_model import ULSADModel, image_score

log = logging.getLogger(__name__)
# What the test maps read besides the weights: the maps' own settings and the quantiles' levels.
SCORING_KEYS = ("lambda_local", "lambda_global", "blur_sigma", "local_map_weight", "q_low", "q_high")


class ULSADModule(AnomalyModule):
    """ULSAD: local deep-feature reconstruction + global attention branch.

    Args:
        backbone: a frozen locoad backbone from ``conf/backbone/`` (the preset: ``wide_resnet50``,
            layer2 + layer3 as in the paper, at S px on a stride-8 grid without pooling); its
            weights (``backbone.pretrained`` / ``backbone.checkpoint``) load through the
            backbone's strict loader.
        image_size: input size S (must equal data.image_size).
        feature_dim: channels the concatenated features are averaged down to (384).
        hidden_dim: bottleneck channels of the local branch (1536).
        global_width: channels of the global branch (64).
        lambda_local / lambda_attn / lambda_global: weight of the cosine (direction) term in
            each distance (0.5).
        weight_local / weight_attn / weight_global: weights of the three losses (1; 0 ablates).
        lr / weight_decay / lr_milestones / lr_gamma: Adam + MultiStepLR (2e-4, 2e-5, [200], 0.1).
        q_low / q_high: validation quantiles mapped to 0 and 0.1 per branch (0.9, 0.995).
        blur_sigma: Gaussian smoothing of the maps in pixels at image size (4).
        local_map_weight: weight of the local map in the fused map (0.5).
    """

    def __init__(
        self,
        backbone: Backbone,
        image_size: int = 256,
        feature_dim: int = 384,
        hidden_dim: int = 1536,
        global_width: int = 64,
        lambda_local: float = 0.5,
        lambda_attn: float = 0.5,
        lambda_global: float = 0.5,
        weight_local: float = 1.0,
        weight_attn: float = 1.0,
        weight_global: float = 1.0,
        lr: float = 2e-4,
        weight_decay: float = 2e-5,
        lr_milestones: Sequence[int] = (200,),
        lr_gamma: float = 0.1,
        q_low: float = 0.9,
        q_high: float = 0.995,
        blur_sigma: float = 4.0,
        local_map_weight: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 <= q_low < q_high <= 1.0:
            raise ConfigError(f"model.q_low / model.q_high must be quantiles with 0 <= q_low < q_high <= 1, "
                              f"got {q_low} / {q_high}")
        self.save_hyperparameters(ignore=["backbone"])  # a module: its weights are in the state dict
        self.model = ULSADModel(
            backbone=backbone,
            image_size=image_size,
            feature_dim=feature_dim,
            hidden_dim=hidden_dim,
            global_width=global_width,
            lambda_local=lambda_local,
            lambda_attn=lambda_attn,
            lambda_global=lambda_global,
            weight_local=weight_local,
            weight_attn=weight_attn,
            weight_global=weight_global,
            blur_sigma=blur_sigma,
            local_map_weight=local_map_weight,
        )
        self.image_size = int(image_size)
        self._previous_image: torch.Tensor | None = None  # the last image trained on (training_step)
        self._warned_no_validation = False

    # -- fitting ---------------------------------------------------------------------------
    def _images(self, loader: Iterable[dict]) -> Iterable[torch.Tensor]:
        for batch in loader:
            yield batch["image"].to(self.device)

    def _run_precision(self) -> contextlib.AbstractContextManager:
        """The precision training and testing run the networks at (trainer.precision=bf16-mixed:
        bfloat16 under autocast); Lightning's hooks run outside it, so what they fit (feature
        statistics, map quantiles) would describe other features and maps than those scored."""
        trainer = getattr(self, "_trainer", None)
        return trainer.precision_plugin.forward_context() if trainer is not None else contextlib.nullcontext()

    def _check_size(self, images: torch.Tensor) -> None:
        if images.shape[-1] != self.image_size:
            raise ConfigError(
                f"ULSAD was built for {self.image_size}px images but got {images.shape[-1]}px; "
                "set data.image_size and model.image_size to the same value"
            )

    def _validation_loader(self) -> Iterable[dict]:
        """validation/good, or the training images when the category has none (the LOCO layout
        makes validation/ optional), said once per run."""
        dm = getattr(self.trainer, "datamodule", None)
        loader = dm.val_dataloader() if dm is not None and hasattr(dm, "val_dataloader") else None
        if loader is not None and len(loader) > 0:
            return loader
        if not self._warned_no_validation:
            log.warning(
                "ULSAD: no validation/good images; fitting the map normalisation on the training "
                "images instead (the paper uses held-out validation/good images)"
            )
            self._warned_no_validation = True
        if dm is not None and hasattr(dm, "train_dataloader"):
            return dm.train_dataloader()
        return self.trainer.train_dataloader

    def on_train_start(self) -> None:
        loader = getattr(getattr(self, "_trainer", None), "train_dataloader", None)
        if loader is not None and (len(loader.dataset) < 2 or (loader.batch_size or 2) < 2):
            # training_step needs two images per batch (BatchNorm): only a trailing batch of one
            # can borrow the image before it, so a loader of one-image batches trains nothing.
            raise ConfigError(f"ULSAD trains on batches of two images or more (its global branch's BatchNorm), "
                              f"but has {len(loader.dataset)} training image(s) in batches of {loader.batch_size}: "
                              "use data.k_shot >= 2 (or null for every training image) and data.batch_size >= 2")
        # Once per model: a resumed run restores the statistics from the checkpoint.
        if not bool(self.model.features.fitted):
            with self._run_precision():
                self.model.features.fit(self._images(self.trainer.train_dataloader))
        # A resumed run's checkpoint may hold the quantiles of its own last epoch: training moves
        # the weights they were fitted for, so they go until the last epoch fits them again.
        self.model.maps_fitted.fill_(False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        images = batch["image"]
        self._check_size(images)
        if images.shape[0] < 2:
            # The global branch's 1x1 bottleneck BatchNorm needs two images per batch. A trailing
            # batch of one (on_train_start refuses loaders with nothing else) trains beside the
            # previous batch's last image: skipped, the same image (the loader keeps the shots'
            # order) would never be trained on.
            images = torch.cat([self._previous_image, images])
        self._previous_image = images[-1:].detach()
        terms = self.model.loss(images)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=images.shape[0], prog_bar=False)
        return terms["loss"]

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(self.hparams.lr_milestones), gamma=self.hparams.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": sched}

    def _is_last_epoch(self) -> bool:
        t = self.trainer
        if t.max_epochs is not None and t.max_epochs > 0 and t.current_epoch + 1 >= t.max_epochs:
            return True
        return (t.max_steps is not None and t.max_steps > 0 and t.global_step >= t.max_steps) or t.should_stop

    @torch.no_grad()
    def fit_normalisation(self, loader: Iterable[dict]) -> None:
        """Fit the per-branch map quantiles on good images (the paper uses validation/good)."""
        was_training = self.model.training
        self.model.eval()
        local, global_ = [], []
        with self._run_precision():
            for images in self._images(loader):
                maps = self.model.raw_maps(images)
                local.append(maps[0].cpu())
                global_.append(maps[1].cpu())
        if not local:
            raise ConfigError("ULSAD: no images to fit the map normalisation on")
        self.model.fit_map_quantiles(torch.cat(local), torch.cat(global_), self.hparams.q_low, self.hparams.q_high)
        self.model.train(was_training)
        log.info("ULSAD map quantiles: local %s, global %s", self.model.q_local.tolist(), self.model.q_global.tolist())

    def on_train_epoch_end(self) -> None:
        # Runs before ModelCheckpoint's epoch-end hook, so the quantiles land in the checkpoint.
        if self._is_last_epoch():
            self.fit_normalisation(self._validation_loader())
            self._quantiles_step = self.trainer.global_step

    def on_train_end(self) -> None:
        # Stopped in an unforeseen way (e.g. max_time): fit now so testing stays correct.
        if getattr(self, "_quantiles_step", None) != self.trainer.global_step:
            log.warning("ULSAD: fitting map quantiles after training; the last checkpoint lacks them")
            self.fit_normalisation(self._validation_loader())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint's map quantiles were fitted under its own scoring settings: testing it
        with others would score with quantiles of other maps, so a difference is an error (a
        resumed training fits them again at its last epoch)."""
        if SEVEN_FEATURE_STATE in checkpoint:  # before Lightning lists every state-dict key that differs
            raise ConfigError("this checkpoint was written by model=seven_feature, not by a ULSAD model (model=ulsad or "
                              "ulsad_tiny): test it with model=seven_feature (and its run's settings), or give "
                              "ckpt_path a checkpoint a ULSAD run saved")
        trainer = getattr(self, "_trainer", None)
        if trainer is None or trainer.state.fn != TrainerFn.TESTING:
            return
        saved = checkpoint.get("hyper_parameters") or {}
        differ = {k: (saved[k], self.hparams[k]) for k in SCORING_KEYS
                  if k in saved and k in self.hparams and saved[k] != self.hparams[k]}
        if differ:
            said = ", ".join(f"model.{k}={now} (checkpoint: {was})" for k, (was, now) in differ.items())
            raise ConfigError(f"this ULSAD checkpoint was fitted with other scoring settings: {said}; "
                              "test it with its own values or train again")

    def on_test_start(self) -> None:
        super_hook = getattr(super(), "on_test_start", None)
        if super_hook is not None:
            super_hook()
        if not bool(self.model.maps_fitted):
            log.warning("ULSAD: the model has no map quantiles (untrained checkpoint?); fitting them now")
            self.fit_normalisation(self._validation_loader())

    # -- scoring ---------------------------------------------------------------------------
    def score_batch(self, batch: dict) -> ScoreOutput:
        images = batch["image"]
        self._check_size(images)
        maps = self.model.maps(images)
        scores = {name: image_score(m) for name, m in maps.items()}
        return ScoreOutput(scores=scores, anomaly_map=maps["fused"],
                           feature_maps={n: m for n, m in maps.items() if n != "fused"})
