"""Chest X-ray report generation: Show-Attend-Tell captioning, pathology heatmaps and a report writer.

Modules: ``phantoms`` (synthetic radiographs + captions), ``vocab``, ``mentions`` (which findings a
text asserts), ``model``, ``train``, ``decode`` (beam search), ``heatmaps``, ``metrics``,
``evaluation``, ``readers`` (Open-I, MIMIC-CXR), ``report`` (compose_report) and ``plots``.
"""
