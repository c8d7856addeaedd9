"""Fused K-member training equals K separate TrainStep trainings (same seeds, batches, generators), freezes a
diverging member without touching the others, and slices members out as ordinary (model, Adam) checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from srprior.archs import build_model
from srprior.data.datasets import PatchSampler
from srprior.data.embedded import default_split
from srprior.method.fused import FusedTrainStep
from srprior.method.prior import prior_config
from srprior.method.step import TrainStep, make_optimizer

K, B, PATCH = 3, 2, 16  # LR 16x16: 9 templates, enough room for local/global SSRs


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core box OpenMP's spinning threads make each step 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batches():
    """20 steps of K member batches from the embedded images, member k from its own sampler (seed k)."""
    pairs = [p for p in default_split(2)[0] if p.name not in SMOOTH]  # the prior needs textured crops to act
    samplers = [PatchSampler(pairs, 2, patch=PATCH, batch=B, seed=k) for k in range(K)]
    steps = [[s.next() for s in samplers] for _ in range(20)]
    return [(torch.stack([lr for lr, _ in st]), torch.stack([hr for _, hr in st])) for st in steps]


def _members(preset: str, dtype: torch.dtype) -> list[torch.nn.Module]:
    models = []
    for seed in range(K):
        torch.manual_seed(seed)
        models.append(build_model(preset, 2).to(dtype))
    return models


def _priors(kind: str, scenario: str = "local", **reading):
    if kind == "plain":
        return [prior_config(lambda_ap=0.0, **reading)] * K
    # a prior member with Sim targets, one with a constant w, and a plain member in the same group
    return [prior_config(lambda_ap=0.5, w="sim", scenario=scenario, n_ssr=2, **reading),
            prior_config(lambda_ap=1.0, w=0.5, scenario=scenario, n_ssr=2, **reading),
            prior_config(lambda_ap=0.0, scenario=scenario, n_ssr=2, **reading)]


def _generators():
    return [torch.Generator().manual_seed(100 + k) for k in range(K)]


def _separate(models, priors):
    return [TrainStep(m, make_optimizer(m), p, 2, generator=g) for m, p, g in zip(models, priors, _generators())]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


SMOOTH = ("moon", "cell")  # embedded training images whose small crops are mostly untextured PoIs
KEEP_GLOBAL = {"selection_area": "global", "invalid_samples": "keep"}  # the non-default extractor readings
CASES = [("edsr-t-micro", "plain", "local", {}), ("edsr-t-micro", "prior", "random-local", {}),
         ("rcan-t-micro", "plain", "local", {}), ("rcan-t-micro", "prior", "global", {}),
         ("rnan-t-micro", "plain", "local", {}), ("edsr-t-micro", "prior", "local", KEEP_GLOBAL),
         pytest.param("rnan-t-micro", "prior", "local", {}, marks=pytest.mark.slow)]


@pytest.mark.parametrize("preset,kind,scenario,reading", CASES)
def test_float64_weights_equal_separate_trainsteps_after_20_steps(batches, preset, kind, scenario, reading):
    models, priors = _members(preset, torch.float64), _priors(kind, scenario, **reading)
    fused = FusedTrainStep([copy.deepcopy(m) for m in models], priors, 2, generators=_generators())
    initial = fused.flat.detach().clone()
    separate = _separate(models, priors)
    for lr, hr in batches:
        lr, hr = lr.double(), hr.double()
        out = fused(lr, hr)
        ref = [s(lr[k], hr[k]) for k, s in enumerate(separate)]
        for name in ("l1", "l_ap", "total", "n_valid"):
            torch.testing.assert_close(getattr(out, name), torch.stack([getattr(r, name) for r in ref]).double(),
                                       rtol=1e-8, atol=1e-12, msg=name)
    if kind == "prior":
        assert out.n_valid[:2].min() >= 1 and out.l_ap[:2].min() > 0  # the prior really acted
    for k, model in enumerate(models):
        for (name, p), q in zip(fused.member_model(k).named_parameters(), model.parameters()):
            assert _rel(p, q) < 1e-8, (k, name)
    assert (fused.flat != initial).float().mean(1).min() > 0.9  # all members trained
    assert fused.failures() == {} and fused.alive.all() and fused.steps.tolist() == [20.0] * K


@pytest.mark.parametrize("preset", ["edsr-t-micro", "rcan-t-micro", "rnan-t-micro"])
def test_float32_gradients_of_one_step_equal_separate(batches, preset):
    """After one Adam step exp_avg = 0.1 * gradient, so comparing first moments compares gradients."""
    models, priors = _members(preset, torch.float32), _priors("prior")
    fused = FusedTrainStep([copy.deepcopy(m) for m in models], priors, 2, generators=_generators())
    separate = _separate(models, priors)
    lr, hr = batches[0]
    fused(lr, hr)
    for k, s in enumerate(separate):
        s(lr[k], hr[k])
        fused_state = fused.member_state(k)[1]["state"]
        for i, p in enumerate(models[k].parameters()):
            g, ref = fused_state[i]["exp_avg"], s.optimizer.state[p]["exp_avg"]
            if ref.norm() == 0:  # RNAN's theta/phi before the zero-initialised W has moved
                assert torch.equal(g, ref), (k, i)
            else:
                assert _rel(g, ref) < 1e-4, (k, i, _rel(g, ref))


def test_non_finite_member_is_frozen_and_others_are_untouched(batches):
    models, priors = _members("edsr-t-micro", torch.float64), _priors("prior")
    runs = {}
    for poison in (False, True):
        fused = FusedTrainStep([copy.deepcopy(m) for m in models], priors, 2, generators=_generators())
        for t, (lr, hr) in enumerate(batches[:6]):
            lr = lr.double()
            if t == 2:
                before = fused.member_state(1)
            if poison and t == 2:
                lr = lr.clone()
                lr[1, 0, 0, 3, 3] = float("nan")
            out = fused(lr, hr.double())
            if poison and t == 2:
                assert out.total[1].isnan() and out.total[[0, 2]].isfinite().all()
        runs[poison] = fused, before
    clean, (poisoned, before) = runs[False][0], runs[True]
    assert poisoned.failures() == {1: (3, "non-finite loss")}  # member 1's third step
    assert poisoned.alive.tolist() == [True, False, True]
    assert torch.equal(poisoned.flat[[0, 2]], clean.flat[[0, 2]])
    assert torch.equal(poisoned.exp_avg_sq[[0, 2]], clean.exp_avg_sq[[0, 2]])
    frozen_model, frozen_opt = poisoned.member_state(1)  # exactly the state before the poisoned step
    assert all(torch.equal(frozen_model[n], t) for n, t in before[0].items())
    assert frozen_opt["state"][0]["step"].item() == 2 and not torch.equal(poisoned.flat[1], clean.flat[1])


def test_checkpoint_slice_round_trip_fused_and_unfused(batches):
    models, priors = _members("rcan-t-micro", torch.float64), _priors("prior", "random-global")
    fused = FusedTrainStep([copy.deepcopy(m) for m in models], priors, 2, generators=_generators())
    separate = _separate(models, priors)
    data = [(lr.double(), hr.double()) for lr, hr in batches[:6]]
    for lr, hr in data[:3]:
        fused(lr, hr)
        for k, s in enumerate(separate):
            s(lr[k], hr[k])
    # fused -> unfused: the slice has the unfused format and values, and an unfused trial continues from it
    model_sd, optim_sd = fused.member_state(0)
    ref_opt = separate[0].optimizer.state_dict()
    assert optim_sd["param_groups"] == ref_opt["param_groups"]
    assert list(model_sd) == list(models[0].state_dict())
    for i, st in ref_opt["state"].items():
        assert set(optim_sd["state"][i]) == set(st) and optim_sd["state"][i]["step"].dtype == st["step"].dtype
        assert optim_sd["state"][i]["step"] == st["step"]
        assert _rel(optim_sd["state"][i]["exp_avg_sq"], st["exp_avg_sq"]) < 1e-10
    torch.manual_seed(7)
    resumed = build_model("rcan-t-micro", 2).double()
    resumed.load_state_dict(model_sd)
    opt = make_optimizer(resumed)
    opt.load_state_dict(optim_sd)
    gen = torch.Generator().manual_seed(5)
    resumed_step = TrainStep(resumed, opt, priors[0], 2, generator=gen)
    # unfused -> fused: member 2 is replaced by the separate trial's state and continues in the group
    fused.load_member_state(2, separate[2].model.state_dict(), separate[2].optimizer.state_dict())
    fused.generators[0].manual_seed(5)
    for lr, hr in data[3:]:
        out = fused(lr, hr)
        ref0, ref2 = resumed_step(lr[0], hr[0]), separate[2](lr[2], hr[2])
        torch.testing.assert_close(out.total[[0, 2]], torch.stack([ref0.total, ref2.total]), rtol=1e-8, atol=0)
    for k, model in ((0, resumed), (2, separate[2].model)):
        for p, q in zip(fused.member_model(k).parameters(), model.parameters()):
            assert _rel(p, q) < 1e-8
    lr = data[0][0][0]
    with torch.no_grad():
        torch.testing.assert_close(fused.member_model(2)(lr), separate[2].model(lr), rtol=1e-8, atol=1e-10)


def test_rejects_mixed_extractors_batchnorm_and_wrong_shapes():
    models = _members("edsr-t-micro", torch.float32)
    with pytest.raises(ValueError, match="extractor"):
        FusedTrainStep(models, [prior_config(scenario="local")] * 2 + [prior_config(scenario="global")], 2)
    with pytest.raises(ValueError, match="BatchNorm"):
        FusedTrainStep([build_model("edsr-t-bn", 2)], [prior_config()], 2)
    fused = FusedTrainStep(models, _priors("plain"), 2)
    with pytest.raises(ValueError, match="expected LR"):
        fused(torch.rand(2, B, 3, 8, 8), torch.rand(2, B, 3, 16, 16))
    with pytest.raises(ValueError, match="optimizer settings"):
        fused.load_member_state(0, models[0].state_dict(), make_optimizer(models[0], learning_rate=2e-4).state_dict())


def test_graph_warmup_restore_leaves_the_trajectory_unchanged(batches):
    """CUDA-graph capture runs three eager warm-up steps and restores every state tensor in place; restoring must
    make the next step identical to one from the untouched state, failure flags included (checked on CPU)."""
    models, priors = _members("edsr-t-micro", torch.float32), _priors("prior")
    fused, ref = (FusedTrainStep([copy.deepcopy(m) for m in models], priors, 2) for _ in range(2))
    lr, hr = batches[0]
    bad = lr.clone()
    bad[2] = float("nan")
    for fresh in (True, False):  # from the initial state, then from a trained one
        saved = [t.detach().clone() for t in fused._state()]
        for _ in range(3):
            fused(bad, hr)
        assert not fused.alive[2]
        fused._restore(saved)
        out, ref_out = fused(lr, hr), ref(lr, hr)
        assert torch.equal(out.total, ref_out.total), fresh
        assert all(torch.equal(a, b) for a, b in zip(fused._state(), ref._state())), fresh
    assert fused.failures() == {}
    with pytest.raises(ValueError, match="generators=None"):
        FusedTrainStep(models, priors, 2, generators=_generators(), cuda_graph=True)
