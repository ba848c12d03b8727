"""The five trainers: one step on every kind of row, gradients where they belong, checkpoints that the package's
matchers load strictly, and (slow tier, except ALIKED) overfitting a few labelled pairs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _train_synthetic import PlaneDataset, ShardedSampler, collate, plane_batch

SIZES = {"gim_loftr": (64, 64), "gim_dkm": (64, 64), "gim_roma": (56, 56), "gim_lightglue": (48, 48),
         "aliked_lightglue": (48, 48)}
CONFS: dict[str, dict[str, Any]] = {
    "gim_loftr": {},
    "gim_dkm": {},
    "gim_roma": {"dinov2_weights": None},
    "gim_lightglue": {"extractor_weights": None, "max_keypoints": 64},
    "aliked_lightglue": {"max_keypoints": 64},
}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machines are shared: more threads are slower
    yield
    torch.set_num_threads(previous)


def _aliked_available() -> bool:
    from gim_plugins.weights import resolve_weights

    try:
        resolve_weights("aliked_n16")
        resolve_weights("aliked_lightglue")
    except FileNotFoundError:
        return False
    return True


def _build(name: str, conf: dict[str, Any] | None = None) -> Any:
    from gim_plugins.training.trainers import trainer_class

    if name == "aliked_lightglue" and not _aliked_available():
        pytest.skip("aliked_n16 weights are not in the cache (make weights)")
    torch.manual_seed(0)
    trainer = trainer_class(name)({**CONFS[name], **(conf or {})})
    if name == "gim_lightglue":  # a random SuperPoint with PyTorch's default init describes every point alike
        for module in trainer.extractor.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
    if name == "gim_loftr":  # random ResNet features are ~100 long: the dual softmax saturates; tame them
        with torch.no_grad():
            trainer.net.backbone.layer3_outconv.weight.mul_(0.05)
    return trainer.train()


def _validation_weights(name: str, trainer: Any, path: Path) -> Any:
    if name == "gim_roma":
        return {"gim_roma_100h": str(path), "dinov2_vitl14": trainer.validation_weights()["dinov2_vitl14"]}
    if name == "aliked_lightglue":
        return str(path)  # aliked_n16 comes from the weight cache, as for users
    return str(path)


def _step_and_checkpoint(name: str, tmp_path: Path) -> None:
    from gim_plugins.matching import load_matcher
    from gim_plugins.training.checkpoints import TrainState, save_checkpoint
    from gim_plugins.training.optim import build_optimizer

    trainer = _build(name)
    kinds = ("walk", "megadepth", "colmap", "zeb")
    batch = plane_batch(SIZES[name], kinds, max_labels=64)
    loss, scalars = trainer(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 0
    assert scalars["skipped_rows"] == 1.0  # the ZEB row has neither labels nor depth
    loss.backward()
    trainable = [(n, p) for n, p in trainer.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"{len(missing)} trainable parameters got no gradient, e.g. {missing[:3]}"
    frozen = [n for n, p in trainer.named_parameters() if not p.requires_grad]
    if name.endswith("lightglue"):
        assert frozen and all(n.startswith("extractor.") for n in frozen)
    optimizer = build_optimizer(trainer.parameter_groups(), {"name": "adam", "lr": 1e-4, "weight_decay": 0.0})
    optimizer.step()
    path = save_checkpoint(tmp_path / "last.ckpt", state_dict=trainer.matcher_state_dict(), matcher=name,
                           matcher_conf=trainer.matcher_conf(), preset=name, settings={}, optimizer=optimizer,
                           state=TrainState(1, 0, 1), world_size=1)
    weights = _validation_weights(name, trainer, path)
    recorded = trainer.matcher_conf() if isinstance(weights, str) else {}  # applied from the checkpoint itself
    matcher = load_matcher(name, weights=weights, **({} if recorded else trainer.matcher_conf()))
    assert all(matcher.conf[k] == v for k, v in trainer.matcher_conf().items()), (matcher.conf, recorded)
    ours = trainer.matcher_state_dict()
    theirs = matcher.state_dict()
    key, value = next((k, v) for k, v in ours.items() if v.dtype.is_floating_point and v.numel() > 1)
    stripped = key.split(".", 1)[1] if key.startswith(("model.", "superpoint.")) else key
    assert any(torch.equal(value, t) for k, t in theirs.items() if k.endswith(stripped)), key


@pytest.mark.parametrize("name", ["gim_loftr", "gim_dkm", "gim_lightglue", "aliked_lightglue"])
def test_feature_step_on_every_row_kind_and_strict_checkpoint(name: str, tmp_path: Path) -> None:
    _step_and_checkpoint(name, tmp_path)


@pytest.mark.slow
def test_feature_roma_step_and_strict_checkpoint(tmp_path: Path) -> None:
    _step_and_checkpoint("gim_roma", tmp_path)


def test_feature_parameter_groups_put_the_backbone_first() -> None:
    from gim_plugins.training.trainers.loftr import LoFTRTrainer

    trainer = LoFTRTrainer()
    backbone, rest = trainer.parameter_groups()
    names = {id(p): n for n, p in trainer.named_parameters()}
    assert all("encode" in names[id(p)] for p in backbone) and backbone
    assert not any("encode" in names[id(p)] for p in rest) and rest
    assert trainer.matcher_conf() == {"temp_bug_fix": True}


def test_feature_checkpoint_options_apply_unless_given(tmp_path: Path) -> None:
    """gim_loftr trained here needs temp_bug_fix=True: load_matcher takes it from the checkpoint, an explicit
    option still wins, and a plain state-dict file adds nothing."""
    from gim_plugins.matching import load_matcher, recorded_matcher_conf
    from gim_plugins.training.trainers.loftr import LoFTRTrainer

    state = LoFTRTrainer().matcher_state_dict()
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": state, "gim_plugins": {"matcher": "gim_loftr", "matcher_conf": {"temp_bug_fix": True}}},
               ckpt)
    assert recorded_matcher_conf("gim_loftr", str(ckpt)) == {"temp_bug_fix": True}
    assert recorded_matcher_conf("gim_dkm", str(ckpt)) == {}  # another matcher's checkpoint: nothing applies
    assert load_matcher("gim_loftr", weights=str(ckpt)).conf.temp_bug_fix is True
    assert load_matcher("gim_loftr", weights=str(ckpt), temp_bug_fix=False).conf.temp_bug_fix is False
    plain = tmp_path / "plain.ckpt"
    torch.save(state, plain)
    assert recorded_matcher_conf("gim_loftr", str(plain)) == {}
    assert load_matcher("gim_loftr", weights=str(plain)).conf.temp_bug_fix is False


def test_exception_unknown_trainer_option() -> None:
    from gim_plugins.conf import ConfError
    from gim_plugins.training.trainers.dense import DKMTrainer

    with pytest.raises(ConfError, match="max_label"):
        DKMTrainer({"max_label": 3})
    with pytest.raises(ValueError, match="label_grid"):
        DKMTrainer({"label_grid": "nope"})


def _overfit(name: str, tmp_path: Path, steps: int, lr: float, kinds: tuple[str, ...] = ("walk",)) -> list[float]:
    from gim_plugins.training.engine import TrainData, fit
    from gim_plugins.training.presets import resolve_preset

    settings = resolve_preset(name, {"trainer": CONFS[name], "canonical_batch": None, "optimizer.lr": lr,
                                     "schedule.max_epochs": 1000, "checkpoint_every": 10**6})
    if settings["schedule"]["kind"] == "warmup_linear":
        settings["schedule"]["warmup_epochs"] = 0
    trainer = _build(name)
    data = TrainData(PlaneDataset(2, SIZES[name], kinds, max_labels=128), ShardedSampler(2), collate)
    fit(trainer, data, settings, tmp_path / "run", preset=name, max_steps=steps, progress=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        return [float(r["loss"]) for r in csv.DictReader(handle) if r["kind"] == "train"]


def _halved(losses: list[float]) -> bool:
    return sum(losses[-2:]) / 2 <= 0.5 * sum(losses[:2]) / 2


def test_feature_aliked_lightglue_overfits_labelled_pairs(tmp_path: Path) -> None:
    losses = _overfit("aliked_lightglue", tmp_path, 12, 1e-4)
    assert _halved(losses), losses


@pytest.mark.slow
@pytest.mark.parametrize(("name", "steps", "lr"), [("gim_lightglue", 30, 1e-4), ("gim_loftr", 30, 1e-4),
                                                  ("gim_dkm", 24, 1e-4), ("gim_roma", 24, 1e-4)])
def test_feature_trainer_overfits_labelled_pairs(name: str, steps: int, lr: float, tmp_path: Path) -> None:
    losses = _overfit(name, tmp_path, steps, lr)
    assert _halved(losses), losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gim_loftr", "gim_dkm", "gim_lightglue"])
def test_feature_trainer_overfits_depth_pairs(name: str, tmp_path: Path) -> None:
    losses = _overfit(name, tmp_path, 30, 1e-4, ("megadepth",))
    assert _halved(losses), losses


def _torchvision_resnet50(path: Path) -> dict[str, torch.Tensor]:
    """A file in the layout of torchvision's ``resnet50-0676ba61.pth`` (all of ResNet-50 plus ``fc``), random
    values."""
    from gim_plugins.models._arch.resnet import ResNet50Trunk

    torch.manual_seed(7)
    trunk = ResNet50Trunk()
    with torch.no_grad():
        for tensor in trunk.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    tensors = {**trunk.state_dict(), "fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
    torch.save(tensors, path)
    return tensors


@pytest.mark.parametrize(("name", "module"), [("gim_loftr", "net.backbone.encode"), ("gim_dkm", "net.encoder.net")])
def test_feature_backbone_starts_from_imagenet_resnet50(name: str, module: str, tmp_path: Path) -> None:
    from gim_plugins.training.trainers import trainer_class

    tensors = _torchvision_resnet50(tmp_path / "resnet50-0676ba61.pth")
    trainer = trainer_class(name)({"backbone_weights": str(tmp_path / "resnet50-0676ba61.pth")})
    backbone = trainer.get_submodule(module).state_dict()
    used = [k for k in tensors if k in backbone]
    assert set(backbone) == set(used)  # every backbone tensor comes from the file
    assert all(torch.equal(backbone[k], tensors[k]) for k in used)
    ignored = set(tensors) - set(used)
    assert ignored == ({"fc.weight", "fc.bias"} | ({k for k in tensors if k.startswith("layer4.")}
                                                    if name == "gim_loftr" else set()))


def test_exception_backbone_file_that_does_not_fit(tmp_path: Path) -> None:
    from gim_plugins.training.trainers import trainer_class

    tensors = _torchvision_resnet50(tmp_path / "r.pth")
    del tensors["layer2.0.conv1.weight"]
    torch.save(tensors, tmp_path / "r.pth")
    with pytest.raises(ValueError, match=r"resnet50-0676ba61\.pth"):
        trainer_class("gim_loftr")({"backbone_weights": str(tmp_path / "r.pth")})
    with pytest.raises(FileNotFoundError):
        trainer_class("gim_dkm")({"backbone_weights": str(tmp_path / "nowhere.pth")})


def test_feature_roma_vgg_keys_map_from_torchvision() -> None:
    from gim_plugins.models._arch.roma import VGG19
    from gim_plugins.training.trainers.dense import RoMaTrainer

    vgg = VGG19()
    stub = RoMaTrainer.__new__(RoMaTrainer)  # the key map needs only the VGG, not DINOv2
    torch.nn.Module.__init__(stub)
    stub.net = torch.nn.Module()
    stub.net.encoder = torch.nn.Module()
    stub.net.encoder.cnn = vgg
    ours = set(vgg.state_dict())
    # torchvision's vgg19_bn: features.0 … features.52 (conv, bn, relu and pools), then classifier.*
    theirs = {f"features.{k}" for k in (key.split(".", 1)[1] for key in ours)}
    theirs |= {"features.40.weight", "features.41.running_mean", "classifier.0.weight"}
    mapped = {stub.backbone_key_map(k) for k in theirs} - {None}
    assert mapped == ours


def test_feature_init_from_gims_lightning_checkpoint(tmp_path: Path) -> None:
    from gim_plugins.training.checkpoints import load_weights_into
    from gim_plugins.training.trainers import trainer_class

    torch.manual_seed(1)
    source = trainer_class("gim_loftr")()
    lightning = {"state_dict": source.matcher_state_dict(), "epoch": 3, "global_step": 7,
                 "pytorch-lightning_version": "1.5.10", "hparams_name": "config"}  # GIM's file layout
    torch.save(lightning, tmp_path / "epoch=3.ckpt")
    torch.manual_seed(2)
    target = trainer_class("gim_loftr")()
    assert not torch.equal(target.net.backbone.encode.conv1.weight, source.net.backbone.encode.conv1.weight)
    load_weights_into(target, str(tmp_path / "epoch=3.ckpt"))
    ours, theirs = target.net.state_dict(), source.net.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    del lightning["state_dict"][next(iter(lightning["state_dict"]))]  # a missing tensor: strict refusal
    torch.save(lightning, tmp_path / "broken.ckpt")
    with pytest.raises(ValueError, match="gim_loftr"):
        load_weights_into(target, str(tmp_path / "broken.ckpt"))
