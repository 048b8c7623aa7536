"""Wald-protocol training and evaluation of the DSen2 nets.

``wald`` (degradation, pure NumPy), ``data`` (scene loading, patch sampler, NumPy),
``evaluate`` (metrics of runners on a degraded scene, NumPy) and ``loop`` (the PyTorch
training loop; needs the ``train`` extra). Nothing heavy is imported here.
"""
