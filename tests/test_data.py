"""Return-stratified caches and the cool-down schedule of the learned models."""

from __future__ import annotations

import io
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
from torchrl.objectives import LossModule

from torchrl_shacpp.data import StratifiedWriter, make_stratified_cache
from torchrl_shacpp.trainers import CoolDown, LearnedModel


def items(scores: list[float] | torch.Tensor, first_id: int = 0) -> TensorDict:
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return TensorDict({"score": scores, "id": torch.arange(first_id, first_id + len(scores))}, [len(scores)])


def stored_ids(buffer: TensorDictReplayBuffer) -> list[int]:
    return sorted(buffer[:]["id"].tolist())


def test_rare_high_return_item_survives_a_flood_that_a_fifo_buffer_loses():
    torch.manual_seed(0)
    cache = make_stratified_cache(90, 9)
    fifo = TensorDictReplayBuffer(storage=LazyTensorStorage(90))
    for buffer in (cache, fifo):
        buffer.extend(items(0.3 * torch.rand(20), first_id=0))
        buffer.extend(items([1.0], first_id=1000))
        for batch in range(5):  # 100 low-return items, 100 times the rare one
            buffer.extend(items(0.3 * torch.rand(20), first_id=100 + 20 * batch))

    assert 1000 in stored_ids(cache)
    assert 1000 not in stored_ids(fifo)
    # The flood did replace the older low-return items of the cache.
    assert sum(i >= 100 for i in stored_ids(cache)) > sum(i < 20 for i in stored_ids(cache))


def test_scores_map_to_bins_with_running_extremes():
    torch.manual_seed(0)
    cache = make_stratified_cache(90, 9)  # blocks of 10 slots: bin = slot // 10

    def bins(scores: list[float]) -> list[int]:
        return (cache.extend(items(scores)) // 10).tolist()

    assert bins([0.0, 8.0]) == [0, 8]
    assert bins([4.0, 2.0, 1.4, 1.6]) == [4, 2, 1, 2]
    assert bins([16.0, 8.0]) == [8, 4]  # the maximum grows to 16 before this batch is binned
    assert bins([0.0, -16.0]) == [4, 0]
    assert cache.writer.score_range == (-16.0, 16.0)

    fresh = make_stratified_cache(90, 9)
    assert (fresh.extend(items([3.0, 3.0])) // 10).tolist() == [0, 0]  # no spread yet: bin 0


def test_uneven_blocks_use_every_slot():
    torch.manual_seed(0)
    cache = make_stratified_cache(10, 3)  # blocks [0, 3), [3, 6), [6, 10)
    slots = cache.extend(items([0.0, 0.5, 1.0] * 40))
    block = torch.bucketize(slots, torch.tensor([3, 6]), right=True)
    assert block.tolist() == [0, 1, 2] * 40
    assert len(cache) == 10


def test_impossible_sizes_and_scores_raise():
    with pytest.raises(ValueError, match="num_bins=0 must be an integer >= 1"):
        make_stratified_cache(10, 0)
    with pytest.raises(ValueError, match="capacity must be at least"):
        make_stratified_cache(2, 3)
    with pytest.raises(ValueError, match="must be finite"):
        make_stratified_cache(10, 2).extend(items([0.0, math.nan]))
    with pytest.raises(TypeError, match="ScatteredTensorStorage"):
        TensorDictReplayBuffer(storage=LazyTensorStorage(10), writer=StratifiedWriter(2))


def test_a_uniform_share_keeps_common_scores_in_their_proportion_and_rare_ones_in_the_bins():
    torch.manual_seed(0)
    cache = make_stratified_cache(1000, 9, uniform_share=0.5)  # slots [0, 500) uniform, 9 blocks over [500, 1000)
    stratified = make_stratified_cache(1000, 9)
    for batch in range(200):  # 1% of 20,000 items score 1, the rest about 0
        scores = torch.where(torch.rand(100) < 0.01, 1.0, 0.01 * torch.rand(100))
        for buffer in (cache, stratified):
            buffer.extend(items(scores, first_id=100 * batch))

    slots = cache.storage.written_slots()
    stored = cache.storage.get(slots)
    uniform_part = stored[slots < 500]
    assert len(uniform_part) == 500
    # Random replacement: the uniform half holds the stream's proportions (1%), and recent items.
    assert (uniform_part["score"] == 1.0).float().mean() < 0.04
    assert uniform_part["id"].float().mean() > 15_000
    # The bins keep the rare scores: their block is full of them, as in the fully stratified cache.
    rare_block = stored[slots >= 1000 - 500 // 9]
    assert (rare_block["score"] == 1.0).all() and len(rare_block) >= 40  # of its 56 slots, from ~100 items
    # A uniform minibatch thus draws the rare score about 10% of the time, against about half from the bins alone
    # (two of their nine blocks filled: one with the common scores, one with the rare).
    assert (stored["score"] == 1.0).float().mean() < 0.15
    assert (stratified[:]["score"] == 1.0).float().mean() > 0.4


def test_uniform_shares_that_leave_no_slot_raise():
    with pytest.raises(ValueError, match=r"uniform_share=1.0 must be in \[0, 1\)"):
        make_stratified_cache(10, 2, uniform_share=1.0)
    with pytest.raises(ValueError, match="leaves 0 slots for random replacement"):
        make_stratified_cache(10, 2, uniform_share=0.05)
    with pytest.raises(ValueError, match="each needs at least one slot"):
        make_stratified_cache(10, 3, uniform_share=0.9)


def test_sampling_never_returns_unwritten_slots():
    torch.manual_seed(0)
    cache = make_stratified_cache(90, 9, batch_size=2)
    cache.extend(items([0.0, 1.0, 0.5]))
    cache.add(items([1.0], first_id=3)[0])
    written = set(cache.storage.written_slots().tolist())
    assert len(cache) == len(written) <= 4 and stored_ids(cache)[0] == 0
    for sampler in (None, RandomSampler()):
        if sampler is not None:
            cache.set_sampler(sampler)
        for _ in range(50):
            batch = cache.sample()
            assert set(batch["index"].tolist()) <= written
            assert set(batch["id"].tolist()) <= set(stored_ids(cache))
    unwritten = next(slot for slot in range(90) if slot not in written)
    with pytest.raises(IndexError, match="never written"):
        cache[unwritten]


def test_rewriting_a_slot_does_not_grow_the_cache():
    cache = make_stratified_cache(3, 3)  # one slot per bin
    for _ in range(4):
        cache.extend(items([0.0, 1.0]))
    assert len(cache) == 2 and cache.write_count == 8


@pytest.mark.parametrize("via", ["state_dict", "dumps"])
def test_restored_cache_continues_exactly(via, tmp_path):
    torch.manual_seed(0)
    cache = make_stratified_cache(90, 9, batch_size=4)
    for batch in range(3):
        cache.extend(items(10 * torch.rand(7) - 5, first_id=7 * batch))
    cache.sample()  # leaves the shuffled pass half-way

    restored = make_stratified_cache(90, 9, batch_size=4)
    if via == "state_dict":
        saved = io.BytesIO()
        torch.save(cache.state_dict(), saved)
        saved.seek(0)
        restored.load_state_dict(torch.load(saved, weights_only=False))
    else:
        cache.dumps(tmp_path)
        restored.loads(tmp_path)

    assert len(restored) == len(cache) and stored_ids(restored) == stored_ids(cache)
    assert restored.writer.score_range == cache.writer.score_range
    assert restored.write_count == cache.write_count
    torch.manual_seed(1)
    expected = cache.sample()["index"]
    torch.manual_seed(1)
    assert (restored.sample()["index"] == expected).all()

    new = items([-1.0, 0.5, 3.0, 100.0], first_id=500)
    torch.manual_seed(2)
    expected = cache.extend(new.clone())
    torch.manual_seed(2)
    assert (restored.extend(new.clone()) == expected).all()
    assert (restored[:] == cache[:]).all()


def multi_agent_windows(n_windows: int, steps: int, n_agents: int) -> TensorDict:
    """``[n_windows, steps]`` windows of ``n_agents`` agents; every agent of window w earns w per step."""
    reward = torch.arange(n_windows, dtype=torch.float32).view(-1, 1, 1, 1).expand(n_windows, steps, n_agents, 1)
    return TensorDict(
        {
            "agents": TensorDict(
                {"observation": torch.randn(n_windows, steps, n_agents, 5)}, [n_windows, steps, n_agents]
            ),
            "next": {"agents": TensorDict({"reward": reward.clone()}, [n_windows, steps, n_agents])},
            "window": torch.arange(n_windows).view(-1, 1).expand(n_windows, steps).clone(),
        },
        [n_windows, steps],
    )


def test_multi_agent_windows_and_transitions():
    torch.manual_seed(0)
    windows = multi_agent_windows(n_windows=4, steps=3, n_agents=2)

    # World cache: an item is a [T] window; its score is the return summed over steps and agents.
    world_cache = make_stratified_cache(8, 4, score_key=("next", "agents", "reward"), batch_size=2)
    slots = world_cache.extend(windows)
    assert (slots // 2).tolist() == [0, 1, 2, 3]  # returns 0, 6, 12, 18 over 4 bins of 2 slots
    sample = world_cache.sample()
    assert sample.batch_size == (2, 3) and sample["agents", "observation"].shape == (2, 3, 2, 5)
    stored = world_cache[slots]
    assert (stored["agents", "observation"] == windows["agents", "observation"]).all()

    # Reward cache: an item is a transition, its score the reward summed over agents.
    reward_cache = make_stratified_cache(24, 4, score_key=("next", "agents", "reward"))
    slots = reward_cache.extend(windows.reshape(-1))
    assert ((slots // 6) == windows["window"].reshape(-1)).all()
    assert reward_cache[slots]["agents", "observation"].shape == (12, 2, 5)


def test_cooldown_trains_after_every_cth_window():
    cooldown = CoolDown(every=3, epochs=2)
    assert [window for window in range(10) if cooldown.should_train(window)] == [2, 5, 8]
    assert CoolDown().should_train(9) and not CoolDown().should_train(10)
    with pytest.raises(ValueError):
        CoolDown(every=0)
    with pytest.raises(ValueError):
        cooldown.should_train(-1)


def test_cooldown_step_budget_does_not_grow_with_the_cache():
    """With ``steps``, every training is exactly that many minibatches, in shuffled passes continued across the
    budget, whatever the cache holds: 7 minibatches of 5 over 12 items are 2 passes and 3 minibatches of a third."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, steps=7)
    cache = make_stratified_cache(12, 3, batch_size=5)
    cache.extend(items(torch.rand(60)))
    batches = [batch["id"].tolist() for batch in cooldown.minibatches(cache)]
    assert [len(batch) for batch in batches] == [5, 5, 2, 5, 5, 2, 5]
    assert sorted(sum(batches[:3], [])) == sorted(sum(batches[3:6], [])) == stored_ids(cache)
    with pytest.raises(ValueError, match="steps"):
        CoolDown(steps=0)


class CountingLoss(LossModule):
    """A loss that counts the minibatches it is called on."""

    out_keys = ["loss"]

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, batch: TensorDict) -> TensorDict:
        self.calls += 1
        return TensorDict({"loss": (self.weight - batch["score"]).pow(2).mean()}, [])


def counting_model(name: str, lr: float = 0.1, **kwargs) -> LearnedModel:
    """A model on a :class:`CountingLoss`, with a cache of 12 items in 3 bins and minibatches of 5."""
    return LearnedModel(
        name, CountingLoss(), make_stratified_cache(12, 3, batch_size=5), lambda window: window, lr=lr, **kwargs
    )


def minibatches_per_training(model: LearnedModel, cooldown: CoolDown, trainings: int, surprise: float = math.nan):
    """Caches 12 random items in ``model``, trains it ``trainings`` times on ``cooldown`` and returns each training's
    minibatches; before each next training its loss on new data is ``surprise`` times its last training's."""
    model.store(items(torch.rand(12)))
    calls = []
    for _ in range(trainings):
        before = model.loss.calls
        model.fit(cooldown)
        calls.append(model.loss.calls - before)
        if not math.isnan(surprise):
            model.new_data_losses = [surprise * model.last_loss]
    return calls


def test_a_model_with_its_own_step_budget_trains_on_it_whatever_the_cooldown():
    """A model given ``steps`` (SHAC++'s ``world_model_steps``) trains on that many minibatches per training; a model
    without trains on the cool-down's passes over its cache."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, epochs=2)
    cooldowns = counting_model("reward")
    assert minibatches_per_training(counting_model("world", steps=9), cooldown, 1) == [9]
    assert minibatches_per_training(cooldowns, cooldown, 1) == [2 * math.ceil(len(cooldowns.cache) / 5)]
    with pytest.raises(ValueError, match="steps=0"):
        counting_model("world", steps=0)


def test_a_model_on_epochs_only_passes_over_its_cache_whatever_the_cooldowns_budgets():
    """``epochs_only`` (the paper's one-pass world model, whose items are whole windows) trains on the cool-down's
    ``epochs`` passes through its first trainings and a surprised one, where a model that follows the cool-down takes
    ``first_steps``, ``steps`` and ``surprise_steps``; it refuses a budget of its own beside."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, epochs=2, steps=9, first_steps=(7,), surprise_steps=11, surprise_ratio=1.0)
    passes = counting_model("world", epochs_only=True)
    assert minibatches_per_training(passes, cooldown, 3, surprise=2) == [2 * math.ceil(len(passes.cache) / 5)] * 3
    assert minibatches_per_training(counting_model("reward"), cooldown, 3, surprise=2) == [7, 11, 11]
    with pytest.raises(ValueError, match="steps=9 and epochs_only=True"):
        counting_model("world", steps=9, epochs_only=True)


def test_a_model_on_epochs_only_takes_its_first_epochs_then_the_cooldowns_passes():
    """``first_epochs`` (SHAC++'s ``world_model_first_epochs``) sets the passes of each of the first trainings of a
    model on ``epochs_only``; the trainings after take the cool-down's ``epochs``, and the count survives a checkpoint.
    Without ``epochs_only``, or with a count below 1, it is refused."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, epochs=2, steps=9, first_steps=(7,))
    model = counting_model("world", epochs_only=True, first_epochs=(3, 1))
    calls = minibatches_per_training(model, cooldown, 2)
    per_pass = math.ceil(len(model.cache) / 5)
    assert calls == [3 * per_pass, 1 * per_pass]
    restored = counting_model("world", epochs_only=True, first_epochs=(3, 1))
    restored.load_state_dict(model.state_dict())
    calls = minibatches_per_training(restored, cooldown, 1)
    assert calls == [2 * math.ceil(len(restored.cache) / 5)]
    with pytest.raises(ValueError, match=r"first_epochs=\[3\] without epochs_only=True"):
        counting_model("world", first_epochs=(3,))
    with pytest.raises(ValueError, match=r"first_epochs\[0\]=0 must be an integer >= 1"):
        counting_model("world", epochs_only=True, first_epochs=(0,))


def test_a_model_with_max_steps_cuts_its_passes_short_once_they_exceed_them():
    """``max_steps`` (SHAC++'s ``world_model_max_steps``) bounds each training's minibatches, first trainings and
    later ones alike, and leaves a training of fewer minibatches whole; a bound below 1 is refused."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, epochs=3)
    model = counting_model("world", epochs_only=True, first_epochs=(1,), max_steps=4)
    calls = minibatches_per_training(model, cooldown, 2)
    per_pass = math.ceil(len(model.cache) / 5)
    assert per_pass < 4 < 3 * per_pass  # the first training's one pass is under the bound, the next three over it
    assert calls == [per_pass, 4]
    with pytest.raises(ValueError, match="max_steps=0 must be an integer >= 1"):
        counting_model("world", epochs_only=True, max_steps=0)


def test_the_first_trainings_take_the_first_steps_and_a_model_with_its_own_budget_keeps_it():
    """``first_steps`` sets the budget of each of the first trainings of a model that follows the cool-down (SHAC+'s
    and SHAC++'s ``model_first_steps``); the trainings after take the cool-down's ``steps``, and a model given its own
    ``steps`` (SHAC++'s ``world_model_steps``) ignores both. The count survives a checkpoint."""
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, steps=2, first_steps=(7, 4))
    assert cooldown.for_training(1) == CoolDown(every=1, steps=4) and cooldown.for_training(2) is cooldown
    follows = counting_model("reward")
    assert minibatches_per_training(follows, cooldown, 2) == [7, 4]
    assert minibatches_per_training(counting_model("world", steps=9), cooldown, 2) == [9, 9]
    resumed = counting_model("reward")
    resumed.load_state_dict(follows.state_dict())
    resumed.fit(cooldown)
    assert resumed.loss.calls == 2
    with pytest.raises(ValueError, match=r"first_steps\[0\]=0"):
        CoolDown(first_steps=(0,))


def test_a_models_error_on_a_new_window_is_its_loss_there_without_a_step():
    """:meth:`LearnedModel.error`, logged as ``new_data_loss_<model>`` before a window is cached: the loss on the
    window's finite items, in eval mode, with no parameter changed; NaN when the model would cache nothing of it."""
    model = counting_model("reward")
    model.store(items([1.0, 1.0]))
    model.fit(CoolDown(every=1, steps=3))
    weight = model.loss.weight.detach().clone()
    new = items([2.0, float("nan"), 4.0])
    assert model.error(new) == pytest.approx(((weight - 2) ** 2 + (weight - 4) ** 2).item() / 2)
    assert torch.equal(model.loss.weight, weight) and model.loss.training and len(model.cache) == 2
    assert math.isnan(model.error(items([float("nan")])))
    world = LearnedModel("world", CountingLoss(), make_stratified_cache(12, 3), lambda window: window.reshape(-1),
                         lr=0.1, window_length=4)  # fmt: skip
    assert math.isnan(world.error(items(torch.ones(3)).unsqueeze(0)))  # a short last window: not the cache's length


def test_a_surprised_model_trains_on_the_surprise_budget_once():
    """A model's surprise is its mean loss on the windows measured since its last training over that training's
    loss; at ``surprise_ratio`` or above its next training takes ``surprise_steps`` minibatches (after the first
    steps, which come first), then the surprise is measured afresh. It survives a checkpoint."""
    cooldown = CoolDown(every=1, steps=2, first_steps=(5,), surprise_steps=7, surprise_ratio=3.0)
    assert cooldown.for_training(0, surprise=10.0).steps == 5 and cooldown.for_training(1, surprise=3.0).steps == 7
    assert cooldown.for_training(1, surprise=2.9) is cooldown and cooldown.for_training(1) is cooldown  # NaN: none
    model = counting_model("reward", lr=1e-9)
    model.store(items([1.0, 1.0]))
    assert math.isnan(model.surprise) and model.fit(cooldown) == pytest.approx(1.0)  # the weight stays ~0
    for scores in ([3.0], [2.0, float("nan")]):  # losses 9 and 4: mean 6.5, six and a half times the training's
        model.measure([items(scores)])
    assert model.surprise == pytest.approx(6.5)
    resumed = counting_model("reward", lr=1e-9)
    resumed.load_state_dict(model.state_dict())
    for trained in (model, resumed):
        calls = trained.loss.calls
        trained.fit(cooldown)
        assert trained.loss.calls - calls == 7 and math.isnan(trained.surprise)
    model.measure([items([1.0])])
    calls = model.loss.calls
    model.fit(cooldown)
    assert model.loss.calls - calls == 2  # unsurprised: the cool-down's steps
    with pytest.raises(ValueError, match="surprise_steps=0"):
        CoolDown(surprise_steps=0)
    with pytest.raises(ValueError, match="surprise_ratio=0"):
        CoolDown(surprise_ratio=0)


def test_cooldown_minibatches_cover_every_valid_item_once_per_epoch():
    torch.manual_seed(0)
    cooldown = CoolDown(every=1, epochs=3)
    cache = make_stratified_cache(12, 3, batch_size=5)
    assert list(cooldown.minibatches(cache)) == []
    cache.extend(items(torch.rand(60)))
    assert len(cache) == 12
    cache.sample()  # a stray partial pass: the next write must start a fresh one, though len stays 12
    cache.extend(items(torch.rand(30), first_id=60))
    valid = stored_ids(cache)

    batches = [batch["id"].tolist() for batch in cooldown.minibatches(cache)]
    per_epoch = math.ceil(len(valid) / 5)
    assert len(batches) == 3 * per_epoch
    for epoch in range(3):
        epoch_batches = batches[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert [len(batch) for batch in epoch_batches[:-1]] == [5] * (per_epoch - 1)
        assert sorted(i for batch in epoch_batches for i in batch) == valid
    assert batches[:per_epoch] != batches[per_epoch : 2 * per_epoch]  # reshuffled

    with pytest.raises(TypeError, match="passes without replacement"):
        next(cooldown.minibatches(TensorDictReplayBuffer(storage=LazyTensorStorage(4), batch_size=2)))
