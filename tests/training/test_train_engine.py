"""The training engine: resumption gives the unbroken run's losses, 2 gloo processes equal 1 process accumulating 2,
validation keeps the best checkpoints, the schedule is GIM's, presets and the CLI refuse bad input."""

from __future__ import annotations

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _train_synthetic import PlaneDataset, ShardedSampler, collate, write_zeb_planes  # noqa: E402

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _settings(**overrides: Any) -> dict[str, Any]:
    from gim_plugins.training.presets import resolve_preset

    base = {"trainer": {"extractor_weights": None, "max_keypoints": 48, "checkpointed": False},
            "canonical_batch": None, "checkpoint_every": 1, "optimizer.lr": 1e-3,
            "validation": {"max_pairs": 2, "conf": {"max_keypoints": 48}}}
    return resolve_preset("gim_lightglue", {**base, **overrides})


def _trainer(settings: dict[str, Any]) -> Any:
    from gim_plugins.training.trainers import trainer_class

    torch.manual_seed(0)
    trainer = trainer_class("gim_lightglue")(settings["trainer"])
    for module in trainer.extractor.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    return trainer


def _data() -> Any:
    from gim_plugins.training.engine import TrainData

    return TrainData(PlaneDataset(3, (48, 48), ("walk", "megadepth", "colmap"), max_labels=48), ShardedSampler(3),
                     collate)


def _losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle) if r["kind"] == "train"]


def test_feature_resume_continues_the_identical_loss_sequence(tmp_path: Path) -> None:
    from gim_plugins.training.engine import fit

    settings = _settings()
    fit(_trainer(settings), _data(), settings, tmp_path / "whole", preset="gim_lightglue", max_steps=5,
        progress=False)
    fit(_trainer(settings), _data(), settings, tmp_path / "split", preset="gim_lightglue", max_steps=2,
        progress=False)
    # a different initialisation proves the resumed run takes everything from last.ckpt
    torch.manual_seed(123)
    fit(_trainer(settings), _data(), settings, tmp_path / "split", preset="gim_lightglue", max_steps=5,
        progress=False)
    whole, split = _losses(tmp_path / "whole"), _losses(tmp_path / "split")
    assert [s for s, _ in whole] == [1, 2, 3, 4, 5]  # 3 pairs per epoch: the resume crosses an epoch boundary
    assert split == whole


@pytest.mark.slow
def test_feature_killed_run_resumes_identically(tmp_path: Path) -> None:
    """A run killed with SIGKILL mid-training continues from last.ckpt with the unbroken run's losses."""
    script = HERE / "_train_ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([PYTHON, str(script), str(tmp_path / "whole"), str(tmp_path / "w.pt"), "6", "1"], check=True,
                   env=env)
    run = tmp_path / "killed"
    process = subprocess.Popen([PYTHON, str(script), str(run), str(tmp_path / "k.pt"), "6", "1"], env=env)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if (run / "metrics.csv").is_file() and len(_losses(run)) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert (run / "last.ckpt").is_file()
    subprocess.run([PYTHON, str(script), str(run), str(tmp_path / "k.pt"), "6", "1"], check=True, env=env)
    assert _losses(run) == _losses(tmp_path / "whole")
    a, b = torch.load(tmp_path / "w.pt"), torch.load(tmp_path / "k.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_feature_two_gloo_processes_equal_one_process_accumulating_two(tmp_path: Path) -> None:
    script = HERE / "_train_ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    single = subprocess.run([PYTHON, str(script), str(tmp_path / "one"), str(tmp_path / "one.pt"), "3"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(_free_port()), str(script), str(tmp_path / "two"), str(tmp_path / "two.pt"), "3"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    initial = _trainer_params()
    assert one.keys() == two.keys() == initial.keys()
    assert any(not torch.equal(one[k], initial[k]) for k in one)  # training did move the weights
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-5, atol=1e-6)
    assert [loss for _, loss in _losses(tmp_path / "one")] == pytest.approx(
        [loss for _, loss in _losses(tmp_path / "two")], rel=1e-6)


def _trainer_params() -> dict[str, torch.Tensor]:
    from gim_plugins.training.presets import resolve_preset
    from gim_plugins.training.trainers import trainer_class

    settings = resolve_preset("gim_lightglue", {"trainer": {"extractor_weights": None, "max_keypoints": 48,
                                                            "checkpointed": False}})
    torch.manual_seed(0)
    trainer = trainer_class("gim_lightglue")(settings["trainer"])
    return {n: p.detach() for n, p in trainer.named_parameters() if p.requires_grad}


def test_feature_validation_keeps_best_checkpoints_that_load(tmp_path: Path) -> None:
    from gim_plugins.matching import load_matcher
    from gim_plugins.training.engine import fit
    from gim_plugins.training.validation import Validator

    settings = _settings(**{"validation": {"max_pairs": 2, "conf": {"max_keypoints": 48}, "top_k": 2},
                            "checkpoint_every": 100})
    trainer = _trainer(settings)
    validator = Validator(write_zeb_planes(tmp_path / "zeb"), "gim_lightglue", {"max_keypoints": 48})
    run = tmp_path / "run"
    fit(trainer, _data(), settings, run, preset="gim_lightglue", max_steps=3, validator=validator, val_every=1,
        progress=False)
    with open(run / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "val"]
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(0.0 <= float(r["auc5"]) <= float(r["auc10"]) <= float(r["auc20"]) <= 1.0 for r in rows)
    for r in rows:  # one subset: its own AUCs are the mean's
        scalars = dict(item.split("=") for item in r["scalars"].split(";"))
        assert scalars.pop("pairs") == "2.0"
        assert {k.split("/")[0] for k in scalars} == {"auc5", "auc10", "auc20"} and len(scalars) == 3
        for key, value in scalars.items():
            assert float(value) == pytest.approx(float(r[key.split("/")[0]]))
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(kept) == 2 and all(name.startswith("step=") for name in kept)
    assert (run / "best.ckpt").is_file() and (run / "last.ckpt").is_file()
    assert any((run / "tensorboard").iterdir())
    matcher = load_matcher("gim_lightglue", weights=str(run / "best.ckpt"), max_keypoints=48)
    assert matcher.weights_id.endswith("best.ckpt")


def test_feature_best_checkpoints_rank_by_auc(tmp_path: Path) -> None:
    from gim_plugins.training.checkpoints import BestCheckpoints

    source = tmp_path / "last.ckpt"
    best = BestCheckpoints(tmp_path, 2, [])
    for step, auc in enumerate([0.1, 0.3, 0.2, 0.05], start=1):
        source.write_text(f"step {step}")
        best.rank(auc, step)
        best.commit(source)
    assert [e[1] for e in best.entries] == [2, 3]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step=00000002-auc5=0.300000.ckpt", "step=00000003-auc5=0.200000.ckpt"]
    assert (tmp_path / "best.ckpt").read_text() == "step 2"


def test_exception_resume_refuses_other_settings(tmp_path: Path) -> None:
    from gim_plugins.training.engine import RunSettingsError, fit

    settings = _settings()
    fit(_trainer(settings), _data(), settings, tmp_path, preset="gim_lightglue", max_steps=1, progress=False)
    other = _settings(**{"optimizer.lr": 5e-4})
    with pytest.raises(RunSettingsError, match="other settings"):
        fit(_trainer(other), _data(), other, tmp_path, preset="gim_lightglue", max_steps=2, progress=False)


def test_feature_gim_schedule_values() -> None:
    from gim_plugins.training.optim import accumulation, learning_rate

    schedule = {"kind": "warmup_linear", "warmup_epochs": 1, "warmup_ratio": 0.1, "min_lr": 1e-4, "max_epochs": 10}
    # 100 steps per epoch, lr 1e-3: 1e-4 at step 0, halfway at 50, lr at the end of the warm-up, min_lr at the end
    assert learning_rate(schedule, 1e-3, 0, 0, 100) == pytest.approx(1e-4)
    assert learning_rate(schedule, 1e-3, 50, 0, 100) == pytest.approx(5.5e-4)
    assert learning_rate(schedule, 1e-3, 100, 1, 100) == pytest.approx(1e-3)
    assert learning_rate(schedule, 1e-3, 550, 5, 100) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert learning_rate(schedule, 1e-3, 1000, 9, 100) == pytest.approx(1e-4)
    glue = {"kind": "lightglue", "start_epoch": 30, "exp_div_10": 10}
    assert learning_rate(glue, 1e-4, 0, 29, 10) == pytest.approx(1e-4)
    assert learning_rate(glue, 1e-4, 0, 30, 10) == pytest.approx(1e-4 * 10 ** -0.1)
    assert learning_rate(glue, 1e-4, 0, 39, 10) == pytest.approx(1e-5)
    assert accumulation(64, 1, 40) == 2 and accumulation(120, 2, 8) == 8 and accumulation(None, 1, 4) == 1


def test_feature_presets_carry_gims_recipes() -> None:
    from gim_plugins.training.presets import PRESETS, resolve_preset
    from gim_plugins.training.trainers import TRAINERS

    assert set(PRESETS) == set(TRAINERS)
    loftr = resolve_preset("gim_loftr")
    assert (loftr["optimizer"], loftr["canonical_batch"], loftr["clip_grad_norm"], loftr["seed"]) == (
        {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1, "backbone_lr_scale": 0.1}, 64, 0.5, 3407)
    assert resolve_preset("gim_roma")["optimizer"]["weight_decay"] == 0.01
    assert resolve_preset("gim_dkm")["optimizer"]["backbone_lr_scale"] == 0.05
    assert resolve_preset("gim_lightglue")["schedule"]["kind"] == "lightglue"
    assert resolve_preset("aliked_lightglue")["init"] == "aliked_lightglue"
    assert math.isclose(resolve_preset("gim_dkm", {"optimizer.lr": 2e-4})["optimizer"]["lr"], 2e-4)


def test_exception_unknown_setting_names_the_known_ones() -> None:
    from gim_plugins.training.presets import resolve_preset

    with pytest.raises(KeyError, match="known in optimizer: backbone_lr_scale, lr, name, weight_decay"):
        resolve_preset("gim_dkm", {"optimizer.lrr": 1})
    with pytest.raises(KeyError, match="known: "):
        resolve_preset("gim_superglue")


def _gim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "gim_plugins", "train", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_exception_cli_user_errors_are_one_line(tmp_path: Path) -> None:
    bad = _gim("--preset", "gim_dkm", "--out", str(tmp_path / "run"), "--data", str(tmp_path), "--set",
               "optimizer.bogus=1")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "optimizer.bogus" in bad.stderr
    missing = _gim("--preset", "gim_dkm", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "nowhere"),
                   "--set", "trainer.faithful_gp=false", "--val", "none")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr
    assert "nowhere" in missing.stderr
    listed = _gim("--list")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 5 and "gim_loftr:" in listed.stdout
