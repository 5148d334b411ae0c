"""Pretrained-style backbones with random weights: grid shapes, torchvision key names, weight files, offline errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from crafted_pickles import write_payload
from torch import nn

from ptacl_lib.cxr.backbones import IMAGENET_FILES, build_backbone, load_backbone_weights, weights_file
from ptacl_lib.cxr.model import CaptionerConfig, ShowAttendTell
from ptacl_lib.cxr.train import CaptionTrainConfig, TrainedCaptioner, load_captioner, save_captioner
from ptacl_lib.cxr.vocab import Vocabulary
from ptacl_lib.runtime import UnsafeCheckpointError


@pytest.mark.parametrize("name, n_params", [("resnet18", 11_176_512), ("densenet121", 6_953_856)])
def test_backbones_match_torchvision_sizes(name: str, n_params: int) -> None:
    """torchvision's parameter counts without the classifier (resnet18 11,689,512 - fc; densenet121 7,978,856 -
    classifier), so its weight files fit parameter for parameter."""
    assert sum(p.numel() for p in build_backbone(name).parameters()) == n_params


@pytest.mark.parametrize("encoder", ["resnet18", "xrv-densenet121"])
def test_backbone_grid_feeds_attention(encoder: str) -> None:
    torch.manual_seed(0)
    config = CaptionerConfig(vocab_size=11, image_size=64, encoder=encoder)
    model = ShowAttendTell(config).eval()
    assert config.grid_size == 2
    logits, alphas = model(torch.rand(2, 64, 64), torch.randint(0, 11, (2, 6)))
    assert logits.shape == (2, 5, 11) and alphas.shape == (2, 5, 4)
    assert torch.allclose(alphas.sum(-1), torch.ones(2, 5))


def test_weights_load_from_a_torchvision_style_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_backbone("densenet121")
    state = source.state_dict()
    # torchvision's densenet files use the old "norm.1" names and carry a classifier; both are handled
    old_names = {k.replace("denselayer1.norm1", "denselayer1.norm.1"): v for k, v in state.items()}
    old_names["classifier.weight"] = torch.zeros(1000, 1024)
    path = tmp_path / "densenet121.pth"
    torch.save(old_names, path)
    target = build_backbone("densenet121")
    counts = load_backbone_weights(target, "densenet121", str(path))
    assert counts == {"loaded": len(state), "missing": 0, "unused": 1}
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), state.values()))
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no parameter matches"):
        load_backbone_weights(target, "densenet121", str(tmp_path / "other.pth"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("via", ["torch.save", "pickle"])
def test_a_weights_file_that_would_run_code_is_refused(tmp_path: Path, via: str) -> None:
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "resnet18.pth", marker, via)
    with pytest.raises(UnsafeCheckpointError, match=f"^{re.escape(str(path))} holds objects other than weights"):
        load_backbone_weights(build_backbone("resnet18"), "resnet18", str(path))
    assert not marker.exists()
    torch.save(nn.Linear(2, 2), path)  # a whole pickled model is refused too: only its state dict loads
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load_backbone_weights(build_backbone("resnet18"), "resnet18", str(path))


def test_missing_imagenet_weights_is_a_clear_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / IMAGENET_FILES["resnet18"]
    assert weights_file("resnet18", "imagenet") == expected
    with pytest.raises(FileNotFoundError, match=f"{expected}.*download.pytorch.org.*--encoder-weights none"):
        load_backbone_weights(build_backbone("resnet18"), "resnet18", "imagenet")
    assert load_backbone_weights(build_backbone("resnet18"), "resnet18", "none")["loaded"] == 0


def test_backbone_captioner_checkpoint_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["left effusion ."])
    model = ShowAttendTell(CaptionerConfig(vocab_size=len(vocab), image_size=32, encoder="resnet18")).eval()
    save_captioner(tmp_path / "best.pt", TrainedCaptioner(model, vocab), CaptionTrainConfig(), 1)
    loaded = load_captioner(tmp_path / "best.pt", "cpu")
    assert loaded.model.config.encoder == "resnet18"
    x = torch.rand(1, 32, 32)
    assert torch.allclose(loaded.model.encoder(x), model.encoder(x))
