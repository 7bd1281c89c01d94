"""The fixed setup of FSHA's golden trajectories, shared by the recorder and the tests (backend-independent).

Weights come from NumPy (not from Keras' initialisers), batches and the gradient penalty's interpolation
coefficients too, so that a trajectory depends only on the step's arithmetic.
"""
import numpy as np

BATCH = 8
STEPS = 20
IMAGE_SHAPE = (32, 32, 3)
HPARAMS = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-5, 'lr_tilde': 1e-5, 'lr_D': 1e-4}
DC_HPARAMS = dict(HPARAMS, alpha1=10.0, alpha2=50.0)
PROPERTY_HPARAMS = dict(HPARAMS, class_num=1)


def set_weights(models, seed=0):
    """Every variable of ``models`` (in order) from ``np.random.default_rng(seed)``: kernels scaled by
    1/sqrt(fan-in), biases and BN betas/means ~ 0.1 N(0,1), BN gammas/variances around 1."""
    rng = np.random.default_rng(seed)
    for model in models:
        for v in model.variables:
            shape = tuple(v.shape)
            if 'seed_generator' in v.path:
                continue
            name = v.path.rsplit('/', 1)[-1]
            z = rng.standard_normal(shape)
            if name in ('gamma', 'moving_variance'):
                value = 1.0 + 0.1 * np.abs(z)
            elif len(shape) >= 2:
                value = z / np.sqrt(np.prod(shape[:-1]))
            else:
                value = 0.1 * z
            v.assign(value.astype(v.dtype))


def batches(steps=STEPS, seed=1, labels=False):
    """Per step ``(x_private, x_public, label_private, label_public, alpha)``, all NumPy float32 / uint8."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        xp = rng.uniform(-1, 1, (BATCH,) + IMAGE_SHAPE).astype(np.float32)
        xq = rng.uniform(-1, 1, (BATCH,) + IMAGE_SHAPE).astype(np.float32)
        lp = rng.integers(0, 2, BATCH).astype(np.uint8)
        lq = rng.integers(0, 2, BATCH).astype(np.uint8)
        alpha = rng.uniform(0, 1, (BATCH, 1, 1, 1)).astype(np.float32)
        out.append((xp, xq, lp, lq, alpha))
    return out


def digest(values):
    """``[[sum, L2 norm], ...]`` of a list of arrays, in float64."""
    out = []
    for v in values:
        a = np.asarray(v, np.float64)
        out.append([float(a.sum()), float(np.sqrt(np.square(a).sum()))])
    return out


def network_digests(attack):
    import keras
    return {name: digest([keras.ops.convert_to_numpy(v.value) for v in net.variables
                          if 'seed_generator' not in v.path])
            for name, net in (('f', attack.f), ('tilde_f', attack.tilde_f), ('decoder', attack.decoder),
                              ('D', attack.D))}
