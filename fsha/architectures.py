"""Networks of the Feature-space Hijacking Attack, per split level (the original ``architectures.py``: its ``resnet``,
``pilot``, ``decoder``, ``discriminator`` and ``classifier_binary`` builders and its ``SETUPS`` table).

Every builder returns a functional ``keras.Model`` with an explicit ``keras.Input``; layer for layer and
parameter for parameter these match the original ``architectures.py`` at commit ``4d933ec``:

============  ==========================================================================
builder       what
============  ==========================================================================
``resnet``    client network f (small pre-activation ResNet), levels 1-4
``pilot``     attacker's pilot f~ (defines the target feature space)
``decoder``   inverse of the pilot, f~^-1
``discriminator``  critic D, built on the pilot's output shape
``classifier_binary``  property-inference head (Flatten [-> BN] -> Dense(class_num) logits)
``SETUPS``    table indexed like the original: 0-3 = levels 1-4, 4 = level 5, 5/6 = property L4/L3
``attacker_networks``  not in the original: pilot, decoder and D for a user client's feature shape
============  ==========================================================================

Quirks of the original are options whose default is the released behaviour:

* ``discriminator(stem='effective')``: the original tests the level with three separate ``if``s that each
  start again from the input, so the last one wins and ``Conv(256, stride 1)`` is the first layer at every
  level.  ``stem='intended'`` builds the per-level stems (the if/elif design).
* ``pilot/decoder(architecture='final')``: linear pilot and linear hidden decoder layers, as at the
  repository's head.  ``architecture='notebook'`` is the January 2021 version that produced the stored
  notebook outputs (swish on the strided pilot convolutions, ReLU on the hidden transposed convolutions).
* ``resnet(resblock_bn=False)``: BatchNorm inside the ResBlocks was on only in Dec 2020-Jan 2021.

Deviation: split level 5 raises a ``ValueError`` from every builder (the original raises a bare exception in
f and f~ and an unbound-variable error in D); the paper's level-5 network was never released.
"""

import functools

import keras
from keras import layers

ARCHITECTURES = ('final', 'notebook')
D_STEMS = ('effective', 'intended')
LEVELS = (1, 2, 3, 4)


def _check_level(level, what):
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f'{what}: split level must be an int in {LEVELS}, got {level!r}')
    if level == 5:
        raise ValueError(
            f'{what}: split level 5 is not available. The released FSHA code has no level-5 network '
            '(it raises "No level 5"); use a level in 1-4 or pass your own networks.')
    if level not in LEVELS:
        raise ValueError(f'{what}: split level must be one of {LEVELS}, got {level!r}')


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def _conv(filters, stride, activation=None, name=None):
    return layers.Conv2D(filters, 3, strides=stride, padding='same', activation=activation, name=name)


def _convT(filters, stride, activation=None, name=None):
    return layers.Conv2DTranspose(filters, 3, strides=stride, padding='same', activation=activation,
                                  name=name)


def res_block(x, dim, stride=1, bn=False, activation='relu'):
    """Pre-activation residual block: [BN] -> act -> Conv(dim, stride) -> [BN] -> act -> Conv(dim, 1).

    The shortcut is the identity at stride 1 and a 3x3 ``Conv(dim, stride)`` otherwise (as in the original,
    not the usual 1x1 projection); there is no activation after the sum.
    """
    if stride == 1 and x.shape[-1] != dim:
        # The original never builds this case (it would fail on the sum); say so instead.
        raise ValueError(f'res_block: stride 1 needs input channels == dim, got {x.shape[-1]} and {dim}')
    h = x
    if bn:
        h = layers.BatchNormalization()(h)
    h = layers.Activation(activation)(h)
    h = _conv(dim, stride)(h)
    if bn:
        h = layers.BatchNormalization()(h)
    h = layers.Activation(activation)(h)
    h = _conv(dim, 1)(h)
    shortcut = x if stride == 1 else _conv(dim, stride)(x)
    return layers.Add()([shortcut, h])


ResBlock = res_block  # name of the original


def resnet(input_shape, level, resblock_bn=False, name='f'):
    """Client network f. Params (Keras count, incl. BN statistics): 75,904 / 371,200 / 666,368 / 1,846,784."""
    _check_level(level, 'resnet')
    inp = keras.Input(tuple(input_shape))
    x = _conv(64, 1)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Activation('relu')(x)
    x = layers.MaxPooling2D(2)(x)
    x = res_block(x, 64, bn=resblock_bn)
    if level >= 2:
        x = res_block(x, 128, stride=2, bn=resblock_bn)
    if level >= 3:
        x = res_block(x, 128, bn=resblock_bn)
    if level >= 4:
        x = res_block(x, 256, stride=2, bn=resblock_bn)
    return keras.Model(inp, x, name=name)


def pilot(input_shape, level, architecture='final', name='tilde_f'):
    """Pilot f~. Params 38,720 / 223,232 / 223,232 / 960,896.

    ``architecture='final'``: all layers linear (the pilot is one linear map), as released.
    ``architecture='notebook'``: swish on the stride-2 convolutions (the notebooks' version).
    """
    _check_level(level, 'pilot')
    _check_choice(architecture, ARCHITECTURES, 'architecture')
    act = 'swish' if architecture == 'notebook' else None
    filters = {1: (64,), 2: (64, 128), 3: (64, 128), 4: (64, 128, 256)}[level]
    inp = keras.Input(tuple(input_shape))
    x = inp
    for k in filters:
        x = _conv(k, 2, activation=act)(x)
    x = _conv(filters[-1], 1)(x)
    return keras.Model(inp, x, name=name)


def decoder(input_shape, level, channels=3, architecture='final', name='decoder'):
    """Decoder f~^-1 (tanh output). Params 154,627 / 593,667 / 593,667 / 888,579 for 3 channels.

    ``architecture='final'``: linear hidden ConvT layers, as released; ``'notebook'``: ReLU.
    """
    _check_level(level, 'decoder')
    _check_choice(architecture, ARCHITECTURES, 'architecture')
    act = 'relu' if architecture == 'notebook' else None
    inp = keras.Input(tuple(input_shape))
    x = _convT(256, 2, activation=act)(inp)
    if level == 4:
        x = _convT(128, 2, activation=act)(x)
        x = _convT(channels, 2, activation='tanh')(x)
    else:
        if level in (2, 3):
            x = _convT(128, 2, activation=act)(x)
        x = _conv(channels, 1, activation='tanh')(x)
    return keras.Model(inp, x, name=name)


def discriminator(input_shape, level, stem='effective', name='D'):
    """Critic D on pilot-shaped features: stem -> 6 x ResBlock(256) -> Conv(256, 2) -> Flatten -> Dense(1).

    ``stem='effective'`` (released behaviour): the stem is ``Conv(256, 1)`` at every level; params
    7,835,137 / 7,970,305 / 7,970,305 / 8,262,145 and flatten sizes 16,384 / 4,096 / 4,096 / 1,024.
    ``stem='intended'``: level 1 ``Conv(128, 2, ReLU) -> Conv(256, 2)``, levels 2-3 ``Conv(256, 2)``,
    level 4 ``Conv(256, 1)``; flatten 1,024 at every level, params 8,041,089 / 7,967,233 / 7,967,233 /
    8,262,145.  Outputs raw scores (no sigmoid).
    """
    _check_level(level, 'discriminator')
    _check_choice(stem, D_STEMS, 'D stem')
    inp = keras.Input(tuple(input_shape))
    if stem == 'effective' or level == 4:
        x = _conv(256, 1)(inp)
    elif level == 1:
        x = _conv(128, 2, activation='relu')(inp)
        x = _conv(256, 2)(x)
    else:
        x = _conv(256, 2)(inp)
    for _ in range(6):
        x = res_block(x, 256)
    x = _conv(256, 2)(x)
    x = layers.Flatten(name='flatten')(x)
    x = layers.Dense(1)(x)
    return keras.Model(inp, x, name=name)


def classifier_binary(input_shape, class_num=1, name='property_head'):
    """Property-inference head: Flatten -> (BatchNorm if class_num > 1) -> Dense(class_num), logits.

    Params with class_num=1: 4,097 at level 4, 8,193 at level 3.
    """
    if isinstance(class_num, bool) or not isinstance(class_num, int) or class_num < 1:
        raise ValueError(f'class_num must be a positive int, got {class_num!r}')
    inp = keras.Input(tuple(input_shape))
    x = layers.Flatten()(inp)
    if class_num > 1:
        x = layers.BatchNormalization()(x)
    x = layers.Dense(class_num)(x)
    return keras.Model(inp, x, name=name)


def attacker_networks(input_shape, feature_shape, architecture='final'):
    """The attacker's networks (pilot, decoder, discriminator) for a client with any feature shape, not in the
    original: for attacking your own client, whose smashed data need not be one of the four built-in shapes.

    The original's per-level pattern, extended to k = log2(H / H_z) halvings of the image:
    pilot = k x Conv(64 * 2^i, stride 2) -> Conv(C_z, 1); decoder = ConvT(256 / 2^i, stride 2) per halving, the
    last one straight to the image's channels with tanh when k >= 3, else followed by Conv(C, 1, tanh);
    discriminator = :func:`discriminator` on the feature shape (stem Conv(256, 1), the released D at every
    level). ``architecture`` as for :func:`pilot` and :func:`decoder`. At the built-in shapes (16x16x64, 8x8x128,
    4x4x256 for 32x32x3 images) this rebuilds the levels' networks layer for layer.
    Returns ``{'pilot', 'decoder', 'discriminator'}`` for ``FSHA(..., client=..., **attacker_networks(...))``.
    """
    _check_choice(architecture, ARCHITECTURES, 'architecture')
    input_shape, feature_shape = tuple(input_shape), tuple(feature_shape)
    if len(input_shape) != 3 or len(feature_shape) != 3:
        raise ValueError(f'attacker_networks needs image inputs [H, W, C] and spatial features [H_z, W_z, C_z], '
                         f'got {input_shape} and {feature_shape}')
    (h, w, channels), (hz, wz, cz) = input_shape, feature_shape
    ratio = h // hz if hz and h % hz == 0 else 0
    if not ratio or ratio & (ratio - 1) or w != wz * ratio:
        raise ValueError(f'features {feature_shape} must shrink the image {input_shape} by the same power of 2 in '
                         f'height and width (as strided convolutions do)')
    k = ratio.bit_length() - 1
    act_pilot = 'swish' if architecture == 'notebook' else None
    act_decoder = 'relu' if architecture == 'notebook' else None

    inp = keras.Input(input_shape)
    x = inp
    for i in range(k):
        x = _conv(64 * 2 ** i, 2, activation=act_pilot)(x)
    pilot_net = keras.Model(inp, _conv(cz, 1)(x), name='tilde_f')

    inp = keras.Input(feature_shape)
    x = inp
    hidden = k - 1 if k >= 3 else k
    for i in range(hidden):
        x = _convT(max(256 // 2 ** i, 16), 2, activation=act_decoder)(x)
    x = (_convT(channels, 2, activation='tanh') if k >= 3 else _conv(channels, 1, activation='tanh'))(x)
    decoder_net = keras.Model(inp, x, name='decoder')
    return {'pilot': pilot_net, 'decoder': decoder_net, 'discriminator': discriminator(feature_shape, 4)}


def small_networks(input_shape=(32, 32, 3), width=16, z_channels=32, critic_width=64):
    """Tiny stand-ins for (client, pilot, decoder, discriminator), not in the original.

    For CPU demos and tests: features 8x8x``z_channels`` for 32x32 inputs, about 100k parameters in all.
    Pass them as ``FSHA(..., client=, pilot=, decoder=, discriminator=)``.
    """
    input_shape = tuple(input_shape)

    def model(first, stack, name):
        inp = keras.Input(first)
        x = inp
        for layer in stack:
            x = layer(x)
        return keras.Model(inp, x, name=name)

    client = model(input_shape, [_conv(width, 2, 'relu'), _conv(z_channels, 2)], 'f')
    z_shape = tuple(client.output.shape[1:])
    pilot_net = model(input_shape, [_conv(width, 2, 'relu'), _conv(z_channels, 2)], 'tilde_f')
    decoder_net = model(z_shape, [_convT(width, 2, 'relu'), _convT(input_shape[-1], 2, 'tanh')], 'decoder')
    critic = model(z_shape, [_conv(critic_width, 2, 'relu'), _conv(critic_width, 1, 'relu'),
                             layers.Flatten(), layers.Dense(1)], 'D')
    return {'client': client, 'pilot': pilot_net, 'decoder': decoder_net, 'discriminator': critic}


def _property_head(input_shape, channels=None, class_num=1, **_):
    # Same call signature as ``decoder`` so SETUPS entries are interchangeable.
    return classifier_binary(input_shape, class_num=class_num)


def _setup(level):
    return (functools.partial(resnet, level=level),
            functools.partial(pilot, level=level),
            functools.partial(decoder, level=level),
            functools.partial(discriminator, level=level))


#: Indexed like the original: ``SETUPS[id_setup] = (make_f, make_tilde_f, make_decoder, make_D)``;
#: 0-3 are split levels 1-4 (the notebooks use index 3), 4 is level 5 (raises), 5 and 6 are the
#: property-inference setups at levels 4 and 3 (decoder slot = ``classifier_binary``).
SETUPS = [_setup(level) for level in (1, 2, 3, 4, 5)] + [
    _setup(4)[:2] + (_property_head, functools.partial(discriminator, level=4)),
    _setup(3)[:2] + (_property_head, functools.partial(discriminator, level=3)),
]

#: Split level of each SETUPS index.
SETUP_LEVELS = (1, 2, 3, 4, 5, 4, 3)
#: SETUPS indices whose decoder slot is the property head.
PROPERTY_SETUPS = (5, 6)
