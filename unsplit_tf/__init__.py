"""UnSplit (Erdogan, Kupcu, Cicek, WPES 2022) in TensorFlow 2 / Keras 3: model inversion, model stealing and
label inference against split learning. See ``docs``/the spec for the faithful defaults and the options.

Modules mirror the original: :mod:`unsplit_tf.models` (MnistNet, CifarNet), :mod:`unsplit_tf.attacks`
(``model_inversion_stealing``, ``label_inference``), :mod:`unsplit_tf.util` (TV, l2, targets, test score);
plus :mod:`unsplit_tf.optim` (PyTorch-exact Adam), :mod:`unsplit_tf.training`, :mod:`unsplit_tf.torch_interop`
and the two demos.
"""
from unsplit_tf.attacks import (InversionConfig, InversionResult, LabelInferenceResult, invert_images,  # noqa: F401
                                label_inference, model_inversion_stealing, model_inversion_stealing_batched,
                                run_label_inference)
from unsplit_tf.models import CifarNet, MnistNet, build_model  # noqa: F401
from unsplit_tf.optim import TorchAdam  # noqa: F401
