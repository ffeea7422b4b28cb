"""Helpers for the ResNet-18 on CIFAR-10 lab: the notebooks import what they need from here.

Modules, one job each: `config` (the lab's defaults, recipes and parameter checks),
`data` (CIFAR-10 sources, the lab's transforms, loaders), `augment` (the lab's
augmentation on whole batches), `model` (the ResNet-18 factory), `train` (`fit`),
`runs` (run directories on disk), `stats` (dataset statistics), `plots` (figures),
`ablation` (the dropout x augmentation grid), `bench` (the speed benchmark).
"""
__version__ = "0.1.0"
