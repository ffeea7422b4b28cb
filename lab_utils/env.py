"""The environment a notebook runs in: Colab or not, and the versions that matter."""
from __future__ import annotations

import platform
import sys


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def versions() -> str:
    """One line with the Python, torch, torchvision and lab_utils versions."""
    import torch
    import torchvision

    from . import __version__

    return (f"Python {platform.python_version()} | torch {torch.__version__} | "
            f"torchvision {torchvision.__version__} | lab_utils {__version__}")
