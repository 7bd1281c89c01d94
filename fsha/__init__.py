"""FSHA port (Pasquini et al., "Unleashing the Tiger", CCS 2021); module names mirror the original.

* :mod:`fsha.datasets`: MNIST / Fashion-MNIST streams (32x32x3 in [-1, 1]), the mangled public set.
* :mod:`fsha.architectures`: f, pilot, decoder, discriminator, property head per split level; ``SETUPS``.
* :mod:`fsha.FSHA`: classes ``FSHA`` and ``FSHA_binary_property``; ``gradient_penalty``, ``adversarial_losses``.
* :mod:`fsha.FSHA_distcor`: ``FSHA_dc``, FSHA against the distance-correlation defense.
* :mod:`fsha.honest`: honest split-learning baseline; :mod:`fsha.properties`: binary-property datasets;
  :mod:`fsha.experiments`: the mangled-public-set experiment.

The original notebooks run with their imports changed to, e.g., ``from fsha.FSHA import *``,
``from fsha.datasets import *`` and ``from fsha import architectures``. Nothing is imported here, so
``fsha.FSHA`` stays the module (as in the original) rather than the class.
"""
