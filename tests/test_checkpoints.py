"""Checkpoints that survive rot (srprior.trainers.checkpoints): real states from a real training run, real
ray.train.Checkpoint objects over a local folder laid out as Ray Train lays it (checkpoint_<timestamp>/state.pt)."""

from __future__ import annotations

import pytest
import torch

from srprior.plan import make_plan
from srprior.schema import RunContext
from srprior.trainers import checkpoints
from srprior.trainers.worker import LocalSession, train_trial


@pytest.fixture(scope="module")
def states():
    """The states a 6-step trial checkpoints at steps 2, 4 and 6."""
    trial = make_plan({"table": "smoke", "seeds": 1, "set": ["steps=6", "val_every=2", "di=false"]}).trials[0].trial
    session = LocalSession()
    saved = []
    session.report = lambda metrics, state: state is not None and saved.append(state)  # keep every checkpoint
    train_trial(trial, RunContext(ckpt_every=2, log_every=1, figures=False), session)
    assert [s["step"] for s in saved] == [2, 4, 6]
    return saved


def _folder(tmp_path, states) -> list:
    import ray.train

    out = []
    for i, state in enumerate(states):
        d = tmp_path / "train-x" / f"checkpoint_2026-12-02_10-00-0{i}.000000"
        d.mkdir(parents=True)
        checkpoints.write(state, d)
        out.append(ray.train.Checkpoint(str(d)))
    return out


def test_the_newest_intact_checkpoint_wins_and_the_skipped_ones_are_named(tmp_path, states):
    cps = _folder(tmp_path, states)
    cpu = torch.device("cpu")
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state["step"] == 6 and note is None
    newest = tmp_path / "train-x" / cps[-1].path.rsplit("/", 1)[1] / checkpoints.STATE_FILE
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated: a disk that filled while it was written
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state["step"] == 4
    assert note.startswith(f"unreadable: {cps[-1].path.rsplit('/', 1)[1]} (CorruptCheckpoint: SHA-256 ")
    assert note.endswith(f"resumed from {cps[1].path.rsplit('/', 1)[1]} (step 4)")
    middle = tmp_path / "train-x" / cps[1].path.rsplit("/", 1)[1] / checkpoints.STATE_FILE
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the checksum sees it
    middle.write_bytes(bytes(data))
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state["step"] == 2 and note.count("CorruptCheckpoint") == 2
    (tmp_path / "train-x" / cps[0].path.rsplit("/", 1)[1] / checkpoints.STATE_FILE).unlink()  # rotated away
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state is None and "FileNotFoundError" in note and note.endswith("training from step 0")


def test_a_checkpoint_without_checksum_still_loads_and_a_bad_one_is_refused(tmp_path, states):
    (cp,) = _folder(tmp_path, states[:1])
    folder = tmp_path / "train-x" / cp.path.rsplit("/", 1)[1]
    assert (folder / checkpoints.CHECKSUM_FILE).read_text().endswith(f"  {checkpoints.STATE_FILE}\n")
    (folder / checkpoints.CHECKSUM_FILE).unlink()  # written before checksums existed
    assert checkpoints.read(folder, torch.device("cpu"))["step"] == 2
    (folder / checkpoints.CHECKSUM_FILE).write_text("0" * 64 + "  state.pt\n")
    with pytest.raises(checkpoints.CorruptCheckpoint, match="does not match the stored 000000000000"):
        checkpoints.read(folder, torch.device("cpu"))
