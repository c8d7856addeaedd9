"""Seeds pair rows by construction: a seed's initial weights and patch stream are the same in every row of a
preset, whatever the prior draws (Scenario 4's random regions come from the trial's own generator, never from
the global RNG that model init uses, nor from the patch sampler's). Through the trainer's own steppers
(trainers/steppers.py: Single, as a trial trains alone, and Fused, as rows of a group train together)."""

from __future__ import annotations

import torch

from srprior.schema import RunContext, Trial, trial_config
from srprior.trainers.evaluation import training_data
from srprior.trainers.steppers import Fused, Single
from srprior.trainers.worker import LocalSession

SEED, STEPS = 3, 3
ROWS = {"baseline": dict(lambda_ap=0.0), "lambda": dict(lambda_ap=1e-4),
        "scenario-4": dict(lambda_ap=1e-4, scenario="random-global")}


def trials() -> dict[str, Trial]:
    return {name: Trial(trial_config(preset="edsr-t-micro", steps=STEPS, batch=2, lr_patch=16, val_images=1,
                                     eval_crop=32, max_eval_images=1, di=False, **row), SEED)
            for name, row in ROWS.items()}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_single_rows_of_one_seed_share_initial_weights_and_batches():
    torch.set_num_threads(1)
    runs = {}
    for name, trial in trials().items():
        train, _ = training_data(trial.config)
        stepper = Single([trial], RunContext(), LocalSession(), train)
        weights, batches, generator = _weights(stepper.net), [], stepper.generator.get_state()
        for _ in range(STEPS):
            lr, hr = stepper.batch()
            batches.append((lr.clone(), hr.clone()))
            stepper.step(1, lr, hr)  # the prior runs (and Scenario 4 draws) between the batches
        runs[name] = (weights, batches, not torch.equal(generator, stepper.generator.get_state()),
                      torch.get_rng_state())
    base_w, base_b, base_drew, base_rng = runs["baseline"]
    assert not base_drew and runs["scenario-4"][2]  # Scenario 4 did draw, from the trial's generator only
    for name in ("lambda", "scenario-4"):
        w, b, _, rng = runs[name]
        assert w.keys() == base_w.keys() and all(torch.equal(w[k], base_w[k]) for k in w)
        assert all(torch.equal(x, y) for pair, base in zip(b, base_b) for x, y in zip(pair, base))
        assert torch.equal(rng, base_rng)  # the prior took nothing from the global RNG either


def test_fused_rows_of_one_seed_get_what_they_get_alone():
    """A fused group (rows sharing an extractor: baseline and λ_AP > 0) hands each member the initial weights and
    batches the seed gets alone."""
    torch.set_num_threads(1)
    alone = trials()["baseline"]
    group = [alone, trials()["lambda"]]
    train, _ = training_data(alone.config)
    single = Single([alone], RunContext(), LocalSession(), train)
    fused = Fused(group, RunContext(), LocalSession(), train)
    for i in range(len(group)):
        weights = _weights(fused.model(i))
        assert all(torch.equal(weights[k], v) for k, v in _weights(single.net).items())
    for _ in range(STEPS):
        lr, hr = fused.batch()  # (K, B, 3, h, w): one batch per member
        ref_lr, ref_hr = single.batch()
        assert all(torch.equal(lr[i], ref_lr) and torch.equal(hr[i], ref_hr) for i in range(len(group)))
        fused.step(1, lr, hr)
