"""Server of sequential multi-client split learning and the attack's training loop (Pasquini et al., CCS 2021, §5;
original ``ClientSideAttack/server.py``).

One **server step** (:meth:`Server.train_step`) runs, in one forward pass differentiated once, the client's
``step0``, the server network and the client's ``step1`` (which computes the loss on the client),
then applies **one** Adam step to the server's variables plus the variable group the client trains
in that phase. One **iteration** (:meth:`Server.__call__`) visits every client in list order; the
malicious client does a generator step at even iterations and a poisoning step at odd ones, and
each honest client takes the next batch of a single shared data iterator (no per-client partition).

One implementation, two backends
--------------------------------
Each step kind is a pure function ``step(values, inputs, labels) -> (new_values, loss)`` in ``keras.ops``: the
networks run through ``Model.stateless_call`` (BatchNorm statistics and Dropout seed states come back as new
values), the gradients come from :func:`splitnn.backend.loss_grads` and the update from
:func:`splitnn.backend.apply_gradients` (Keras' Adam, as a pure function). :class:`splitnn.backend.StatefulStep`
binds it to the variables: a ``tf.function`` under TensorFlow (the default backend), a jitted step under
``KERAS_BACKEND=jax``. The data come from ``tf.data`` under TensorFlow (as in the original) or from a
:class:`splitnn.streams.ArrayStream` (either backend).

Optimizer (Keras 3)
-------------------
The original shares one ``tf.keras`` Adam(1e-4) across all variable groups. The legacy TF 2.x
optimizer accepted any variable subset on any call, kept per-variable moments and one global
iteration counter. Keras 3 builds an optimizer on the variables of its first call and then raises
``ValueError: Unknown variable`` for any other variable. Two modes are offered:

``optimizer="shared"`` (default, faithful)
    One Adam is built once on the **union** of all variables (server, every client's ``f`` and
    ``ff``, the generator) before training; each step applies gradients to its subset only. Keras 3
    leaves variables that are not passed untouched, so this is the legacy semantics: the server's
    moments are shared by generator steps (gradients shrunk by the factor) and honest/poisoning
    steps (normal gradients), and the iteration counter advances once per step.
``optimizer="per_group"`` (deviation)
    One fresh Adam per distinct trained variable set: one for server + ``G`` (generator steps),
    one for server + ``f`` + ``ff`` (honest and poisoning steps). **This changes the attack**: the
    generator-step optimizer only ever sees the shrunk server gradients, and Adam is nearly
    invariant to gradient scale (only epsilon = 1e-7 limits it), so the server moves by a
    normal-size step on every generator step instead of by ~1/factor of one. Offered for
    comparison only.

Passing zero gradients for inactive variables is *not* an option: Adam's momentum would still move
them.

What "the shared model barely moves" means with Adam: the 1/factor applies to the generator step's
*own* gradient, whose contribution to the server update is ~1/factor of an honest step's (measured
~1.7e-5 in ``tests/test_clientside.py``). Every Adam step, the generator step included, also moves
the server by the momentum accumulated from earlier honest and poisoning steps (about as much as an
honest step); this is the same with the original's legacy optimizer.

Compilation and training flags
------------------------------
The original runs eagerly. By default each step kind is compiled (traced once per client kind and phase;
honest clients that share ``f`` and ``ff`` share one step); the computation is the same, it is only faster.
``run_eagerly=True`` runs the same pure steps eagerly. ``f``, ``ff`` and ``G`` run in training mode; the server
network is called **without** a training flag, as in the original, so under Keras semantics its Dropout(0.3) is
inactive (``server_training`` can set the flag explicitly; ``None`` is the faithful default).

Iteration parity uses the server's running iteration counter, so ``server(2500); server(2500)``
equals ``server(5000)``; for a single call this is the original's loop index.

Checkpoints (not in the original)
---------------------------------
:meth:`Server.save` writes everything a run depends on, in one format both backends read and write: every
variable (networks, shared ones once, with their BatchNorm statistics and Dropout seed states; the optimizer(s);
each malicious client's noise generator state) into ``<name>.npz``, by position; the iteration counter and the
settings into ``<name>.json``; the position of the shared data iterator (an :class:`~splitnn.streams.ArrayStream`'s
in the ``.npz``, a ``tf.data`` iterator's with its shuffle buffer in ``<name>.tfdata.*``). :meth:`Server.restore`
loads it into a server built the same way, on either backend, so ``server(2); save; new server; restore;
server(2)`` continues the run as ``server(4)`` would have. A save goes to a new file set and then becomes the
folder's ``latest`` in one atomic rename, so a process killed while saving leaves the previous save usable.
"""

import json
import numbers
import os
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from splitnn import backend
from splitnn.streams import ArrayStream
from splitnn.utils import config_differences

from . import archs
from .clients import BadClient, Client
from .dataset import SHUFFLE_BUFFER
from .settings import GENERATOR, GRADIENT_FACTOR, HONEST, OPTIMIZER_MODES, check_training_options

__all__ = ["Server", "build_attack", "OPTIMIZER_MODES", "output_shape", "CHECKPOINT_FORMAT"]

#: Written into every checkpoint's JSON; both backends read it.
CHECKPOINT_FORMAT = "clientside-npz-v1"


def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def output_shape(model, input_shape, what):
    """Run ``model`` on zeros of ``(2,) + input_shape`` (inference mode) and return the output shape
    without the batch axis. Building the model this way also creates its variables.

    Raises ValueError naming the model, the given input shape and the model's declared input shape
    when the model cannot take that input.
    """
    input_shape = tuple(int(d) for d in input_shape)
    declared = None
    try:
        declared = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    if declared is not None and (len(declared) != len(input_shape) + 1 or any(
            d is not None and d != e for d, e in zip(declared[1:], input_shape))):
        raise ValueError(
            f"{what} expects input of shape {_fmt(declared)} but would receive shape "
            f"{_fmt((None,) + input_shape)}")
    try:
        out = model(np.zeros((2,) + input_shape, np.float32), training=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the shapes involved
        raise ValueError(
            f"{what} cannot be applied to input of shape {_fmt((None,) + input_shape)}: {exc}"
        ) from exc
    return tuple(int(d) for d in out.shape[1:])


def _check_same(got, expected, what, expected_what):
    if tuple(got) != tuple(expected):
        raise ValueError(
            f"{what} has output shape {_fmt((None,) + tuple(got))}, but {expected_what} is "
            f"{_fmt((None,) + tuple(expected))}")


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _is_tf_dataset(ds):
    if not backend.is_tensorflow():
        return False
    import tensorflow as tf  # only under TensorFlow
    return isinstance(ds, tf.data.Dataset)


def _tf_pipeline(x, y, seed):
    import tensorflow as tf  # only under TensorFlow
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(SHUFFLE_BUFFER, seed=seed,
                                                               reshuffle_each_iteration=True)


def _untouched_slots(optimizer, trained):
    """ids of the optimizer slots (Adam's moments) of the variables a step does not train."""
    slots = [getattr(optimizer, name, None) for name in ("_momentums", "_velocities", "_velocity_hats")]
    slots = [s for s in slots if s]
    trained_ids = {id(v) for v in trained}
    return {id(s[i]) for i, v in enumerate(optimizer._trainable_variables) if id(v) not in trained_ids
            for s in slots}


class _EagerStep:
    """:class:`splitnn.backend.StatefulStep`'s contract, run eagerly (``run_eagerly=True``)."""

    def __init__(self, step, variables):
        self.step, self.variables = step, list(variables)

    def __call__(self, *inputs):
        new_values, outputs = self.step(backend.variable_values(self.variables), *inputs)
        backend.assign(self.variables, new_values)
        return outputs


class Server:
    """Honest server running sequential split learning over ``clients`` (original ``Server(make_s, clients,
    trainset, batch_size)``).

    Parameters
    ----------
    s : keras.Model or callable
        Server network, or a zero-argument factory returning one (the original passes ``make_s``).
    clients : list of Client / BadClient
        Visited in order every iteration (original: [malicious] + 10 honest).
    xpriv : tf.data.Dataset, splitnn.streams.ArrayStream or (x, y)
        Unbatched stream of (image, label) pairs; batched here with ``drop_remainder=True`` and
        repeated. A pair of arrays is shuffled with a 10,000 buffer (``tf.data`` under TensorFlow, an
        ``ArrayStream`` under JAX). ``tf.data`` needs the TensorFlow backend.
    batch_size : int
        Batch size of honest clients and of the malicious client's noise unless it has its own (original: 256).
    learning_rate : float
        Adam learning rate (original: 1e-4); other Adam settings are the Keras defaults.
    optimizer : {"shared", "per_group"}
        See the module docstring; "shared" is the faithful default.
    run_eagerly : bool
        Run the steps eagerly like the original instead of compiled.
    server_training : None or bool
        Training flag passed to the server network; None (default) passes none, as the original.
    seed : int or None
        Shuffle seed used only when ``xpriv`` is given as arrays.

    Shapes are checked on construction (input images -> ``f`` -> server -> ``ff``, and the
    generator's output against ``f``'s input); mismatches raise ValueError naming both shapes.
    """

    def __init__(self, s, clients, xpriv, batch_size=256, *, learning_rate=1e-4,
                 optimizer="shared", run_eagerly=False, server_training=None, seed=None):
        if not isinstance(s, keras.Model):
            if not callable(s):
                raise TypeError(f"s must be a keras.Model or a factory returning one, got {type(s).__name__}")
            s = s()
            if not isinstance(s, keras.Model):
                raise TypeError(f"the server factory returned {type(s).__name__}, expected a keras.Model")
        self.s = s
        clients = list(clients)
        if not clients:
            raise ValueError("clients must contain at least one client")
        for i, c in enumerate(clients):
            if not isinstance(c, Client):
                raise TypeError(f"clients[{i}] must be a Client or BadClient, got {type(c).__name__}")
        self.clients = clients
        self.batch_size, self.learning_rate, self.optimizer_mode, self.server_training = check_training_options(
            batch_size, learning_rate, optimizer, server_training)
        self.run_eagerly = bool(run_eagerly)
        for c in clients:
            if isinstance(c, BadClient) and c.batch_size is None:
                c.batch_size = self.batch_size  # the original gives the attacker the same batch size

        if isinstance(xpriv, (tuple, list)) and len(xpriv) == 2:
            x, y = np.asarray(xpriv[0], np.float32), np.asarray(xpriv[1])
            xpriv = (_tf_pipeline(x, y, seed) if backend.is_tensorflow()
                     else ArrayStream(x, y, shuffle_buffer=SHUFFLE_BUFFER, seed=seed))
        if isinstance(xpriv, ArrayStream):
            if len(xpriv.label_shape) != 0:
                raise ValueError(f"xpriv must yield (image, label) pairs with scalar labels, got label shape "
                                 f"{xpriv.label_shape}")
            self.image_shape = xpriv.element_shape
            self._data_kind = "array_stream"
        elif _is_tf_dataset(xpriv):
            spec = xpriv.element_spec
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise ValueError(f"xpriv must yield (image, label) pairs, got element_spec {spec}")
            if spec[0].shape.rank is None or None in spec[0].shape.as_list():
                raise ValueError(f"xpriv must be unbatched with fully known image shape, got {spec[0].shape}")
            self.image_shape = tuple(spec[0].shape.as_list())
            self._data_kind = "tf.data"
        else:
            kinds = ("a tf.data.Dataset, " if backend.is_tensorflow() else "") + "a splitnn.streams.ArrayStream"
            raise TypeError(f"xpriv must be {kinds} of (image, label) or a pair (x, y), got {type(xpriv).__name__}"
                            f" (Keras backend: {backend.BACKEND})")
        self._validate_shapes()

        if self._data_kind == "array_stream":
            self._data = xpriv.batches(self.batch_size)
        else:
            import tensorflow as tf  # tf.data: TensorFlow backend only
            self._data = iter(xpriv.batch(self.batch_size, drop_remainder=True).repeat()
                              .prefetch(tf.data.AUTOTUNE))
        self._build_optimizers()
        self._steps = {}
        self.iteration = 0

    # -- construction -------------------------------------------------------------------------
    def _validate_shapes(self):
        smashed = server_in = None
        try:
            declared = tuple(self.s.inputs[0].shape)[1:]
            if None not in declared:
                server_in = declared
        except (AttributeError, IndexError, TypeError, ValueError):
            pass
        for i, c in enumerate(self.clients):
            name = f"clients[{i}] ({c.name})"
            if isinstance(c, BadClient):
                g_out = output_shape(c.generator, (c.latent_dim,), f"{name} generator")
                _check_same(g_out, self.image_shape, f"{name} generator",
                            "the client input (image) shape")
            a = output_shape(c.f, self.image_shape, f"{name} f")
            if server_in is None:
                server_in = a
            _check_same(a, server_in, f"{name} f", "the server input shape")
            smashed = a
        self.smashed_shape = smashed
        self.server_out_shape = output_shape(self.s, smashed, "server s")
        logits = None
        for i, c in enumerate(self.clients):
            name = f"clients[{i}] ({c.name})"
            out = output_shape(c.ff, self.server_out_shape, f"{name} ff")
            if len(out) != 1:
                raise ValueError(f"{name} ff must output logits [batch, classes], got shape {_fmt((None,) + out)}")
            if logits is None:
                logits = out
            _check_same(out, logits, f"{name} ff", "the logits shape of clients[0]")
            if isinstance(c, BadClient) and c.fake_class >= out[0]:
                raise ValueError(f"{name} fake_class {c.fake_class} needs ff with more than "
                                 f"{c.fake_class} outputs, got shape {_fmt((None,) + out)}")
        self.num_classes = logits[0]

    def _groups(self):
        groups = []
        for c in self.clients:
            for phase in c.phases():
                groups.append(_unique(list(self.s.trainable_variables) + c.trainable_variables(phase)))
        return groups

    def _build_optimizers(self):
        self._opt_by_group = {}
        if self.optimizer_mode == "shared":
            union = _unique([v for g in self._groups() for v in g])
            self.optimizer = keras.optimizers.Adam(self.learning_rate)
            self.optimizer.build(union)
            self.optimizers = [self.optimizer]
        else:
            self.optimizer = None
            self.optimizers = []
            for g in self._groups():
                key = tuple(sorted(id(v) for v in g))
                if key not in self._opt_by_group:
                    opt = keras.optimizers.Adam(self.learning_rate)
                    opt.build(g)
                    self._opt_by_group[key] = opt
                    self.optimizers.append(opt)

    def optimizer_for(self, variables):
        """The optimizer that updates the given variable group."""
        if self.optimizer_mode == "shared":
            return self.optimizer
        return self._opt_by_group[tuple(sorted(id(v) for v in _unique(variables)))]

    # -- one step ---------------------------------------------------------------------------------
    def _server_forward(self, a, call=None):
        call = call or (lambda model, x, training: model(x) if training is None else model(x, training=training))
        return call(self.s, a, self.server_training)

    def step_variables(self, client, phase):
        """Variables trained by a step of ``client`` in ``phase``: the server's plus the client's group."""
        return _unique(list(self.s.trainable_variables) + client.trainable_variables(phase))

    def _step_parts(self, client, phase):
        """The pure loss of a step and the variables it reads: ``(loss_fn, trainable, non_trainable, trained,
        trained_idx)`` (``trained_idx``: the positions of ``trained`` in ``trainable``).

        ``loss_fn(trained_values, trainable_values, non_trainable_values, inputs, labels) -> ((loss,),
        new_non_trainable_values)``: the step's forward pass with the networks run statelessly, the trained
        variables' values taken from ``trained_values`` (the ones differentiated) and the others' from
        ``trainable_values``.
        """
        models = _unique([self.s] + client.step_models(phase))
        trainable = [v for m in models for v in m.trainable_variables]
        non_trainable = [v for m in models for v in m.non_trainable_variables]
        t_slices, n_slices, t0, n0 = {}, {}, 0, 0
        for m in models:
            t_slices[id(m)] = (t0, t0 + len(m.trainable_variables))
            n_slices[id(m)] = (n0, n0 + len(m.non_trainable_variables))
            t0, n0 = t_slices[id(m)][1], n_slices[id(m)][1]
        trained = self.step_variables(client, phase)
        position = {id(v): i for i, v in enumerate(trainable)}
        trained_idx = [position[id(v)] for v in trained]

        def loss_fn(trained_values, trainable_values, non_trainable_values, inputs, labels):
            params = list(trainable_values)
            for k, i in enumerate(trained_idx):
                params[i] = trained_values[k]
            state = list(non_trainable_values)

            def call(model, x, training):
                (a, b), (c, d) = t_slices[id(model)], n_slices[id(model)]
                kwargs = {} if training is None else {"training": training}
                y, state[c:d] = model.stateless_call(params[a:b], state[c:d], x, **kwargs)
                return y

            a = client.step0(inputs, phase, call=call)
            out = self._server_forward(a, call)
            return (client.step1(out, labels, phase, call=call),), state

        return loss_fn, trainable, non_trainable, trained, trained_idx

    def compute_gradients(self, client, inputs, labels=None, phase=HONEST):
        """Forward/backward of one step without applying it (no variable changes): ``(loss, grads, variables)``
        with ``grads`` the gradients of the loss w.r.t. ``variables`` (:meth:`step_variables`)."""
        loss_fn, trainable, non_trainable, trained, _ = self._step_parts(client, phase)
        values = backend.variable_values(trainable)
        state = backend.variable_values(non_trainable)
        (loss,), _, (grads,) = backend.loss_grads(
            lambda p, x, y: loss_fn(p[0], values, state, x, y), (backend.variable_values(trained),),
            [(0, 0)], inputs, labels)
        return loss, grads, trained

    def _make_step(self, client, phase):
        """The compiled step of ``client`` in ``phase``: a pure step bound to the variables it changes (the trained
        ones, the networks' non-trainable state, the optimizer's counter and the trained variables' moments).
        The step's networks' other variables are inputs (read, not written back), and the moments of the
        variables it does not train are left out altogether: the shared optimizer holds moments for every
        network, and copying them through every step would cost more than a small step itself."""
        loss_fn, trainable, non_trainable, trained, trained_idx = self._step_parts(client, phase)
        opt = self.optimizer_for(trained)
        trained_ids = {id(v) for v in trained}
        frozen_idx = [i for i, v in enumerate(trainable) if id(v) not in trained_ids]
        frozen = [trainable[i] for i in frozen_idx]
        untouched = _untouched_slots(opt, trained)
        opt_kept = [j for j, v in enumerate(opt.variables) if id(v) not in untouched]
        ntr, nn = len(trained), len(non_trainable)

        def step(values, frozen_values, inputs, labels):
            trained_values, state, kept = values[:ntr], values[ntr:ntr + nn], values[ntr + nn:]
            params = [None] * len(trainable)
            for k, i in enumerate(trained_idx):
                params[i] = trained_values[k]
            for k, i in enumerate(frozen_idx):
                params[i] = frozen_values[k]
            # the untouched moments are neither read nor written by the update: placeholders, pruned by the compiler
            opt_values = [keras.ops.zeros(v.shape, v.dtype) for v in opt.variables]
            for k, j in enumerate(opt_kept):
                opt_values[j] = kept[k]
            (loss,), new_state, (grads,) = backend.loss_grads(
                lambda p, x, y: loss_fn(p[0], params, state, x, y), (list(trained_values),), [(0, 0)], inputs, labels)
            new_trained, new_opt = backend.apply_gradients(opt, opt_values, grads, trained_values, trained)
            return list(new_trained) + list(new_state) + [new_opt[j] for j in opt_kept], loss

        variables = trained + non_trainable + [opt.variables[j] for j in opt_kept]
        runner = _EagerStep(step, variables) if self.run_eagerly else backend.StatefulStep(step, variables)
        return lambda inputs, labels: runner(backend.variable_values(frozen), inputs, labels)

    def train_step(self, client, inputs, labels=None, phase=HONEST):
        """One split-learning step of ``client`` (one optimizer update); returns the loss tensor."""
        key = client.step_key(phase)
        fn = self._steps.get(key)
        if fn is None:
            fn = self._steps[key] = self._make_step(client, phase)
        return fn(inputs, labels)

    def next_batch(self):
        """Next (x, y) batch of the shared honest-client iterator."""
        return next(self._data)

    # -- training loop ----------------------------------------------------------------------------
    def __call__(self, iterations, callback=None, callback_every=None, verbose=False, progress_bar=None):
        """Run ``iterations`` iterations; return ``(honest_losses, generator_losses)`` as float lists.

        ``callback(server, iteration)`` is called after every ``callback_every`` iterations (counted
        on the running counter :attr:`iteration`) and after the last one. A progress bar (like the original's
        ``tqdm``) is shown when standard output is a terminal, unless ``progress_bar=False``.
        """
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        if callback_every is not None and (not isinstance(callback_every, numbers.Integral)
                                           or callback_every < 1):
            raise ValueError(f"callback_every must be a positive integer, got {callback_every!r}")
        if progress_bar is None:
            progress_bar = bool(getattr(sys.stdout, "isatty", lambda: False)())
        bar = keras.utils.Progbar(int(iterations), unit_name="iteration") if progress_bar and iterations else None
        honest, gen = [], []
        t0 = time.perf_counter()
        for _ in range(int(iterations)):
            it = self.iteration
            for c in self.clients:
                if isinstance(c, BadClient):
                    phase = c.phase_for(it)
                    loss = self.train_step(c, c.sample_noise(c.batch_size), None, phase)
                    if phase == GENERATOR:
                        gen.append(loss)
                else:
                    x, y = self.next_batch()
                    honest.append(self.train_step(c, x, y, HONEST))
            self.iteration += 1
            done = self.iteration
            last = _ == iterations - 1
            if bar is not None:
                bar.update(_ + 1)
            if verbose and (last or (callback_every and done % callback_every == 0)):
                rate = (_ + 1) / (time.perf_counter() - t0)
                print(f"iteration {done}: {rate:.2f} it/s", flush=True)
            if callback is not None and (last or (callback_every and done % callback_every == 0)):
                callback(self, done)
        # one device-to-host transfer per list instead of one per step
        return ([float(v) for v in backend.to_numpy(keras.ops.stack(honest))] if honest else [],
                [float(v) for v in backend.to_numpy(keras.ops.stack(gen))] if gen else [])

    # -- checkpoints ------------------------------------------------------------------------------
    def config(self):
        """The settings a checkpoint must agree on (the variables' shapes are checked on restore)."""
        return {"clients": [c.kind for c in self.clients], "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "optimizer": self.optimizer_mode,
                "server_training": self.server_training, "image_shape": list(self.image_shape),
                "attackers": [{"target_class": c.target_class, "fake_class": c.fake_class,
                               "gradient_factor": c.gradient_factor}
                              for c in self.clients if isinstance(c, BadClient)]}

    def state_variables(self):
        """``(key, variable)`` of everything a run depends on: every network's variables (shared ones once,
        BatchNorm statistics and Dropout seed states included), each attacker's noise generator state and the
        optimizers' variables. Keys are positions (``server/3``), not Keras paths, which depend on how many
        layers a process created before."""
        items, seen = [], {id(self.s)}
        items += [(f"server/{j}", v) for j, v in enumerate(self.s.variables)]
        for i, c in enumerate(self.clients):
            for role, model in c.models().items():
                if id(model) not in seen:  # clients share f and ff in the original: save them once
                    seen.add(id(model))
                    items += [(f"client{i}_{role}/{j}", v) for j, v in enumerate(model.variables)]
            if isinstance(c, BadClient):
                items.append((f"client{i}_noise", c.noise_generator.state))
        for k, opt in enumerate(self.optimizers):
            items += [(f"optimizer{k}/{j}", v) for j, v in enumerate(opt.variables)]
        return items

    def save(self, directory, extra=None):
        """Write the training state into the folder ``directory``: ``ckpt-<iteration>-<tag>.npz`` (every variable
        and an ``ArrayStream``'s position), ``.tfdata.*`` (a ``tf.data`` iterator's position), ``.json``
        (iteration, :meth:`config`, format) and, given ``extra`` (a dict of NumPy-convertible values, such as a
        benchmark's history), ``.extra.npz``; then switch the file ``latest`` to it atomically and delete
        older saves. A save cut short (a killed process) leaves the previous one in use. Returns the save's
        name. The files are the same on both backends: a run saved under TensorFlow continues under JAX."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{self.iteration}-{os.getpid()}-{time.time_ns()}"  # unique: never overwrites the live save
        arrays = {}
        for key, v in self.state_variables():
            value = backend.to_numpy(v.value)
            arrays[f"var/{key}"] = value.astype(np.int64) if value.dtype.kind in "iu" else value
        if self._data_kind == "array_stream":
            arrays.update({f"data/{k}": np.asarray(v) for k, v in self._data.state().items()})
        else:
            import tensorflow as tf  # tf.data: TensorFlow backend only
            tf.train.Checkpoint(data=self._data).write(str(directory / f"{name}.tfdata"))
        with open(directory / f"{name}.npz", "wb") as fh:
            np.savez(fh, **arrays)
        meta = {"format": CHECKPOINT_FORMAT, "iteration": self.iteration, "config": self.config(),
                "data": self._data_kind, "backend": backend.BACKEND}
        if extra:
            with open(directory / f"{name}.extra.npz", "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in extra.items()})
        (directory / f"{name}.json").write_text(json.dumps(meta))  # last: a save without it is incomplete
        tmp = directory / f".latest-{os.getpid()}"
        tmp.write_text(name)
        os.replace(tmp, directory / "latest")
        for old in directory.glob("ckpt-*"):
            if not old.name.startswith(name + "."):
                old.unlink()
        return name

    @staticmethod
    def checkpoint_exists(directory):
        """Whether :meth:`save` has written a checkpoint into ``directory``."""
        return (Path(directory) / "latest").is_file()

    def restore(self, directory):
        """Load the latest checkpoint :meth:`save` wrote into ``directory`` (under either backend) into this server,
        built like the saved one (same clients, networks and settings; ValueError naming the differences
        otherwise). Returns the save's ``extra`` as a dict of NumPy arrays (empty if none).

        The data position is restored when the data are of the same kind as when saved (an ``ArrayStream``, or
        ``tf.data``); otherwise (say a ``tf.data`` run resumed under JAX) the stream starts afresh, with a
        warning."""
        directory = Path(directory)
        if not self.checkpoint_exists(directory):
            raise FileNotFoundError(f"no client-side attack checkpoint in {directory} (expected the file "
                                    f"{directory / 'latest'}, written by Server.save)")
        name = (directory / "latest").read_text().strip()
        meta = json.loads((directory / f"{name}.json").read_text())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {directory / name} has format {meta.get('format')!r}, expected "
                             f"{CHECKPOINT_FORMAT!r} (written by another version of the package)")
        diff = config_differences(meta["config"], self.config())
        if diff:
            raise ValueError(f"checkpoint {directory / name} was written by a differently configured server "
                             f"(checkpoint, this server): {diff}")
        with np.load(directory / f"{name}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        items = self.state_variables()
        problems = [key for key, v in items if f"var/{key}" not in arrays
                    or tuple(arrays[f"var/{key}"].shape) != tuple(v.shape)]
        if problems or len([k for k in arrays if k.startswith("var/")]) != len(items):
            raise ValueError(f"checkpoint {directory / name} does not match this server's networks "
                             f"(missing or differently shaped: {problems[:5]})")
        for key, v in items:
            v.assign(arrays[f"var/{key}"].astype(str(v.dtype)))
        if meta["data"] == self._data_kind == "array_stream":
            self._data.set_state({k[len("data/"):]: v for k, v in arrays.items() if k.startswith("data/")})
        elif meta["data"] == self._data_kind == "tf.data":
            import tensorflow as tf  # tf.data: TensorFlow backend only
            tf.train.Checkpoint(data=self._data).read(str(directory / f"{name}.tfdata")).assert_consumed()
        else:
            warnings.warn(f"checkpoint {directory / name} holds the position of a {meta['data']} stream, this "
                          f"server reads a {self._data_kind} stream: the data order starts afresh", stacklevel=2)
        self.iteration = int(meta["iteration"])  # written with the state, in the same save
        extra_path = directory / f"{name}.extra.npz"
        if not extra_path.exists():
            return {}
        with np.load(extra_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # -- evaluation -------------------------------------------------------------------------------
    def predict_logits(self, x, client=0, batch_size=1000):
        """Inference-mode logits of ``f -> s -> ff`` of ``clients[client]`` (NumPy)."""
        c = self.clients[client]
        out = []
        for i in range(0, len(x), batch_size):
            a = c.f(x[i:i + batch_size], training=False)
            out.append(backend.to_numpy(c.ff(self.s(a, training=False), training=False)))
        return np.concatenate(out, axis=0)

    def accuracy(self, x, y, client=0, batch_size=1000):
        """Fraction of ``x`` whose argmax over all outputs equals ``y``."""
        pred = self.predict_logits(x, client=client, batch_size=batch_size).argmax(axis=1)
        return float(np.mean(pred == np.asarray(y).astype(np.int64)))


def build_attack(honest_clients=10, target_class=1, gradient_factor=GRADIENT_FACTOR, batch_size=256,
                 learning_rate=1e-4, optimizer="shared", seed=None, xpriv=None, run_eagerly=False,
                 deterministic=False):
    """The original notebook's set-up: one shared ``f``, ``ff`` and ``G``; clients =
    [malicious] + ``honest_clients`` honest ones; MNIST training split; returns the :class:`Server`.

    ``seed`` seeds model initialisation (:func:`splitnn.backend.set_seed`), the data order and the
    attacker's noise; the original has no seed.
    """
    if isinstance(honest_clients, bool) or not isinstance(honest_clients, numbers.Integral) or honest_clients < 0:
        raise ValueError(f"honest_clients must be a non-negative integer, got {honest_clients!r}")
    if seed is not None:
        backend.set_seed(int(seed), deterministic=deterministic)
    if xpriv is None:
        from .dataset import load_mnist
        xpriv, _ = load_mnist(seed=seed)
    f, ff, g = archs.make_f(), archs.make_ff(), archs.make_generator()
    bad = BadClient(f, ff, g, batch_size, target_class, gradient_factor=gradient_factor,
                    seed=None if seed is None else int(seed) + 1, name="malicious")
    clients = [bad] + [Client(f, ff, name=f"honest{i}") for i in range(int(honest_clients))]
    return Server(archs.make_s, clients, xpriv, batch_size, learning_rate=learning_rate,
                  optimizer=optimizer, run_eagerly=run_eagerly)
