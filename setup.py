"""xlint: negative interference and cross-lingual transfer in multilingual masked LMs.

The repository's top-level folders are installed under the ``xlint`` namespace so that
no generic module name (``cli``, ``preprocess``) lands in site-packages:

    user_dir/          -> xlint.user_dir   (the fairseq plugin, also usable as --user-dir)
    cli/               -> xlint.cli        (click commands, console script ``xlint``)
    preprocess/        -> xlint.preprocess (raw text -> fairseq-binarized data)
    user_dir/analysis/ -> xlint.analysis   (also; pure numeric modules)
    user_dir/metrics/  -> xlint.metrics    (also; XTREME metrics)

The plugin's pure modules get a second name because importing anything under
``xlint.user_dir`` first runs the plugin's ``__init__``, which registers every component and so
imports fairseq; under ``xlint.analysis`` and ``xlint.metrics`` they import without it (see
user_dir/analysis/__init__.py).  Subpackages are found, not listed: a new folder with an
``__init__.py`` under a mapped folder is in the wheel.
"""
from typing import Dict, List

from setuptools import find_packages, setup

#: installed package -> repository folder
PACKAGE_DIRS: Dict[str, str] = {
    "xlint.user_dir": "user_dir",
    "xlint.cli": "cli",
    "xlint.preprocess": "preprocess",
    "xlint.analysis": "user_dir/analysis",
    "xlint.metrics": "user_dir/metrics",
}


def mapped_packages(package_dirs: Dict[str, str]) -> List[str]:
    """Every mapped package and all the packages below its folder."""
    packages = []
    for package, folder in package_dirs.items():
        packages.append(package)
        packages.extend(f"{package}.{subpackage}" for subpackage in find_packages(where=folder))
    return packages


setup(
    name="xlint",
    version="0.1.0",
    description="Negative interference and cross-lingual transfer gap toolkit for fairseq",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=mapped_packages(PACKAGE_DIRS),
    package_dir=PACKAGE_DIRS,
    package_data={"xlint.user_dir": ["*.md"], "xlint.preprocess": ["*.json"], "xlint.cli": ["published/*.json"]},
    # torch and fairseq are installed first by scripts/install.sh (see README):
    # torch must never be resolved by pip here (it would pull CUDA wheels), and
    # fairseq-fixed must be built without build isolation.
    install_requires=[
        "fairseq-fixed==0.12.3.1",
        "numpy",
        "scipy",
        "click>=8",
        "sacremoses",
        "subword-nmt",
        "sentencepiece",
        "seqeval",
        "tqdm",
        "matplotlib",
        "tensorboardX",  # fairseq-train --tensorboard-logdir
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "ruff==0.17.6"]},
    entry_points={"console_scripts": ["xlint=xlint.cli.main:main"]},
)
