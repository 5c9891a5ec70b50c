"""Pretrained PKN models and their model cards (installed as ``pkn._resources``)."""
