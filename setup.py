"""BioALBERT: ALBERT (TF 2.15 port) for biomedical named entity recognition."""
import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bio import console  # pylint: disable=wrong-import-position

setup(
    name="bioalbert",
    version="0.2.0",
    description="A TensorFlow 2.15 port of ALBERT with a BioALBERT layer for "
                "biomedical pretraining and named entity recognition.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["albert", "albert.*", "bio", "bio.*"]),
    py_modules=["create_pretraining_data", "run_pretraining", "run_ner"],
    package_data={"albert": ["configs/*.json"]},
    # One bioalbert-* command per tool; the table is bio/console.py's.
    entry_points={"console_scripts": console.entry_points()},
    install_requires=[
        "tensorflow==2.15.1",
        "tensorflow-text==2.15.0",
        "sentencepiece",
        "absl-py",
        "seqeval",
        "numpy>=1.23,<2",
        # Sentence splitting of biomedical text (see README: measured choice).
        "blingfire==0.1.8",
        # tensorflow_text imports tensorflow_hub, which needs pkg_resources;
        # setuptools 81 removed it (a later install could otherwise bring it).
        "setuptools<81",
        # BioC XML/JSON documents for bio.serving.tag (BioC's Python library;
        # pure Python on lxml).
        "bioc==2.1",
    ],
    extras_require={
        # pytest-xdist: `make test` runs the suite on two processes (most
        # tests are single-threaded TF graph building and subprocesses).
        "test": ["pytest", "pytest-xdist==3.8.0"],
        # CUDA wheels for GPU training (albert/precision.py): fp16/bf16,
        # --distribution=mirrored|multi_worker.
        "gpu": ["tensorflow[and-cuda]==2.15.1"],
        "beam": ["apache-beam[tfrecord]==2.77.0"],
        # Hugging Face interoperability (albert.export_hf/import_hf): writing
        # needs safetensors only; the tests load the exports with torch.
        "hf": ["torch==2.13.0", "transformers==4.57.6", "safetensors==0.8.0"],
        # The dev-F1 plot of bio.experiments.pretraining_gain (make demo).
        "plot": ["matplotlib==3.9.4"],
    },
)
