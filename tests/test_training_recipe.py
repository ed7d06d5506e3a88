"""The fine-tuning recipe's options: augmentation policies and random erasing, mixup and cutmix (soft targets), the
moving average of the weights (validated, saved as best.pth, resumed), the backbone's learning-rate factor,
gradient accumulation (4 x 8 steps as 32), each checked to do what it says."""
import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

from resnext_core.common.checkpoint import safe_load
from resnext_core.common.errors import CheckpointError
from resnext_core.common.preprocess import Preprocessing
from resnext_core.training.config import TrainConfig
from resnext_core.training.data import POLICIES, TrainTransform
from resnext_core.training.loop import TrainingSetup, batch_mixer, build_optimizer, ema_of, train_one_epoch
from resnext_core.training.trainer import Callbacks, Trainer

from helpers import largest_difference, textured_image, tiny_dataset


def _config(tmp_path, data, **overrides):
    values = dict(dataset_folder=data, output_folder=str(tmp_path / "out"), model_name="resnext50", weights="none",
                  train_mode="scratch", input_size=32, epochs=2, batch_size=4, optimizer="adamw", learning_rate=0.002,
                  hflip=False, val_split=0.25, seed=0)
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_each_augmentation_policy_changes_the_training_images(policy):
    image = textured_image(48, 48)
    torch.manual_seed(0)
    plain = [TrainTransform(Preprocessing(32, 33), 1.0, False)(image) for _ in range(4)]
    augmented = [TrainTransform(Preprocessing(32, 33), 1.0, False, policy)(image) for _ in range(8)]
    assert all(torch.equal(plain[0], other) for other in plain), "without a policy a whole-image crop is the image"
    assert sum(not torch.equal(plain[0], other) for other in augmented) >= 4, policy
    assert all(a.shape == (3, 32, 32) and a.dtype == torch.float32 for a in augmented)


def test_random_erasing_blanks_a_rectangle():
    image = np.full((48, 48, 3), 200, np.uint8)
    erased = TrainTransform(Preprocessing(32, 33), 1.0, False, random_erasing=1.0)(image)
    blank = (erased == 0).all(0)
    rows, cols = np.nonzero(blank.numpy())
    assert 0 < blank.sum() < 32 * 32 and blank[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all(), "a rectangle"
    assert not (TrainTransform(Preprocessing(32, 33), 1.0, False)(image) == 0).all(0).any()


@pytest.mark.parametrize("mixup, cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixup_and_cutmix_train_on_soft_targets(mixup, cutmix):
    """The loss sees mixed label distributions (rows of probabilities), not class indices."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    seen = []

    def criterion(logits, targets):
        seen.append(targets)
        return nn.functional.cross_entropy(logits, targets)

    torch.manual_seed(0)
    mix = batch_mixer(TrainConfig(mixup=mixup, cutmix=cutmix), 3)
    setup = _setup(model, criterion, mix=mix)
    batches = [(torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])) for _ in range(3)]
    train_one_epoch(setup, batches, epoch=0)
    assert all(t.shape == (6, 3) and torch.allclose(t.sum(1), torch.ones(6)) for t in seen)
    assert any(((t > 0.01) & (t < 0.99)).any() for t in seen), "mixed: some targets between 0 and 1"
    assert batch_mixer(TrainConfig(), 3) is None


def _setup(model, criterion=None, accumulation=1, mix=None, learning_rate=0.1):
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    return TrainingSetup(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                         torch.amp.GradScaler("cpu", enabled=False), criterion or nn.CrossEntropyLoss(),
                         nn.CrossEntropyLoss(), torch.device("cpu"), torch.float32, model, None, mix, accumulation)


def test_four_accumulated_batches_of_8_step_as_one_of_32():
    torch.manual_seed(0)
    images, labels = torch.randn(64, 3, 8, 8), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))
    big, accumulated = copy.deepcopy(model), copy.deepcopy(model)
    whole = _setup(big)
    train_one_epoch(whole, [(images[i:i + 32], labels[i:i + 32]) for i in (0, 32)], epoch=0)
    parts = _setup(accumulated, accumulation=4)
    train_one_epoch(parts, [(images[i:i + 8], labels[i:i + 8]) for i in range(0, 64, 8)], epoch=0)
    difference = largest_difference(dict(big.named_parameters()), dict(accumulated.named_parameters()))
    assert difference < 1e-6 and parts.scheduler.last_epoch == whole.scheduler.last_epoch == 2
    moved = largest_difference(dict(model.named_parameters()), dict(accumulated.named_parameters()))
    assert moved > 1e-3, "the steps did move the weights"
    unaccumulated = copy.deepcopy(model)
    train_one_epoch(_setup(unaccumulated), [(images[i:i + 8], labels[i:i + 8]) for i in range(0, 64, 8)], epoch=0)
    assert largest_difference(dict(big.named_parameters()), dict(unaccumulated.named_parameters())) > 1e-3


def test_a_trailing_partial_step_is_the_mean_over_its_batches():
    torch.manual_seed(1)
    images, labels = torch.randn(24, 3, 8, 8), torch.randint(0, 3, (24,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    one, other = copy.deepcopy(model), copy.deepcopy(model)
    train_one_epoch(_setup(one), [(images[:16], labels[:16]), (images[16:], labels[16:])], epoch=0)
    train_one_epoch(_setup(other, accumulation=2), [(images[i:i + 8], labels[i:i + 8]) for i in (0, 8, 16)], epoch=0)
    assert largest_difference(dict(one.named_parameters()), dict(other.named_parameters())) < 1e-6


def test_the_backbone_learns_at_its_factor_and_the_new_classifier_at_full_rate():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(4, 4))
    model.add_module("fc", nn.Linear(4, 2))
    optimizer = build_optimizer(model, TrainConfig(optimizer="sgd", learning_rate=0.1, backbone_lr_factor=0.25))
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(model.fc.weight)] == rates[id(model.fc.bias)] == pytest.approx(0.1)
    assert rates[id(model.body.weight)] == rates[id(model.body.bias)] == pytest.approx(0.025)
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay[id(model.fc.bias)] == 0.0 and decay[id(model.fc.weight)] > 0
    frozen = build_optimizer(model, TrainConfig(optimizer="sgd", learning_rate=0.1, backbone_lr_factor=0.0))
    before = model.body.weight.detach().clone()
    model(torch.randn(3, 4)).sum().backward()
    frozen.step()
    assert torch.equal(model.body.weight, before) and len(build_optimizer(model, TrainConfig()).param_groups) == 2


def test_the_moving_average_warms_up_then_follows_its_decay():
    model = nn.Linear(2, 1, bias=False)
    ema = ema_of(model, decay=0.9)
    with torch.no_grad():
        for value in (1.0, 2.0, 3.0):
            model.weight.fill_(value)
            ema.update_parameters(model)
    # Updates 2 and 3 weigh the new weights by 1 - min(0.9, (1 + n) / (10 + n)) for n = 1, 2.
    expected = 1.0 + (2.0 - 1.0) * (1 - 2 / 11)
    expected += (3.0 - expected) * (1 - 3 / 12)
    assert ema.module.weight.detach() == pytest.approx(torch.full((1, 2), expected))


@pytest.mark.slow
def test_the_moving_average_is_validated_saved_as_best_and_resumed(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    first = Trainer(_config(tmp_path, data, ema=0.9), Callbacks(log=lambda line: None)).run()
    best = safe_load(os.path.join(first.run_folder, "best.pth"))
    assert best["ema_updates"] > 0 and set(best["state_dict"]) == set(best["trained_state_dict"])
    assert any(not torch.equal(best["state_dict"][k], best["trained_state_dict"][k]) for k in best["state_dict"]
               if best["state_dict"][k].is_floating_point()), "the average differs from the last step's weights"
    plain = safe_load(os.path.join(Trainer(_config(tmp_path, data), Callbacks(log=lambda line: None)).run().run_folder,
                                   "best.pth"))
    assert "trained_state_dict" not in plain and "ema_updates" not in plain
    last = os.path.join(first.run_folder, "last.pth")
    resumed = Trainer(_config(tmp_path, data, ema=0.9, epochs=3, resume=last), Callbacks(log=lambda line: None)).run()
    updates, again = safe_load(last)["ema_updates"], safe_load(os.path.join(resumed.run_folder, "last.pth"))["ema_updates"]
    assert again == updates * 3 // 2 and resumed.epochs_done == 3, "the average carries on: one update a step"
    with pytest.raises(CheckpointError, match="trained with ema '0.9', this run asks for '0.0'"):
        Trainer(_config(tmp_path, data, epochs=3, resume=last), Callbacks(log=lambda line: None)).run()
