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


class _TrainedAttack:
    """Stands in for a trained FSHA_dc: the histories FSHA keeps (steps 0, 4, 8; 5 columns)."""
    LOG_COLUMNS = ('f_loss', 'tilde_f_loss', 'D_loss', 'loss_c_verification', 'dcor')
    VALIDATION_COLUMN = 3
    steps = np.array([0, 4, 8])
    rows = np.arange(15, dtype=float).reshape(3, 5)
    means = rows + 0.5

    @property
    def log_history(self):
        return self.steps, self.rows

    @property
    def running_mean_history(self):
        return self.steps, self.means


def test_running_mean_curve_reads_the_attack_history():
    attack = _TrainedAttack()
    steps, values = reference.running_mean_curve(attack)  # the validation column
    assert steps.tolist() == [0, 4, 8] and values.tolist() == [3.5, 8.5, 13.5]
    assert reference.running_mean_curve(attack, 'dcor')[1].tolist() == [4.5, 9.5, 14.5]
    assert reference.running_mean_curve(attack, 0)[1].tolist() == [0.5, 5.5, 10.5]
    with pytest.raises(KeyError, match="'accuracy'"):
        reference.running_mean_curve(attack, 'accuracy')
    with pytest.raises(IndexError):
        reference.running_mean_curve(attack, 5)
    with pytest.raises(TypeError, match='running_mean_history'):
        reference.running_mean_curve(object())
    assert not hasattr(reference, 'track_validation') and not hasattr(reference, 'TrackedRun')


def test_save_log_figure_from_an_attack(tmp_path):
    attack = _TrainedAttack()
    path = reference.save_log_figure(attack, tmp_path / 'log.png', reference_name='FSHA_with_distance_cor',
                                     suptitle='test')
    assert path.exists() and path.stat().st_size > 0
    path = reference.save_log_figure(attack, tmp_path / 'two.png', columns=['loss_c_verification', 'dcor'])
    assert path.exists()
    with pytest.raises(KeyError, match='nope'):
        reference.save_log_figure(attack, tmp_path / 'bad.png', columns=['nope'])
    table = reference.comparison_table(*reference.running_mean_curve(attack), 'FSHA')
    assert table.splitlines()[1].split() == ['0', '3.5000', '0.1628']
    assert table.splitlines()[2].split() == ['4', '8.5000', '-']


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


def test_acceptance_report_checks_the_three_points():
    # the original notebooks' fresh runs meet every check (0.0256 and 0.0267 at 9,500)
    for name, end_max in (('FSHA_mangled', 0.03), ('FSHA_with_distance_cor', 0.035)):
        curve = reference.reference(name)
        rows = reference.acceptance_report(curve.iterations, curve.values, end_max)
        assert [r['met'] for r in rows] == [True, True, True], rows
    # a run that has not got far: later checks not reached; a run that stalls: misses
    rows = reference.acceptance_report([0, 500, 1000], [0.90, 0.5, 0.25])
    assert [(r['check'], r['met']) for r in rows] == [('start', False), ('by 1,000', False), ('end', None)]
    rows = reference.acceptance_report(range(0, 10_000, 500), [0.86] + [0.1] * 18 + [0.031])
    assert [r['met'] for r in rows] == [True, True, False]  # default end bound 0.03
    text = reference.format_acceptance(rows)
    assert 'MISSES <= 0.03' in text and '0.0310' in text
