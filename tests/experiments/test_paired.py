import pytest
from scipy.stats import ttest_1samp

from hsa_geo.experiments import paired_comparison, paired_table


def _runs(a, b, **extra):
    return ([{'model': 'hsa', 'seed': s, 'test_accuracy': v, **extra} for s, v in enumerate(a)]
            + [{'model': 'fsa', 'seed': s, 'test_accuracy': v, **extra}
               for s, v in enumerate(b)])


def test_differences_are_per_seed_and_the_tests_agree_with_scipy():
    a, b = [0.70, 0.72, 0.69, 0.75, 0.71], [0.66, 0.70, 0.70, 0.71, 0.65]
    out = paired_comparison(_runs(a, b), 'hsa', 'fsa', 'accuracy')
    diffs = [x - y for x, y in zip(a, b)]
    assert out['differences'] == pytest.approx(diffs)
    assert out['mean'] == pytest.approx(sum(diffs) / 5)
    assert (out['wins'], out['losses'], out['ties']) == (4, 1, 0)
    # the paired t-test is the one-sample test of the differences
    assert out['t_p'] == pytest.approx(ttest_1samp(diffs, 0.0).pvalue)
    # exact Wilcoxon, 5 pairs, 4 positive ranks out of 5: p = 2 * 2 / 32
    assert out['wilcoxon_p'] == pytest.approx(0.125)


def test_only_seeds_both_models_have_are_paired_and_where_filters():
    runs = _runs([0.7, 0.8, 0.9], [0.6, 0.75], corpus='a') + _runs([0.1, 0.1], [0.9, 0.9],
                                                                    corpus='b')
    out = paired_comparison(runs, 'hsa', 'fsa', 'accuracy', where={'corpus': 'a'})
    assert out['seeds'] == [0, 1]
    assert out['differences'] == pytest.approx([0.1, 0.05])


def test_all_ties_give_no_wilcoxon_p_and_the_table_says_so():
    out = paired_comparison(_runs([0.5, 0.6], [0.5, 0.6]), 'hsa', 'fsa', 'accuracy')
    assert out['wilcoxon_p'] is None and out['t_p'] is None and out['ties'] == 2
    table = paired_table([out])
    assert '| hsa - fsa | accuracy | 2 | +0.000, +0.000 |' in table and table.endswith('| - | - |')


def test_fewer_than_two_paired_seeds_is_a_clear_error():
    with pytest.raises(ValueError, match="at least two seeds of both 'hsa' and 'fsa'"):
        paired_comparison(_runs([0.7, 0.8], [0.6]), 'hsa', 'fsa', 'accuracy')


def test_single_precision_ties_are_ties_and_duplicates_are_refused():
    # 31/49 - 30/49 and 34/49 - 33/49 in float32: one test item of 49 each, apart
    # in the eighth decimal
    a = [0.6326530575752258, 0.6938775777816772, 0.9]
    b = [0.6122449040412903, 0.6734693646430969, 0.8]
    assert a[0] - b[0] != a[1] - b[1]
    out = paired_comparison(_runs(a, b), 'hsa', 'fsa', 'accuracy')
    assert out['differences'][0] == out['differences'][1]
    with pytest.raises(ValueError, match="two runs of 'hsa' with seed 0"):
        paired_comparison(_runs(a, b) + _runs([0.5], [0.5]), 'hsa', 'fsa', 'accuracy')
