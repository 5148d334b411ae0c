"""PTACL: align the 12-lead ECG with cine CMR so that the ECG embedding carries cardiac structure and function."""

__version__ = "0.1.0"
