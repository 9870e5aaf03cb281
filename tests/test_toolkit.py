"""The data toolkit against the source text's printed examples and scikit-learn."""
import numpy as np
import pytest
from sklearn.preprocessing import LabelEncoder, MinMaxScaler, OneHotEncoder, StandardScaler

from jaxdl.data import encoding, padding, scaling, supervised


def test_seed_normalise_example():
    data = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    p = scaling.minmax_fit(data)
    assert (p.data_min[0], p.data_max[0]) == (10.0, 100.0)
    norm = scaling.minmax_transform(p, data)
    printed = [0., 0.11111111, 0.22222222, 0.33333333, 0.44444444, 0.55555556, 0.66666667,
               0.77777778, 0.88888889, 1.]
    np.testing.assert_allclose(norm[:, 0], printed, atol=5e-9)
    np.testing.assert_allclose(scaling.minmax_inverse(p, norm)[:, 0], data, rtol=1e-12)


def test_seed_standardise_example():
    data = [1.0, 5.5, 9.0, 2.6, 8.8, 3.0, 4.1, 7.9, 6.3]
    p = scaling.standard_fit(data)
    assert f"Mean: {p.mean[0]:f}, StandardDeviation: {p.scale[0]:f}" == "Mean: 5.355556, StandardDeviation: 2.712568"
    printed = [-1.60569456, 0.05325007, 1.34354035, -1.01584758, 1.26980948, -0.86838584,
               -0.46286604, 0.93802055, 0.34817357]
    z = scaling.standard_transform(p, data)
    np.testing.assert_allclose(z[:, 0], printed, atol=5e-9)
    np.testing.assert_allclose(scaling.standard_inverse(p, z)[:, 0], data, rtol=1e-12)


def test_seed_one_hot_example():
    data = ['cold', 'cold', 'warm', 'cold', 'hot', 'hot', 'warm', 'cold', 'warm', 'hot']
    p = encoding.integer_fit(data)
    ints = encoding.integer_encode(p, data)
    assert ints.tolist() == [0, 0, 2, 0, 1, 1, 2, 0, 2, 1]
    oh = encoding.one_hot(ints)
    assert oh.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0],
                           [0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert encoding.integer_decode(p, [encoding.one_hot_decode(oh[0])]).tolist() == ['cold']


SEQS = [[1, 2, 3, 4], [1, 2, 3], [1]]


@pytest.mark.parametrize("kw,printed", [
    ({}, [[1, 2, 3, 4], [0, 1, 2, 3], [0, 0, 0, 1]]),
    ({"padding": "post"}, [[1, 2, 3, 4], [1, 2, 3, 0], [1, 0, 0, 0]]),
    ({"maxlen": 2}, [[3, 4], [2, 3], [0, 1]]),
    ({"maxlen": 2, "truncating": "post"}, [[1, 2], [1, 2], [0, 1]]),
])
def test_seed_pad_and_truncate_examples(kw, printed):
    assert padding.pad_sequences(SEQS, **kw).tolist() == printed


def test_pad_value_and_mask():
    out, mask = padding.pad_sequences([[1.5], [2.0, 3.0]], padding="post", value=-1.0, return_mask=True)
    assert out.tolist() == [[1.5, -1.0], [2.0, 3.0]]
    assert mask.tolist() == [[1, 0], [1, 1]]


def test_seed_shift_tables():
    t = np.arange(10)
    back = supervised.shift(t, 1)
    assert np.isnan(back[0]) and back[1:].tolist() == list(range(9))
    fwd = supervised.shift(t, -1)
    assert np.isnan(fwd[-1]) and fwd[:-1].tolist() == list(range(1, 10))
    X, y = supervised.series_to_supervised(t, 1, 1)          # dropping the incomplete row
    assert X[:, 0, 0].tolist() == list(range(9)) and y[:, 0, 0].tolist() == list(range(1, 10))
    X, y = supervised.series_to_supervised(t, 3, 2)
    assert X.shape == (6, 3, 1) and y.shape == (6, 2, 1)
    assert X[0, :, 0].tolist() == [0, 1, 2] and y[0, :, 0].tolist() == [3, 4]
    assert X[-1, :, 0].tolist() == [5, 6, 7] and y[-1, :, 0].tolist() == [8, 9]


def test_seed_reshape_examples():
    data = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert supervised.to_samples_steps_features(data).shape == (1, 10, 1)
    two = np.stack([data, data[::-1]], 1)
    three = supervised.to_samples_steps_features(two)
    assert three.shape == (1, 10, 2) and three[0, 0].tolist() == [0.1, 1.0]
    assert supervised.to_samples_steps_features(two, steps=5).shape == (2, 5, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, 4)) * rng.uniform(0.1, 10, 4) + rng.normal(size=4)
    for lo, hi in [(0, 1), (-1, 1)]:
        sk = MinMaxScaler(feature_range=(lo, hi)).fit(x)
        p = scaling.minmax_fit(x, (lo, hi))
        np.testing.assert_allclose(scaling.minmax_transform(p, x), sk.transform(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(scaling.minmax_inverse(p, sk.transform(x)), x, rtol=1e-12)
    sk = StandardScaler().fit(x)
    p = scaling.standard_fit(x)
    np.testing.assert_allclose(scaling.standard_transform(p, x), sk.transform(x), rtol=1e-12, atol=1e-12)
    labels = rng.choice(["a", "bb", "c", "zz", "m"], 40)
    le = LabelEncoder().fit(labels)
    pe = encoding.integer_fit(labels)
    np.testing.assert_array_equal(encoding.integer_encode(pe, labels), le.transform(labels))
    ohe = OneHotEncoder(sparse_output=False).fit(le.transform(labels)[:, None])
    np.testing.assert_array_equal(encoding.one_hot(encoding.integer_encode(pe, labels), len(pe.classes)),
                                  ohe.transform(le.transform(labels)[:, None]))


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        scaling.minmax_fit([])
    with pytest.raises(ValueError, match="NaN"):
        scaling.standard_fit([1.0, float("nan")])
    p = encoding.integer_fit(["cold", "hot"])
    with pytest.raises(ValueError, match=r"unseen labels \['warm'\]"):
        encoding.integer_encode(p, ["cold", "warm"])
    with pytest.raises(ValueError, match="maxlen must be an integer >= 1"):
        padding.pad_sequences(SEQS, maxlen=0)
    with pytest.raises(ValueError, match="no labels"):
        encoding.integer_fit([])
    with pytest.raises(ValueError, match="too short"):
        supervised.series_to_supervised([1.0, 2.0], 2, 1)
    with pytest.raises(ValueError, match="do not split"):
        supervised.to_samples_steps_features(np.zeros((10, 2)), steps=3)
