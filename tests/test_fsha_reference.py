"""The original notebooks' reference curves and the helpers that record and draw ours next to them."""
import numpy as np
import pytest

from fsha import reference


def test_curves_lengths_and_end_points():
    assert reference.ITERATIONS == tuple(range(0, 10_000, 500))
    assert len(reference.ITERATIONS) == 20
    for curve in reference.CURVES.values():
        assert len(curve.values) == len(curve.iterations) == 20
    assert reference.reference('FSHA').final == 0.0193
    assert reference.reference('FSHA_with_distance_cor.ipynb').final == 0.0267
    assert reference.reference('FSHA_mangled').final == 0.0256
    assert reference.reference_at('FSHA_with_distance_cor', 0) == 0.8722
    assert reference.reference_at('FSHA_mangled', 1000) == 0.1838
    assert reference.reference_at('FSHA', 123) is None


def test_metadata_and_continued_run_flag():
    meta = reference.METADATA
    assert (meta['architecture'], meta['level'], meta['id_setup'], meta['batch_size']) == ('notebook', 4, 3, 64)
    assert meta['hparams'] == {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-5, 'lr_tilde': 1e-5,
                               'lr_D': 1e-4}
    assert reference.CURVES['FSHA'].continued_run and 'continued run' in reference.CURVES['FSHA'].label
    assert not reference.CURVES['FSHA_mangled'].continued_run
    assert reference.CURVES['FSHA_with_distance_cor'].hparams['alpha1'] == 10_000.0
    with pytest.raises(KeyError, match='FSHA_mangled'):
        reference.reference('nope')


def test_running_means_match_the_printed_semantics():
    values = np.arange(10, dtype=float)  # step i has value i
    steps, means = reference.running_means(values, 4)
    assert steps.tolist() == [0, 4, 8]
    assert means.tolist() == [0.0, np.mean([1, 2, 3, 4]), np.mean([5, 6, 7, 8])]


class _StubAttack:
    """Stands in for FSHA: step i returns (i, 0, 0, 10 * i)."""
    LOG_COLUMNS = ('f_loss', 'tilde_f_loss', 'D_loss', 'loss_c_verification')
    VALIDATION_COLUMN = 3

    def __init__(self):
        self.iteration = 0

    def __call__(self, iterations, log_frequency=500, verbose=False, progress_bar=True):
        assert log_frequency == 1
        print('RUNNING...')
        rows = [[i, 0, 0, 10 * i] for i in range(self.iteration, self.iteration + iterations)]
        self.iteration += iterations
        return np.array(rows, dtype=float).reshape(-1, 4)


def test_track_validation_records_every_step(capsys):
    run = reference.track_validation(_StubAttack(), 9, log_frequency=4, reference_name='FSHA')
    assert run.steps.tolist() == list(range(9))
    assert run.log_steps.tolist() == [0, 4, 8] and run.LOG[:, 0].tolist() == [0, 4, 8]
    assert run.val_steps.tolist() == [0, 4, 8]
    assert run.validation.tolist() == [0.0, 25.0, 65.0]
    out = capsys.readouterr().out
    assert 'RUNNING' not in out
    assert 'log--44%-0000004] validation: 25.0000' in out
    assert '(original: 0.1628)' in out  # reference value printed next to step 0


def test_overlay_and_saved_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    line = reference.overlay(ax, 'FSHA')
    assert 'continued run' in line.get_label() and len(line.get_xdata()) == 20
    plt.close(fig)
    path = reference.save_curves_with_reference({'ours': ([0, 500], [0.8, 0.5])}, tmp_path / 'c.png',
                                                'FSHA_mangled')
    assert path.exists() and path.stat().st_size > 0
    assert 'FSHA_mangled' in reference.comparison_table([0], [0.86], 'FSHA_mangled')
