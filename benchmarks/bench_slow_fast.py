"""Step cost of fine-tuning slow and fast (FSF) against plain fine-tuning (DF), and of one CKA probe.

Both configurations train copies of one ``xlm_adapter`` encoder with a token head on the same
batches, in one process, with the steps of fairseq's trainer in its order: forward, backward,
gradient scaling, ``task.optimizer_step`` (FSF: :meth:`SlowFastController.before_update` sets the
multipliers of ``xlint_adam``'s groups and logs them) and the logging reduction (FSF: the loss
feed :meth:`SlowFastController.observe_logging_outputs`), inside fairseq's metrics aggregation.
DF is ``xlint_adam`` with the head group only; FSF tags the sets of the ``fsf`` preset (5 groups).
CKA probes are off in the FSF steps (``--slow-fast-policy-iv on``).

Timing: rounds of ``--steps`` DF steps and ``--steps`` FSF steps (the order alternates per round),
per-step CPU time of this process (``time.process_time``, robust to other jobs on a shared machine)
and wall time; the reported ratio is the median over rounds of FSF time / DF time.  Goal: <= 1.02.
On a loaded machine the step ratio's noise exceeds 2%; ``overhead_bound`` is the sharper number:
1 + (the hook's time per update + the FSF optimizer step's extra time over DF's) / a DF step,
each measured alone over many repetitions.

The CKA probe (what Policy IV's ``auto`` mode runs every N updates, ``top_layers_cka``): a
no-grad forward of the current and of the frozen pretrained model on the current batch, and
linear CKA (float64, real tokens only) of each of the top two layers; reported in ms, as a fraction of a DF step, and
amortised over ``--cka-interval`` updates.

    .venv/bin/python benchmarks/bench_slow_fast.py                   # CPU, 12 layers, d=128, 8 x 64 tokens
    .venv/bin/python benchmarks/bench_slow_fast.py --device cuda --dim 768 --ffn 3072 --heads 12 --batch 32 --length 128
"""
import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from fairseq.logging import metrics
from omegaconf import OmegaConf

import xlint.user_dir  # noqa: F401  (registers xlint_adam)
from xlint.user_dir.models.task_heads import HEAD_PARAM_GROUP
from xlint.user_dir.models.xlm_adapter import XlmAdapterConfig, XlmAdapterEncoder, XlmAdapterModel
from xlint.user_dir.optim.adam_with_head_lr import XlintAdam
from xlint.user_dir.optim.slow_fast import SlowFastConfig, SlowFastController, top_layers_cka


def build_model(args) -> XlmAdapterModel:
    torch.manual_seed(0)
    dictionary = Dictionary()
    for i in range(args.vocab):
        dictionary.add_symbol(f"w{i}")
    cfg = XlmAdapterConfig(encoder_layers=args.layers, encoder_embed_dim=args.dim, encoder_ffn_embed_dim=args.ffn,
                           encoder_attention_heads=args.heads, max_positions=max(args.length + 2, 16),
                           language_specific="joint", model_languages="en", dropout=0.1)
    model = XlmAdapterModel(cfg, XlmAdapterEncoder(cfg, dictionary, ["en"]))
    model.register_head("pos", "token", 17)
    return model


def tag_head(model: XlmAdapterModel) -> XlmAdapterModel:
    """Tag the head as the fine-tuning tasks do (``copy.deepcopy`` of a Parameter drops its attributes)."""
    for param in model.heads["pos"].parameters():
        param.param_group = HEAD_PARAM_GROUP
    return model


def make_batches(args, pad: int, n: int):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        tokens = torch.randint(4, args.vocab, (args.batch, args.length), generator=g)
        lengths = torch.randint(args.length // 2, args.length + 1, (args.batch,), generator=g)
        mask = torch.arange(args.length)[None, :] < lengths[:, None]
        tokens = tokens.masked_fill(~mask, pad)
        target = torch.randint(0, 17, (args.batch, args.length), generator=g).masked_fill(~mask, -100)
        batches.append((tokens.to(args.device), target.to(args.device), mask.to(args.device)))
    return batches


def adam_cfg(lr: float):
    return OmegaConf.create({"lr": [lr], "adam_betas": "(0.9, 0.999)", "adam_eps": 1e-8, "weight_decay": 0.01,
                             "use_old_adam": False, "fp16_adam_stats": False, "tpu": False, "head_lr": 1e-4})


class Runner:
    """One configuration: a model copy, its optimizer and (FSF) its controller."""

    def __init__(self, model, controller=None):
        self.model = tag_head(model)
        self.controller = controller
        if controller is not None:
            controller.tag_parameters(model)
        self.optimizer = XlintAdam(adam_cfg(2e-5), [p for p in model.parameters() if p.requires_grad])
        self.updates = 0

    def step(self, batch) -> float:
        tokens, target, _ = batch
        self.model.train()
        self.optimizer.zero_grad()
        with metrics.aggregate("train_inner"):
            logits, _ = self.model(tokens, head="pos", batch_lang_id=0)
            labelled = target.ne(-100)
            loss = F.cross_entropy(logits[labelled].float(), target[labelled], reduction="sum")
            sample_size = int(labelled.sum())
            loss.backward()
            self.optimizer.multiply_grads(1.0 / sample_size)
            if self.controller is not None:
                self.controller.before_update(self.optimizer, self.updates)
            self.optimizer.set_lr(2e-5)  # what the scheduler does after each update (both configurations)
            self.optimizer.step()
            logging_outputs = [{"loss": loss.detach(), "sample_size": sample_size}]
            with metrics.aggregate():
                metrics.log_scalar("loss", float(loss.detach()) / sample_size, sample_size)
                if self.controller is not None:
                    self.controller.observe_logging_outputs(logging_outputs)
        self.updates += 1
        if tokens.is_cuda:
            torch.cuda.synchronize()
        return float(loss.detach())


def timed(runner, batch):
    wall, cpu = time.perf_counter(), time.process_time()
    runner.step(batch)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--ffn", type=int, default=512)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--opt-steps", type=int, default=30, help="optimizer steps timed alone per configuration")
    parser.add_argument("--cka-probes", type=int, default=5)
    parser.add_argument("--cka-interval", type=int, default=100)
    parser.add_argument("--out", default="", help="also write the JSON result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = build_model(args).to(args.device)
    pretrained = copy.deepcopy(base).eval()
    for p in pretrained.parameters():
        p.requires_grad_(False)
    cfg = SlowFastConfig(slow_fast_preset="fsf")
    cfg.slow_fast_policy_iv = "on"  # CKA probes off
    runners = {"df": Runner(copy.deepcopy(base)), "fsf": Runner(copy.deepcopy(base), SlowFastController(cfg))}
    batches = make_batches(args, base.encoder.padding_idx, args.warmup + args.steps * args.rounds)

    for name, runner in runners.items():
        for batch in batches[:args.warmup]:
            runner.step(batch)
    per_round = {"df": [], "fsf": []}
    samples = {"df": {"wall": [], "cpu": []}, "fsf": {"wall": [], "cpu": []}}
    for r in range(args.rounds):
        chunk = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        order = ["df", "fsf"] if r % 2 == 0 else ["fsf", "df"]
        for name in order:
            times = [timed(runners[name], batch) for batch in chunk]
            walls, cpus = [t[0] for t in times], [t[1] for t in times]
            samples[name]["wall"] += walls
            samples[name]["cpu"] += cpus
            per_round[name].append((sum(walls), sum(cpus)))
    ratio_wall = statistics.median(f[0] / d[0] for f, d in zip(per_round["fsf"], per_round["df"]))
    ratio_cpu = statistics.median(f[1] / d[1] for f, d in zip(per_round["fsf"], per_round["df"]))

    # the hook alone (before_update + loss feed), per update
    fsf = runners["fsf"]
    n_hook = 2000
    start = time.perf_counter()
    with metrics.aggregate("train_inner"):
        for t in range(n_hook):
            fsf.controller.before_update(fsf.optimizer, fsf.updates + t)
            with metrics.aggregate():
                fsf.controller.observe_loss(1.0 / (1 + t), 1)
    hook_us = (time.perf_counter() - start) / n_hook * 1e6

    # the optimizer step alone (FSF has more parameter groups), gradients in place
    opt_ms = {}
    for name, runner in runners.items():
        for p in runner.model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        times = []
        for _ in range(args.opt_steps):
            start = time.process_time()
            runner.optimizer.step()
            times.append(time.process_time() - start)
        opt_ms[name] = 1e3 * statistics.median(times)

    probe_times, values = [], []
    for batch in batches[:args.cka_probes]:
        start = time.perf_counter()
        values.append(top_layers_cka(fsf.model, pretrained, batch[0], base.encoder.padding_idx, batch_lang_id=0))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        probe_times.append(time.perf_counter() - start)
    df_step = statistics.median(samples["df"]["wall"])
    probe = statistics.median(probe_times)
    ratios_cpu = sorted(f[1] / d[1] for f, d in zip(per_round["fsf"], per_round["df"]))
    df_cpu_ms = 1e3 * statistics.median(samples["df"]["cpu"])
    result = {
        "shape": {k: getattr(args, k) for k in ("device", "threads", "layers", "dim", "ffn", "heads", "vocab",
                                                "batch", "length")},
        "groups": {"df": runners["df"].optimizer.group_tags, "fsf": fsf.optimizer.group_tags},
        "step_ms_median": {name: {kind: 1e3 * statistics.median(v) for kind, v in s.items()}
                           for name, s in samples.items()},
        "ratio_fsf_over_df": {"wall": ratio_wall, "cpu": ratio_cpu},
        "rounds": args.rounds, "steps_per_round": args.steps,
        "ratio_cpu_quartiles": [ratios_cpu[len(ratios_cpu) // 4], ratios_cpu[(3 * len(ratios_cpu)) // 4]],
        "hook_us_per_update": hook_us,
        "optimizer_step_cpu_ms": opt_ms,
        "overhead_bound": 1 + (hook_us / 1e3 + opt_ms["fsf"] - opt_ms["df"]) / df_cpu_ms,
        "cka_probe_ms": 1e3 * probe, "cka_probe_over_df_step": probe / df_step,
        "cka_amortised_over_interval": probe / df_step / args.cka_interval,
        "cka_values": values,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
