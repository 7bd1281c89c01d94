"""Judge classifier: scores the attack without looking at the samples (not in the original).

The original notebook only shows 15 generator samples that "all look like a 1". To put a number on
it, the package trains a small MNIST CNN once (on the MNIST training split at 28x28x1 in [-1, 1],
the attack's input range), caches its weights on disk and reports the fraction of generated
samples it assigns to the target class.

Cache: ``$SPLITNN_CACHE_DIR`` if set, else ``~/.cache/splitlearning-attacks-tf/``; files
``mnist_judge_<JUDGE_VERSION>.weights.h5`` and ``.json`` (test accuracy and training settings).
Changing the architecture or training recipe must change :data:`JUDGE_VERSION`.

Caveat: a 10-class classifier assigns *every* input to some digit, so a rate only means something
for samples that look like digits; :meth:`Judge.rates` therefore also reports the fraction
assigned to the target with softmax confidence >= 0.9.
"""

import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

#: Version key of the cached judge (architecture + training recipe).
JUDGE_VERSION = "mnist-cnn-v1"
#: Default training recipe of that version.
TRAIN_EPOCHS = 3
TRAIN_BATCH = 128
TRAIN_LR = 1e-3
TRAIN_SEED = 1234

__all__ = ["JUDGE_VERSION", "cache_dir", "make_judge_model", "train_judge_model", "Judge"]


def cache_dir():
    """``$SPLITNN_CACHE_DIR`` or ``~/.cache/splitlearning-attacks-tf``."""
    env = os.environ.get("SPLITNN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "splitlearning-attacks-tf"


def make_judge_model(seed=TRAIN_SEED):
    """Conv(16,3)-pool-Conv(32,3)-pool-Dense(64)-Dense(10) on [B, 28, 28, 1] in [-1, 1]; logits."""
    init = lambda k: keras.initializers.GlorotUniform(seed=seed + k)  # noqa: E731
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(16, 3, activation="relu", kernel_initializer=init(0)),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu", kernel_initializer=init(1)),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu", kernel_initializer=init(2)),
        layers.Dense(10, kernel_initializer=init(3)),
    ], name="mnist_judge")


def train_judge_model(x_train, y_train, epochs=TRAIN_EPOCHS, batch_size=TRAIN_BATCH, lr=TRAIN_LR,
                      seed=TRAIN_SEED, verbose=False):
    """Train :func:`make_judge_model` with Adam and a seeded NumPy shuffle; returns the model. The same code on
    either Keras backend (a pure step on :mod:`splitnn.backend`); the initial weights come from the backend's
    initialiser stream, so each backend trains its own sample of the recipe."""
    from splitnn import backend

    model = make_judge_model(seed)
    opt = keras.optimizers.Adam(lr)
    opt.build(model.trainable_variables)
    trainable, non_trainable = list(model.trainable_variables), list(model.non_trainable_variables)
    nt, nn = len(trainable), len(non_trainable)

    def loss_fn(params, state, x, y):
        logits, new_state = model.stateless_call(params, state, x, training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return loss, new_state

    def step(values, x, y):
        params, state, opt_values = values[:nt], values[nt:nt + nn], values[nt + nn:]
        loss, new_state, grads = backend.value_and_grad(lambda p, a, b: loss_fn(p, state, a, b), params, x, y)
        new_params, new_opt = backend.apply_gradients(opt, opt_values, grads, params)
        return list(new_params) + list(new_state) + list(new_opt), loss

    run = backend.StatefulStep(step, trainable + non_trainable + list(opt.variables))
    rng = np.random.RandomState(seed)
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train).astype(np.int32)
    n = len(x_train)
    for epoch in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            loss = run(x_train[idx], y_train[idx])
        if verbose:
            print(f"judge epoch {epoch + 1}/{epochs}: last batch loss {float(loss):.4f}", flush=True)
    return model


class Judge:
    """A trained MNIST classifier used to score generated samples.

    Use :meth:`Judge.load` to get the cached one (trained and cached on first use); the cached weights serve
    both Keras backends.
    """

    def __init__(self, model, info=None):
        self.model = model
        self.info = dict(info or {})

    @property
    def test_accuracy(self):
        return self.info.get("test_accuracy")

    @classmethod
    def load(cls, directory=None, version=JUDGE_VERSION, retrain=False, verbose=True,
             data=None, epochs=TRAIN_EPOCHS, train_subset=None):
        """Load the judge of ``version`` from ``directory`` (default :func:`cache_dir`), training and
        caching it first if it is missing (or ``retrain``).

        ``data`` = ``(x_train, y_train, x_test, y_test)`` in [-1, 1] (default: MNIST via
        ``splitnn.data``). ``epochs`` / ``train_subset`` change the recipe, so use them only with a
        different ``version`` (tests do).
        """
        directory = Path(directory) if directory is not None else cache_dir()
        weights = directory / f"mnist_judge_{version}.weights.h5"
        meta = directory / f"mnist_judge_{version}.json"
        if weights.exists() and meta.exists() and not retrain:
            model = make_judge_model()
            model.load_weights(weights)
            info = json.loads(meta.read_text())
            info["cached"] = True
            return cls(model, info)
        if data is None:
            from .dataset import load_mnist_arrays
            data = load_mnist_arrays()
        x_train, y_train, x_test, y_test = data
        if train_subset is not None:
            x_train, y_train = x_train[:train_subset], y_train[:train_subset]
        if verbose:
            print(f"training the judge classifier {version!r} on {len(x_train)} images "
                  f"(cached under {directory.resolve()})", flush=True)
        t0 = time.perf_counter()
        model = cls.train(x_train, y_train, epochs=epochs, verbose=verbose)
        seconds = time.perf_counter() - t0
        judge = cls(model, {})
        acc = float(np.mean(judge.classify(x_test) == np.asarray(y_test).astype(np.int64)))
        info = {"version": version, "test_accuracy": acc, "train_seconds": round(seconds, 1),
                "epochs": epochs, "train_images": int(len(x_train)), "batch_size": TRAIN_BATCH,
                "learning_rate": TRAIN_LR, "seed": TRAIN_SEED}
        info["trained_with"] = f"keras-{keras.backend.backend()}"
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tmp-{os.getpid()}-{weights.name}"
        model.save_weights(tmp)
        os.replace(tmp, weights)
        tmp_meta = directory / f".tmp-{os.getpid()}-{meta.name}"
        tmp_meta.write_text(json.dumps(info, indent=1))
        os.replace(tmp_meta, meta)
        if verbose:
            print(f"judge trained in {seconds:.1f} s, MNIST test accuracy {acc:.4f}; wrote {weights.resolve()} "
                  f"and {meta.resolve()}", flush=True)
        info["cached"] = False
        judge.info = info
        return judge

    def probabilities(self, images, batch_size=1000):
        """Softmax over the 10 digits for images [N, 28, 28, 1] in [-1, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
            raise ValueError(f"judge expects images of shape (N, 28, 28, 1), got {images.shape}")
        logits = np.concatenate([self.logits(images[i:i + batch_size])
                                 for i in range(0, len(images), batch_size)], axis=0).astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    @staticmethod
    def train(x_train, y_train, epochs=TRAIN_EPOCHS, verbose=False):
        """Train a new judge model (:func:`train_judge_model`)."""
        return train_judge_model(x_train, y_train, epochs=epochs, verbose=verbose)

    def logits(self, images):
        """The model's logits for one batch, as NumPy."""
        return np.asarray(self.model(images, training=False))

    def classify(self, images, batch_size=1000):
        return self.probabilities(images, batch_size).argmax(axis=1)

    def rates(self, images, target_class, confidence=0.9):
        """Dict with ``target_rate`` (fraction classified as ``target_class``), ``confident_rate``
        (same, with probability >= ``confidence``) and ``histogram`` (fraction per digit)."""
        if not 0 <= int(target_class) <= 9:
            raise ValueError(f"target_class must be in 0..9, got {target_class!r}")
        p = self.probabilities(images)
        pred = p.argmax(axis=1)
        return {
            "target_rate": float(np.mean(pred == target_class)),
            "confident_rate": float(np.mean((pred == target_class) & (p[:, target_class] >= confidence))),
            "histogram": np.bincount(pred, minlength=10) / len(pred),
        }

    def target_rate(self, images, target_class):
        """Fraction of ``images`` the judge assigns to ``target_class`` (in [0, 1])."""
        return self.rates(images, target_class)["target_rate"]
