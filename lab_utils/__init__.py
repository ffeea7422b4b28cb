"""Helpers for the ResNet-18 on CIFAR-10 lab: the notebooks import what they need from here.

Modules, one job each: `config` (the lab's defaults, presets and parameter checks; the
preset files are in `presets/`), `data` (CIFAR-10 sources and their checks, the decode
cache, the lab's transforms, the fast loader, the validation split), `augment` (the lab's
augmentation on whole batches), `model` (the ResNet factory and its plain variant),
`train` (the loop and `fit`), `capture` (CUDA graphs of the training step), `runs` (run
directories on disk), `stats` (dataset statistics), `analysis` (reading runs back),
`plots` (figures), `grid` (the grid runner), `publish` (executing notebooks for
committing), `bench` (the speed benchmark), `env` (versions, rendered source).
"""
__version__ = "0.2.0"
