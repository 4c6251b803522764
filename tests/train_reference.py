#!/usr/bin/python3
"""Reference fixtures for one HuBERT training step, from Debian's torch / torchaudio 0.13.1.

A tiny torchaudio hubert_pretrain_model (post-LN with a group-norm CNN, the Base layout; pre-LN
with a layer-norm CNN, conv bias and waveform normalisation, the Large layout) does one step of
fairseq's masked-prediction training with the mask GIVEN:

  CNN features f -> GradMultiply(feature_grad_mult) -> features_pen = mean(f^2)
  -> feature projection (LN, Linear) -> masked frames := mask embedding -> transformer
  -> final_proj -> cosine logits / 0.1 over the label embeddings (torchaudio LogitGenerator)
  loss = w_m CE_masked + w_u CE_unmasked + 10 * features_pen * sample_size   (fairseq criterion)
  gradients of loss / sample_size (fairseq's multiply_grads), clip_grad_norm_, then one update
  of fairseq's Adam (betas (0.9, 0.98), eps 1e-6, weight decay 0.01) re-typed from
  fairseq/optim/adam.py (the functions of tests/optim_reference.py).

Modes: full (every parameter trainable, CNN gradient scaled by feature_grad_mult 0.1) and lora
(the base frozen, CNN included; LoRA on q, k, v, out of every layer with PEFT's semantics
y = W x + b + (B (A x)) * alpha / r, A kaiming-uniform(a = sqrt(5)), B drawn nonzero here so the
gradients of A are not zero; the head and the mask embedding trainable).  Dropout and layerdrop
are 0.

Writes tests/data/train/<arch>_<mode>/:
  config.json, preprocessor_config.json, model.safetensors   the base (HF HubertModel names,
                                                            masked_spec_embed = mask embedding)
  head.safetensors                                          slex's head file (model/checkpoint.h)
  adapter/                                                  PEFT adapter (lora mode)
  expected.safetensors                                      wave (B, N) as read (before any
     normalisation), labels (B, T) and mask (B, T) as floats, features (B, T, Cf), the encoder
     input after masking enc_in (B, T, C), the encoder output enc_out (B, T, C),
     last_hidden_state (B, T, C) of the forward WITHOUT masking (slex_hubert_forward's output),
     grad_enc_out (B, T, C), grad_enc_in (B, T, C) and grad_features (B, T, Cf, after feature_grad_mult),
     layer_out.<l> (B, T, C) the output of transformer layer l (0-based) and grad_layer_out.<l>,
     grad.<name> for every trainable parameter (HF / head / PEFT names) and after.<name> its
     value after the update; metadata: loss, loss_m, loss_u, features_pen, sample_size,
     correct_m/u, count_m/u, grad_norm and every hyperparameter.
The tensor-writing helpers come from tests/model_reference.py."""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import torchaudio
from torchaudio.models.wav2vec2 import components

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model_reference import hf_config, hf_name, perturb, write_safetensors  # noqa: E402
from optim_reference import adam_step, clip_grad_norm_  # noqa: E402

assert torchaudio.__version__.startswith("0.13"), torchaudio.__version__
OUT = os.path.join(HERE, "data", "train")

# Debian's torch 1.13 computes GELU's backward wrongly (NaN or garbage) when the incoming
# gradient is not contiguous, which torchaudio's CNN and positional conv produce (they
# transpose after the GELU).  GELU is wrapped so that its gradient arrives contiguous; every
# gradient is also checked against a float64 run of the same step (below).
_gelu = F.gelu


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g.contiguous()


def _gelu_contiguous_grad(x, approximate="none"):
    return _ContiguousGrad.apply(_gelu(x.contiguous(), approximate=approximate))


torch.nn.functional.gelu = _gelu_contiguous_grad

CONV = [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)]
EMBED, HEADS, FFN, LAYERS, POS_K, POS_G = 32, 4, 64, 2, 16, 4
FINAL_DIM, K = 16, 10
B, N = 2, 2000
LORA_R, LORA_ALPHA = 4, 8.0
HP = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "weight_decay": 0.01, "clip_norm": 10.0,
      "feature_pen_weight": 10.0, "logit_temp": 0.1, "mask_prob": 0.5, "mask_length": 5}


class LoraLinear(torch.nn.Module):
    """PEFT LoRA Linear (tuners/lora/layer.py), dropout 0: base(x) + lora_B(lora_A(x)) * scaling."""

    def __init__(self, base, r, alpha, gen):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # PEFT starts B at zero; a nonzero B makes the gradient of A nonzero in one step.
        self.lora_B = torch.nn.Parameter(0.1 * torch.randn(base.out_features, r, generator=gen))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


def build(arch):
    post = arch == "post_ln"
    model = torchaudio.models.hubert_pretrain_model(
        extractor_mode="group_norm" if post else "layer_norm", extractor_conv_layer_config=CONV,
        extractor_conv_bias=not post, encoder_embed_dim=EMBED, encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=POS_K, encoder_pos_conv_groups=POS_G, encoder_num_layers=LAYERS,
        encoder_num_heads=HEADS, encoder_attention_dropout=0.0, encoder_ff_interm_features=FFN,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=not post,
        encoder_layer_drop=0.0, mask_prob=HP["mask_prob"], mask_selection="static", mask_other=0.0,
        mask_length=HP["mask_length"], no_mask_overlap=False, mask_min_space=1, mask_channel_prob=0.0,
        mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=10,
        no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=False,
        num_classes=K, final_dim=FINAL_DIM, feature_grad_mult=0.1)
    return model


def waves(gen):
    t = torch.arange(N, dtype=torch.float64) / 16000.0
    rows = []
    for b in range(B):
        f0 = 180.0 + 60.0 * b
        x = 0.3 * torch.sin(2 * math.pi * f0 * t) + 0.15 * torch.sin(2 * math.pi * 7.3 * f0 * t + b)
        x = x + 0.05 * torch.randn(N, generator=gen, dtype=torch.float64) + 0.02 * b
        rows.append(x.float())
    return torch.stack(rows)


def step(arch, mode, seed, dtype):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(arch)
    w2v = model.wav2vec2
    perturb(w2v, gen)
    with torch.no_grad():
        model.logit_generator.final_proj.bias.add_(0.1 * torch.randn(FINAL_DIM, generator=gen))
    mask_emb = model.mask_generator.mask_embedding
    logit_gen = model.logit_generator
    post = arch == "post_ln"
    wm, wu = (1.0, 0.0) if post else (1.0, 0.5)
    normalize = not post

    named = {}  # trainable parameter name -> Parameter
    lora_names = []
    if mode == "lora":
        for p in w2v.parameters():
            p.requires_grad_(False)
        for l, layer in enumerate(w2v.encoder.transformer.layers):
            att = layer.attention
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                mod = LoraLinear(getattr(att, proj), LORA_R, LORA_ALPHA, gen)
                setattr(att, proj, mod)
                path = f"base_model.model.encoder.layers.{l}.attention.{proj}"
                named[path + ".lora_A.weight"] = mod.lora_A
                named[path + ".lora_B.weight"] = mod.lora_B
                lora_names.append(path)
    else:
        for n, p in w2v.named_parameters():
            named[hf_name(n)] = p
    named["masked_spec_embed"] = mask_emb
    named["final_proj.weight"] = logit_gen.final_proj.weight
    named["final_proj.bias"] = logit_gen.final_proj.bias
    named["label_embeddings"] = logit_gen.label_embeddings

    # base weights and head as written (before the update)
    base_tensors = []
    for n, t in w2v.state_dict().items():
        n = n.replace(".base.", ".")  # LoRA-wrapped Linear keeps its weights under .base
        if ".lora_" in n:
            continue
        base_tensors.append((hf_name(n), t.detach().clone().numpy()))
    base_tensors.append(("masked_spec_embed", mask_emb.detach().clone().numpy()))
    head_tensors = [("masked_spec_embed", mask_emb.detach().clone().numpy()),
                    ("final_proj.weight", logit_gen.final_proj.weight.detach().clone().numpy()),
                    ("final_proj.bias", logit_gen.final_proj.bias.detach().clone().numpy()),
                    ("label_embeddings", logit_gen.label_embeddings.detach().clone().numpy())]
    lora_tensors = [(n, named[n].detach().clone().numpy()) for n in named if ".lora_" in n]

    model.to(dtype)  # the float64 run: the same numbers, converted after every draw
    wave = waves(gen).to(dtype)
    x_in = torch.stack([F.layer_norm(w, w.shape) for w in wave]) if normalize else wave
    with torch.no_grad():
        T = w2v.feature_extractor(x_in, None)[0].shape[1]
        # the mask: fairseq's algorithm as torchaudio has it, drawn once and given
        mask = components._compute_mask_indices((B, T), None, HP["mask_prob"], HP["mask_length"], min_masks=2)
    labels = torch.randint(0, K, (B, T), generator=gen)

    # forward without masking: what slex_hubert_forward returns (last hidden state)
    with torch.no_grad():
        last_hidden = w2v(x_in)[0].clone()

    # the training forward, as HuBERTPretrainModel.forward with the mask given
    feats, _ = w2v.feature_extractor(x_in, None)
    if feats.requires_grad:
        feats.retain_grad()
    f = components.GradMultiply.apply(feats, 0.1) if mode == "full" else feats
    features_pen = f.pow(2).mean()
    x, _ = w2v.encoder._preprocess(f, None)
    x = torch.where(mask[..., None], mask_emb.to(x.dtype).expand_as(x), x)
    x.retain_grad()
    layer_outs = []

    def keep(module, inputs, output):
        output.retain_grad()
        layer_outs.append(output)

    hooks = [layer.register_forward_hook(keep) for layer in w2v.encoder.transformer.layers]
    enc_out = w2v.encoder.transformer(x, attention_mask=None)
    for h in hooks:
        h.remove()
    enc_out.retain_grad()
    logit_m, logit_u = logit_gen(enc_out, labels, mask, ~mask)
    # fairseq HubertCriterion
    loss_m = F.cross_entropy(logit_m, torch.zeros(logit_m.shape[0], dtype=torch.long), reduction="sum")
    loss_u = F.cross_entropy(logit_u, torch.zeros(logit_u.shape[0], dtype=torch.long), reduction="sum")
    loss, sample_size = 0.0, 0
    if wm > 0:
        loss = loss + wm * loss_m
        sample_size += logit_m.shape[0]
    if wu > 0:
        loss = loss + wu * loss_u
        sample_size += logit_u.shape[0]
    loss = loss + HP["feature_pen_weight"] * features_pen * sample_size

    def correct(logits):
        mx = logits.argmax(-1) == 0
        mn = logits.argmin(-1) == 0
        return int(mx.long().sum() - (mx & mn).long().sum())

    # gradient of loss / sample_size (fairseq: sum of gradients, multiply_grads(1 / sample_size))
    params = list(named.values())
    (loss / sample_size).backward()
    grads = {n: p.grad.detach().clone() for n, p in named.items()}
    grad_norm = float(clip_grad_norm_(params, HP["clip_norm"]))
    adam_step(params, {}, HP["lr"], (HP["beta1"], HP["beta2"]), HP["eps"], HP["weight_decay"])
    return locals()


def make(arch, mode, seed):
    r = step(arch, mode, seed, torch.float32)
    r64 = step(arch, mode, seed, torch.float64)
    for n, g in r["grads"].items():
        g64 = r64["grads"][n]
        # k_proj.bias has a zero gradient in exact arithmetic (softmax ignores a shift of every key)
        err = float((g.double() - g64).norm() / (g64.norm() + 1e-6))
        assert err < 1e-3, f"{arch} {mode}: gradient of {n} differs from the float64 run by {err:.3g}"
    rel = abs(float(r["loss"]) - float(r64["loss"])) / abs(float(r64["loss"]))
    assert rel < 1e-5, f"{arch} {mode}: loss differs from the float64 run by {rel:.3g}"
    write(r)


def write(r):
    g = dict(r)
    arch, mode, post, normalize = g["arch"], g["mode"], g["post"], g["normalize"]
    base_tensors, head_tensors, lora_tensors = g["base_tensors"], g["head_tensors"], g["lora_tensors"]
    wave, labels, mask, feats, x, enc_out = g["wave"], g["labels"], g["mask"], g["feats"], g["x"], g["enc_out"]
    last_hidden, grads, named, loss, loss_m, loss_u = g["last_hidden"], g["grads"], g["named"], g["loss"], g["loss_m"], g["loss_u"]
    features_pen, sample_size, logit_m, logit_u, correct = g["features_pen"], g["sample_size"], g["logit_m"], g["logit_u"], g["correct"]
    wm, wu, grad_norm, lora_names, T = g["wm"], g["wu"], g["grad_norm"], g["lora_names"], g["T"]
    d = os.path.join(OUT, f"{arch}_{mode}")
    os.makedirs(d, exist_ok=True)
    cfg = hf_config("group_norm" if post else "layer_norm", not post, not post, LAYERS, conv=CONV, embed=EMBED,
                    heads=HEADS, ffn=FFN, pos_k=POS_K, pos_g=POS_G)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    with open(os.path.join(d, "preprocessor_config.json"), "w") as fh:
        json.dump({"do_normalize": normalize, "feature_size": 1, "sampling_rate": 16000,
                   "feature_extractor_type": "Wav2Vec2FeatureExtractor"}, fh, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), base_tensors)
    write_safetensors(os.path.join(d, "head.safetensors"), head_tensors, metadata={
        "format": "pt", "num_classes": str(K), "final_dim": str(FINAL_DIM), "hidden_size": str(EMBED),
        "label_rate": "50", "logit_temp": "0.1"})
    if mode == "lora":
        ad = os.path.join(d, "adapter")
        os.makedirs(ad, exist_ok=True)
        with open(os.path.join(ad, "adapter_config.json"), "w") as fh:
            json.dump({"peft_type": "LORA", "r": LORA_R, "lora_alpha": LORA_ALPHA,
                       "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj"], "lora_dropout": 0.0,
                       "bias": "none", "base_model_name_or_path": "", "task_type": None, "use_rslora": False},
                      fh, indent=2)
        write_safetensors(os.path.join(ad, "adapter_model.safetensors"), lora_tensors)
    exp = [("wave", wave.numpy()), ("labels", labels.float().numpy()), ("mask", mask.float().numpy()),
           ("features", feats.detach().numpy()), ("enc_in", x.detach().numpy()),
           ("enc_out", enc_out.detach().numpy()), ("last_hidden_state", last_hidden.numpy()),
           ("grad_enc_out", enc_out.grad.numpy()), ("grad_enc_in", x.grad.numpy()),
           ("grad_features", (feats.grad if feats.requires_grad else torch.zeros_like(feats)).numpy())]
    for i, h in enumerate(g["layer_outs"]):
        exp += [(f"layer_out.{i}", h.detach().numpy()), (f"grad_layer_out.{i}", h.grad.numpy())]
    exp += [("grad." + n, g.numpy()) for n, g in grads.items()]
    exp += [("after." + n, p.detach().numpy()) for n, p in named.items()]
    meta = {k: repr(v) for k, v in HP.items()}
    meta.update({"mode": mode, "arch": arch, "loss": repr(float(loss)), "loss_m": repr(float(loss_m)),
                 "loss_u": repr(float(loss_u)), "features_pen": repr(float(features_pen)),
                 "sample_size": str(sample_size), "count_m": str(logit_m.shape[0]), "count_u": str(logit_u.shape[0]),
                 "correct_m": str(correct(logit_m)), "correct_u": str(correct(logit_u)),
                 "pred_masked_weight": repr(wm), "pred_nomask_weight": repr(wu), "grad_norm": repr(grad_norm),
                 "feature_grad_mult": "0.1" if mode == "full" else "0", "lora_r": str(LORA_R),
                 "lora_alpha": repr(LORA_ALPHA), "lora_targets": " ".join(lora_names), "normalize": str(int(normalize)),
                 "trainable": " ".join(named)})
    write_safetensors(os.path.join(d, "expected.safetensors"), exp, metadata=meta)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    print(f"{d}: T={T}, loss {float(loss):.6f}, sample_size {sample_size}, grad norm {grad_norm:.4g}, {size} bytes")


def main():
    torch.set_num_threads(1)
    for i, (arch, mode) in enumerate([("post_ln", "full"), ("post_ln", "lora"), ("pre_ln", "full"), ("pre_ln", "lora")]):
        make(arch, mode, 100 + i)


if __name__ == "__main__":
    main()
