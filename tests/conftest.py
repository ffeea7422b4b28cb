"""Test configuration: CI scale for every notebook, and small generated data.

nbval cannot pass parameters to a notebook, so the notebooks read the environment
variable LAB_SMOKE (lab_utils.config.SMOKE_ENV): set here, before any kernel starts,
it makes every notebook run on generated data for a moment.
"""
import os

import pytest

os.environ["LAB_SMOKE"] = "1"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small generated image-folder dataset (not CIFAR-10), made once per session."""
    from lab_utils.data import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("data") / "synthetic",
                          per_class_train=12, per_class_test=4)
