"""Helpers for the ResNet-18 on CIFAR-10 lab: the notebooks import what they need from here.

Modules, one job each: `config` (the lab's defaults with their rules, presets and the one
rule for what a run gets; the preset files are in `presets/`), `data` (CIFAR-10 sources and
their checks, the decode cache, the lab's transforms, the fast loader, the validation split),
`augment` (the lab's augmentation on whole batches), `model` (the ResNet factory and its plain
variant), `device` (device and precision policy, machine notes), `train` (the loop and `fit`),
`capture` (CUDA graphs of the training step), `runs` (run directories on disk: their life and
their files), `stats` (dataset statistics), `analysis` (reading runs back, choosing on a
validation split), `plots` (figures), `checks` (the checks of the code students write),
`grid` (the grid runner), `publish` (executing notebooks for committing), `student` (the
student edition), `course` (an nbgrader course folder), `translate` (the Chinese edition),
`colab` (the repository URL, one setting), `bench` (the speed benchmark), `progress` (what a
run prints while it trains), `paths` (the repository root, the committed results and atomic
writes), `display` (versions, rendered source).
"""
__version__ = "0.2.0"
