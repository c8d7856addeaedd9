"""Checkpoints that survive rot (srprior.trainers.checkpoints): real states from a real training run, real
ray.train.Checkpoint objects over a local folder laid out as Ray Train lays it (checkpoint_<timestamp>/state.pt)."""

from __future__ import annotations

import pytest
import torch

from srprior.plan import make_plan
from srprior.schema import RunContext, Trial
from srprior.trainers import checkpoints
from helpers import train_trial
from srprior.trainers.worker import LocalSession
from srprior.options import SweepOptions


@pytest.fixture(scope="module")
def states():
    """The states a 6-step trial checkpoints at steps 2, 4 and 6."""
    trial = make_plan(SweepOptions.of({"table": "smoke", "seeds": 1, "set": ["steps=6", "val_every=2", "di=false"]})).trials[0].trial
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
    newest = tmp_path / "train-x" / cps[-1].path.rsplit("/", 1)[1] / checkpoints.CHECKPOINT_FILE
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated: a disk that filled while it was written
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state["step"] == 4
    assert note.startswith(f"unreadable: {cps[-1].path.rsplit('/', 1)[1]} (CorruptCheckpoint: SHA-256 ")
    assert note.endswith(f"resumed from {cps[1].path.rsplit('/', 1)[1]} (step 4)")
    middle = tmp_path / "train-x" / cps[1].path.rsplit("/", 1)[1] / checkpoints.CHECKPOINT_FILE
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the checksum sees it
    middle.write_bytes(bytes(data))
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state["step"] == 2 and note.count("CorruptCheckpoint") == 2
    (tmp_path / "train-x" / cps[0].path.rsplit("/", 1)[1] / checkpoints.CHECKPOINT_FILE).unlink()  # rotated away
    state, note = checkpoints.load_intact(cps[-1], cpu)
    assert state is None and "FileNotFoundError" in note and note.endswith("training from step 0")


def test_a_checkpoint_without_checksum_still_loads_and_a_bad_one_is_refused(tmp_path, states):
    (cp,) = _folder(tmp_path, states[:1])
    folder = tmp_path / "train-x" / cp.path.rsplit("/", 1)[1]
    assert (folder / checkpoints.CHECKSUM_FILE).read_text().endswith(f"  {checkpoints.CHECKPOINT_FILE}\n")
    (folder / checkpoints.CHECKSUM_FILE).unlink()  # written before checksums existed
    assert checkpoints.read(folder, torch.device("cpu"))["step"] == 2
    (folder / checkpoints.CHECKSUM_FILE).write_text("0" * 64 + "  state.pt\n")
    with pytest.raises(checkpoints.CorruptCheckpoint, match="does not match the stored 000000000000"):
        checkpoints.read(folder, torch.device("cpu"))


def test_member_states_read_both_layouts_and_find_checkpoints_takes_each_runs_newest(tmp_path, states):
    """A single trial's state is its one member (top-level keys); a fused group's members are under "members";
    member_weights gives the best-validation weights, or the last step's; find_checkpoints the newest per run."""
    from srprior.trainers import loop

    single = states[-1]
    (member,) = checkpoints.member_states(single)
    assert member["trial"] == single["trial"] and member["step"] == 6
    assert checkpoints.member_weights(member) is single["best"]["model"] is not None
    assert checkpoints.member_weights(member, "last") is single["model"]
    trial = make_plan(SweepOptions.of({"table": "smoke", "seeds": 1, "set": ["steps=2", "val_every=2", "di=false"]})).trials[0].trial
    group = [trial, Trial(trial.config, 1)]
    session = LocalSession()
    loop.train(group, [RunContext(ckpt_every=2, log_every=1, figures=False)] * 2, session)
    members = checkpoints.member_states(session.checkpoint)
    assert [m["trial"] for m in members] == [t.to_dict() for t in group] and "model" not in session.checkpoint
    assert not all(torch.equal(a, b) for a, b in zip(*(checkpoints.member_weights(m, "last").values()
                                                        for m in members)))  # two seeds, two models
    for run, n in (("train-a", 9), ("train-a", 10), ("train-b", 1)):
        folder = tmp_path / "ray" / "sweep" / run / f"checkpoint_{n:06d}"
        folder.mkdir(parents=True)
        checkpoints.write(single, folder)
    assert [p.relative_to(tmp_path / "ray" / "sweep").as_posix() for p in checkpoints.find_checkpoints(tmp_path)] \
        == ["train-a/checkpoint_000010/state.pt", "train-b/checkpoint_000001/state.pt"]


def test_a_snapshot_a_full_disk_cut_is_moved_aside_and_the_folder_newest_checkpoint_resumes(tmp_path, states):
    """Ray Train's snapshot left empty by a full disk failed every start of the run ("Expecting value"), --resume
    too: it is moved aside, and the run resumes from the newest checkpoint folder Train no longer lists."""
    import types

    import pyarrow.fs

    cps = _folder(tmp_path, states)
    folder = tmp_path / "train-x"
    assert checkpoints.drop_unreadable_snapshot(folder) is None  # none: nothing to do
    (folder / checkpoints.SNAPSHOT).write_text('{"checkpoint_results": []}')
    assert checkpoints.drop_unreadable_snapshot(folder) is None  # readable: kept
    (folder / checkpoints.SNAPSHOT).write_text("")
    assert checkpoints.drop_unreadable_snapshot(folder).startswith(f"{folder / checkpoints.SNAPSHOT} unreadable (")
    assert not (folder / checkpoints.SNAPSHOT).exists()
    assert (folder / f"{checkpoints.SNAPSHOT}.unreadable").read_text() == ""
    storage = types.SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(), experiment_fs_path=str(folder))
    newest = checkpoints.newest_in(storage)  # the two attributes of Ray Train's StorageContext it reads
    assert newest.path == cps[-1].path
    assert checkpoints.load_intact(newest, torch.device("cpu"))[0]["step"] == 6
    storage.experiment_fs_path = str(tmp_path / "train-new")  # a run that never checkpointed
    assert checkpoints.newest_in(storage) is None
