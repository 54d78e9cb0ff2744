"""``xlm_adapter``: an XLM/RoBERTa-style MLM encoder with language-specific modules.

Wang, Lipton & Tsvetkov (2020) compare a jointly trained encoder with variants that
give every language its own copy of some sublayer.  One option,
``--language-specific``, selects the variant:

``joint``
    no language-specific parameters (Mono / JointPair / JointTri are data choices).
``ffn``
    a copy of the feed-forward sublayer per language in every layer (``+ffn``).
``attn``
    a copy of the self-attention sublayer per language in every layer (``+attn``).
``adapter``
    two residual adapters per language in every layer (``+adapt``), one on the
    output of the attention sublayer and one on the output of the FFN sublayer,
    placed before the residual connection and layer norm (Houlsby et al. 2019):
    ``o = W_h g(W_z z) + z`` with bottleneck ``b = d/4`` by default and
    near-identity initialisation.
``shared_adapter``
    the same two adapters per layer, shared by all languages (``+share adapt``).

Routing: ``net_input["src_lang_id"]`` (one language index per sentence, indexing
``--languages``) selects each sentence's modules (:mod:`..modules.language_routed`).
xlint's tasks put one language in every batch, which takes a single fast path; mixed
batches are split by language.

Parameter naming: every language-specific parameter name contains
``.per_language.<lang>.``; :meth:`XlmAdapterModel.language_parameters` and
:meth:`XlmAdapterModel.shared_parameters` split the parameters on that rule.
Fine-tuning heads: :mod:`.task_heads`.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderModel,
    register_model,
    register_model_architecture,
)
from fairseq.models.roberta.model import RobertaLMHead
from fairseq.modules import LayerNorm, PositionalEmbedding
from fairseq.modules.transformer_sentence_encoder import init_bert_params

from ..modules.language_routed import LanguageRouted, Routes, routes_for, run_sublayer
from ..modules.residual_adapter import ResidualAdapter
from ..modules.transformer_sublayers import FeedForwardSublayer, SelfAttentionSublayer
from .task_heads import new_head

LANGUAGE_SPECIFIC_CHOICES = ("joint", "ffn", "attn", "adapter", "shared_adapter")


@dataclass
class XlmAdapterConfig(FairseqDataclass):
    encoder_layers: int = field(default=8, metadata={"help": "number of encoder layers"})
    encoder_embed_dim: int = field(default=512, metadata={"help": "model (embedding) dimension d"})
    encoder_ffn_embed_dim: int = field(default=2048, metadata={"help": "feed-forward inner dimension"})
    encoder_attention_heads: int = field(
        default=8,
        metadata={"help": "attention heads (the paper's '12 heads' cannot divide d=512; xlint uses 8)"},
    )
    activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="gelu", metadata={"help": "activation function of FFN, adapters and LM head"}
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and sublayer outputs"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    max_positions: int = field(default=512, metadata={"help": "maximum sequence length (learned positions)"})
    language_specific: ChoiceEnum(LANGUAGE_SPECIFIC_CHOICES) = field(
        default="joint",
        metadata={"help": "which modules are language-specific: " + ", ".join(LANGUAGE_SPECIFIC_CHOICES)},
    )
    adapter_bottleneck: int = field(
        default=0, metadata={"help": "adapter bottleneck size b; 0 means d/4 (the paper's choice)"}
    )
    adapter_init_std: float = field(
        default=1e-3,
        metadata={"help": "std of the adapters' normal init; small values make adapters near-identity"},
    )
    model_languages: str = field(
        default="",
        metadata={
            "help": "comma-separated languages owning language-specific modules, in src_lang_id "
            "order; empty takes the task's --languages (saved with the checkpoint)"
        },
    )


# --------------------------------------------------------------------------- encoder


class XlmAdapterLayer(nn.Module):
    """Post-norm Transformer layer (as XLM/RoBERTa) with optional language-specific parts."""

    def __init__(self, cfg: XlmAdapterConfig, languages: Sequence[str]):
        super().__init__()
        variant = cfg.language_specific
        dim = cfg.encoder_embed_dim

        def maybe_routed(make_sublayer: Callable[[], nn.Module], routed: bool) -> nn.Module:
            return LanguageRouted(make_sublayer, languages) if routed else make_sublayer()

        def attention() -> nn.Module:
            return SelfAttentionSublayer(dim, cfg.encoder_attention_heads, cfg.attention_dropout)

        def ffn() -> nn.Module:
            return FeedForwardSublayer(dim, cfg.encoder_ffn_embed_dim, cfg.activation_fn, cfg.activation_dropout)

        def adapter() -> nn.Module:
            return ResidualAdapter(dim, cfg.adapter_bottleneck or dim // 4, cfg.activation_fn, cfg.adapter_init_std)

        self.self_attn = maybe_routed(attention, variant == "attn")
        self.ffn = maybe_routed(ffn, variant == "ffn")
        if variant in ("adapter", "shared_adapter"):
            routed = variant == "adapter"
            self.adapter_after_attn = maybe_routed(adapter, routed)
            self.adapter_after_ffn = maybe_routed(adapter, routed)
        else:
            self.adapter_after_attn = None
            self.adapter_after_ffn = None
        self.self_attn_layer_norm = LayerNorm(dim)
        self.final_layer_norm = LayerNorm(dim)
        self.dropout = cfg.dropout

    def _sublayer_block(self, sublayer, adapter, x, padding_mask, routes):
        residual = x
        x = run_sublayer(sublayer, x, padding_mask, routes)
        x = F.dropout(x, p=self.dropout, training=self.training)
        if adapter is not None:
            x = run_sublayer(adapter, x, padding_mask, routes)
        return residual + x

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], routes: Routes) -> torch.Tensor:
        x = self.self_attn_layer_norm(
            self._sublayer_block(self.self_attn, self.adapter_after_attn, x, padding_mask, routes)
        )
        return self.final_layer_norm(
            self._sublayer_block(self.ffn, self.adapter_after_ffn, x, padding_mask, routes)
        )


class XlmAdapterEncoder(FairseqEncoder):
    """Token + learned position embeddings, post-norm layers and a tied MLM head."""

    def __init__(self, cfg: XlmAdapterConfig, dictionary, languages: Sequence[str]):
        super().__init__(dictionary)
        self.languages = list(languages)
        self.padding_idx = dictionary.pad()
        dim = cfg.encoder_embed_dim
        self.embed_tokens = nn.Embedding(len(dictionary), dim, self.padding_idx)
        self.embed_positions = PositionalEmbedding(cfg.max_positions, dim, self.padding_idx, learned=True)
        self.layernorm_embedding = LayerNorm(dim)
        self.dropout = cfg.dropout
        self.layers = nn.ModuleList([XlmAdapterLayer(cfg, self.languages) for _ in range(cfg.encoder_layers)])
        self.lm_head = RobertaLMHead(dim, len(dictionary), cfg.activation_fn, weight=self.embed_tokens.weight)
        self.max_source_positions = cfg.max_positions

    def forward(
        self,
        src_tokens: torch.Tensor,
        src_lengths: Optional[torch.Tensor] = None,
        src_lang_id: Optional[torch.Tensor] = None,
        features_only: bool = False,
        return_all_hiddens: bool = False,
        masked_tokens: Optional[torch.Tensor] = None,
        batch_lang_id: Optional[int] = None,
        **unused,
    ):
        features, inner_states = self.extract_features(src_tokens, src_lang_id, return_all_hiddens, batch_lang_id)
        extra = {"inner_states": inner_states}
        if features_only:
            return features, extra
        return self.lm_head(features, masked_tokens=masked_tokens), extra

    def extract_features(
        self, src_tokens: torch.Tensor, src_lang_id: Optional[torch.Tensor], return_all_hiddens: bool = False,
        batch_lang_id: Optional[int] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Return features ``B x T x C`` and, if asked, every layer's ``T x B x C`` states."""
        routes = routes_for(src_lang_id, src_tokens.size(0), batch_lang_id)
        padding_mask = src_tokens.eq(self.padding_idx)
        has_pads = bool(padding_mask.any())
        x = self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        x = F.dropout(self.layernorm_embedding(x), p=self.dropout, training=self.training)
        if has_pads:
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        x = x.transpose(0, 1)
        layer_mask = padding_mask if has_pads else None
        inner_states = [x] if return_all_hiddens else []
        for layer in self.layers:
            x = layer(x, layer_mask, routes)
            if return_all_hiddens:
                inner_states.append(x)
        return x.transpose(0, 1), inner_states

    def max_positions(self) -> int:
        return self.max_source_positions


# --------------------------------------------------------------------------- model


@register_model("xlm_adapter", dataclass=XlmAdapterConfig)
class XlmAdapterModel(FairseqEncoderModel):
    """Multilingual MLM encoder; see the module docstring for the variants."""

    #: what :mod:`.layer_groups` and the CLI call this family
    FAMILY = "xlm_adapter"

    def __init__(self, cfg: XlmAdapterConfig, encoder: XlmAdapterEncoder):
        super().__init__(encoder)
        self.cfg = cfg
        self.heads = nn.ModuleDict()
        self.apply(init_bert_params)
        for module in self.modules():  # init_bert_params overwrote the adapters' init
            if isinstance(module, ResidualAdapter):
                module.reset_parameters()

    @classmethod
    def build_model(cls, cfg: XlmAdapterConfig, task) -> "XlmAdapterModel":
        if cfg.encoder_embed_dim % cfg.encoder_attention_heads:
            raise ValueError(
                f"--encoder-embed-dim {cfg.encoder_embed_dim} is not divisible by "
                f"--encoder-attention-heads {cfg.encoder_attention_heads}"
            )
        task_languages = list(getattr(task, "languages", []) or [])
        if not cfg.model_languages:
            if not task_languages:
                raise ValueError("xlm_adapter needs --model-languages (or a task that defines languages)")
            cfg.model_languages = ",".join(task_languages)
        languages = cfg.model_languages.split(",")
        if task_languages and task_languages != languages:
            raise ValueError(
                f"the task's languages {task_languages} differ from the model's {languages}; "
                "language ids would route to the wrong modules"
            )
        return cls(cfg, XlmAdapterEncoder(cfg, task.source_dictionary, languages))

    def upgrade_state_dict_named(self, state_dict, name):
        """Reconcile the meta-learning state (``meta_state.*``) between meta_mlm and other tasks."""
        super().upgrade_state_dict_named(state_dict, name)
        prefix = name + "." if name else ""
        # fine-tuning from a pretrained checkpoint: keep this model's new heads, drop unknown ones
        current = {prefix + k: v for k, v in self.state_dict().items() if k.startswith("heads.")}
        for key in [k for k in state_dict if k.startswith(prefix + "heads.") and k not in current]:
            del state_dict[key]
        for key, value in current.items():
            state_dict.setdefault(key, value)
        key = prefix + "meta_state._extra_state"
        if hasattr(self, "meta_state"):
            state_dict.setdefault(key, {"phi_optimizer": None, "streams": {}})
        else:
            state_dict.pop(key, None)

    @property
    def languages(self) -> List[str]:
        return self.encoder.languages

    def forward(self, src_tokens, src_lengths=None, src_lang_id=None, features_only=False,
                return_all_hiddens=False, masked_tokens=None, head: Optional[str] = None,
                batch_lang_id: Optional[int] = None, **kwargs):
        """MLM logits (default), encoder features (``features_only``) or a task head's logits."""
        out, extra = self.encoder(
            src_tokens,
            src_lengths=src_lengths,
            src_lang_id=src_lang_id,
            batch_lang_id=batch_lang_id,
            features_only=features_only or head is not None,
            return_all_hiddens=return_all_hiddens,
            masked_tokens=masked_tokens,
        )
        if head is not None:
            out = self.heads[head](out)
        return out, extra

    def register_head(self, name: str, kind: str, num_outputs: int, dropout: Optional[float] = None) -> None:
        """Add a fine-tuning head: ``kind`` is token (tagging), sentence (classification) or span (QA)."""
        head = new_head(self.heads, name, kind, num_outputs, self.cfg.encoder_embed_dim,
                        self.cfg.dropout if dropout is None else dropout)
        if head is None:
            return
        head.apply(init_bert_params)
        self.heads[name] = head.to(next(self.parameters()))

    # -- parameter groups used by meta-learning and the analyses ---------------------

    @staticmethod
    def language_of_parameter(name: str) -> Optional[str]:
        """The language owning a parameter (``...per_language.<lang>...``), or None if shared."""
        parts = name.split(".")
        if "per_language" in parts:
            return parts[parts.index("per_language") + 1]
        return None

    def shared_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """theta: every parameter that no single language owns."""
        for name, param in self.named_parameters():
            if self.language_of_parameter(name) is None:
                yield name, param

    def language_parameters(self, lang: str) -> Iterator[Tuple[str, nn.Parameter]]:
        """phi_lang: the parameters of ``lang``'s own modules (empty for ``joint``)."""
        if lang not in self.languages:
            raise KeyError(f"unknown language {lang!r}; the model has {self.languages}")
        for name, param in self.named_parameters():
            if self.language_of_parameter(name) == lang:
                yield name, param

    def parameter_counts(self) -> Dict[str, int]:
        """Number of shared parameters and of each language's own parameters."""
        counts = {"shared": sum(p.numel() for _, p in self.shared_parameters())}
        for lang in self.languages:
            counts[lang] = sum(p.numel() for _, p in self.language_parameters(lang))
        return counts


# --------------------------------------------------------------------------- architectures
# Architecture functions only set defaults; anything given on the command line wins.


def _set_defaults(args, **defaults) -> None:
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


@register_model_architecture("xlm_adapter", "xlm_adapter_paper")
def xlm_adapter_paper(args) -> None:
    """Wang et al. (2020): 8 layers, d=512, FFN 2048, 8 heads (see the config's help on heads)."""
    _set_defaults(args, encoder_layers=8, encoder_embed_dim=512, encoder_ffn_embed_dim=2048,
                  encoder_attention_heads=8, max_positions=512)


@register_model_architecture("xlm_adapter", "xlm_adapter_base")
def xlm_adapter_base(args) -> None:
    """A 12-layer, d=768 encoder (the size of XLM-R base / mBERT used by Guo et al. 2023)."""
    _set_defaults(args, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                  encoder_attention_heads=12, max_positions=512)


@register_model_architecture("xlm_adapter", "xlm_adapter_tiny")
def xlm_adapter_tiny(args) -> None:
    """2 layers, d=64: for tests and CPU demos."""
    _set_defaults(args, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                  encoder_attention_heads=4, max_positions=128)
