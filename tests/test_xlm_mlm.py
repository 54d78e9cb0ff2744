"""The ``xlm_mlm`` task: one language per update (on every shard and micro-batch),
sampler-driven language frequencies, deterministic plans, complete validation and
per-language statistics."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import xlint.user_dir  # noqa: F401  (registers the task and model)
from fairseq import options, tasks, utils
from fairseq.data import iterators
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.logging import metrics

from xlint.analysis.temperature import temperature_probabilities

USER_DIR = Path(__file__).resolve().parents[1] / "user_dir"
MAX_TOKENS = 512


def setup_task(data, *extra):
    """Parse a fairseq-train command line and build the task exactly as fairseq-train does."""
    argv = [str(data.path), "--user-dir", str(USER_DIR), "--task", "xlm_mlm", "--arch", "xlm_adapter_tiny",
            "--criterion", "masked_lm", "--tokens-per-sample", "64", "--sample-break-mode", "eos",
            "--max-tokens", str(MAX_TOKENS), "--seed", "3", "--cpu", *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    return cfg, tasks.setup_task(cfg.task)


def train_iterator(task, cfg, *, num_shards=1, shard_id=0, epoch=1, seed=None, max_positions=64):
    dataset = task.dataset("train")
    return task.get_batch_iterator(
        dataset, max_tokens=MAX_TOKENS, max_sentences=None,
        max_positions=utils.resolve_max_positions(task.max_positions(), max_positions, MAX_TOKENS),
        ignore_invalid_inputs=True, required_batch_size_multiple=1,
        seed=cfg.common.seed if seed is None else seed,
        num_shards=num_shards, shard_id=shard_id, epoch=epoch,
    )


def batch_language(dataset, batch) -> int:
    langs = {dataset.language_of_row(int(i)) for i in batch}
    assert len(langs) == 1, f"batch mixes languages {langs}"
    return langs.pop()


def plan_languages(task, cfg, epoch, **kwargs):
    itr = train_iterator(task, cfg, epoch=epoch, **kwargs)
    dataset = task.dataset("train")
    return [batch_language(dataset, b) for b in itr.frozen_batches]


@pytest.fixture(scope="module")
def task_and_cfg(tiny_mlm_data):
    cfg, task = setup_task(tiny_mlm_data)
    task.load_dataset("train")
    task.load_dataset("valid")
    return task, cfg


def test_languages_come_from_metadata(task_and_cfg, tiny_mlm_data):
    task, _ = task_and_cfg
    assert task.languages == tiny_mlm_data.languages == ["en", "fr"]
    train = task.dataset("train")
    assert len(train) == tiny_mlm_data.count("en", "train") + tiny_mlm_data.count("fr", "train")
    n_en, n_fr = tiny_mlm_data.count("en", "train"), tiny_mlm_data.count("fr", "train")
    assert list(train.offsets) == [0, n_en, n_en + n_fr]
    assert [train.language_of_row(i) for i in (0, n_en - 1, n_en, n_en + n_fr - 1)] == [0, 0, 1, 1]


def test_languages_option(tiny_mlm_data):
    _, task = setup_task(tiny_mlm_data, "--languages", "fr")
    assert task.languages == ["fr"]
    with pytest.raises(FileNotFoundError):
        setup_task(tiny_mlm_data, "--languages", "en,de")
    with pytest.raises(ValueError, match="twice"):
        setup_task(tiny_mlm_data, "--languages", "en,fr,en")


def test_sampler_built_from_training_sentence_counts(task_and_cfg, tiny_mlm_data):
    task, _ = task_and_cfg
    sampler = task.language_sampler
    assert sampler.sizes == [tiny_mlm_data.count("en", "train"), tiny_mlm_data.count("fr", "train")]
    n = [tiny_mlm_data.count("en", "train"), tiny_mlm_data.count("fr", "train")]
    p = [(x / sum(n)) ** 0.7 for x in n]  # default T = 1/0.7
    assert sampler.probabilities == pytest.approx([x / sum(p) for x in p])


def test_every_training_batch_holds_one_language(task_and_cfg, tiny_mlm_data):
    task, cfg = task_and_cfg
    dictionary = task.source_dictionary
    vocab = {lang: {dictionary.index(w) for w in words} for lang, words in
             [(lang, {w for s in tiny_mlm_data.sentences[lang]["train"] for w in s.split()})
              for lang in task.languages]}
    seen = Counter()
    epoch_itr = train_iterator(task, cfg)
    for epoch in range(3):
        for sample in epoch_itr.next_epoch_itr(shuffle=True):
            ids = sample["net_input"]["src_lang_id"]
            lang = int(ids[0])
            assert torch.all(ids == lang)
            assert sample["language"] == lang
            assert sample["net_input"].get("batch_lang_id", lang) == lang
            # the masked-out originals are words of that language: ids route the right data
            target = sample["target"]
            originals = set(target[target.ne(dictionary.pad())].tolist())
            assert originals and originals <= vocab[task.languages[lang]] | {dictionary.bos(), dictionary.eos()}
            seen[lang] += 1
    assert set(seen) == {0, 1}


def test_update_groups_share_a_language_on_all_shards(tiny_mlm_data):
    """num_shards=2, update_freq=2: the 4 batches of each update (2 per shard) share a language."""
    cfg, task = setup_task(tiny_mlm_data, "--update-freq", "2")
    task.load_dataset("train")
    assert task.update_freq_for_epoch(1) == 2
    world, freq = 2, 2
    langs_per_update = []
    for epoch in (1, 2, 3, 4):
        per_shard = []
        for shard in range(world):
            itr = train_iterator(task, cfg, num_shards=world, shard_id=shard, epoch=epoch)
            grouped = iterators.GroupedIterator(itr.next_epoch_itr(shuffle=True), freq)
            per_shard.append([[int(s["net_input"]["src_lang_id"][0]) if s else None for s in group]
                              for group in grouped])
        assert len(per_shard[0]) == len(per_shard[1]) > 0
        for update, (g0, g1) in enumerate(zip(*per_shard)):
            assert len(g0) == len(g1) == freq
            langs = set(g0) | set(g1)
            assert None not in langs, "no shard may run out of batches inside an update"
            assert len(langs) == 1, f"epoch {epoch} update {update}: languages {langs}"
            langs_per_update.append(langs.pop())
        # the plan itself: positions u*W*F .. (u+1)*W*F-1 hold one language
        plan = plan_languages(task, cfg, epoch, num_shards=world)
        assert len(plan) % (world * freq) == 0
        for u in range(len(plan) // (world * freq)):
            assert len(set(plan[u * world * freq:(u + 1) * world * freq])) == 1
    assert set(langs_per_update) == {0, 1}


def test_training_batches_respect_max_tokens_and_cover_both_languages(task_and_cfg):
    task, cfg = task_and_cfg
    dataset = task.dataset("train")
    batches = train_iterator(task, cfg).frozen_batches
    assert len(batches) >= 10
    for batch in batches:
        batch_language(dataset, batch)
        assert len(batch) * int(dataset.sizes[batch].max()) <= MAX_TOKENS
    covered = {int(i) for b in train_iterator(task, cfg, epoch=2).frozen_batches for i in b}
    assert covered & set(dataset.language_rows(0).tolist()) and covered & set(dataset.language_rows(1).tolist())


def test_language_frequency_follows_the_sampler(tiny_mlm_data):
    cfg, task = setup_task(tiny_mlm_data, "--sampling-temperature", "5")
    task.load_dataset("train")
    want = temperature_probabilities([tiny_mlm_data.count(lang, "train") for lang in ("en", "fr")], 5.0)
    np.testing.assert_allclose(task.language_sampler.probabilities, want)
    counts = Counter()
    for epoch in range(1, 151):
        counts.update(plan_languages(task, cfg, epoch))
    n = sum(counts.values())
    freq_en = counts[0] / n
    sigma = math.sqrt(want[0] * (1 - want[0]) / n)
    assert abs(freq_en - want[0]) < 4.5 * sigma, (freq_en, want[0], n)
    # clearly not the corpus proportion 2/3 (what size-proportional batching would give)
    assert abs(freq_en - 2 / 3) > 6 * sigma


def test_plan_is_deterministic_for_a_seed(tiny_mlm_data, task_and_cfg):
    task, cfg = task_and_cfg
    _, other_task = setup_task(tiny_mlm_data)
    other_task.load_dataset("train")

    def plan(t, epoch, seed=None):
        return [b.tolist() for b in train_iterator(t, cfg, epoch=epoch, seed=seed).frozen_batches]

    for epoch in (1, 2):
        assert plan(task, epoch) == plan(other_task, epoch)
    assert plan(task, 1) != plan(task, 2)
    assert plan(task, 1) != plan(task, 1, seed=99)


def test_training_iterator_is_not_reshuffled_by_fairseq(task_and_cfg):
    """next_epoch_itr(shuffle=True) must keep the language plan's order."""
    task, cfg = task_and_cfg
    itr = train_iterator(task, cfg, epoch=1)
    planned = [b.tolist() for b in itr.frozen_batches]
    served = [sorted(s["id"].tolist()) for s in itr.next_epoch_itr(shuffle=True)]
    dataset = task.dataset("train")
    expected = [sorted(int(i) - int(dataset.offsets[dataset.language_of_row(int(i))]) for i in b)
                for b in planned]
    assert served == expected


def test_no_prefetch_thread(task_and_cfg):
    """fairseq's --data-buffer-size thread makes fairseq-train abort at exit; the task turns it off."""
    task, _ = task_and_cfg
    for split in ("train", "valid"):
        itr = task.get_batch_iterator(task.dataset(split), max_tokens=MAX_TOKENS, data_buffer_size=10)
        assert itr.buffer_size == 0
        assert not isinstance(itr.next_epoch_itr(shuffle=False)._itr, iterators.BufferedIterator)


@pytest.mark.parametrize("num_shards", [1, 2])
def test_valid_iterator_covers_every_sentence_once(task_and_cfg, tiny_mlm_data, num_shards):
    task, cfg = task_and_cfg
    dataset = task.dataset("valid")
    expected = {(li, i) for li, lang in enumerate(task.languages)
                for i in range(tiny_mlm_data.count(lang, "valid"))}
    assert len(dataset) == len(expected)
    seen = []
    for shard in range(num_shards):
        itr = task.get_batch_iterator(dataset, max_tokens=MAX_TOKENS, max_positions=(64, 64),
                                      ignore_invalid_inputs=False, seed=3, num_shards=num_shards,
                                      shard_id=shard, epoch=1)
        for sample in itr.next_epoch_itr(shuffle=False):
            if not sample:  # fairseq pads the shorter shard with an empty batch
                continue
            lang_ids = sample["net_input"]["src_lang_id"]
            assert torch.all(lang_ids == lang_ids[0])
            # sample["id"] is the row within the language's own dataset
            seen.extend((int(lang), int(i)) for lang, i in zip(lang_ids, sample["id"]))
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected


class _BackwardOnly:
    """The part of a fairseq optimizer that FairseqTask.train_step uses."""

    def backward(self, loss):
        loss.backward()


def test_per_language_statistics(task_and_cfg):
    task, cfg = task_and_cfg
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    itr = task.get_batch_iterator(task.dataset("valid"), max_tokens=MAX_TOKENS, max_positions=(64, 64), seed=3)
    logs = {}
    for sample in itr.next_epoch_itr(shuffle=False):
        lang = task.languages[sample["language"]]
        if lang in logs:
            continue
        _, sample_size, log = task.valid_step(sample, model, criterion)
        for other in task.languages:
            assert f"loss:{other}" in log and f"sample_size:{other}" in log
            if other == lang:
                assert float(log[f"loss:{other}"]) == pytest.approx(float(log["loss"]))
                assert log[f"sample_size:{other}"] == sample_size > 0
            else:
                assert float(log[f"loss:{other}"]) == 0.0 and log[f"sample_size:{other}"] == 0
        logs[lang] = log
    assert set(logs) == {"en", "fr"}

    # train_step reports the same keys
    sample = next(iter(train_iterator(task, cfg).next_epoch_itr(shuffle=True)))
    _, _, train_log = task.train_step(sample, model, criterion, _BackwardOnly(), update_num=0)
    assert {f"loss:{lang}" for lang in task.languages} <= set(train_log)
    assert any(p.grad is not None for p in model.parameters())

    with metrics.aggregate(new_root=True) as agg:
        task.reduce_metrics(list(logs.values()), criterion)
    values = {k: float(v) for k, v in agg.get_smoothed_values().items()}
    for lang, log in logs.items():
        want = float(log["loss"]) / float(log["sample_size"]) / math.log(2)
        assert values[f"loss_{lang}"] == pytest.approx(want, abs=1e-3)
        assert values[f"ppl_{lang}"] == pytest.approx(2 ** values[f"loss_{lang}"], rel=1e-2)
    assert "loss" in values

    # a language with no batch logs nothing (rather than a fake zero loss)
    with metrics.aggregate(new_root=True) as agg:
        task.reduce_metrics([logs["en"]], criterion)
    assert "loss_en" in agg.get_smoothed_values() and "loss_fr" not in agg.get_smoothed_values()


def reduction_layout(log: dict):
    """How fairseq's all_reduce_dict lays a logging output out: tensors and Python numbers go
    to two separate buffers, each in key order; ranks are summed position by position."""
    return ([k for k, v in log.items() if torch.is_tensor(v)], [k for k, v in log.items() if not torch.is_tensor(v)])


def as_dummy(log: dict) -> dict:
    """What fairseq's trainer sends for a rank that ran the dummy batch (ignore=True)."""
    return {k: torch.zeros_like(v) if torch.is_tensor(v) else 0 for k, v in log.items()}


def test_per_language_statistics_reduce_alike_on_every_rank(task_and_cfg):
    """Ranks holding en, fr or no batch (the dummy) in one validation step log the same layout,
    so the all-reduce adds en to en and fr to fr."""
    task, cfg = task_and_cfg
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    itr = task.get_batch_iterator(task.dataset("valid"), max_tokens=MAX_TOKENS, max_positions=(64, 64), seed=3)
    logs = {}
    for sample in itr.next_epoch_itr(shuffle=False):
        logs.setdefault(task.languages[sample["language"]], task.valid_step(sample, model, criterion)[2])
    en, fr = logs["en"], logs["fr"]
    dummy = as_dummy(en)
    assert reduction_layout(en) == reduction_layout(fr) == reduction_layout(dummy)
    # sum as the all-reduce does: per buffer, position by position
    reduced = {k: en[k] + fr[k] + dummy[k] for k in en}
    with metrics.aggregate(new_root=True) as agg:
        task.reduce_metrics([reduced], criterion)
    values = agg.get_smoothed_values()
    for lang, log in logs.items():
        want = float(log["loss"]) / float(log["sample_size"]) / math.log(2)
        assert float(values[f"loss_{lang}"]) == pytest.approx(want, abs=1e-3)


def test_sampler_without_temperature_through_the_task(tiny_mlm_data):
    """A registered sampler that takes no ``temperature`` works with --language-sampler."""
    from xlint.user_dir.data.language_sampling import (LANGUAGE_SAMPLER_REGISTRY, LanguageSampler,
                                                       register_language_sampler)

    name = "test_uniform_no_temperature"

    @register_language_sampler(name)
    class Uniform(LanguageSampler):
        def compute_probabilities(self):
            return np.full(len(self.languages), 1 / len(self.languages))

    try:
        cfg, task = setup_task(tiny_mlm_data, "--language-sampler", name)
        task.load_dataset("train")
        assert isinstance(task.language_sampler, Uniform)
        assert task.language_sampler.seed == cfg.common.seed
        counts = Counter()
        for epoch in range(1, 41):
            counts.update(plan_languages(task, cfg, epoch))
        assert abs(counts[0] / sum(counts.values()) - 0.5) < 0.05, counts
    finally:
        LANGUAGE_SAMPLER_REGISTRY.pop(name, None)
