"""Record FSHA's golden trajectories from the TensorFlow implementation of commit cbbbef8 (before the one-Keras-3
implementation): FSHA level 4 (WGAN-GP), FSHA_dc and FSHA_binary_property, 20 steps each, from the fixed setup of
``fsha_setup.py``. Writes ``fsha.json`` beside this file. Kept to show how the reference was made; it runs only
against that commit's code (``git worktree add /tmp/old cbbbef8`` and run it there with this folder copied in).
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fsha_setup as S  # noqa: E402
from fsha.FSHA import FSHA, FSHA_binary_property  # noqa: E402
from fsha.FSHA_distcor import FSHA_dc  # noqa: E402
from defenses import distance_correlation  # noqa: E402


class FixedAlpha:
    """Stands in for the GP's tf.random.Generator: every draw is the current value of a variable."""

    def __init__(self):
        self.alpha = tf.Variable(tf.zeros([S.BATCH, 1, 1, 1]))

    def uniform(self, shape, dtype=tf.float32):
        return tf.identity(self.alpha)


def build(cls, hparams):
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((16,) + S.IMAGE_SHAPE, np.float32), np.zeros(16, np.uint8)))
    attack = cls(ds, ds, 3, S.BATCH, hparams)
    attack._rng = FixedAlpha()
    nets = (attack.f, attack.tilde_f, attack.decoder, attack.D)
    return attack, nets


def grad_digests(attack, kind, batch):
    xp, xq, lp, lq, alpha = batch
    attack._rng.alpha.assign(alpha)
    out = {}
    with tf.GradientTape(persistent=True) as tape:
        if kind == 'property':
            yq = attack.prepare_labels(lq)
            z_private = attack.f(xp, training=True)
            adv_private = attack.D(z_private, training=True)
            z_public = attack.tilde_f(xq, training=True)
            logits = attack.decoder(z_public, training=True)
            adv_public = attack.D(z_public, training=True)
            losses = {'tilde_f_loss': attack.classification_loss(yq, logits)}
            losses['f_loss'], losses['D_loss'] = attack.critic_losses(z_private, z_public, adv_private, adv_public)
        else:
            o = attack.forward_losses(xp, xq)
            losses = {k: o[k] for k in ('f_loss', 'tilde_f_loss', 'D_loss')}
            if kind == 'dc':
                losses['f_loss'] = attack.alpha2 * o['f_loss']
                losses['def_loss'] = attack.alpha1 * distance_correlation(xp, o['z_private'])
    groups = {'f_loss': attack.f.trainable_variables,
              'tilde_f_loss': attack.tilde_f.trainable_variables + attack.decoder.trainable_variables,
              'D_loss': attack.D.trainable_variables, 'def_loss': attack.f.trainable_variables}
    for name, loss in losses.items():
        out[name] = S.digest([g.numpy() for g in tape.gradient(loss, groups[name])])
    return out


def record(cls, hparams, kind):
    attack, nets = build(cls, hparams)
    data = S.batches(labels=kind == 'property')
    S.set_weights(nets)
    grads = grad_digests(attack, kind, data[0])
    S.set_weights(nets)  # the gradient pass updated f's BatchNorm statistics
    step = tf.function(attack.train_step)
    steps = []
    for xp, xq, lp, lq, alpha in data:
        attack._rng.alpha.assign(alpha)
        out = step(xp, xq, lp, lq)
        steps.append({'losses': [float(v) for v in out], 'weights': S.network_digests(attack),
                      'optimizer_iterations': [int(o.iterations.numpy()) for o in
                                               (attack.optimizer0, attack.optimizer1, attack.optimizer2)]})
    return {'log_columns': list(attack.LOG_COLUMNS), 'step0_gradients': grads, 'steps': steps}


if __name__ == '__main__':
    result = {'recorded_from': 'TensorFlow implementation before the one-Keras-3 refactor (commit cbbbef8), '
                               f'TF {tf.__version__}, float32, CPU',
              'fsha': record(FSHA, S.HPARAMS, 'fsha'),
              'fsha_dc': record(FSHA_dc, S.DC_HPARAMS, 'dc'),
              'property': record(FSHA_binary_property, S.PROPERTY_HPARAMS, 'property')}
    path = os.path.join(os.path.dirname(__file__), 'fsha.json')
    with open(path, 'w') as fh:
        json.dump(result, fh)
    print('wrote', os.path.abspath(path), os.path.getsize(path), 'bytes')
