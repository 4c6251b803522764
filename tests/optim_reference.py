#!/usr/bin/python3
"""Reference fixture for tests/test_train_optim.c: fairseq's optimisation step in PyTorch.

fairseq is not installed here, so the parts of it that the step uses are re-typed below from
fairseq's sources (fairseq/optim/adam.py Adam.step, fairseq/utils.py clip_grad_norm_,
fairseq/trainer.py train_step's order, fairseq/optim/lr_scheduler/polynomial_decay_schedule.py
and cosine_lr_scheduler.py step_update), running on torch tensors as fairseq does.

Writes tests/data/train/optim.json:
  schedules: for several configurations, lr after n = 0..N completed updates
  run: three parameter segments, 6 updates with update_freq 2 (two micro-batch gradients and
       sample sizes per update), clip_norm, the lr of each update from a linear schedule, and
       after each update the grad norm, parameters and both moments."""
import json
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "train", "optim.json")


class PolynomialDecay:
    """fairseq PolynomialDecayLRSchedule (warmup_updates, end_learning_rate, power, total_num_update)."""

    def __init__(self, lr, warmup_updates, end_learning_rate, power, total_num_update):
        self.lr, self.warmup_updates = lr, warmup_updates
        self.end_learning_rate, self.power, self.total_num_update = end_learning_rate, power, total_num_update

    def step_update(self, num_updates):
        if self.warmup_updates > 0 and num_updates <= self.warmup_updates:
            self.warmup_factor = num_updates / float(self.warmup_updates)
            lr = self.warmup_factor * self.lr
        elif num_updates >= self.total_num_update:
            lr = self.end_learning_rate
        else:
            warmup = self.warmup_updates
            lr_range = self.lr - self.end_learning_rate
            pct_remaining = 1 - (num_updates - warmup) / (self.total_num_update - warmup)
            lr = lr_range * pct_remaining ** (self.power) + self.end_learning_rate
        return lr


class Cosine:
    """fairseq CosineLRSchedule with t_mult 1 and lr_period_updates = max_update - warmup."""

    def __init__(self, lr, warmup_updates, warmup_init_lr, min_lr, lr_shrink, max_update):
        self.max_lr = lr
        if self.max_lr < min_lr:
            min_lr = self.max_lr
        if warmup_init_lr < 0:
            warmup_init_lr = min_lr
        self.min_lr, self.warmup_init_lr, self.lr_shrink = min_lr, warmup_init_lr, lr_shrink
        self.warmup_updates = warmup_updates
        self.period = max_update - warmup_updates
        self.lr_step = (lr - warmup_init_lr) / warmup_updates if warmup_updates > 0 else 1

    def step_update(self, num_updates):
        if num_updates < self.warmup_updates:
            return self.warmup_init_lr + num_updates * self.lr_step
        curr_updates = num_updates - self.warmup_updates
        i = math.floor(curr_updates / self.period)
        t_i = self.period
        t_curr = curr_updates - (self.period * i)
        lr_shrink = self.lr_shrink**i
        min_lr = self.min_lr * lr_shrink
        max_lr = self.max_lr * lr_shrink
        return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * t_curr / t_i))


def adam_step(params, state, lr, betas, eps, weight_decay):
    """fairseq.optim.adam.Adam.step (amsgrad off, float32)."""
    for p in params:
        grad = p.grad.data
        st = state.setdefault(id(p), {})
        if len(st) == 0:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p.data)
            st["exp_avg_sq"] = torch.zeros_like(p.data)
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        beta1, beta2 = betas
        st["step"] += 1
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps)
        bias_correction1 = 1 - beta1 ** st["step"]
        bias_correction2 = 1 - beta2 ** st["step"]
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
        if weight_decay != 0:
            p.data.add_(p.data, alpha=-weight_decay * lr)
        p.data.addcdiv_(exp_avg, denom, value=-step_size)


def clip_grad_norm_(params, max_norm):
    """fairseq.utils.clip_grad_norm_ (CPU, no apex)."""
    grads = [p.grad.detach() for p in params]
    total_norm = torch.norm(torch.stack([torch.norm(g, p=2, dtype=torch.float32) for g in grads]))
    if max_norm > 0:
        clip_coef = (max_norm / (total_norm + 1e-6)).clamp_(max=1)
        torch._foreach_mul_(grads, clip_coef)
    return total_norm


def main():
    schedules = []
    confs = [
        ({"kind": "linear", "lr": 5e-4, "warmup": 3, "total": 10}, PolynomialDecay(5e-4, 3, 0.0, 1.0, 10)),
        ({"kind": "linear", "lr": 1e-3, "warmup": 0, "total": 7}, PolynomialDecay(1e-3, 0, 0.0, 1.0, 7)),
        ({"kind": "polynomial", "lr": 2e-3, "warmup": 4, "total": 12, "end_lr": 1e-5, "power": 2.0},
         PolynomialDecay(2e-3, 4, 1e-5, 2.0, 12)),
        ({"kind": "cosine", "lr": 1e-3, "warmup": 3, "total": 10, "warmup_init_lr": 1e-6, "min_lr": 1e-5},
         Cosine(1e-3, 3, 1e-6, 1e-5, 0.1, 10)),
        ({"kind": "cosine", "lr": 1e-3, "warmup": 0, "total": 8, "warmup_init_lr": -1, "min_lr": 0.0},
         Cosine(1e-3, 0, -1, 0.0, 0.1, 8)),
    ]
    for conf, sched in confs:
        conf["lrs"] = [sched.step_update(n) for n in range(0, conf["total"] * 2 + 3)]
        schedules.append(conf)

    g = torch.Generator().manual_seed(7)
    sizes = [7, 130, 33]
    params = [torch.nn.Parameter(torch.randn(n, generator=g)) for n in sizes]
    init = [p.detach().clone() for p in params]
    sched = PolynomialDecay(1e-2, 2, 0.0, 1.0, 6)
    betas, eps, wd, clip = (0.9, 0.98), 1e-6, 0.01, 0.05
    state, updates = {}, []
    num_updates = 0
    for u in range(6):
        micro = []
        sample_size = 0
        for p in params:
            p.grad = torch.zeros_like(p)
        for k in range(2):  # update_freq 2
            ss = int(torch.randint(5, 40, (1,), generator=g))
            # per-frame-summed gradients scale with the sample size; small enough that eps matters
            # (its place in the update is tested), every third update large enough to be clipped
            scale = 1e-4 * (60.0 if u % 3 == 1 else 1.0) * ss
            gs = [scale * torch.randn(n, generator=g) for n in sizes]
            for p, gg in zip(params, gs):
                p.grad.add_(gg)
            micro.append({"sample_size": ss, "grads": [gg.tolist() for gg in gs]})
            sample_size += ss
        for p in params:  # trainer: multiply_grads(1 / sample_size)
            p.grad.mul_(1.0 / sample_size)
        norm = clip_grad_norm_(params, clip)
        lr = sched.step_update(num_updates)
        adam_step(params, state, lr, betas, eps, wd)
        num_updates += 1
        updates.append({
            "micro": micro, "lr": lr, "grad_norm": float(norm),
            "params": [p.detach().tolist() for p in params],
            "exp_avg": [state[id(p)]["exp_avg"].tolist() for p in params],
            "exp_avg_sq": [state[id(p)]["exp_avg_sq"].tolist() for p in params],
        })
    run = {"sizes": sizes, "init": [p.tolist() for p in init], "betas": list(betas), "eps": eps,
           "weight_decay": wd, "clip_norm": clip,
           "schedule": {"kind": "linear", "lr": 1e-2, "warmup": 2, "total": 6}, "updates": updates}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/optim_reference.py", "torch": torch.__version__,
                   "schedules": schedules, "run": run}, f)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
