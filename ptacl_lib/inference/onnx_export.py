"""A bundle's ECG encoders as ONNX (``ptacl export --onnx``), for runtimes without torch.

The graph maps ``ecg`` float32 ``[batch, 12, L]`` (preprocessed and scaled as ``bundle.json`` says) to
``embedding`` ``[batch, E]``; the probes and the calibration stay in the bundle's other files. Needs the
``onnx`` extra (``pip install "ptacl_lib[onnx]"``: onnx and onnxruntime).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def export_onnx(embedder: Any, path: str | Path, n_samples: int) -> Path:
    """Write ``embedder`` (a ``models.ECGEmbedder``) to ``path``, with a free batch axis."""
    import torch

    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as err:
        raise ValueError("ONNX export needs the onnx package: pip install \"ptacl_lib[onnx]\"") from err
    example = torch.zeros(1, embedder.config.ecg_leads, n_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(embedder.eval(), (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                          dynamic_axes={"ecg": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False)
    return Path(path)


def onnx_embeddings(path: str | Path, windows: Any) -> Any:
    """ONNX Runtime's embeddings of ``[N, 12, L]`` float32 windows (to check an export against torch)."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"ecg": np.asarray(windows, dtype=np.float32)})[0]
