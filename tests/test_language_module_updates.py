"""Modules of languages absent from an update stay untouched, whatever the optimizer wrapper.

In one fp32 process an absent language's modules get no gradient and Adam skips them.
``legacy_ddp`` zero-fills missing gradients, and fairseq's ``FP16Optimizer`` steps fp32
copies whose gradients it zero-fills; ``xlm_mlm``'s ``optimizer_step`` clears those
gradients again.  These tests build fairseq's optimizer wrappers directly on a CPU model
(fp32 and half) and run the task's own ``train_step``/``optimizer_step``; the end-to-end
comparisons of 2 gloo ranks with one process are in ``test_distributed.py``.  They also
check the start-up refusals and that the ``xlint pretrain`` presets pass them on 4 GPUs.
"""
from __future__ import annotations

import shlex
from typing import Dict, List, Optional

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (registers the task and model)
from fairseq import optim, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from conftest import USER_DIR
from xlint.cli.commands_pretrain import VARIANTS, pretrain
from xlint.user_dir.tasks.xlm_mlm import FLAT_FP16_FIX, XlmMlmTask

EN, FR = 0, 1


def parse(data_dir, *extra: str):
    argv = [str(data_dir), "--user-dir", str(USER_DIR), "--task", "xlm_mlm", "--arch", "xlm_adapter_tiny",
            "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-2", "--max-tokens", "256",
            "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--seed", "3", "--cpu",
            "--dropout", "0", "--attention-dropout", "0", *extra]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))


def build(data_dir, *extra: str, half: bool = False):
    cfg = parse(data_dir, *extra)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    model = model.half() if half else model
    return cfg, task, model, task.build_criterion(cfg.criterion)


def batch_of(task: XlmMlmTask, lang_index: int, start: int = 0):
    dataset = task.dataset("train")
    rows = dataset.language_rows(lang_index)[start:start + 6]
    return dataset.collater([dataset[int(i)] for i in rows])


def zero_fill_missing_gradients(params) -> None:
    """What legacy_ddp's all-reduce does to parameters without a gradient."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)


def update(task, model, criterion, optimizer, sample, update_num: int, zero_fill: bool) -> None:
    """One update as fairseq's trainer runs it: zero_grad, train_step, (all-reduce), clip, optimizer_step."""
    optimizer.zero_grad()
    task.train_step(sample, model, criterion, optimizer, update_num)
    if zero_fill:
        zero_fill_missing_gradients(p for p in model.parameters() if p.requires_grad)
    optimizer.clip_grad_norm(0.0)
    task.optimizer_step(optimizer, model, update_num)


def stepped_tensors(optimizer, model, lang: str) -> Dict[str, torch.Tensor]:
    """The language's parameters, the tensors the optimizer steps for them, and their Adam state."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    stepped = optimizer.fp32_params if isinstance(optimizer, optim.FP16Optimizer) else [p for _, p in trainable]
    out = {}
    for (name, p), copy_ in zip(trainable, stepped):
        if f".per_language.{lang}." not in name:
            continue
        out[name] = p.detach().clone()
        out[name + "#stepped"] = copy_.detach().clone()
        for key, value in optimizer.optimizer.state.get(copy_, {}).items():
            out[f"{name}#{key}"] = value.clone() if torch.is_tensor(value) else torch.tensor(value)
    return out


def assert_identical(before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


OPTIMIZERS = {
    # name: (extra options, half model, how fairseq's trainer builds the optimizer)
    "fp32": ((), False, lambda cfg, params: optim.build_optimizer(cfg.optimizer, params)),
    "fp16": (("--fp16", "--fp16-no-flatten-grads"), True, optim.FP16Optimizer.build_optimizer),
    "memory_efficient_fp16": (("--memory-efficient-fp16",), True, optim.MemoryEfficientFP16Optimizer.build_optimizer),
}


@pytest.mark.parametrize("zero_fill", [False, True], ids=["one-process", "legacy-ddp-zero-fill"])
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
@pytest.mark.parametrize("variant", ["adapter", "ffn"])
def test_absent_language_is_bit_identical_through_an_update_of_another(tiny_mlm_data, variant, kind, zero_fill):
    extra, half, build_optimizer = OPTIMIZERS[kind]
    cfg, task, model, criterion = build(tiny_mlm_data.path, "--language-specific", variant, *extra, half=half)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    # fr first, so that fr has Adam moments that a zero gradient would still turn into a step
    update(task, model, criterion, optimizer, batch_of(task, FR), 0, zero_fill)
    fr_before, en_before = stepped_tensors(optimizer, model, "fr"), stepped_tensors(optimizer, model, "en")
    assert any(key.endswith("#exp_avg") for key in fr_before)
    update(task, model, criterion, optimizer, batch_of(task, EN), 1, zero_fill)
    assert_identical(fr_before, stepped_tensors(optimizer, model, "fr"))
    en_after = stepped_tensors(optimizer, model, "en")
    assert any(not torch.equal(p, en_after[name]) for name, p in en_before.items() if "#" not in name)


def test_update_freq_keeps_every_language_of_an_update(tiny_mlm_data):
    """Micro-batches of two languages in one update (not the plan's, but possible with other
    iterators): both keep their gradients; a new update (gradients cleared) starts afresh."""
    cfg, task, model, criterion = build(tiny_mlm_data.path, "--language-specific", "adapter")
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    before = {lang: stepped_tensors(optimizer, model, lang) for lang in ("en", "fr")}
    optimizer.zero_grad()
    task.train_step(batch_of(task, EN), model, criterion, optimizer, 0)
    task.train_step(batch_of(task, FR), model, criterion, optimizer, 0)
    task.optimizer_step(optimizer, model, 0)
    for lang in ("en", "fr"):
        after = stepped_tensors(optimizer, model, lang)
        assert all(not torch.equal(p, after[name]) for name, p in before[lang].items() if "#" not in name), lang

    # an update whose attempt was abandoned (fp16 overflow: zero_grad, no optimizer_step) and
    # retried with a batch of another language protects the abandoned attempt's language
    fr_before = stepped_tensors(optimizer, model, "fr")
    optimizer.zero_grad()
    task.train_step(batch_of(task, FR, start=6), model, criterion, optimizer, 1)
    update(task, model, criterion, optimizer, batch_of(task, EN, start=6), 1, zero_fill=True)
    assert_identical(fr_before, stepped_tensors(optimizer, model, "fr"))


def test_dummy_batch_trains_no_language(tiny_mlm_data):
    """A rank without data runs fairseq's dummy batch (ignore_grad): its language is not this update's."""
    cfg, task, model, criterion = build(tiny_mlm_data.path, "--language-specific", "adapter")
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    update(task, model, criterion, optimizer, batch_of(task, FR), 0, zero_fill=True)
    fr_before = stepped_tensors(optimizer, model, "fr")
    optimizer.zero_grad()
    task.train_step(batch_of(task, FR), model, criterion, optimizer, 1, ignore_grad=True)
    task.train_step(batch_of(task, EN), model, criterion, optimizer, 1)
    zero_fill_missing_gradients(model.parameters())
    task.optimizer_step(optimizer, model, 1)
    assert_identical(fr_before, stepped_tensors(optimizer, model, "fr"))


def flat_fp16_optimizer(cfg, params: List[nn.Parameter]) -> optim.FP16Optimizer:
    """FP16Optimizer with flattened fp32 copies, as --fp16 builds it on a GPU (its builder needs CUDA)."""
    flat = nn.Parameter(torch.cat([p.detach().float().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    return optim.FP16Optimizer(cfg, params, optim.build_optimizer(cfg.optimizer, [flat]), {0: flat})


def test_flattened_fp16_gradients_are_refused(tiny_mlm_data):
    cfg, task, model, criterion = build(tiny_mlm_data.path, "--language-specific", "adapter", "--fp16", half=True)
    with pytest.raises(ValueError) as refusal:
        task.begin_epoch(1, model)
    assert str(refusal.value) == FLAT_FP16_FIX and "\n" not in FLAT_FP16_FIX
    assert "--fp16-no-flatten-grads" in FLAT_FP16_FIX and "--memory-efficient-fp16" in FLAT_FP16_FIX
    # and if a flat optimizer reaches the step anyway, the step is refused before anything moves
    optimizer = flat_fp16_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    assert optimizer.has_flat_params
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.zero_grad()
    task.train_step(batch_of(task, EN), model, criterion, optimizer, 0)
    with pytest.raises(ValueError, match="--fp16-no-flatten-grads"):
        task.optimizer_step(optimizer, model, 0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def setup_problem(data_dir, *extra: str) -> Optional[str]:
    """The task's start-up refusal for a command line (None: accepted)."""
    _, task, model, _ = build(data_dir, *extra)
    try:
        task.begin_epoch(1, model)
    except ValueError as refusal:
        return str(refusal)
    return None


def test_pytorch_ddp_without_find_unused_parameters_is_refused(tiny_mlm_data):
    data = tiny_mlm_data.path
    four_ranks = ("--language-specific", "ffn", "--distributed-world-size", "4")
    for backend in ("c10d", "pytorch_ddp"):
        problem = setup_problem(data, *four_ranks, "--ddp-backend", backend)
        assert problem is not None and "--find-unused-parameters" in problem and "legacy_ddp" in problem
        assert "\n" not in problem
        assert setup_problem(data, *four_ranks, "--ddp-backend", backend, "--find-unused-parameters") is None
    assert setup_problem(data, *four_ranks, "--ddp-backend", "legacy_ddp") is None
    assert setup_problem(data, *four_ranks, "--ddp-backend", "fully_sharded") is not None
    # nothing to protect: no language-specific modules, or one process
    assert setup_problem(data, "--language-specific", "joint", "--distributed-world-size", "4",
                         "--ddp-backend", "c10d") is None
    assert setup_problem(data, "--language-specific", "ffn", "--distributed-world-size", "1",
                         "--ddp-backend", "c10d") is None


def test_frozen_language_modules_need_no_protection(tiny_mlm_data):
    """meta_mlm's phi is frozen for fairseq's optimizer: no refusal, nothing cleared."""
    _, task, model, _ = build(tiny_mlm_data.path, "--language-specific", "adapter", "--fp16",
                              "--distributed-world-size", "4", "--ddp-backend", "c10d")
    for lang in task.languages:
        for _, p in model.language_parameters(lang):
            p.requires_grad_(False)
    task.begin_epoch(1, model)


def preset_command(data_dir, variant: str, scale: str, *fairseq_args: str) -> List[str]:
    result = CliRunner().invoke(pretrain, [str(data_dir), "--languages", "en,fr", "--variant", variant,
                                           "--scale", scale, "--save-dir", "/nonexistent", "--dry-run",
                                           "--", *fairseq_args])
    assert result.exit_code == 0, result.output
    return shlex.split(result.output.split("equivalent fairseq command:", 1)[1].strip())


@pytest.mark.parametrize("scale", ["paper", "tiny"])
def test_pretrain_presets_pass_the_multi_gpu_check(tiny_mlm_data, scale):
    """`xlint pretrain ... -- --distributed-world-size 4` (the README's multi-GPU line) is accepted."""
    for variant in sorted(VARIANTS):
        command = preset_command(tiny_mlm_data.path, variant, scale, "--distributed-world-size", "4")
        argv = command[1:]  # drop the fairseq-train program
        if scale == "paper":  # a CPU-sized model with the paper's training options
            argv += ["--arch", "xlm_adapter_tiny", "--cpu"]
        cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
        assert cfg.distributed_training.distributed_world_size == 4
        assert cfg.common.fp16 == (scale == "paper")
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        task.begin_epoch(1, model)  # raises if the set-up could move absent languages' modules
