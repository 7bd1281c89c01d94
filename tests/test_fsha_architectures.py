"""FSHA networks: parameter counts, shapes and options against the original ``architectures.py`` (counts from its released networks)."""
import keras
import pytest

from fsha import architectures as A

IMG = (32, 32, 3)
F_PARAMS = {1: 75_904, 2: 371_200, 3: 666_368, 4: 1_846_784}
F_TRAINABLE = {1: 75_776, 2: 371_072, 3: 666_240, 4: 1_846_656}
Z_SHAPES = {1: (16, 16, 64), 2: (8, 8, 128), 3: (8, 8, 128), 4: (4, 4, 256)}
PILOT_PARAMS = {1: 38_720, 2: 223_232, 3: 223_232, 4: 960_896}
DECODER_PARAMS = {1: 154_627, 2: 593_667, 3: 593_667, 4: 888_579}
D_EFFECTIVE = {1: 7_835_137, 2: 7_970_305, 3: 7_970_305, 4: 8_262_145}
D_FLATTEN = {1: 16_384, 2: 4_096, 3: 4_096, 4: 1_024}
D_INTENDED = {1: 8_041_089, 2: 7_967_233, 3: 7_967_233, 4: 8_262_145}


def trainable(model):
    return sum(int(v.numpy().size) for v in model.trainable_weights)


@pytest.mark.parametrize('level', [1, 2, 3, 4])
def test_client_pilot_decoder(level):
    f = A.resnet(IMG, level)
    assert f.count_params() == F_PARAMS[level]
    assert trainable(f) == F_TRAINABLE[level]
    assert tuple(f.output.shape[1:]) == Z_SHAPES[level]
    for arch in A.ARCHITECTURES:
        p = A.pilot(IMG, level, architecture=arch)
        assert p.count_params() == PILOT_PARAMS[level]
        assert tuple(p.output.shape[1:]) == Z_SHAPES[level]
        d = A.decoder(Z_SHAPES[level], level, architecture=arch)
        assert d.count_params() == DECODER_PARAMS[level]
        assert tuple(d.output.shape[1:]) == IMG


@pytest.mark.parametrize('level', [1, 2, 3, 4])
def test_discriminator_effective_and_intended(level):
    z = Z_SHAPES[level]
    D = A.discriminator(z, level)
    assert D.count_params() == D_EFFECTIVE[level]
    assert D.get_layer('flatten').output.shape[-1] == D_FLATTEN[level]
    assert tuple(D.output.shape[1:]) == (1,)
    first = [layer for layer in D.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert (first.filters, first.strides) == (256, (1, 1))  # the effective stem at every level
    Di = A.discriminator(z, level, stem='intended')
    assert Di.count_params() == D_INTENDED[level]
    assert Di.get_layer('flatten').output.shape[-1] == 1_024


def test_property_head_counts():
    assert A.classifier_binary(Z_SHAPES[4]).count_params() == 4_097
    assert A.classifier_binary(Z_SHAPES[3]).count_params() == 8_193
    # class_num = k > 1 adds BN (4 x flatten) and Dense (flatten * k + k)
    assert A.classifier_binary(Z_SHAPES[4], 3).count_params() == 4 * 4096 + 4096 * 3 + 3
    assert tuple(A.classifier_binary(Z_SHAPES[4], 3).output.shape[1:]) == (3,)


def test_activation_options():
    def acts(model, cls):
        return [layer.activation.__name__ for layer in model.layers if type(layer) is cls]
    assert acts(A.pilot(IMG, 4), keras.layers.Conv2D) == ['linear'] * 4
    assert acts(A.pilot(IMG, 4, 'notebook'), keras.layers.Conv2D) == ['silu'] * 3 + ['linear']  # swish
    assert acts(A.decoder(Z_SHAPES[4], 4), keras.layers.Conv2DTranspose) == ['linear', 'linear', 'tanh']
    assert acts(A.decoder(Z_SHAPES[4], 4, architecture='notebook'),
                keras.layers.Conv2DTranspose) == ['relu', 'relu', 'tanh']
    assert acts(A.decoder(Z_SHAPES[1], 1, architecture='notebook'), keras.layers.Conv2DTranspose) == ['relu']
    with pytest.raises(ValueError, match='architecture'):
        A.pilot(IMG, 4, architecture='paper')


def test_resblock_bn_option():
    def n_bn(model):
        return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert n_bn(A.resnet(IMG, 4)) == 1  # the stem only
    assert n_bn(A.resnet(IMG, 4, resblock_bn=True)) == 1 + 2 * 4  # 4 ResBlocks at level 4


def test_setups_table():
    assert len(A.SETUPS) == 7
    make_f, make_p, make_dec, make_D = A.SETUPS[3]  # the notebooks' index: level 4
    assert make_f(IMG).count_params() == F_PARAMS[4]
    assert make_p(IMG).count_params() == PILOT_PARAMS[4]
    assert make_dec(Z_SHAPES[4], channels=3).count_params() == DECODER_PARAMS[4]
    assert A.SETUPS[5][2](Z_SHAPES[4], class_num=1).count_params() == 4_097
    assert A.SETUPS[6][2](Z_SHAPES[3], class_num=1).count_params() == 8_193
    assert A.SETUPS[6][0](IMG).count_params() == F_PARAMS[3]


def test_level5_raises_clearly():
    for make in A.SETUPS[4]:
        with pytest.raises(ValueError, match='level 5 is not available'):
            make(IMG)
    with pytest.raises(ValueError, match='one of'):
        A.resnet(IMG, 0)


def test_small_networks_shapes():
    nets = A.small_networks((16, 16, 3), width=4, z_channels=8)
    assert tuple(nets['client'].output.shape[1:]) == (4, 4, 8) == tuple(nets['pilot'].output.shape[1:])
    assert tuple(nets['decoder'].output.shape[1:]) == (16, 16, 3)
    assert tuple(nets['discriminator'].output.shape[1:]) == (1,)


@pytest.mark.parametrize('level', [1, 2, 3, 4])
@pytest.mark.parametrize('arch', A.ARCHITECTURES)
def test_attacker_networks_rebuild_the_levels_at_the_builtin_shapes(level, arch):
    nets = A.attacker_networks(IMG, Z_SHAPES[level], architecture=arch)
    builtin = {'pilot': A.pilot(IMG, level, architecture=arch), 'decoder': A.decoder(Z_SHAPES[level], level,
                                                                                    architecture=arch),
               'discriminator': A.discriminator(Z_SHAPES[level], level)}
    for name, net in nets.items():
        assert net.count_params() == builtin[name].count_params(), name
        assert ([(type(layer).__name__, layer.get_config().get('strides'), layer.get_config().get('activation'))
                 for layer in net.layers[1:]]
                == [(type(layer).__name__, layer.get_config().get('strides'), layer.get_config().get('activation'))
                    for layer in builtin[name].layers[1:]]), name


def test_attacker_networks_other_shapes_and_errors():
    nets = A.attacker_networks((64, 64, 1), (2, 2, 32))  # five halvings
    assert nets['pilot'].output.shape[1:] == (2, 2, 32) and nets['decoder'].output.shape[1:] == (64, 64, 1)
    assert A.attacker_networks(IMG, (32, 32, 5))['decoder'].output.shape[1:] == IMG  # no halving
    for bad in ((5, 5, 8), (8, 4, 8), (12, 12, 3), (4, 4)):
        with pytest.raises(ValueError, match='attacker_networks|power of 2'):
            A.attacker_networks(IMG, bad)
