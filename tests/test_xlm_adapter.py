"""The ``xlm_adapter`` model family: routing, parameter counts, adapter init, architectures."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import xlint.user_dir  # noqa: F401
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from xlint.user_dir.models.xlm_adapter import XlmAdapterConfig, XlmAdapterModel
from xlint.user_dir.modules.residual_adapter import ResidualAdapter

USER_DIR = Path(__file__).resolve().parents[1] / "user_dir"
LANGS = ["en", "fr", "sw"]
D, FFN, HEADS, LAYERS, MAX_POS = 32, 48, 4, 2, 40
VARIANTS = ["joint", "ffn", "attn", "adapter", "shared_adapter"]


def make_dictionary(size: int = 20) -> Dictionary:
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"w{i}")
    return d


def build(variant: str, languages=LANGS, seed: int = 0, **overrides) -> XlmAdapterModel:
    torch.manual_seed(seed)
    cfg = XlmAdapterConfig(encoder_layers=LAYERS, encoder_embed_dim=D, encoder_ffn_embed_dim=FFN,
                           encoder_attention_heads=HEADS, max_positions=MAX_POS, language_specific=variant,
                           dropout=0.1, attention_dropout=0.1, **overrides)
    task = SimpleNamespace(languages=list(languages), source_dictionary=make_dictionary())
    model = XlmAdapterModel.build_model(cfg, task)
    return model.eval()


def tokens(batch: int = 4, length: int = 9, seed: int = 1, pad_rows=(1,)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    d = make_dictionary()
    toks = torch.randint(d.nspecial, len(d), (batch, length), generator=gen)
    toks[:, 0] = d.bos()
    for r in pad_rows:  # right padding of varied lengths
        if r < batch:
            toks[r, length - 3:] = d.pad()
    return toks


def forward(model, toks, lang_ids) -> torch.Tensor:
    with torch.no_grad():
        out, _ = model(toks, src_lang_id=torch.as_tensor(lang_ids, dtype=torch.long))
    return out


def perturb(params, seed: int = 5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in params:
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)


def assert_unchanged(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def assert_changed(a, b):
    assert (a - b).abs().max() > 1e-3


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("variant", ["ffn", "attn", "adapter"])
def test_routing_isolates_languages(variant):
    model = build(variant)
    if variant == "adapter":  # adapters start near identity: make the languages' copies differ
        perturb([(n, p) for n, p in model.named_parameters() if "adapter" in n], seed=4)
    toks = tokens()
    en, fr = forward(model, toks, [0] * 4), forward(model, toks, [1] * 4)
    mixed_ids = [0, 1, 1, 0]
    mixed = forward(model, toks, mixed_ids)
    assert_changed(en, fr)  # same tokens, different language modules

    perturb(model.language_parameters("fr"))
    en2, fr2, mixed2 = forward(model, toks, [0] * 4), forward(model, toks, [1] * 4), forward(model, toks, mixed_ids)
    assert_unchanged(en, en2)
    assert_changed(fr, fr2)
    # in a mixed batch, only the French rows move
    assert_unchanged(mixed[[0, 3]], mixed2[[0, 3]])
    assert_changed(mixed[[1, 2]], mixed2[[1, 2]])

    perturb(model.language_parameters("en"), seed=6)
    assert_changed(en2, forward(model, toks, [0] * 4))
    assert_unchanged(fr2, forward(model, toks, [1] * 4))


@pytest.mark.parametrize("variant", ["shared_adapter", "joint"])
def test_shared_variants_have_no_language_modules(variant):
    model = build(variant)
    toks = tokens()
    en, fr = forward(model, toks, [0] * 4), forward(model, toks, [1] * 4)
    assert_unchanged(en, fr)  # the language id changes nothing
    for lang in LANGS:
        assert list(model.language_parameters(lang)) == []
    if variant == "shared_adapter":
        adapters = [(n, p) for n, p in model.named_parameters() if "adapter" in n]
        assert adapters
        perturb(adapters)
        assert_changed(en, forward(model, toks, [0] * 4))
        assert_changed(fr, forward(model, toks, [1] * 4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_batch_equals_per_language_forward(variant):
    model = build(variant)
    perturb([(n, p) for n, p in model.named_parameters() if "adapter" in n])  # make adapters matter
    toks = tokens(batch=6, pad_rows=(1, 4))
    ids = torch.tensor([0, 2, 1, 0, 2, 2])
    mixed = forward(model, toks, ids)
    for lang in range(len(LANGS)):
        rows = (ids == lang).nonzero(as_tuple=True)[0]
        alone = forward(model, toks[rows], ids[rows])
        torch.testing.assert_close(mixed[rows], alone, rtol=1e-5, atol=1e-5)
    if variant in ("ffn", "attn", "adapter"):
        # and the routing really differs from sending everything through one language
        assert_changed(mixed, forward(model, toks, torch.zeros_like(ids)))


def test_batch_language_hint_routes_like_the_ids():
    """``net_input["batch_lang_id"]`` (set by the collater) takes the single-language path
    without inspecting ``src_lang_id``; -1 (a mixed batch) falls back to the ids."""
    model = build("ffn")
    toks = tokens()
    with torch.no_grad():
        by_ids = model(toks, src_lang_id=torch.full((4,), 2))[0]
        by_hint = model(toks, src_lang_id=torch.full((4,), 2), batch_lang_id=2)[0]
        mixed_ids = torch.tensor([0, 1, 1, 0])
        mixed = model(toks, src_lang_id=mixed_ids)[0]
        mixed_hint = model(toks, src_lang_id=mixed_ids, batch_lang_id=-1)[0]
    assert_unchanged(by_ids, by_hint)
    assert_unchanged(mixed, mixed_hint)


def test_missing_language_ids_raise():
    model = build("adapter")
    with pytest.raises(ValueError, match="src_lang_id"):
        model(tokens())


def test_model_and_task_languages_must_agree():
    cfg = XlmAdapterConfig(encoder_layers=1, encoder_embed_dim=D, encoder_ffn_embed_dim=FFN,
                           encoder_attention_heads=HEADS, language_specific="adapter", model_languages="fr,en")
    with pytest.raises(ValueError, match="differ"):
        XlmAdapterModel.build_model(cfg, SimpleNamespace(languages=["en", "fr"], source_dictionary=make_dictionary()))
    # the task's languages are recorded in the config when none are given
    model = build("ffn", languages=["fr", "en"])
    assert model.cfg.model_languages == "fr,en" and model.languages == ["fr", "en"]


def test_heads_must_divide_dimension():
    with pytest.raises(ValueError, match="divisible"):
        XlmAdapterModel.build_model(
            XlmAdapterConfig(encoder_embed_dim=30, encoder_attention_heads=4, encoder_layers=1),
            SimpleNamespace(languages=["en"], source_dictionary=make_dictionary()))


# --------------------------------------------------------------------------- parameter counts


def expected_counts(variant: str, vocab: int, n_lang: int) -> dict:
    """Independent parameter arithmetic (post-norm layer, learned positions, tied LM head)."""
    d, f, L, b = D, FFN, LAYERS, D // 4
    attn = 4 * (d * d + d)  # q, k, v, out projections with biases
    ffn = d * f + f + f * d + d
    layer_norms = 2 * (2 * d)  # two LayerNorms per layer
    adapter = d * b + b + b * d + d  # down + up with biases
    pad = 1
    embeddings = vocab * d + (MAX_POS + pad + 1) * d + 2 * d  # tokens, positions, embedding LayerNorm
    lm_head = d * d + d + 2 * d + vocab  # dense, LayerNorm, output bias (weight tied to embeddings)
    joint_shared = embeddings + lm_head + L * (attn + ffn + layer_norms)
    shared, per_lang = {
        "joint": (joint_shared, 0),
        "ffn": (joint_shared - L * ffn, L * ffn),
        "attn": (joint_shared - L * attn, L * attn),
        "adapter": (joint_shared, L * 2 * adapter),
        "shared_adapter": (joint_shared + L * 2 * adapter, 0),
    }[variant]
    return {"shared": shared, "per_language": per_lang, "total": shared + n_lang * per_lang}


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_match_formula(variant):
    model = build(variant)
    vocab = len(make_dictionary())
    want = expected_counts(variant, vocab, len(LANGS))
    counts = model.parameter_counts()
    assert counts["shared"] == want["shared"]
    for lang in LANGS:
        assert counts[lang] == want["per_language"]
    assert sum(p.numel() for p in model.parameters()) == want["total"]


def test_adapter_bottleneck_option():
    model = build("adapter", adapter_bottleneck=5)
    adapter = next(m for m in model.modules() if isinstance(m, ResidualAdapter))
    assert adapter.down.weight.shape == (5, D) and adapter.up.weight.shape == (D, 5)
    assert model.parameter_counts()["en"] == LAYERS * 2 * (D * 5 + 5 + 5 * D + D)


@pytest.mark.parametrize("variant", VARIANTS)
def test_language_and_shared_parameters_partition_all_parameters(variant):
    model = build(variant)
    all_names = [n for n, _ in model.named_parameters()]
    groups = [dict(model.shared_parameters())] + [dict(model.language_parameters(lang)) for lang in LANGS]
    union = [n for g in groups for n in g]
    assert sorted(union) == sorted(all_names)  # covers everything, no name twice
    for lang, group in zip(LANGS, groups[1:]):
        assert all(f".per_language.{lang}." in n for n in group)
    assert not any("per_language" in n for n in groups[0])
    with pytest.raises(KeyError):
        list(model.language_parameters("de"))


# --------------------------------------------------------------------------- adapter init


def test_adapters_start_near_identity():
    model = build("adapter")
    adapters = [m for m in model.modules() if isinstance(m, ResidualAdapter)]
    assert len(adapters) == LAYERS * 2 * len(LANGS)
    z = torch.randn(7, 3, D)
    for adapter in adapters:
        # init_bert_params (std 0.02) must not have overwritten the adapters' small init
        assert adapter.down.weight.std() < 5e-3 and adapter.up.weight.std() < 5e-3
        assert torch.count_nonzero(adapter.down.bias) == 0 and torch.count_nonzero(adapter.up.bias) == 0
        with torch.no_grad():
            rel = (adapter(z, None) - z).norm() / z.norm()
        assert rel < 1e-3

    # the whole adapter model starts close to a joint model with the same shared weights
    joint = build("joint", seed=1)
    missing, unexpected = joint.load_state_dict(
        {n: p for n, p in model.state_dict().items() if "adapter" not in n}, strict=False)
    assert not missing and not unexpected
    toks = tokens()
    torch.testing.assert_close(forward(model, toks, [2] * 4), forward(joint, toks, [2] * 4), rtol=0, atol=1e-2)
    assert (forward(model, toks, [2] * 4) - forward(build("joint", seed=2), toks, [2] * 4)).abs().max() > 0.1


# --------------------------------------------------------------------------- architectures


def parsed_model(data, arch: str, *extra):
    argv = [str(data.path), "--user-dir", str(USER_DIR), "--task", "xlm_mlm", "--arch", arch,
            "--criterion", "masked_lm", "--cpu", *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    return cfg, tasks.setup_task(cfg.task)


def test_paper_architecture(tiny_mlm_data):
    cfg, task = parsed_model(tiny_mlm_data, "xlm_adapter_paper", "--language-specific", "ffn")
    m = cfg.model
    assert (m.encoder_layers, m.encoder_embed_dim, m.encoder_ffn_embed_dim, m.encoder_attention_heads) == (
        8, 512, 2048, 8)
    model = task.build_model(cfg.model)
    enc = model.encoder
    assert len(enc.layers) == 8
    assert enc.embed_tokens.weight.shape[1] == 512
    assert enc.layers[0].self_attn.attention.num_heads == 8
    for lang in ("en", "fr"):
        assert enc.layers[7].ffn.per_language[lang].fc1.weight.shape == (2048, 512)
    assert model.languages == ["en", "fr"]


def test_base_and_tiny_architectures_and_overrides(tiny_mlm_data):
    cfg, _ = parsed_model(tiny_mlm_data, "xlm_adapter_base")
    m = cfg.model
    assert (m.encoder_layers, m.encoder_embed_dim, m.encoder_ffn_embed_dim, m.encoder_attention_heads) == (
        12, 768, 3072, 12)
    cfg, _ = parsed_model(tiny_mlm_data, "xlm_adapter_tiny", "--encoder-layers", "3")
    m = cfg.model
    assert (m.encoder_layers, m.encoder_embed_dim, m.encoder_ffn_embed_dim, m.encoder_attention_heads) == (
        3, 64, 128, 4)  # the command line wins over the architecture's defaults
    assert m.language_specific == "joint"
