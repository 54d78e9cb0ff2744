"""Data side of xlint's downstream fine-tuning tasks: the on-disk layout, windows, datasets.

``xlint data convert`` writes one folder per downstream data set::

    FT/meta.json             format version, task, kind, labels, languages and counts,
                             the pretraining corpus and the sha256 of its dictionary
    FT/dict.txt              a copy of the pretraining corpus' fairseq dictionary
    FT/<lang>/<split>.jsonl  one example per line, already encoded (split: train, dev, test)

Records (all token ids index ``FT/dict.txt`` read by fairseq's ``Dictionary``):

* tagging: ``{"id", "words", "tags", "tokens", "word_starts"}`` -- ``tokens`` are the
  subwords of all words (no ``<s>``/``</s>``), ``word_starts[i]`` the position of word
  i's first subword; a word that normalises to nothing is one ``<unk>``.
* classification: ``{"id", "premise", "hypothesis", "label", "premise_tokens",
  "hypothesis_tokens"}``.
* qa: ``{"id", "question", "context", "answers", "question_tokens", "context_tokens",
  "context_offsets", "answer_token_span"}`` -- ``context_offsets[i]`` is the character
  span ``[start, end)`` of context token i in ``context``; ``answer_token_span`` the
  token span of the first gold answer (``null`` when it cannot be located).

The fairseq tasks never see this layout's ``dev`` name: their ``valid`` split is the
``dev`` files of ``--valid-languages``, ``test`` the ``test`` files.

Evaluation metrics are computed on the whole evaluation set: criteria put their
predictions in the logging output under :data:`PREDICTIONS_KEY`; the task collects
them in a :class:`PredictionsMeter` and derives the scores from it (see
:mod:`..tasks.finetune_base`).
"""
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils
from fairseq.logging import meters as fairseq_meters
from fairseq.logging.meters import Meter

from ..analysis.seeding import stable_seed

FORMAT_VERSION = 1
META_FILE = "meta.json"
DICT_FILE = "dict.txt"
FILE_SPLITS = ("train", "dev", "test")
#: fairseq split name -> file split name
FAIRSEQ_TO_FILE_SPLIT = {"train": "train", "valid": "dev", "test": "test"}
TASK_KINDS = {"tagging": ("pos", "ner"), "classification": ("nli",), "qa": ("qa",)}
IGNORE_INDEX = -100
PREDICTIONS_KEY = "_predictions"


class FinetuneDataError(ValueError):
    """A fine-tuning data folder that is missing, incomplete or of another format (one line)."""


# --------------------------------------------------------------------------- reading


def split_file(data_dir: str, lang: str, split: str) -> str:
    return os.path.join(data_dir, lang, f"{split}.jsonl")


def read_meta(data_dir: str) -> Dict[str, Any]:
    """``FT/meta.json``, checked for the format version."""
    path = os.path.join(data_dir, META_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except FileNotFoundError:
        raise FinetuneDataError(f"{path} not found: convert the data with `xlint data convert`") from None
    except (OSError, ValueError) as error:
        raise FinetuneDataError(f"{path}: cannot read it ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise FinetuneDataError(f"{path}: format version {meta.get('format_version')!r}, this xlint reads "
                                f"{FORMAT_VERSION}; convert the data again")
    if meta.get("task") not in TASK_KINDS:
        raise FinetuneDataError(f"{path}: unknown task {meta.get('task')!r}")
    return meta


def available_languages(meta: Dict[str, Any], split: str) -> List[str]:
    """Languages of the data set that have ``split`` (file split name), in meta order."""
    return [lang for lang, splits in meta["splits"].items() if splits.get(split, 0) > 0]


def read_records(data_dir: str, lang: str, split: str) -> List[Dict[str, Any]]:
    """All records of ``FT/<lang>/<split>.jsonl``."""
    path = split_file(data_dir, lang, split)
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as error:
                    raise FinetuneDataError(f"{path}:{number}: invalid JSON ({error})") from None
    except FileNotFoundError:
        raise FinetuneDataError(f"{path} not found (language {lang}, split {split})") from None
    return records


def parse_languages(value: str) -> List[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (empty items dropped, order kept, no duplicates)."""
    out: List[str] = []
    for item in (value or "").split(","):
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def parse_mapping(value: str, what: str) -> Dict[str, str]:
    """``"xx=yy,zz=yy"`` -> ``{"xx": "yy", "zz": "yy"}``."""
    mapping = {}
    for item in parse_languages(value):
        key, sep, target = item.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise ValueError(f"{what}: expected LANG=LANG items, got {item!r}")
        mapping[key.strip()] = target.strip()
    return mapping


def few_shot_indices(num_examples: int, shots: int, seed: int, lang: str) -> np.ndarray:
    """Which of a dev set's examples move to training in the few-shot setting (sorted).

    Depends only on (seed, language, dev size): every run and ``xlint evaluate``
    agree on the split.
    """
    if shots <= 0:
        return np.zeros(0, dtype=np.int64)
    if shots >= num_examples:
        raise FinetuneDataError(f"few-shot: {shots} examples asked from the {num_examples}-example dev set "
                                f"of {lang}; nothing would be left to validate on")
    rng = np.random.default_rng([seed, stable_seed(lang)])
    return np.sort(rng.choice(num_examples, size=shots, replace=False)).astype(np.int64)


def subsample_indices(num_examples: int, keep: int, seed: int, lang: str) -> np.ndarray:
    """A fixed random subset of ``keep`` example indices (sorted), or all of them."""
    if keep <= 0 or keep >= num_examples:
        return np.arange(num_examples, dtype=np.int64)
    rng = np.random.default_rng([seed, stable_seed(lang), 7])
    return np.sort(rng.choice(num_examples, size=keep, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- windows


def sliding_windows(length: int, window: int, stride: int) -> List[Tuple[int, int]]:
    """``[start, end)`` windows of at most ``window`` positions covering ``range(length)``.

    Starts are 0, stride, 2*stride, ... and the last window ends at ``length``
    (``stride`` is clipped to ``window``, so no position is skipped).
    """
    if window < 1:
        raise ValueError("a window needs at least one position")
    if length <= window:
        return [(0, length)]
    stride = max(1, min(stride, window))
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(start, start + window) for start in starts]


def best_window(position: int, windows: Sequence[Tuple[int, int]]) -> int:
    """The window where ``position`` has the most context: max of min(left, right) context.

    Ties go to the earlier window (as BERT's ``_check_is_max_context``, whose
    extra 0.01 * window length term only matters for windows of unequal length).
    """
    best, best_score = -1, None
    for index, (start, end) in enumerate(windows):
        if start <= position < end:
            score = min(position - start, end - 1 - position) + 0.01 * (end - start)
            if best_score is None or score > best_score:
                best, best_score = index, score
    if best < 0:
        raise ValueError(f"position {position} is in no window")
    return best


# --------------------------------------------------------------------------- dataset


class FinetuneDataset(FairseqDataset):
    """In-memory items (one per window/example) with a task-provided collater.

    Every item is a dict with at least ``tokens`` (LongTensor with ``<s>`` ... ``</s>``)
    and ``lang_id`` (the model's language index); ``collate_extra(items, batch)`` adds
    the targets and whatever the criterion needs.

    Batches: fairseq builds them once, from :meth:`ordered_indices` under ``numpy_seed(seed +
    epoch)`` of the epoch its iterator is first made for, and reuses them in every later epoch
    (shuffling their order per epoch).  A resumed run makes its iterator at its starting epoch,
    so a global-seeded shuffle would give it other batches than the uninterrupted run had;
    with ``order_seed`` the shuffle is drawn from ``RandomState(order_seed)`` whatever the epoch
    (the tasks pass ``--seed`` + 1: exactly the batches of an uninterrupted run, which starts at
    epoch 1), so a resumed run trains on the same batches.
    """

    def __init__(self, items: List[Dict[str, Any]], pad: int,
                 collate_extra: Callable[[List[Dict[str, Any]], Dict[str, Any]], None],
                 shuffle: bool, languages: Sequence[str], num_examples: int, order_seed: Optional[int] = None):
        super().__init__()
        self.items = items
        self.pad = pad
        self.collate_extra = collate_extra
        self.shuffle = shuffle
        self.languages = list(languages)
        self.num_examples = num_examples
        self.order_seed = order_seed
        self._sizes = np.array([len(item["tokens"]) for item in items], dtype=np.int64)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = dict(self.items[index])
        item["index"] = index
        return item

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def num_tokens(self, index: int) -> int:
        return int(self._sizes[index])

    def size(self, index: int) -> int:
        return int(self._sizes[index])

    def ordered_indices(self) -> np.ndarray:
        if self.shuffle:
            rng = np.random if self.order_seed is None else np.random.RandomState(self.order_seed)
            order = rng.permutation(len(self))
            return order[np.argsort(self._sizes[order], kind="stable")]
        return np.argsort(self._sizes, kind="stable")

    def collater(self, items: List[Dict[str, Any]]) -> Dict[str, Any]:
        if not items:
            return {}
        tokens = data_utils.collate_tokens([item["tokens"] for item in items], self.pad)
        batch = {
            "id": torch.LongTensor([item["index"] for item in items]),
            "nsentences": len(items),
            "ntokens": int(sum(len(item["tokens"]) for item in items)),
            "net_input": {
                "src_tokens": tokens,
                "src_lengths": torch.LongTensor([len(item["tokens"]) for item in items]),
                "src_lang_id": torch.LongTensor([item["lang_id"] for item in items]),
            },
            "example": [item["example"] for item in items],
            "lang": [item["lang"] for item in items],
        }
        self.collate_extra(items, batch)
        return batch


# --------------------------------------------------------------------------- predictions


class PredictionsMeter(Meter):
    """Collects per-example predictions of a whole evaluation pass (never checkpointed).

    ``items`` are whatever the criterion emits; :attr:`cache` lets derived metrics
    score the collection once, however many metric keys read it.
    """

    def __init__(self):
        self.items: List[Any] = []
        self.cache: Optional[Tuple[int, Any]] = None

    def update(self, items: Sequence[Any]) -> None:
        self.items.extend(items)

    def reset(self) -> None:
        self.items = []
        self.cache = None

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.reset()

    @property
    def smoothed_value(self) -> float:
        return float(len(self.items))

    def scores(self, score_fn: Callable[[List[Any]], Any]) -> Any:
        if self.cache is None or self.cache[0] != len(self.items):
            self.cache = (len(self.items), score_fn(self.items))
        return self.cache[1]


# fairseq's MetersDict.load_state_dict rebuilds every meter of a checkpoint's saved metrics by
# class name, looked up in fairseq.logging.meters' namespace: without this, a run saved in the
# middle of an epoch (whose train meters hold a PredictionsMeter) cannot resume (KeyError).
fairseq_meters.PredictionsMeter = PredictionsMeter  # type: ignore[attr-defined]
