"""The multilingual data of ``xlm_mlm``/``meta_mlm``: one split of every language, and its batch iterator.

:class:`MultilingualSplit` concatenates one split of every language (in the task's language
order) and knows which rows belong to which language; :class:`LanguageBlockEpochIterator`
iterates batches in the order the task planned (groups of batches that share a language),
which fairseq would otherwise reshuffle.
"""
from typing import Sequence

import numpy as np
from fairseq.data import ConcatDataset, iterators


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
