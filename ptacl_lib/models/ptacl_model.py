"""The PTACL model: ECG encoder + CMR encoder + shared-space projection heads + phase pooling."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..geometry import DEMO, Geometry
from .cmr_encoder import CMREncoder
from .ecg_encoder import ECGEncoder
from .heads import ProjectionHead
from .phase_pooling import PHASE_POOLERS


@dataclass(frozen=True)
class ModelConfig:
    """Encoder sizes. Use ``ModelConfig.preset("small" | "base")``.

    The ECG's stem kernel and patch are set in milliseconds (``ecg_stem_ms``, ``ecg_patch_ms``) and turned
    into samples at ``ecg_hz``, so a token covers 100 ms at 100, 250 or 500 Hz; the frame CNN reads the
    ``slices`` short-axis slices of a frame as its input channels. ``at_geometry`` sets both, and the phase-pooling
    rule (``GEOMETRY_PHASE_POOLING``), from an input geometry (``ptacl_lib.geometry``); the defaults are the
    ``demo`` geometry's. A run records the geometry once, beside the architecture (``architecture``), and
    rebuilds the config with ``from_record``.

    ``small`` (the default, CPU demo; ~0.2 M parameters): a 32-channel convolutional ECG stem, then
    patches of 100 ms (10 samples at 100 Hz), so a 10 s recording gives 100 tokens of width 64, 3 layers,
    4 heads; CMR CNN with 16/32/64 channels on 32x32 frames, its first stage reading 4x4 patches (1.7x
    faster steps on a CPU than a 3x3 stride-2 first stage), 2 temporal layers of width 64; shared space 64.
    Measured step times are in ``benchmarks/RESULTS.md``.

    ``base`` (paper-like, for a GPU; ~116 M parameters): ViT-B-like ECG transformer (the same stem,
    width 768, 12 layers, 12 heads, patch 100 ms -> 100 tokens), CMR CNN with 64/128/256/512 channels (3x3
    stride-2 stages only) and a 4-layer temporal transformer of width 768, shared space 256, dropout 0.1.
    """

    ecg_leads: int = 12
    ecg_stem: int = 32  # channels of the ECG's convolutional stem; 0: a linear patchify (runs before 2026-11-29)
    ecg_hz: int = DEMO.ecg_hz  # the ECG rate the model reads (the input geometry's)
    ecg_patch_ms: float = 100.0  # one token's width
    ecg_stem_ms: float = 50.0  # the stem's kernel: about a QRS half-width
    ecg_dim: int = 64
    ecg_depth: int = 3
    ecg_heads: int = 4
    cmr_channels: tuple[int, ...] = (16, 32, 64)
    cmr_first_stride: int = 4  # the frame CNN's first stage: 4, 4x4 patches; 2, a 3x3 conv (runs saved before it)
    cmr_dim: int = 64
    cmr_depth: int = 2
    cmr_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    embed_dim: int = 64
    head_hidden: int = 0  # 0: linear projection heads
    phase_pooling: str = "beat_nearest_frame"
    slices: int = DEMO.slices  # short-axis slices per frame: the frame CNN's input channels (the geometry's)

    @property
    def ecg_patch(self) -> int:
        """Samples per ECG token at ``ecg_hz``."""
        return max(1, int(round(self.ecg_patch_ms * self.ecg_hz / 1000.0)))

    @property
    def ecg_stem_kernel(self) -> int:
        """The stem's kernel in samples at ``ecg_hz``: odd, so the stem keeps the signal's length."""
        return 2 * int(round((self.ecg_stem_ms * self.ecg_hz / 1000.0 - 1.0) / 2.0)) + 1

    def at_geometry(self, geometry: Geometry) -> "ModelConfig":
        """This config for an input geometry: its ECG rate and slice count (frames and size need no weights), and
        the named geometry's ``GEOMETRY_PHASE_POOLING`` rule (a geometry of another name: this config's own)."""
        pooling = GEOMETRY_PHASE_POOLING.get(geometry.name, self.phase_pooling)
        return dataclasses.replace(self, ecg_hz=geometry.ecg_hz, slices=geometry.slices, phase_pooling=pooling)

    def architecture(self) -> dict[str, Any]:
        """Every field but the geometry's (``GEOMETRY_OF_MODEL``): what a run records as ``model_config``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in GEOMETRY_OF_MODEL}

    @classmethod
    def from_record(cls, record: dict[str, Any], geometry: Geometry) -> "ModelConfig":
        """A config from a run's ``model_config`` and its geometry. Records of earlier versions also load: their
        ``ecg_hz``/``cmr_slices`` give way to the geometry, an ECG patch in samples becomes milliseconds, and runs
        saved before the ECG stem and the 4x4 first stage existed get a linear patchify and 3x3 stages."""
        saved = dict(record)
        if "ecg_patch" in saved:
            saved["ecg_patch_ms"] = float(saved.pop("ecg_patch")) * 1000.0 / saved.get("ecg_hz", DEMO.ecg_hz)
        for old in ("cmr_slices", *GEOMETRY_OF_MODEL):
            saved.pop(old, None)
        saved = {"ecg_stem": 0, "cmr_first_stride": 2, **saved, "cmr_channels": tuple(saved["cmr_channels"])}
        return dataclasses.replace(cls(**saved), ecg_hz=geometry.ecg_hz, slices=geometry.slices)  # its own rule

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """A named size (``small`` or ``base``), optionally with some fields overridden."""
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(MODEL_PRESETS)}")
        return dataclasses.replace(MODEL_PRESETS[name], **overrides)


#: The ``ModelConfig`` fields that come from the input geometry.
GEOMETRY_OF_MODEL: tuple[str, ...] = ("ecg_hz", "slices")

#: The phase-pooling rule of each named input geometry (``ptacl_lib.geometry``), chosen on validation alignment and
#: loss: at both, the nearest frame (docs/design.md §3.3; the runs: docs/experiments.md, 2026-12-06). A geometry
#: with single-field overrides keeps its name's rule; a run's ``--phase-pooling`` overrides it.
GEOMETRY_PHASE_POOLING: dict[str, str] = {"demo": "beat_nearest_frame", "ukb": "beat_nearest_frame"}

MODEL_PRESETS: dict[str, ModelConfig] = {
    "small": ModelConfig(),
    "base": ModelConfig(ecg_dim=768, ecg_depth=12, ecg_heads=12, cmr_channels=(64, 128, 256, 512),
                        cmr_first_stride=2, cmr_dim=768, cmr_depth=4, cmr_heads=12, mlp_ratio=4.0, dropout=0.1,
                        embed_dim=256),
}


def ecg_encoder_of(cfg: ModelConfig) -> ECGEncoder:
    """The ECG encoder a config describes (``PTACLModel``'s and ``ECGEmbedder``'s)."""
    return ECGEncoder(cfg.ecg_leads, cfg.ecg_patch, cfg.ecg_dim, cfg.ecg_depth, cfg.ecg_heads, cfg.mlp_ratio,
                      cfg.dropout, cfg.ecg_stem, cfg.ecg_stem_kernel)


class ECGEmbedder(nn.Module):
    """The ECG half of a trained model: encoder and projection head, ``[B, 12, L]`` -> the pooled embedding
    ``[B, E]`` (``PTACLModel.embed_ecg``). What a model bundle ships; its weights' names are the model's own."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.ecg_encoder = ecg_encoder_of(config)
        self.ecg_head = ProjectionHead(config.ecg_dim, config.embed_dim, config.head_hidden)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.ecg_head(self.ecg_encoder(ecg).pooled)

    @classmethod
    def from_model(cls, model: "PTACLModel") -> "ECGEmbedder":
        """The trained ECG half of ``model`` (its weights copied)."""
        embedder = cls(model.config)
        embedder.load_state_dict({k: v for k, v in model.state_dict().items()
                                  if k.split(".")[0] in ("ecg_encoder", "ecg_head")})
        return embedder.eval()


class PTACLModel(nn.Module):
    """Both encoders and their projection heads.

    ``forward(batch)`` takes a collated batch (``ecg``, ``cmr``, ``rpeaks``) and returns projected
    (not normalised) ``ecg_global``/``cmr_global`` ``[B, E]``, ``ecg_phase``/``cmr_frames`` ``[B, T, E]``
    and ``phase_mask`` ``[B, T]``. Phase and frame tokens go through the same heads as the pooled
    embeddings: the local loss adds no learnable weight.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = config or ModelConfig()
        if cfg.phase_pooling not in PHASE_POOLERS:
            raise ValueError(f"unknown phase pooling {cfg.phase_pooling!r}; choose from {sorted(PHASE_POOLERS)}")
        self.config = cfg
        self.ecg_encoder = ecg_encoder_of(cfg)
        self.cmr_encoder = CMREncoder(cfg.cmr_channels, cfg.cmr_dim, cfg.cmr_depth, cfg.cmr_heads,
                                      cfg.mlp_ratio, cfg.dropout, cfg.cmr_first_stride, cfg.slices)
        self.ecg_head = ProjectionHead(cfg.ecg_dim, cfg.embed_dim, cfg.head_hidden)
        self.cmr_head = ProjectionHead(cfg.cmr_dim, cfg.embed_dim, cfg.head_hidden)
        self.phase_pool = PHASE_POOLERS[cfg.phase_pooling]

    def embed_ecg(self, ecg: torch.Tensor) -> torch.Tensor:
        """Projected pooled ECG embedding ``[B, E]`` (what downstream evaluation uses)."""
        return self.ecg_head(self.ecg_encoder(ecg).pooled)

    def embed_cmr(self, cmr: torch.Tensor) -> torch.Tensor:
        """Projected pooled CMR embedding ``[B, E]``."""
        return self.cmr_head(self.cmr_encoder(cmr).pooled)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ecg = self.ecg_encoder(batch["ecg"])
        cmr = self.cmr_encoder(batch["cmr"])
        phase_tokens, phase_mask = self.phase_pool(ecg.tokens, ecg.token_times, batch["rpeaks"], cmr.tokens.shape[1])
        return {
            "ecg_global": self.ecg_head(ecg.pooled),
            "cmr_global": self.cmr_head(cmr.pooled),
            "ecg_phase": self.ecg_head(phase_tokens),
            "cmr_frames": self.cmr_head(cmr.tokens),
            "phase_mask": phase_mask,
        }
