"""Chest X-ray report generation: Show-Attend-Tell captioning, pathology heatmaps and a report writer.

Modules: ``phantoms`` (synthetic radiographs + captions), ``vocab``, ``mentions`` (the 14 CheXpert
observations a text asserts, denies or leaves uncertain), ``backbones`` (ResNet/DenseNet grids),
``model``, ``train``, ``decode`` (beam search), ``heatmaps``, ``metrics``, ``evaluation`` (phantoms),
``readers`` (Open-I NLM and Kaggle layouts, MIMIC-CXR), ``covid`` (the COVID-19 collection and its caption rule),
``coco`` (MS-COCO captions and Karpathy's split files), ``data`` (cleaning, splits, streamed images),
``pipeline`` (run-directory train/evaluate), ``cli`` (``ptacl cxr``), ``fixtures`` (tiny data sets in the real
layouts), ``report`` (compose_report) and ``plots``.
"""
