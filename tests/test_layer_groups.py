"""The layer interface (user_dir/models/layer_groups.py) on both model families.

Expected names are written out by hand from each family's module layout; representations are
checked against the encoders' own ``return_all_hiddens`` states (and, for a pre-norm roberta,
against the final layer norm applied by hand).
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch

import xlint.user_dir  # noqa: F401
from fairseq.data import Dictionary

from xlint.user_dir.models import layer_groups as lg
from xlint.user_dir.models.xlint_roberta import XlintRobertaModel, xlint_roberta
from xlint.user_dir.models.xlm_adapter import XlmAdapterConfig, XlmAdapterModel

D, FFN, HEADS, LAYERS, MAX_POS = 16, 24, 2, 3, 32


def dictionary() -> Dictionary:
    d = Dictionary()
    for i in range(12):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


def build_adapter(variant: str = "adapter") -> XlmAdapterModel:
    torch.manual_seed(0)
    cfg = XlmAdapterConfig(encoder_layers=LAYERS, encoder_embed_dim=D, encoder_ffn_embed_dim=FFN,
                           encoder_attention_heads=HEADS, max_positions=MAX_POS, language_specific=variant)
    task = SimpleNamespace(languages=["en", "fr"], source_dictionary=dictionary())
    return XlmAdapterModel.build_model(cfg, task).eval()


def build_roberta(prenorm: bool = False) -> XlintRobertaModel:
    torch.manual_seed(0)
    args = argparse.Namespace(encoder_layers=LAYERS, encoder_embed_dim=D, encoder_ffn_embed_dim=FFN,
                              encoder_attention_heads=HEADS, max_positions=MAX_POS)
    if prenorm:
        args.encoder_normalize_before, args.layernorm_embedding = True, False
    xlint_roberta(args)
    return XlintRobertaModel.build_model(args, SimpleNamespace(source_dictionary=dictionary())).eval()


def tokens() -> torch.Tensor:
    toks = torch.randint(4, 16, (3, 7), generator=torch.Generator().manual_seed(1))
    toks[:, 0] = 0
    toks[1, 5:] = 1  # padding
    return toks


ROBERTA_LAYER = "encoder.sentence_encoder.layers.{k}."
ROBERTA_ATTN = [f"self_attn.{p}_proj.{w}" for p in ("k", "v", "q", "out") for w in ("weight", "bias")] + \
    ["self_attn_layer_norm.weight", "self_attn_layer_norm.bias"]
ROBERTA_FFN = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "final_layer_norm.weight", "final_layer_norm.bias"]


def test_roberta_names_are_the_modules_own():
    model = build_roberta()
    assert lg.model_family(model) == "roberta" and lg.num_layers(model) == LAYERS
    for k in range(LAYERS):
        prefix = ROBERTA_LAYER.format(k=k)
        assert set(lg.parameter_groups(model, [k], "attn")) == {prefix + n for n in ROBERTA_ATTN}
        assert set(lg.parameter_groups(model, [k], "ffn")) == {prefix + n for n in ROBERTA_FFN}
    assert set(lg.parameter_groups(model, [-1], "all")) == {ROBERTA_LAYER.format(k=LAYERS - 1) + n
                                                            for n in ROBERTA_ATTN + ROBERTA_FFN}
    assert set(lg.embedding_parameters(model)) == {
        "encoder.sentence_encoder.embed_tokens.weight", "encoder.sentence_encoder.embed_positions.weight",
        "encoder.sentence_encoder.layernorm_embedding.weight", "encoder.sentence_encoder.layernorm_embedding.bias"}


def test_xlm_adapter_names_include_adapters_and_language_copies():
    model = build_adapter("adapter")
    attn = lg.parameter_groups(model, [1], "attn")
    ffn = lg.parameter_groups(model, [1], "ffn")
    assert all(n.startswith("encoder.layers.1.") for n in list(attn) + list(ffn))
    assert {n.split(".")[3] for n in attn} == {"self_attn", "adapter_after_attn", "self_attn_layer_norm"}
    assert {n.split(".")[3] for n in ffn} == {"ffn", "adapter_after_ffn", "final_layer_norm"}
    assert any(".per_language.fr." in n for n in attn) and any(".per_language.en." in n for n in ffn)
    routed = lg.parameter_groups(build_adapter("attn"), None, "attn")
    assert {model.language_of_parameter(n) for n in routed} >= {"en", "fr"}


@pytest.mark.parametrize("build", [build_roberta, build_adapter, lambda: build_adapter("ffn")])
def test_blocks_partition_each_layer_and_layers_embeddings_heads_partition_the_model(build):
    model = build()
    names = [n for n, _ in model.named_parameters()]
    seen = []
    for k in range(lg.num_layers(model)):
        attn, ffn, everything = (set(lg.parameter_groups(model, [k], s)) for s in lg.SUBLAYERS)
        assert attn and ffn and not attn & ffn and attn | ffn == everything
        for name in attn:
            assert lg.address_of_parameter(model, name) == (k, "attn")
        for name in ffn:
            assert lg.address_of_parameter(model, name) == (k, "ffn")
        seen += sorted(everything)
    layers = set(lg.parameter_groups(model))
    assert layers == set(seen) and len(seen) == len(layers)
    rest = set(names) - layers - set(lg.embedding_parameters(model))
    assert rest and all(".lm_head." in n or n.startswith("encoder.lm_head") for n in rest)
    assert all(lg.address_of_parameter(model, n) is None for n in rest)
    assert list(lg.parameter_groups(model)) == [n for n in names if n in layers]  # the model's order


def test_addresses_are_checked():
    model = build_roberta()
    assert lg.layer_index(model, -1) == LAYERS - 1
    with pytest.raises(IndexError, match="0..2"):
        lg.parameter_groups(model, [LAYERS])
    with pytest.raises(ValueError, match="attn, ffn, all"):
        lg.parameter_groups(model, [0], "mlp")
    with pytest.raises(TypeError):
        lg.encoder_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("family", ["roberta", "xlm_adapter"])
def test_layer_outputs_equal_the_encoders_inner_states(family):
    model = build_roberta() if family == "roberta" else build_adapter("joint")
    toks = tokens()
    extra_args = {} if family == "roberta" else {"src_lang_id": torch.zeros(3, dtype=torch.long)}
    with torch.no_grad(), lg.layer_outputs(model) as outputs:
        features, extra = model(toks, features_only=True, return_all_hiddens=True, **extra_args)
    states = extra["inner_states"]
    assert len(states) == LAYERS + 1 and sorted(outputs) == list(range(LAYERS))
    for k in range(LAYERS):
        assert outputs[k].shape == (3, 7, D)
        assert torch.equal(outputs[k], states[k + 1].transpose(0, 1))
    assert torch.allclose(outputs[LAYERS - 1], features)  # post-norm: the last layer's output is the output
    with torch.no_grad(), lg.layer_outputs(model, layers=[0]) as only_first:
        model(toks, features_only=True, **extra_args)
    assert list(only_first) == [0] and torch.equal(only_first[0], outputs[0])
    assert all(not layer._forward_hooks for layer in lg.encoder_layers(model))  # hooks removed


def test_prenorm_roberta_output_is_the_final_norm_of_the_last_layer():
    model = build_roberta(prenorm=True)
    with torch.no_grad(), lg.layer_outputs(model, layers=[-1]) as outputs:
        features, _ = model(tokens(), features_only=True)
    norm = model.encoder.sentence_encoder.layer_norm
    assert norm is not None and not torch.allclose(outputs[LAYERS - 1], features)
    assert torch.allclose(norm(outputs[LAYERS - 1]), features, atol=1e-6)


def test_freezing_a_group_freezes_exactly_it():
    model = build_roberta()
    group = lg.parameter_groups(model, [0, 2], "ffn")
    for param in group.values():
        param.requires_grad_(False)
    model.train()
    loss = model(tokens(), features_only=True)[0].pow(2).sum()
    loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == (name in group or name.startswith("encoder.lm_head")), name
