"""The READMEs: error messages quoted verbatim, the Chinese README in step with the English."""
import re
from pathlib import Path

import pytest

from lab_utils.data import DOWNLOAD_FAILED_MESSAGE, OFFLINE_MESSAGE
from lab_utils.model import WEIGHTS, WEIGHTS_MESSAGE
from lab_utils.train import WORKERS_MESSAGE

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
EXAMPLE_DIR = "/home/me/lab/data/cifar10"

# The messages as the READMEs quote them, rendered with the READMEs' example values.
QUOTED = [
    OFFLINE_MESSAGE.format(root=EXAMPLE_DIR),
    DOWNLOAD_FAILED_MESSAGE.format(root=EXAMPLE_DIR, error="<urlopen error timed out>"),
    WEIGHTS_MESSAGE.format(url=WEIGHTS.url,
                           path="/home/me/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth"),
    WORKERS_MESSAGE.format(num_workers=2,
                           error="DataLoader worker (pid(s) 1234) exited unexpectedly"),
]


def code_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def headings(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(#+) ", text, flags=re.M)]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
@pytest.mark.parametrize("message", QUOTED, ids=range(len(QUOTED)))
def test_troubleshooting_quotes_the_code_verbatim(readme, message):
    assert message in readme.read_text(encoding="utf-8")


def test_chinese_readme_has_the_same_structure_and_commands():
    en, zh = (p.read_text(encoding="utf-8") for p in READMES)
    assert headings(en) == headings(zh)
    assert code_blocks(en) == code_blocks(zh)
    assert "README.zh-CN.md" in en.splitlines()[0] and "README.md" in zh.splitlines()[0]


def test_quick_start_and_ci_use_the_same_test_command():
    en = READMES[0].read_text(encoding="utf-8")
    blocks = code_blocks(en)
    assert 'pip install -e ".[dev]" && pytest --nbval-lax' in blocks
    assert "pip install -e . && papermill notebooks/04_train.ipynb out.ipynb -p epochs 15" in blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "pytest --nbval-lax"
