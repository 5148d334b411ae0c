"""Encoders, projection heads, phase pooling and the PTACL model."""

from .cmr_encoder import CMREncoder, CMREncoderOutput
from .ecg_encoder import ECGEncoder, ECGEncoderOutput
from .heads import ProjectionHead
from .phase_pooling import PHASE_POOLERS, PhasePooler, beat_phase_pool, token_phase_bins
from .ptacl_model import MODEL_PRESETS, ECGEmbedder, ModelConfig, PTACLModel

__all__ = [
    "CMREncoder", "CMREncoderOutput", "ECGEmbedder", "ECGEncoder", "ECGEncoderOutput", "MODEL_PRESETS", "ModelConfig",
    "PHASE_POOLERS", "PTACLModel", "PhasePooler", "ProjectionHead", "beat_phase_pool", "token_phase_bins",
]
