"""What notebooks show about their environment and the library: the versions that
matter, and the source of a function."""
from __future__ import annotations

import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import IPython.display


def versions() -> str:
    """One line with the Python, torch, torchvision and lab_utils versions."""
    import torch
    import torchvision

    from . import __version__

    return (f"Python {platform.python_version()} | torch {torch.__version__} | "
            f"torchvision {torchvision.__version__} | lab_utils {__version__}")


def show_source(*functions) -> "IPython.display.Markdown":
    """The source code of `functions` as a Python code block, so that a notebook shows the
    library's own code (what actually runs) instead of a copy that could drift from it."""
    import inspect

    from IPython.display import Markdown

    return Markdown("\n\n".join(f"```python\n{inspect.getsource(f)}```" for f in functions))
