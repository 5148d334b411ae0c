"""Chest X-ray report generation: Show-Attend-Tell captioning, pathology heatmaps and a report writer.

Modules: ``phantoms`` (synthetic radiographs + captions), ``vocab``, ``mentions`` (the 14 CheXpert
observations a text asserts, denies or leaves uncertain), ``backbones`` (ResNet/DenseNet grids),
``model``, ``train``, ``decode`` (beam search), ``heatmaps``, ``metrics``, ``evaluation`` (phantoms),
``readers`` (Open-I NLM and Kaggle layouts, MIMIC-CXR), ``data`` (cleaning, splits, streamed images),
``pipeline`` (run-directory train/evaluate), ``cli`` (``ptacl cxr``), ``fixtures`` (a tiny Kaggle-layout
data set), ``report`` (compose_report) and ``plots``.
"""
