"""``xlint_qa``: extractive QA (SQuAD v1.1, TyDiQA-GoldP, MLQA, XQuAD) with a span head.

Task ``xlint_qa`` + criterion ``xlint_qa`` (:mod:`..criterions.finetune_qa`; BERT/XTREME recipe):

* input windows ``<s> question </s> context window </s>`` (RoBERTa / XLM-R:
  ``<s> question </s> </s> context window </s>``, ``--pair-separators 2``): the question is cut to
  ``--max-query-length`` subwords, the context is covered by windows that fill
  ``--max-length`` and start ``--doc-stride`` subwords apart;
* training targets are the first gold answer's first and last subwords when the
  whole answer lies inside the window, else the ``<s>`` position (0);
  ``loss = (CE(start) + CE(end)) / 2`` per window; training questions whose answer
  could not be located in the subwords are skipped;
* decoding: in each window the span ``(i, j)`` maximising ``start_i + end_j`` with
  ``i <= j < i + --max-answer-length``, both in the context and ``i`` in its
  max-context window; the question's answer is the best-scoring span of all its
  windows, cut out of the original context by character offsets;
* metrics: SQuAD v1.1 F1/EM (``f1_<lang>``, ``em_<lang>``, percent), or MLQA's
  language-aware normalisation for data converted from MLQA (``--qa-metric``).
"""
import logging
from dataclasses import dataclass, field
from typing import Dict

import numpy as np
import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from ..data.finetune_data import FinetuneDataError, best_window, sliding_windows
from ..metrics.xtreme import MLQA_LANGUAGES, mlqa_scores, squad_scores
from .finetune_base import FinetuneConfig, FinetuneTask

logger = logging.getLogger(__name__)


@dataclass
class QaConfig(FinetuneConfig):
    max_length: int = field(
        default=384, metadata={"help": "window length in subwords, special tokens included "
                                       "(capped at the model's --max-positions)"})
    doc_stride: int = field(default=128, metadata={"help": "subwords between the starts of context windows"})
    max_query_length: int = field(default=64, metadata={"help": "questions are cut to this many subwords"})
    max_answer_length: int = field(default=30, metadata={"help": "longest predicted answer, in subwords"})
    pair_separators: int = field(
        default=1, metadata={"help": "</s> tokens between question and context: 1 (xlm_adapter's "
                                     "pretraining) or 2 (RoBERTa / XLM-R: <s> Q </s> </s> C </s>)"})
    qa_metric: ChoiceEnum(["auto", "squad", "mlqa"]) = field(
        default="auto", metadata={"help": "answer normalisation: squad (SQuAD v1.1 / TyDiQA-GoldP), mlqa "
                                          "(language-aware), auto: as recorded by `xlint data convert`"})


@register_task("xlint_qa", dataclass=QaConfig)
class QaTask(FinetuneTask):
    """Extractive question answering (see the module docstring)."""

    TASK = "qa"
    HEAD_KIND = "span"
    HEAD_NAME = "qa"

    def __init__(self, cfg, dictionary, meta, data_dir):
        super().__init__(cfg, dictionary, meta, data_dir)
        metric = str(cfg.qa_metric)
        self.qa_metric = meta.get("qa_metric", "squad") if metric == "auto" else metric

    def num_outputs(self) -> int:
        return 2

    def metric_names(self):
        return ("f1", "em")

    def make_items(self, example, lang, lang_id, record, split):
        span = record.get("answer_token_span")
        if split == "train" and span is None:
            return []  # the answer could not be located in the subwords
        question = record["question_tokens"][: self.cfg.max_query_length]
        context = record["context_tokens"]
        separators = self.cfg.pair_separators
        offset = len(question) + 1 + separators  # <s> question </s> (</s>)
        width = self.effective_max_length - len(question) - 2 - separators
        if width < 1:
            raise FinetuneDataError(f"--max-length {self.effective_max_length} leaves no room for the context "
                                    f"after a {len(question)}-subword question; lower --max-query-length")
        if not context:
            return []
        windows = sliding_windows(len(context), width, self.cfg.doc_stride)
        owner = np.asarray([best_window(position, windows) for position in range(len(context))])
        bos, eos = self.dictionary.bos(), self.dictionary.eos()
        golds = [answer["text"] for answer in record["answers"]]
        items = []
        for index, (start, end) in enumerate(windows):
            if span is not None and start <= span[0] and span[1] < end:
                target = (span[0] - start + offset, span[1] - start + offset)
            else:
                target = (0, 0)
            items.append({
                "tokens": torch.LongTensor([bos] + question + [eos] * separators + context[start:end] + [eos]),
                "target": target, "offset": offset, "window": (start, end),
                "max_context": owner[start:end] == index,
                "offsets": record["context_offsets"], "context": record["context"], "golds": golds,
                "example": example, "lang": lang, "lang_id": lang_id,
            })
        return items

    def collate_extra(self, items, batch):
        width = batch["net_input"]["src_tokens"].size(1)
        starts = torch.zeros(len(items), width, dtype=torch.bool)  # allowed answer starts
        ends = torch.zeros(len(items), width, dtype=torch.bool)  # allowed answer ends
        for row, item in enumerate(items):
            length = item["window"][1] - item["window"][0]
            ends[row, item["offset"]: item["offset"] + length] = True
            starts[row, item["offset"]: item["offset"] + length] = torch.from_numpy(item["max_context"])
        batch["target"] = torch.LongTensor([item["target"] for item in items])
        batch["answer_starts"] = starts
        batch["answer_ends"] = ends
        batch["qa"] = [{key: item[key] for key in ("offset", "window", "offsets", "context", "golds")}
                       for item in items]

    def score_language(self, lang, predictions):
        best: Dict[int, tuple] = {}
        for example, _, score, text, golds in predictions:
            if example not in best or score > best[example][0]:
                best[example] = (score, text, golds)
        examples = sorted(best)
        golds = [best[e][2] for e in examples]
        answers = [best[e][1] for e in examples]
        if self.qa_metric == "mlqa" and lang in MLQA_LANGUAGES:
            scores = mlqa_scores(golds, answers, lang)
        else:
            if self.qa_metric == "mlqa":
                logger.warning("MLQA normalisation knows %s, not %s: using SQuAD's", ",".join(MLQA_LANGUAGES), lang)
            scores = squad_scores(golds, answers)
        return {"f1": scores.f1, "em": scores.exact_match}

    def prediction_records(self, items, dataset):
        best: Dict[int, tuple] = {}
        for example, lang, score, text, golds in items:
            if example not in best or score > best[example][0]:
                best[example] = (score, text, lang)
        return [{"id": dataset.examples[e][1]["id"], "lang": best[e][2], "predicted": best[e][1],
                 "gold": [a["text"] for a in dataset.examples[e][1]["answers"]]} for e in sorted(best)]
