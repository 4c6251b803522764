#!/usr/bin/python3
"""The PyTorch side of bench/train.sh (Debian's torch 1.13 / torchaudio 0.13.1, CPU).

  train_torch.py export DIR
      DIR/base/        random-init torchaudio hubert_base() (parameters moved off their defaults
                       as in tests/model_reference.py) as a Hugging Face HubertModel directory,
                       the config of facebook/hubert-base-ls960; DIR/base_state.pt the same
                       weights for torchaudio
      DIR/tiny.json    the 4 x 256 pre-LN, layer-norm CNN config trained in full mode
      DIR/wav/, DIR/lora.tsv + lora.km (4 x 5 s, 1000 units at 50 Hz) and DIR/full.tsv +
      full.km (4 x 4 s, 100 units): synthetic utterances and random labels
  train_torch.py bench DIR lora|full THREADS STEPS matmul|torchaudio
      STEPS training steps of torchaudio's hubert_pretrain_model on the batch, as its users run
      it: the masking of the model, fairseq's criterion (cross-entropy on masked frames, feature
      penalty 10), clip_grad_norm_(10), torch.optim.AdamW(betas (0.9, 0.98), eps 1e-6, weight
      decay 0.01); dropout 0.1, attention dropout 0.1, layerdrop 0 (as the slex run).  The
      cosine logits come from torchaudio's LogitGenerator ("torchaudio", as fairseq: an expanded
      (K, N, D) cosine_similarity) or from the same logits as one matrix product ("matmul", the
      faster reference).  lora: the
      base frozen (CNN included), PEFT-style LoRA (A Kaiming-uniform, B zero, alpha / r) rank 24,
      alpha 48 on q, k, v, out of every layer; the head trainable, the mask embedding frozen
      (as slex-train).  full: every
      parameter, feature_grad_mult 0.1.  Prints "key value" lines: step_seconds (the best step
      after one warm-up step), step_cpu_seconds (CPU time of the process, all threads,
      best step), peak_rss_mb, threads.
  train_torch.py flops DIR lora|full
      the FLOPs of one step from the config (matrix products only): the forward with the CNN,
      and the backward through what is trained (lora: input gradients of the frozen
      transformer down to the lowest layer's input, the adapters' and the head's gradients;
      full: every weight and input gradient except the waveform's).  Prints gflop.
"""
import json
import math
import os
import resource
import sys
import time
import wave

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import model_reference as ref  # noqa: E402

SR = 16000
BASE_CONV = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
TINY_CONV = [(256, 10, 5)] + [(256, 3, 2)] * 4 + [(256, 2, 2)] * 2
# (utterances, samples each, units, label rate) per mode
BATCH = {"lora": (4, 5 * SR, 1000), "full": (4, 4 * SR, 100)}
LORA_R, LORA_ALPHA, FINAL_DIM = 24, 48.0, 256
HEADS = ("matmul", "torchaudio")
MODELS = {  # conv, extractor mode, pre-LN, layers, embed, heads, ffn, pos kernel, pos groups
    "lora": (BASE_CONV, "group_norm", False, 12, 768, 12, 3072, 128, 16),
    "full": (TINY_CONV, "layer_norm", True, 4, 256, 4, 1024, 64, 16),
}


def utterance(n, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / SR
    f0 = 110.0 + 20.0 * seed
    x = 0.25 * torch.sin(2 * math.pi * f0 * t) + 0.1 * torch.sin(2 * math.pi * 3.1 * f0 * t + 0.3)
    x = x * (1.0 + 0.5 * torch.sin(2 * math.pi * 2.0 * t)) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    return np.clip(np.round(x.numpy() * 32767.0), -32768, 32767).astype("<i2")


def write_data(d, mode):
    B, N, K = BATCH[mode]
    os.makedirs(os.path.join(d, "wav"), exist_ok=True)
    g = np.random.default_rng(7)
    with open(os.path.join(d, f"{mode}.tsv"), "w") as tsv, open(os.path.join(d, f"{mode}.km"), "w") as km:
        tsv.write(os.path.abspath(d) + "\n")
        for b in range(B):
            rel = f"wav/{mode}{b}.wav"
            with wave.open(os.path.join(d, rel), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SR)
                w.writeframes(utterance(N, b + (10 if mode == "full" else 0)).tobytes())
            tsv.write(f"{rel}\t{N}\n")
            km.write(" ".join(str(int(u)) for u in g.integers(0, K, frames(mode))) + "\n")


def read_batch(d, mode):
    B, N, K = BATCH[mode]
    rows = []
    for b in range(B):
        with wave.open(os.path.join(d, "wav", f"{mode}{b}.wav"), "rb") as w:
            rows.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0)
    return torch.from_numpy(np.stack(rows))


def export(d):
    torch.manual_seed(0)
    conv, ext, pre, layers, embed, heads, ffn, pos_k, pos_g = MODELS["lora"]
    model = torchaudio.models.hubert_base()
    ref.perturb(model, torch.Generator().manual_seed(99))
    base = os.path.join(d, "base")
    os.makedirs(base, exist_ok=True)
    cfg = ref.hf_config(ext, False, pre, layers, conv=conv, embed=embed, heads=heads, ffn=ffn, pos_k=pos_k, pos_g=pos_g)
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    mask_emb = torch.rand(embed, generator=torch.Generator().manual_seed(5)).numpy()
    ref.write_safetensors(os.path.join(base, "model.safetensors"), ref.hf_tensors(model, mask_emb))
    torch.save(model.state_dict(), os.path.join(d, "base_state.pt"))
    conv, ext, pre, layers, embed, heads, ffn, pos_k, pos_g = MODELS["full"]
    tiny = ref.hf_config(ext, False, pre, layers, conv=conv, embed=embed, heads=heads, ffn=ffn, pos_k=pos_k,
                         pos_g=pos_g)
    with open(os.path.join(d, "tiny.json"), "w") as f:
        json.dump(tiny, f, indent=2)
    for mode in BATCH:
        write_data(d, mode)


class MatmulLogits(torch.nn.Module):
    """torchaudio's LogitGenerator (cosine logits / 0.1, the target first, a negative equal to
    the target at -inf) computed as one product of the normalised projections and label
    embeddings: the (K, N, D) expansion that torchaudio and fairseq feed to cosine_similarity
    costs gigabytes and most of the step at K = 1000."""

    def __init__(self, gen):
        super().__init__()
        self.final_proj = gen.final_proj
        self.label_embeddings = gen.label_embeddings

    def logits(self, x, labels):
        z = F.normalize(x, dim=-1, eps=1e-8) @ F.normalize(self.label_embeddings, dim=-1, eps=1e-8).t() / 0.1
        t = labels.long().unsqueeze(1)
        return torch.cat([z.gather(1, t), z.scatter(1, t, float("-inf"))], 1)

    def forward(self, x, label, mask_m, mask_u):
        proj = self.final_proj(x)
        return self.logits(proj[mask_m], label[mask_m]), self.logits(proj[mask_u], label[mask_u])


class Lora(torch.nn.Module):
    """y = base(x) + (x A^T B^T) alpha / r, base frozen; PEFT's initialisation."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.base.bias.requires_grad_(False)
        self.lora_A = torch.nn.Parameter(torch.empty(LORA_R, base.in_features))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, LORA_R))
        self.scaling = LORA_ALPHA / LORA_R

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


def build(d, mode, head):
    B, N, K = BATCH[mode]
    conv, ext, pre, layers, embed, heads, ffn, pos_k, pos_g = MODELS[mode]
    model = torchaudio.models.hubert_pretrain_model(
        extractor_mode=ext, extractor_conv_layer_config=conv, extractor_conv_bias=False, encoder_embed_dim=embed,
        encoder_projection_dropout=0.1, encoder_pos_conv_kernel=pos_k, encoder_pos_conv_groups=pos_g,
        encoder_num_layers=layers, encoder_num_heads=heads, encoder_attention_dropout=0.1,
        encoder_ff_interm_features=ffn, encoder_ff_interm_dropout=0.0, encoder_dropout=0.1,
        encoder_layer_norm_first=pre, encoder_layer_drop=0.0, mask_prob=0.8, mask_selection="static",
        mask_other=0.0, mask_length=10, no_mask_overlap=False, mask_min_space=1, mask_channel_prob=0.0,
        mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=10,
        no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=False,
        num_classes=K, final_dim=FINAL_DIM, feature_grad_mult=0.1 if mode == "full" else None)
    if mode == "lora":
        model.wav2vec2.load_state_dict(torch.load(os.path.join(d, "base_state.pt")))
        for p in model.wav2vec2.parameters():
            p.requires_grad_(False)
        for layer in model.wav2vec2.encoder.transformer.layers:
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(layer.attention, name, Lora(getattr(layer.attention, name)))
        model.mask_generator.mask_embedding.requires_grad_(False)  # frozen with the base, as slex
    if head == "matmul":
        model.logit_generator = MatmulLogits(model.logit_generator)
    return model


def bench(d, mode, threads, steps, head):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = build(d, mode, head).train()
    wave_batch = read_batch(d, mode)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    normalize = MODELS[mode][1] == "layer_norm"  # fairseq's normalize=True recipes
    labels = torch.randint(0, BATCH[mode][2], (wave_batch.shape[0], frames(mode)))
    best = best_cpu = float("inf")
    for step in range(steps + 1):
        start, cpu = time.perf_counter(), time.process_time()
        x = torch.stack([F.layer_norm(w, w.shape) for w in wave_batch]) if normalize else wave_batch
        opt.zero_grad(set_to_none=True)
        logit_m, logit_u, feature_pen = model(x, labels)
        loss = F.cross_entropy(logit_m, torch.zeros(logit_m.shape[0], dtype=torch.long), reduction="sum")
        sample_size = logit_m.shape[0]
        loss = loss + 10.0 * feature_pen * sample_size
        (loss / sample_size).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if step > 0:
            best, best_cpu = min(best, seconds), min(best_cpu, cpu)
        if not math.isfinite(float(loss)):
            sys.exit("train_torch.py: the loss is not finite")
    print("threads %d" % torch.get_num_threads())
    print("step_seconds %.3f" % best)
    print("step_cpu_seconds %.3f" % best_cpu)
    print("peak_rss_mb %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


def frames(mode):
    T = BATCH[mode][1]
    for _, k, s in MODELS[mode][0]:
        T = (T - k) // s + 1
    return T


def flops(mode):
    B, N, K = BATCH[mode]
    conv, ext, pre, layers, C, H, Fi, Kp, G = MODELS[mode]
    lora = mode == "lora"
    fwd = bwd = 0.0
    T, cin = N, 1
    for i, (cout, k, s) in enumerate(conv):
        T = (T - k) // s + 1
        f = 2.0 * B * T * cout * cin * k
        fwd += f
        if not lora:
            bwd += f * (2 if i > 0 else 1)  # weight gradient; the input gradient except the waveform's
        cin = cout
    BT = B * T
    lin = 2.0 * BT * (cin * C)  # feature projection
    pos = 2.0 * BT * C * (C // G) * Kp
    layer_lin = 2.0 * BT * (3 * C * C + C * C + 2 * C * Fi)
    att = 4.0 * B * T * T * C  # Q K^T and P V
    site = 2.0 * BT * LORA_R * 2 * C  # one adapter on a C x C linear
    head = 2.0 * BT * C * FINAL_DIM + 2.0 * BT * FINAL_DIM * K
    fwd += lin + pos + layers * (layer_lin + att) + head
    bwd += 2 * head  # weight and input gradients of final_proj, label embeddings and their input
    if lora:
        fwd += layers * 4 * site
        # the frozen linears' input gradients, attention backward (dV, dP, dQ, dK), the adapters'
        # A, B and input gradients, except the lowest layer's input gradient (nothing below it
        # trains: the mask embedding is frozen with the base)
        bwd += layers * (layer_lin + 2 * att + 4 * 2 * site) - 2.0 * BT * 3 * C * C - 3 * site / 2
    else:
        bwd += 2 * (lin + pos + layers * (layer_lin + att))
    print("gflop %.1f" % ((fwd + bwd) / 1e9))
    print("forward_gflop %.1f" % (fwd / 1e9))
    print("backward_gflop %.1f" % (bwd / 1e9))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        export(sys.argv[2])
    elif len(sys.argv) == 7 and sys.argv[1] == "bench" and sys.argv[3] in BATCH and sys.argv[6] in HEADS:
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif len(sys.argv) == 4 and sys.argv[1] == "flops" and sys.argv[3] in BATCH:
        flops(sys.argv[3])
    else:
        sys.exit(__doc__)
