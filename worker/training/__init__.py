"""The training engine: ``train(spec, on_epoch=...)`` runs one job spec, CPU or CUDA.

Import the pieces from their modules (``worker.training.engine`` etc.); this package's import is light.
"""
