"""Architectures of the client-side GAN attack (original ``ClientSideAttack/archs.py``; Pasquini et al., CCS 2021, §5).

All networks work on MNIST at 28x28x1 in [-1, 1]. The classifier has 11 outputs: the ten
digits plus class index 10, the "fake" class the malicious client uses to poison the shared
model.

=========================  ==========================================================  ==========
network                    layers                                                      params
=========================  ==========================================================  ==========
generator ``G``            Dense(7*7*256, no bias) -> BN -> LeakyReLU -> 7x7x256 ->    2,330,944
                           ConvT(128, 5, s1) -> BN -> LeakyReLU -> ConvT(64, 5, s2) ->
                           BN -> LeakyReLU -> ConvT(1, 5, s2, tanh); no biases
client front ``f``         Conv(64, 5, s2, same) -> LeakyReLU -> Dropout(0.3)          1,664
server ``s``               Conv(128, 5, s2, same) -> LeakyReLU -> Dropout(0.3)         204,928
client head ``ff``         Flatten (6,272) -> Dense(11), logits                        69,003
=========================  ==========================================================  ==========

LeakyReLU keeps the Keras default slope 0.3; BatchNorm keeps the Keras defaults (momentum 0.99,
epsilon 1e-3); kernels use the Keras default Glorot-uniform initialiser. Explicit ``Input`` layers
are used instead of ``input_shape=`` (Keras 3 warns about the latter).
"""

import keras
from keras import layers

#: Size of the generator's latent vector.
LATENT_DIM = 100
#: Number of classifier outputs: ten digits plus the "fake" class.
NUM_CLASSES = 11
#: Index of the extra "fake" class used by the poisoning step.
FAKE_CLASS = 10
#: Image shape the attack works on (no resize, no channel tiling).
IMAGE_SHAPE = (28, 28, 1)
#: Output shape of the client front ``f`` (= input of the server).
SMASHED_SHAPE = (14, 14, 64)
#: Output shape of the server (= input of the client head ``ff``).
SERVER_OUT_SHAPE = (7, 7, 128)

__all__ = [
    "LATENT_DIM", "NUM_CLASSES", "FAKE_CLASS", "IMAGE_SHAPE", "SMASHED_SHAPE",
    "SERVER_OUT_SHAPE", "make_generator", "make_f", "make_s", "make_ff",
]


def make_generator(latent_dim=LATENT_DIM):
    """DCGAN-tutorial generator ``G``: [B, latent_dim] -> [B, 28, 28, 1] in (-1, 1)."""
    return keras.Sequential([
        keras.Input((latent_dim,)),
        layers.Dense(7 * 7 * 256, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, 5, strides=1, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False,
                               activation="tanh"),
    ], name="generator")


def make_f(input_shape=IMAGE_SHAPE):
    """Client front ``f``: [B, 28, 28, 1] -> [B, 14, 14, 64]."""
    return keras.Sequential([
        keras.Input(tuple(input_shape)),
        layers.Conv2D(64, 5, strides=2, padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
    ], name="client_f")


def make_s(input_shape=SMASHED_SHAPE):
    """Server network ``s``: [B, 14, 14, 64] -> [B, 7, 7, 128]."""
    return keras.Sequential([
        keras.Input(tuple(input_shape)),
        layers.Conv2D(128, 5, strides=2, padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
    ], name="server_s")


def make_ff(input_shape=SERVER_OUT_SHAPE, num_classes=NUM_CLASSES):
    """Client head ``ff``: [B, 7, 7, 128] -> [B, 11] logits."""
    return keras.Sequential([
        keras.Input(tuple(input_shape)),
        layers.Flatten(),
        layers.Dense(num_classes),
    ], name="client_ff")
