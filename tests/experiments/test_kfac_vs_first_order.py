"""experiments/kfac_vs_first_order.py: K-FAC, EKFAC, Adam, SGD with momentum, Levenberg-Marquardt and
Hessian-free on the digits MLP, CNN and autoencoder."""

import kfac_vs_first_order as kvf
import numpy as np
import pytest


def test_kfac_vs_first_order_quick(run_quick):
    result = run_quick(kvf)
    m = result["metrics"]
    assert set(m) == set(kvf.PROBLEMS)
    cfg = result["config"]
    for r in m.values():
        assert set(r["methods"]) == set(kvf.METHODS) and r["N"] == cfg["n"]
        for method, x in r["methods"].items():
            assert len(x["final_loss"]) == cfg["seeds"] == 3
            budget = (
                cfg["steps"] if method in ("K-FAC", "EKFAC", *kvf.FIRST_ORDER) else cfg["second_order_steps"]
            )
            assert all(1 <= k <= budget for k in x["iterations"])
        adam = r["methods"]["Adam"]
        assert all(
            k is not None and k <= n for k, n in zip(adam["iterations_to_adam_final"], adam["iterations"])
        )
    assert set(result["figures"]) == {"loss_curves"}


def test_problems_are_the_stated_networks_and_data():
    sizes = {"mlp": 2410, "cnn": 666, "autoencoder": 5544}
    for name, P in sizes.items():
        net, x, y = kvf.problem(name, 20, 0)
        assert net.n_params == P and x.shape[0] == 20 and x.dtype == np.float64
    _, x, y = kvf.problem("autoencoder", 20, 0)
    assert y is x and 0.0 <= x.min() and x.max() <= 1.0 and x.shape == (20, 64)
    _, x, y = kvf.problem("cnn", 20, 0)
    assert x.shape == (20, 8, 8, 1) and y.shape == (20,)


def test_first_below():
    assert kvf.first_below(np.array([3.0, 2.0, 1.0, 0.5]), 1.0) == 2
    assert kvf.first_below(np.array([3.0, 2.0]), 1.0) is None


def _metrics(ratio=None, final=None):
    """Metrics for which every claim holds; ``ratio``/``final``: ``{(problem, method): [3 values]}``
    overrides."""
    out = {}
    for name in kvf.PROBLEMS:
        methods = {}
        for method in kvf.METHODS:
            second = method in ("Levenberg-Marquardt", "Hessian-free")
            r = [10.0, 8.0, 6.0] if method != "Adam" else [1.0, 1.0, 1.0]
            f = {"Adam": [1e-3] * 3, "SGD+momentum": [2e-3] * 3}.get(method, [1e-5] * 3)
            r = (ratio or {}).get((name, method), r)
            f = (final or {}).get((name, method), f)
            methods[method] = {
                "iterations": [40 if second else 200] * 3,
                "initial_loss": [2.0] * 3,
                "final_loss": f,
                "ratio_to_adam": r,
                "median_final_loss": float(np.median(f)),
                "median_ratio_to_adam": float(np.median(r)),
            }
        out[name] = {"methods": methods}
    return out


BREAKS = [  # (ratio or final override, phrase of the one claim that fails)
    ({"ratio": {("cnn", "K-FAC"): [1.5, 1.9, 8.0]}}, "K-FAC reaches"),
    ({"ratio": {("autoencoder", "EKFAC"): [0.0, 0.0, 8.0]}}, "EKFAC reaches"),
    ({"final": {("mlp", "Adam"): [3e-3, 3e-3, 1e-4]}}, "Adam's median final loss"),
    ({"ratio": {("cnn", "Levenberg-Marquardt"): [0.0, 4.9, 10.0]}}, "Levenberg-Marquardt reaches"),
    ({"ratio": {("mlp", "Hessian-free"): [0.0, 0.0, 10.0]}}, "Hessian-free reaches"),
    ({"final": {("cnn", "Levenberg-Marquardt"): [0.5, 0.3, 1e-5]}}, "Levenberg-Marquardt lowers"),
]


@pytest.mark.parametrize("override, phrase", BREAKS, ids=[b[1] for b in BREAKS])
def test_claims_read_the_medians_and_can_fail(override, phrase):
    assert all(kvf.claims(_metrics()).values())
    failed = [c for c, held in kvf.claims(_metrics(**override)).items() if not held]
    assert len(failed) == 1 and phrase in failed[0], failed
    # one initialisation alone does not break a claim: the median of three
    ((kind, table),) = override.items()
    ((key, values),) = table.items()
    good = _metrics()[key[0]]["methods"][key[1]]["ratio_to_adam" if kind == "ratio" else "final_loss"]
    one_bad = {key: [values[0], good[1], good[2]]}
    assert all(kvf.claims(_metrics(**{kind: one_bad})).values())


def test_quick_claims_ask_less():
    """--quick (100 steps on 48 examples): fewer iterations than Adam, not half; no claim that LM and
    HF reach Adam's loss."""
    slower = _metrics(ratio={("mlp", "K-FAC"): [1.5] * 3, ("cnn", "Hessian-free"): [0.0] * 3})
    assert all(kvf.claims(slower, quick=True).values())
    failed = [c for c, held in kvf.claims(slower).items() if not held]
    assert len(failed) == 2 and "K-FAC" in failed[0] and "Hessian-free reaches" in failed[1]
    assert not all(kvf.claims(_metrics(ratio={("mlp", "K-FAC"): [1.0] * 3}), quick=True).values())


def test_claims_fail_without_problems():
    assert not all(kvf.claims({}).values())


BAD_FLAGS = [
    (["--n", "4"], "--n must be"),
    (["--steps", "0"], "--steps must be"),
    (["--second-order-steps", "0"], "--second-order-steps must be"),
    (["--seeds", "2"], "--seeds must be"),
    (["--problems", "mlp,rnn"], "--problems must be"),
    (["--problems", ","], "--problems must be"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_options_are_refused_before_anything_runs(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        kvf.main(["--out", str(tmp_path), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
