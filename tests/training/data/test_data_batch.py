"""The batch format: strict keys, shapes and dtypes; collate; label padding; errors on bad input."""

from __future__ import annotations

import pytest
import torch

from gim_plugins.training.data.batch import META_KEYS, TENSOR_SPEC, check_batch, check_sample, collate, to_device


def _sample(h: int = 16, w: int = 24, labels: int = 5, valid: int = 3) -> dict:
    sizes = {"H": h, "W": w, "L": labels}
    sample = {key: torch.zeros([sizes.get(s, s) for s in shape[1:]], dtype=getattr(torch, dtype))
              for key, (shape, dtype) in TENSOR_SPEC.items()}
    sample["labels"][:valid] = torch.rand(valid, 4) + 1
    sample["num_labels"] = torch.tensor(valid)
    sample.update(dataset="walk", scene="v", pair=("1", "2"))
    return sample


def test_smoke_collate_and_check():
    batch = collate([_sample(), None, _sample(valid=5)])
    assert check_batch(batch) == {"B": 2, "H": 16, "W": 24, "L": 5}
    assert batch["labels"].shape == (2, 5, 4) and batch["num_labels"].tolist() == [3, 5]
    assert batch["dataset"] == ["walk", "walk"] and batch["pair"] == [("1", "2"), ("1", "2")]
    assert set(batch) == set(TENSOR_SPEC) | set(META_KEYS)
    moved = to_device(batch, "cpu")
    assert moved["scene"] == ["v", "v"] and torch.equal(moved["labels"], batch["labels"])


def test_exception_bad_samples():
    sample = _sample()
    del sample["H1"]
    with pytest.raises(ValueError, match="missing \\['H1'\\]"):
        check_sample(sample)
    sample = _sample()
    sample["extra"] = 1
    with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
        check_sample(sample)
    sample = _sample()
    sample["mask0"] = sample["mask0"].float()
    with pytest.raises(TypeError, match="mask0: expected dtype bool"):
        check_sample(sample)
    sample = _sample()
    sample["depth1"] = torch.zeros(16, 25)
    with pytest.raises(ValueError, match="dimension W is 25"):
        check_sample(sample)
    sample = _sample()
    sample["labels"][4] = 1.0
    with pytest.raises(ValueError, match="zero after num_labels"):
        check_sample(sample)
    sample = _sample()
    sample["num_labels"] = torch.tensor(9)
    with pytest.raises(ValueError, match="num_labels must lie in"):
        check_sample(sample)


def test_exception_collate():
    with pytest.raises(ValueError, match="every item of the batch was None"):
        collate([None, None])
    with pytest.raises(ValueError, match="differ in canvas or label capacity"):
        collate([_sample(), _sample(h=24)])
    batch = collate([_sample(), _sample()])
    batch["scene"] = ["v"]
    with pytest.raises(ValueError, match="one entry per row"):
        check_batch(batch)
