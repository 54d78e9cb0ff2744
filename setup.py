"""xlint: negative interference and cross-lingual transfer in multilingual masked LMs.

The repository's top-level folders are installed under the ``xlint`` namespace so that
no generic module name (``cli``, ``preprocess``) lands in site-packages:

    user_dir/   -> xlint.user_dir   (the fairseq plugin, also usable as --user-dir)
    cli/        -> xlint.cli        (click commands, console script ``xlint``)
    preprocess/ -> xlint.preprocess (raw text -> fairseq-binarized data)
"""
from setuptools import setup

PACKAGES = {
    "xlint.user_dir": "user_dir",
    "xlint.cli": "cli",
    "xlint.preprocess": "preprocess",
}

setup(
    name="xlint",
    version="0.1.0",
    description="Negative interference and cross-lingual transfer gap toolkit for fairseq",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"xlint.user_dir": ["*.md"], "xlint.preprocess": ["*.json"]},
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
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["xlint=xlint.cli.main:main"]},
)
