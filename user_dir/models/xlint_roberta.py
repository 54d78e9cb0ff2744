"""``xlint_roberta``: fairseq's RoBERTa / XLM-R encoder with xlint's fine-tuning heads.

The official XLM-R releases (``xlmr.base``, ``xlmr.large``, ``xlmr.xl``, ``xlmr.xxl``;
Conneau et al. 2020; Goyal et al. 2021) are fairseq ``roberta`` checkpoints.  This model
is :class:`fairseq.models.roberta.RobertaModel` itself (same modules, same parameter
names, so such a checkpoint loads into it unchanged) plus what xlint's fine-tuning tasks
ask of a model:

* :meth:`XlintRobertaModel.register_head` adds a head of :mod:`.task_heads` (token,
  sentence, span) under ``heads.<name>``; with ``seed`` its weights are drawn from a
  generator of that seed (BERT's init: normal(0, 0.02) weights, zero biases), so the
  head does not depend on how many random numbers the encoder's own (overwritten)
  initialisation drew;
* ``forward(..., head=NAME)`` returns that head's logits; ``src_lengths`` and
  ``src_lang_id`` are accepted and ignored: the family has **no language-specific
  modules** (:meth:`language_of_parameter` is always ``None``, :attr:`languages` empty);
* loading is strict: :meth:`upgrade_state_dict_named` applies fairseq's renames of old
  releases (``decoder.*`` -> ``encoder.*``, ``emb_layer_norm`` -> ``layernorm_embedding``),
  keeps this model's fresh heads where a checkpoint has none, and refuses fairseq
  ``classification_heads.*`` of a checkpoint (e.g. ``roberta.large.mnli``) instead of
  dropping them silently; any other missing or unexpected key fails torch's strict load.
  :func:`state_mismatch` gives the one-line reason without building a model.

Architectures (defaults only; ``xlint finetune`` copies every option of the pretrained
checkpoint's cfg): ``xlint_roberta`` / ``xlint_roberta_base`` (12 layers, d=768, XLM-R
base) and ``xlint_roberta_large`` (24 layers, d=1024, XLM-R large).  Layers and sublayers
are addressed as for ``xlm_adapter`` through :mod:`.layer_groups`.
"""
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaModel, base_architecture, roberta_large_architecture

from .task_heads import new_head

#: what :mod:`.layer_groups` and the CLI call this family
FAMILY = "roberta"
#: std of BERT's normal initialisation (``init_bert_params``)
BERT_INIT_STD = 0.02


def seeded_bert_init_(module: nn.Module, seed: int) -> None:
    """BERT's init of every ``nn.Linear`` in ``module`` from a generator seeded with ``seed``:
    ``W ~ N(0, 0.02^2)``, ``b = 0`` (``init_bert_params``, but reproducible by seed alone)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            weight = torch.empty(sub.weight.shape, dtype=torch.float32).normal_(0.0, BERT_INIT_STD,
                                                                                generator=generator)
            with torch.no_grad():
                sub.weight.copy_(weight)
                if sub.bias is not None:
                    sub.bias.zero_()


@register_model("xlint_roberta")
class XlintRobertaModel(RobertaModel):
    """RobertaModel + xlint's task heads (see the module docstring)."""

    FAMILY = FAMILY

    def __init__(self, args, encoder):
        super().__init__(args, encoder)
        self.heads = nn.ModuleDict()

    @classmethod
    def build_model(cls, args, task):
        if getattr(args, "max_positions", None) is None and getattr(args, "tokens_per_sample", None) is None:
            raise ValueError("xlint_roberta needs --max-positions (the pretrained model's, e.g. 512 for XLM-R)")
        return super().build_model(args, task)

    # -- what the fine-tuning tasks ask of a model ---------------------------------

    @property
    def languages(self) -> List[str]:
        """No language owns modules in this family."""
        return []

    @staticmethod
    def language_of_parameter(name: str) -> Optional[str]:
        return None

    def shared_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """Every parameter: none is language-specific."""
        return iter(self.named_parameters())

    def language_parameters(self, lang: str) -> Iterator[Tuple[str, nn.Parameter]]:
        raise KeyError(f"a roberta-family model has no language-specific modules (asked for {lang!r})")

    def parameter_counts(self) -> Dict[str, int]:
        return {"shared": sum(p.numel() for p in self.parameters())}

    def forward(self, src_tokens, src_lengths=None, src_lang_id=None, features_only=False,
                return_all_hiddens=False, masked_tokens=None, head: Optional[str] = None,
                batch_lang_id: Optional[int] = None, classification_head_name: Optional[str] = None, **kwargs):
        """MLM logits (default), features (``features_only``) or the logits of an xlint head."""
        if classification_head_name is not None:
            return super().forward(src_tokens, features_only, return_all_hiddens, classification_head_name)
        out, extra = self.encoder(src_tokens, features_only=features_only or head is not None,
                                  return_all_hiddens=return_all_hiddens, masked_tokens=masked_tokens)
        if head is not None:
            out = self.heads[head](out)
        return out, extra

    def register_head(self, name: str, kind: str, num_outputs: int, dropout: Optional[float] = None,
                      seed: Optional[int] = None) -> None:
        """Add a fine-tuning head of ``kind`` token, sentence or span (see the module docstring)."""
        head = new_head(self.heads, name, kind, num_outputs, self.args.encoder_embed_dim,
                        self.args.dropout if dropout is None else dropout)
        if head is None:
            return
        if seed is None:
            from fairseq.modules.transformer_sentence_encoder import init_bert_params

            head.apply(init_bert_params)
        else:
            seeded_bert_init_(head, seed)
        reference = self.encoder.sentence_encoder.embed_tokens.weight
        self.heads[name] = head.to(device=reference.device, dtype=reference.dtype)

    def upgrade_state_dict_named(self, state_dict, name):
        prefix = name + "." if name else ""
        foreign = sorted(k for k in state_dict if k.startswith(prefix + "classification_heads."))
        if foreign:
            raise ValueError(f"the checkpoint has fairseq classification head weights ({foreign[0]}): "
                             "xlint fine-tunes from an encoder release, not from a fine-tuned RoBERTa")
        super().upgrade_state_dict_named(state_dict, name)
        current = {prefix + k: v for k, v in self.state_dict().items() if k.startswith("heads.")}
        for key in [k for k in state_dict if k.startswith(prefix + "heads.") and k not in current]:
            del state_dict[key]
        for key, value in current.items():
            state_dict.setdefault(key, value)


def state_mismatch(expected: Mapping[str, torch.Size], saved: Mapping[str, torch.Size]) -> Optional[str]:
    """Why a release's encoder state (name -> shape, after fairseq's upgrade of old names) does
    not load strictly into a model whose state is ``expected`` (its ``heads.*`` excluded), or None."""
    expected = {k: v for k, v in expected.items() if not k.startswith("heads.")}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"missing key {missing[0]}{more}"
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        return f"unexpected key {unexpected[0]}{more}"
    for key in sorted(expected):
        if tuple(expected[key]) != tuple(saved[key]):
            return f"key {key} has shape {list(saved[key])}, the model builds {list(expected[key])}"
    return None


# --------------------------------------------------------------------------- architectures


@register_model_architecture("xlint_roberta", "xlint_roberta")
def xlint_roberta(args) -> None:
    """fairseq's ``roberta`` defaults (12 layers, d=768, FFN 3072, 12 heads, post-norm)."""
    base_architecture(args)


@register_model_architecture("xlint_roberta", "xlint_roberta_base")
def xlint_roberta_base(args) -> None:
    """XLM-R base: 12 layers, d=768, FFN 3072, 12 heads (vocabulary 250,002)."""
    base_architecture(args)


@register_model_architecture("xlint_roberta", "xlint_roberta_large")
def xlint_roberta_large(args) -> None:
    """XLM-R large: 24 layers, d=1024, FFN 4096, 16 heads (vocabulary 250,002)."""
    roberta_large_architecture(args)
