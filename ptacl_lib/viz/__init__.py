"""Figures for the notebooks: UMAP views, retrieval cards, regression plots and the alignment inspector."""
