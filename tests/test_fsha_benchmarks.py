"""The TensorFlow FSHA benchmarks end to end at level 4 with batch 8 (level 4 has the cheapest
step: D sees 4x4 features):
a run stopped by ``--max-seconds`` exits with status 3 and keeps its progress in ``--checkpoint-dir``; the same
command then continues it to the total ``--iterations`` and writes the summary and figures to ``--out``.

Needs MNIST (the offline mirror or a download); about 40 s per benchmark on two CPU cores."""
import json
import runpy
from pathlib import Path

import pytest
from available_data import needs

from fsha import runs

REPO = Path(__file__).resolve().parents[1]


@needs('mnist')
@pytest.mark.parametrize('script, name, extra', [
    ('fsha_mnist.py', 'fsha_mnist', ['--architecture', 'notebook', '--seed', '0']),
    ('fsha_distcor.py', 'fsha_distcor', []),
])
def test_benchmark_stops_resumes_and_reports(tmp_path, capsys, script, name, extra):
    bench = runpy.run_path(str(REPO / 'benchmarks' / script))
    common = ['--level', '4', '--batch', '8', '--heldout', '16', '--log-frequency', '1', '--timing-reps', '1',
              '--checkpoint-dir', str(tmp_path / 'ckpt'), '--checkpoint-every', '1', '--out', str(tmp_path / 'out')]
    common += extra
    # max-seconds 0: the first (timed) step and one chunk run, then the limit stops the run at iteration 2
    with pytest.raises(SystemExit) as stop:
        bench['main'](['--iterations', '4', '--max-seconds', '0'] + common)
    assert stop.value.code == runs.STOPPED
    printed = capsys.readouterr().out
    assert 'stopped at iteration 2 of 4' in printed
    assert f"checkpoint {(tmp_path / 'ckpt' / 'ckpt-2.npz').resolve()}: run the same command again" in printed
    assert not (tmp_path / 'out').exists()

    bench['main'](['--iterations', '4'] + common)
    printed = capsys.readouterr().out
    assert 'at iteration 2' in printed  # restored, not restarted
    # every file written is named by its absolute path
    for written in (f'{name}.json', f'{name}_log.png', f'{name}_reconstructions.png'):
        assert f"wrote {(tmp_path / 'out' / written).resolve()}\n" in printed
    assert f"wrote checkpoint {(tmp_path / 'ckpt' / 'ckpt-4.npz').resolve()}\n" in printed
    summary = json.loads((tmp_path / 'out' / f'{name}.json').read_text())
    assert summary['iterations'] == 4 and summary['validation_steps'] == [0, 1, 2, 3]
    assert summary['seconds_per_step'] > 0 and summary['target'] == bench['TARGET_MSE']
    assert [row['check'] for row in summary['acceptance']] == ['start', 'by 1,000', 'end']
    assert summary['acceptance'][1]['value'] is None  # not reached: no verdict
    for png in (f'{name}_log.png', f'{name}_reconstructions.png'):
        assert (tmp_path / 'out' / png).stat().st_size > 1000
    # the checkpoint holds no hyperparameters: continuing it with other settings is refused
    with pytest.raises(SystemExit):
        bench['main'](['--iterations', '5'] + common + ['--seed', '3'])
    assert 'holds a run with other settings' in capsys.readouterr().err


def test_max_seconds_needs_a_checkpointed_attack():
    class Attack:
        checkpoint_manager = None
        iteration = 0
    with pytest.raises(ValueError, match='checkpoint_dir'):
        runs.train_resumable(Attack(), 10, log_frequency=5, max_seconds=1.0)


def test_a_resumed_process_shuffles_a_new_pass(tmp_path):
    """The checkpoint does not hold the streams' position: each resumed process must draw a new order, not
    replay the one the run began with (which the fresh run's seed would give every process)."""
    import numpy as np

    from fsha import datasets
    from splitnn import checkpoints
    from splitnn.utils import set_seed

    def first_pass(seed):
        set_seed(seed)
        ds = datasets.make_dataset(np.arange(200, dtype=np.float32), np.zeros(200, np.uint8))
        return [int(np.asarray(x)) for x, _ in ds.take(20)]

    assert runs.stream_seed(None, tmp_path) is None and runs.stream_seed(0, None) == 0
    assert runs.checkpoint_iteration(tmp_path) == 0 and runs.stream_seed(7, tmp_path) == 7  # fresh: as given
    manager = checkpoints.CheckpointManager(tmp_path, 3)
    manager.save({}, {}, checkpoint_number=600)
    assert runs.checkpoint_iteration(tmp_path) == 600
    resumed = runs.stream_seed(0, tmp_path)
    assert resumed == runs.stream_seed(0, tmp_path) and 0 <= resumed < 2 ** 31  # reproducible, a valid seed
    assert first_pass(resumed) == first_pass(resumed) != first_pass(0)  # same seed, same order; a new pass
    manager.save({}, {}, checkpoint_number=700)
    assert runs.stream_seed(0, tmp_path) not in (0, resumed)  # each resume point its own order
