"""Data: dataset preparers, importers, the canonical-layout dataset, transforms and synthetic scenes."""

from .classes import CLASS_SETS, NYUV2_13, NYUV2_40, SUNRGBD_37, ClassSet

__all__ = ["CLASS_SETS", "NYUV2_13", "NYUV2_40", "SUNRGBD_37", "ClassSet"]
