"""Deployed detectors: load an exported artifact and score flows as they arrive.

Imports numpy, the standard library, ONNX Runtime (or torch, for TorchScript artifacts) and, for pcaps,
nfstream; never Lightning, Hydra or pandas, so a detector starts fast and carries little
(`tests/test_deploy.py` checks the import graph in a fresh interpreter).
"""
