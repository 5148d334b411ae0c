"""Applying a finished study to ECGs that have no CMR: the model bundle (``ptacl export``), the predictor
(``ptacl predict``), the checks a new ECG passes on its way in, and the model card."""

from .bundle import Bundle, BundleError, export_bundle, load_bundle
from .ecg_input import InputRejected, InputSpec, PreparedEcg, prepare_signal, read_signal
from .predictor import Predictor, default_workers, ecg_files

__all__ = ["Bundle", "BundleError", "InputRejected", "InputSpec", "Predictor", "PreparedEcg", "default_workers",
           "ecg_files", "export_bundle", "load_bundle", "prepare_signal", "read_signal"]
