"""``xlm_mlm``: multilingual masked LM with one language per update.

Reads the layout written by ``xlint preprocess``::

    DATA/dict.txt                              one dictionary shared by all languages
    DATA/<lang>/{train,valid,test,metadev}.{bin,idx}
    DATA/metadata.json                         languages and counts

Training batches hold a single language; the language of each update is drawn by a
registered language sampler (``--language-sampler temperature`` by default, with
P_i proportional to q_i^(1/T)).  The draw depends only on (seed, epoch, update), and
all ``--update-freq`` micro-batches of all data-parallel ranks of one update share
the language.  Validation reports loss and perplexity per language
(``valid_loss_<lang>``, ``valid_ppl_<lang>``) next to fairseq's overall numbers.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from fairseq import utils
from fairseq.data import (
    ConcatDataset,
    IdDataset,
    MaskTokensDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RawLabelDataset,
    RightPadDataset,
    TokenBlockDataset,
    data_utils,
    iterators,
)
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.logging import metrics
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import II

from .language_sampling import LANGUAGE_SAMPLER_REGISTRY, build_language_sampler
from .temperature import DEFAULT_TEMPERATURE

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"


@dataclass
class XlmMlmConfig(MaskedLMConfig):
    languages: str = field(
        default="",
        metadata={"help": "comma-separated languages to train on, in routing order; "
                          "empty reads all languages from DATA/metadata.json"},
    )
    language_sampler: str = field(
        default="temperature",
        metadata={"help": "how each update's language is drawn (registered language samplers)"},
    )
    sampling_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "T in P_i ~ q_i^(1/T); default 1/0.7 as XLM's alpha=0.7 "
                          "(1 = proportional to data, large = uniform)"},
    )
    update_freq: Any = II("optimization.update_freq")


class MultilingualSplit(ConcatDataset):
    """One split of every language, concatenated; knows which rows belong to which language.

    Batches built by :class:`XlmMlmTask` never mix languages; the collated sample
    carries ``sample["language"]`` (the batch's language index) so that per-language
    statistics need no device-to-host copy.
    """

    def __init__(self, datasets: Sequence, languages: Sequence[str], split: str):
        super().__init__(list(datasets))
        self.languages = list(languages)
        self.split = split
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).astype(np.int64)
        self.token_sizes = np.concatenate([np.asarray(d.sizes).reshape(-1) for d in datasets]).astype(np.int64)

    @property
    def sizes(self) -> np.ndarray:
        return self.token_sizes

    def num_tokens(self, index: int) -> int:
        return int(self.token_sizes[index])

    def size(self, index: int) -> int:
        return int(self.token_sizes[index])

    def language_rows(self, lang_index: int) -> np.ndarray:
        return np.arange(self.offsets[lang_index], self.offsets[lang_index + 1], dtype=np.int64)

    def language_of_row(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right") - 1)

    def collater(self, samples):
        batch = super().collater(samples)
        if batch:
            lang_ids = batch["net_input"]["src_lang_id"]
            batch["language"] = int(lang_ids[0]) if bool((lang_ids == lang_ids[0]).all()) else -1
            batch["net_input"]["batch_lang_id"] = batch["language"]  # routing without a GPU sync
        return batch


class LanguageBlockEpochIterator(iterators.EpochBatchIterator):
    """An EpochBatchIterator whose batch order is fixed by the language plan.

    fairseq shuffles batches at every epoch, which would scatter the groups of
    batches that share a language; the plan (built per epoch by the task) is
    already shuffled, so this iterator never reshuffles it.
    """

    def _get_iterator_for_epoch(self, epoch, shuffle, fix_batches_to_gpus=False, offset=0):
        return super()._get_iterator_for_epoch(epoch, False, fix_batches_to_gpus, offset)


@register_task("xlm_mlm", dataclass=XlmMlmConfig)
class XlmMlmTask(MaskedLMTask):
    """Multilingual MLM over ``xlint preprocess`` data; see the module docstring."""

    cfg: XlmMlmConfig

    def __init__(self, cfg: XlmMlmConfig, dictionary=None):
        super().__init__(cfg, dictionary)
        self.data_dir = utils.split_paths(cfg.data)[0]
        self.languages = resolve_languages(cfg.languages, self.data_dir)
        self.language_sampler = None

    # ------------------------------------------------------------------ data

    def language_split_path(self, lang: str, split: str) -> str:
        return os.path.join(self.data_dir, lang, split)

    def _load_language_split(self, lang_index: int, split: str, epoch: int, combine: bool):
        lang = self.languages[lang_index]
        path = self.language_split_path(lang, split)
        tokens = data_utils.load_indexed_dataset(path, self.source_dictionary, combine=combine)
        if tokens is None:
            raise FileNotFoundError(f"dataset not found: {path}.{{bin,idx}} (language {lang}, split {split})")
        tokens = maybe_shorten_dataset(tokens, split, self.cfg.shorten_data_split_list,
                                       self.cfg.shorten_method, self.cfg.tokens_per_sample, self.cfg.seed)
        tokens = TokenBlockDataset(
            tokens, tokens.sizes, self.cfg.tokens_per_sample - 1,  # one less for <s>
            pad=self.source_dictionary.pad(), eos=self.source_dictionary.eos(),
            break_mode=self.cfg.sample_break_mode,
        )
        tokens = PrependTokenDataset(tokens, self.source_dictionary.bos())
        src, tgt = MaskTokensDataset.apply_mask(
            tokens, self.source_dictionary,
            pad_idx=self.source_dictionary.pad(), mask_idx=self.mask_idx,
            seed=self.cfg.seed + 7919 * lang_index,  # distinct masks per language
            mask_prob=self.cfg.mask_prob, leave_unmasked_prob=self.cfg.leave_unmasked_prob,
            random_token_prob=self.cfg.random_token_prob,
            freq_weighted_replacement=self.cfg.freq_weighted_replacement,
            mask_multiple_length=self.cfg.mask_multiple_length, mask_stdev=self.cfg.mask_stdev,
        )
        pad = self.source_dictionary.pad()
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(src, pad_idx=pad),
                    "src_lengths": NumelDataset(src, reduce=False),
                    "src_lang_id": RawLabelDataset(np.full(len(src), lang_index, dtype=np.int64)),
                },
                "target": RightPadDataset(tgt, pad_idx=pad),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src, reduce=True),
            },
            sizes=[src.sizes],
        )

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        per_language = [self._load_language_split(i, split, epoch, combine) for i in range(len(self.languages))]
        dataset = MultilingualSplit(per_language, self.languages, split)
        self.datasets[split] = dataset
        if split == "train":
            sentences = [self._sentence_count(i, split) for i in range(len(self.languages))]
            self.language_sampler = build_language_sampler(
                self.cfg.language_sampler, self.languages, sentences,
                seed=self.cfg.seed, temperature=self.cfg.sampling_temperature,
            )
            logger.info("language sampling probabilities (%s)", self.language_sampler.describe())
        return dataset

    def _sentence_count(self, lang_index: int, split: str) -> int:
        return len(data_utils.load_indexed_dataset(
            self.language_split_path(self.languages[lang_index], split), self.source_dictionary))

    # ------------------------------------------------------------------ batching

    def _language_batches(self, dataset: MultilingualSplit, lang_index: int, rng: np.random.Generator,
                          max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                          required_batch_size_multiple) -> List[np.ndarray]:
        rows = dataset.language_rows(lang_index)
        rows = rows[rng.permutation(len(rows))]
        rows = rows[np.argsort(dataset.sizes[rows], kind="stable")]  # similar lengths together
        if max_positions is not None:
            rows = self.filter_indices_by_size(rows, dataset, max_positions, ignore_invalid_inputs)
        batches = data_utils.batch_by_size(
            rows, dataset.num_tokens, num_tokens_vec=dataset.sizes[rows], max_tokens=max_tokens,
            max_sentences=max_sentences, required_batch_size_multiple=required_batch_size_multiple,
        )
        rng.shuffle(batches)
        return list(batches)

    def update_freq_for_epoch(self, epoch: int) -> int:
        freq = self.cfg.update_freq
        if freq is None or isinstance(freq, str):
            return 1
        if isinstance(freq, int):
            return freq
        freq = list(freq)
        return int(freq[min(epoch, len(freq)) - 1]) if freq else 1

    def plan_training_batches(self, dataset: MultilingualSplit, epoch: int, seed: int, num_shards: int,
                              **batching) -> List[np.ndarray]:
        """The epoch's batches: each update's ``num_shards * update_freq`` batches share one language.

        An epoch has as many updates as it takes to cover the summed per-language
        batch counts once; a language whose batches run out starts them again in
        a fresh order (the sampler, not the corpus size, decides how often a
        language is seen).
        """
        per_update = num_shards * self.update_freq_for_epoch(epoch)
        streams, total = [], 0
        for lang_index in range(len(self.languages)):
            rng = np.random.default_rng([seed, epoch, lang_index])
            batches = self._language_batches(dataset, lang_index, rng, **batching)
            streams.append({"batches": batches, "position": 0, "rng": rng})
            total += len(batches)
        num_updates = max(1, math.ceil(total / per_update))
        plan: List[np.ndarray] = []
        for lang_index in self.language_sampler.draw(epoch, num_updates):
            stream = streams[lang_index]
            if not stream["batches"]:
                raise ValueError(f"language {self.languages[lang_index]} has no training batch")
            for _ in range(per_update):
                if stream["position"] == len(stream["batches"]):
                    stream["rng"].shuffle(stream["batches"])
                    stream["position"] = 0
                plan.append(stream["batches"][stream["position"]])
                stream["position"] += 1
        return plan

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1,
                           num_shards=1, shard_id=0, num_workers=0, epoch=1, data_buffer_size=0,
                           disable_iterator_cache=False, skip_remainder_batch=False,
                           grouped_shuffling=False, update_epoch_batch_itr=False):
        if not isinstance(dataset, MultilingualSplit):
            return super().get_batch_iterator(
                dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                required_batch_size_multiple, seed, num_shards, shard_id, num_workers, epoch,
                data_buffer_size, disable_iterator_cache, skip_remainder_batch, grouped_shuffling,
                update_epoch_batch_itr)
        # buffer_size=0: fairseq's --data-buffer-size thread makes fairseq-train abort at exit
        # ("terminate called without an active exception", status 134) about one run in three
        # with torch 2.13; batches come from memory-mapped data, so the thread buys nothing here
        # (--num-workers still prefetches in worker processes).
        batching = dict(max_tokens=max_tokens, max_sentences=max_sentences, max_positions=max_positions,
                        ignore_invalid_inputs=ignore_invalid_inputs,
                        required_batch_size_multiple=required_batch_size_multiple)
        dataset.set_epoch(epoch)
        is_train = dataset is self.datasets.get("train") and self.language_sampler is not None

        def make_batches(dataset: MultilingualSplit, epoch: int):
            if is_train:
                return self.plan_training_batches(dataset, epoch, seed, num_shards, **batching)
            batches = []
            for lang_index in range(len(self.languages)):  # evaluation: every batch, in order
                rng = np.random.default_rng([seed, 0, lang_index])
                batches.extend(self._language_batches(dataset, lang_index, rng, **batching))
            return batches

        return LanguageBlockEpochIterator(
            dataset=dataset, collate_fn=dataset.collater,
            batch_sampler=make_batches if is_train else make_batches(dataset, epoch),
            seed=seed, num_shards=num_shards, shard_id=shard_id, num_workers=num_workers,
            epoch=epoch, buffer_size=0, disable_shuffling=True,
        )

    # ------------------------------------------------------------------ per-language statistics

    def add_language_statistics(self, sample, loss, sample_size, logging_output: Dict[str, Any]) -> None:
        """Add ``loss:<lang>``/``sample_size:<lang>`` for every language (zeros for absent ones).

        Every rank reports the same keys, so fairseq's fast all-reduce of logging
        outputs stays valid whichever language a rank saw.
        """
        batch_lang = sample.get("language", -1) if sample else -1
        for lang_index, lang in enumerate(self.languages):
            present = lang_index == batch_lang
            logging_output[f"loss:{lang}"] = logging_output.get("loss", 0.0) if present else 0.0
            logging_output[f"sample_size:{lang}"] = sample_size if present else 0

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad)
        self.add_language_statistics(sample, loss, sample_size, logging_output)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        self.add_language_statistics(sample, loss, sample_size, logging_output)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        for lang in self.languages:
            sample_size = _sum(logging_outputs, f"sample_size:{lang}")
            if sample_size > 0:
                loss = _sum(logging_outputs, f"loss:{lang}")
                metrics.log_scalar(f"loss_{lang}", loss / sample_size / math.log(2), sample_size, round=3)
                metrics.log_derived(f"ppl_{lang}", _perplexity_of(f"loss_{lang}"))


def _sum(logging_outputs, key: str) -> float:
    total = sum(log.get(key, 0) for log in logging_outputs)
    return float(total.item() if torch.is_tensor(total) else total)


def _perplexity_of(meter_name: str):
    return lambda meters: utils.get_perplexity(meters[meter_name].avg)


def resolve_languages(languages: str, data_dir: str) -> List[str]:
    """The task's languages: ``--languages`` if given, else those in DATA/metadata.json."""
    if languages:
        chosen = [lang.strip() for lang in languages.split(",") if lang.strip()]
    else:
        path = os.path.join(data_dir, METADATA_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: give --languages or preprocess with `xlint preprocess`")
        with open(path, encoding="utf-8") as f:
            chosen = list(json.load(f)["languages"])
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--languages lists a language twice: {chosen}")
    missing = [lang for lang in chosen if not os.path.isdir(os.path.join(data_dir, lang))]
    if missing:
        raise FileNotFoundError(f"no data folder for language(s) {missing} under {data_dir}")
    return chosen
