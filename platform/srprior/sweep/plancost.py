"""The plan's cost per preset — training beside evaluation (validation, final evaluations, DI) on one H100 — the
images the evaluation is priced on, each trial's precision and why, and the plan as one JSON object for scripts
(`srprior sweep ... --plan --json`). The numbers are srprior.cost's (FLOPs counted / efficiency data)."""

from __future__ import annotations

from typing import Any

from srprior import cost
from srprior.plan import SweepPlan


def _h(seconds: float) -> float:
    return round(seconds / 3600, 3)


def preset_hours(plan: SweepPlan, to_train: list) -> dict[str, dict[str, Any]]:
    """Per preset: trials and H100-hours of training and of evaluation (validation + final evaluations + DI)."""
    rows = cost.preset_costs(to_train, "gpu", plan.context.ckpt_every)
    return {preset: {"trials": r["trials"], "training_h100_hours": _h(r["training_s"]),
                     "evaluation_h100_hours": _h(r["validation_s"] + r["final_s"]),
                     "validation_h100_hours": _h(r["validation_s"]), "final_evaluation_h100_hours": _h(r["final_s"])}
            for preset, r in rows.items()}


def evaluation_lines(plan: SweepPlan, to_train: list) -> list[str]:
    """The per-preset block of `--plan`: training and evaluation H100-hours side by side, validation's share."""
    from srprior.evalcost import trial_eval_flops
    from srprior.trainers.evaluation import validation_crop

    out = ["  H100-hours per preset (one H100; evaluation in fp32 at the preset's fp32 plain-step TFLOP/s, assumed):"]
    for preset, r in preset_hours(plan, to_train).items():
        share = r["validation_h100_hours"] / r["training_h100_hours"] if r["training_h100_hours"] else 0.0
        out.append(f"    {preset}: {r['trials']} trials · training {r['training_h100_hours']:.2f} h · evaluation "
                   f"{r['evaluation_h100_hours']:.2f} h (validation {r['validation_h100_hours']:.2f} h = {share:.1%} "
                   f"of training; final evaluations + DI {r['final_evaluation_h100_hours']:.2f} h)")
    flops = trial_eval_flops(to_train[0].trial.config, plan.context.ckpt_every)
    data = to_train[0].trial.config.data
    val, *rest = flops.images
    side = validation_crop(data)
    crop = f"LR centre crops of {side}² ({'val_crop' if side == data.val_crop else 'eval_crop'})" if side else \
        "whole images"
    final = f"LR centre crops of {data.eval_crop}² (eval_crop)" if data.eval_crop else "whole images"
    out.append(f"    evaluation images (first trial): validation {len(val.shapes)} {val.name} images as {crop}, "
               f"{flops.validations} times ({val.source}); final evaluation {flops.passes} passes (best and last "
               f"weights; 1 when they coincide), {final}:")
    out += [f"      {s.name}: {len(s.shapes)} images ({s.source})" for s in rest[:-1]]
    out.append(f"      DI: {len(rest[-1].shapes)} {rest[-1].name} images × {2 + 50} LAM forwards (50 with the input "
               f"gradient) ({rest[-1].source})" if data.di else "      DI: off")
    return out


def precision_lines(plan: SweepPlan, to_train: list) -> list[str]:
    """Why each kind of step trains in bf16 or fp32 (budgets whose precision is chosen by measurement)."""
    from srprior.trainers.budgets import get_budget

    if get_budget(plan.budget).precision != "measured":
        return []
    if any(item.partition("=")[0].strip() == "bf16" for item in plan.options.set):
        return [f"  precision: bf16={plan.science['bf16']} (--set), not chosen by measurement"]
    kinds = sorted({(t.trial.config.model.preset, t.trial.config.prior.lambda_ap > 0) for t in to_train}
                   if plan.mode == "table" else {(plan.science["preset"], prior) for prior in (False, True)})
    if not kinds:
        return []
    return ["  precision by measurement on a GPU (efficiency.json; bf16 only where measured faster):"] + \
        [f"    {preset} {cost.MODES[prior]}: {cost.measured_precision(preset, prior)[1]}" for preset, prior in kinds]


def plan_document(plan: SweepPlan, to_train: list) -> dict[str, Any]:
    """The plan as one JSON-able object: per preset training and evaluation H100-hours, the trials, and the
    designs' all-in H100-hours (training + evaluation): a table plan's fixed and sequential designs over all its
    trials (srprior.designs), a search's trials to train as its fixed design."""
    from srprior.designs import design_cost

    designs = design_cost(plan).json() if plan.mode == "table" else None
    presets = preset_hours(plan, to_train)
    ckpt = plan.context.ckpt_every
    configs = [t.trial.config for t in to_train]
    training = sum(c.schedule.steps * cost.step_seconds(c, "gpu") for c in configs)
    all_in = sum(cost.trial_seconds_all_in(c, "gpu", ckpt) for c in configs)
    return {"mode": plan.mode, "names": list(plan.names), "budget": plan.budget, "trials": len(plan.trials),
            "to_train": len(to_train), "presets": presets, "training_h100_hours": _h(training),
            "evaluation_h100_hours": _h(all_in - training),
            "designs": {"fixed": {"trials": len(to_train), "h100_hours": _h(all_in)}, **(designs or {})}}
