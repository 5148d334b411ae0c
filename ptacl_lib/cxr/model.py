"""Show, Attend and Tell: a CNN feature grid, and an LSTM decoder with soft additive attention.

At every step the decoder scores each grid cell against its hidden state (additive attention),
takes the attention-weighted context, scales it by a learned gate ``beta = sigmoid(f(h))`` and
feeds it with the previous word to an LSTM cell. Training adds the doubly stochastic penalty
``mean_cells (1 - sum_steps alpha)^2``, which asks every cell to be looked at about once over a caption.
(The paper sums over cells; the mean keeps the weight ``alpha_c`` independent of the grid size.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import BACKBONE_STRIDE, build_backbone, prepare_input


@dataclass(frozen=True)
class CaptionerConfig:
    """Model sizes. The grid is ``image_size / 2**encoder_stages`` cells on a side."""

    vocab_size: int
    image_size: int = 128
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 1  # 3x3 convs per stage (the last one strided); fewer = more local features
    feature_dim: int = 64
    embed_dim: int = 48
    hidden_dim: int = 128
    attention_dim: int = 64
    dropout: float = 0.2
    # The paper starts the LSTM from the mean feature. That hands the decoder the whole image without
    # attending, so attention need not localise; False (default) starts from a learned constant instead.
    # Measured on 64 px phantoms (2000, 10-12 epochs): pointing game 0.14 with the paper's start and two
    # convs per stage, 0.33 with one conv per stage and the constant start (chest-region chance ~0.13).
    init_from_features: bool = False
    # "cnn" (the small greyscale CNN above, the CPU default) or a backbone of ``backbones.BACKBONES``.
    encoder: str = "cnn"

    @property
    def grid_size(self) -> int:
        if self.encoder != "cnn":
            return self.image_size // BACKBONE_STRIDE
        return self.image_size // 2 ** len(self.encoder_channels)


class GridEncoder(nn.Module):
    """Strided conv stages -> a ``[B, G*G, D]`` feature grid with a learned position embedding per cell.

    The position embedding lets attention tell left from right and upper from lower zones.
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in config.encoder_channels:
            for k in range(config.convs_per_stage):
                stride = 2 if k == config.convs_per_stage - 1 else 1
                layers += [nn.Conv2d(c_in, c, 3, padding=1, stride=stride), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        self.stages = nn.Sequential(*layers)
        self.project = nn.Conv2d(c_in, config.feature_dim, 1)
        self.position = nn.Parameter(torch.zeros(1, config.grid_size**2, config.feature_dim))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` [B, H, W] or [B, 1, H, W] in [0, 1] -> features [B, G*G, D]."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        f = self.project(self.stages(images))  # [B, D, G, G]
        f = f.flatten(2).transpose(1, 2)
        if f.shape[1] != self.position.shape[1]:
            raise ValueError(f"image gives a {f.shape[1]}-cell grid; the model was built for "
                             f"{self.position.shape[1]} cells (image_size mismatch)")
        return f + self.position


class BackboneGridEncoder(nn.Module):
    """A ResNet/DenseNet backbone's last feature grid (stride 32) -> ``[B, G*G, D]`` plus a position embedding."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        if config.grid_size < 1:
            raise ValueError(f"image_size {config.image_size} is below the backbone stride {BACKBONE_STRIDE}")
        self.name = config.encoder
        self.backbone = build_backbone(config.encoder)
        self.project = nn.Conv2d(self.backbone.out_channels, config.feature_dim, 1)
        self.position = nn.Parameter(torch.zeros(1, config.grid_size**2, config.feature_dim))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` [B, H, W] or [B, 1, H, W] in [0, 1] -> features [B, G*G, D]."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        f = self.project(self.backbone(prepare_input(self.name, images))).flatten(2).transpose(1, 2)
        if f.shape[1] != self.position.shape[1]:
            raise ValueError(f"image gives a {f.shape[1]}-cell grid; the model was built for "
                             f"{self.position.shape[1]} cells (image_size mismatch)")
        return f + self.position


class AdditiveAttention(nn.Module):
    """``alpha = softmax_cells(w^T tanh(W_f f + W_h h))`` and the context ``sum alpha f``."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.feature = nn.Linear(feature_dim, attention_dim)
        self.hidden = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, projected: torch.Tensor, features: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``projected`` is ``self.feature(features)``, computed once per image."""
        e = self.score(torch.tanh(projected + self.hidden(h).unsqueeze(1))).squeeze(-1)
        alpha = e.softmax(dim=1)
        return (alpha.unsqueeze(-1) * features).sum(1), alpha


@dataclass
class DecoderState:
    """LSTM state plus the per-image cached attention projection."""

    h: torch.Tensor
    c: torch.Tensor
    features: torch.Tensor
    projected: torch.Tensor

    def select(self, index: torch.Tensor) -> "DecoderState":
        return DecoderState(self.h[index], self.c[index], self.features[index], self.projected[index])


class ShowAttendTell(nn.Module):
    """Encoder + attention LSTM decoder. ``forward`` runs teacher forcing; ``step`` one decoding step."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = GridEncoder(config) if config.encoder == "cnn" else BackboneGridEncoder(config)
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.attention = AdditiveAttention(config.feature_dim, config.hidden_dim, config.attention_dim)
        self.init_h = nn.Linear(config.feature_dim, config.hidden_dim)
        self.init_c = nn.Linear(config.feature_dim, config.hidden_dim)
        self.gate = nn.Linear(config.hidden_dim, 1)
        self.lstm = nn.LSTMCell(config.embed_dim + config.feature_dim, config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden_dim, config.vocab_size)

    def start(self, images: torch.Tensor) -> DecoderState:
        """Encode images and initialise the LSTM (from the mean feature, or a learned constant)."""
        features = self.encoder(images)
        mean = features.mean(1) if self.config.init_from_features else features.new_zeros(features[:, 0].shape)
        return DecoderState(torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)),
                            features, self.attention.feature(features))

    def step(self, words: torch.Tensor, state: DecoderState
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DecoderState]:
        """Previous words [B] -> (logits [B, V], alpha [B, cells], beta [B], new state)."""
        context, alpha = self.attention(state.projected, state.features, state.h)
        beta = torch.sigmoid(self.gate(state.h))
        x = torch.cat([self.embed(words), beta * context], dim=1)
        h, c = self.lstm(x, (state.h, state.c))
        logits = self.out(self.dropout(h))
        return logits, alpha, beta.squeeze(1), DecoderState(h, c, state.features, state.projected)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing on ``captions`` [B, L] (``<start> .. <end> <pad>..``).

        Returns logits [B, L-1, V] predicting ``captions[:, 1:]`` and alphas [B, L-1, cells].
        """
        state = self.start(images)
        logits, alphas = [], []
        for t in range(captions.shape[1] - 1):
            lg, alpha, _, state = self.step(captions[:, t], state)
            logits.append(lg)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, captions: torch.Tensor,
                 pad: int, alpha_c: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the next word plus ``alpha_c`` times the doubly stochastic attention penalty.

    Padding steps count in neither term.
    """
    target = captions[:, 1:]
    valid = (target != pad).float()  # [B, L-1]
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=pad)
    coverage = (alphas * valid.unsqueeze(-1)).sum(1)  # [B, cells]
    penalty = ((1.0 - coverage) ** 2).mean()
    loss = ce + alpha_c * penalty
    return loss, {"cross_entropy": float(ce.detach()), "attention_penalty": float(penalty.detach())}
