"""Callbacks: thin wrappers, one per file, only what Lightning lacks."""

from nl_lightning.callbacks.text_sample import TextSampleCallback

__all__ = ["TextSampleCallback"]
