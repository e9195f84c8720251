#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_train_cpu.cpp's mentor_stage2: one MENTOR stage-2 training step
at the shipped model's configuration (docs/model/mentor.json), float32 on the CPU.

The model is what MENTOR builds, from configs with random weights: Hugging Face's CLIPVisionModel
(frozen; penultimate layer's patches), a two-layer GELU projector, T5EncoderModel (the patches
replace the <image> placeholders' embeddings), and a LlamaGen-style GPT (caption MLP, RMSNorm,
SwiGLU, 2D RoPE on the image tokens, the condition unrotated). Same batch as mentor's benchmark:
16 prompts of 48 tokens (16 of them one 64x64 reference's patches), 64 target image tokens;
AdamW (0.9, 0.95), wd 0.05, lr 1e-3, no clipping, no dropout.

usage: python torch_mentor_step.py [--threads 2] [--steps 10] [--config docs/model/mentor.json]
Prints one JSON line: ms per step, tokens/s (decoder positions) and peak resident memory.
Needs torch and transformers (PyPI, in a virtual environment).
"""
import argparse, json, math, pathlib, resource, time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, T5Config, T5EncoderModel


def ffn_hidden(dim, multiple_of):
    h = int(2 * (4 * dim) / 3)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__(); self.eps = eps; self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_table(prefix, grid, head_dim, base=10000.0):
    """LlamaGen's 2D table with MENTOR's fix: prefix rows are the identity rotation."""
    half, quarter = head_dim // 2, head_dim // 4
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[:quarter].float() / half))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    angle = torch.cat([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], -1)  # [g*g, half]
    cos = torch.cat([torch.ones(prefix, half), angle.cos()])
    sin = torch.cat([torch.zeros(prefix, half), angle.sin()])
    return cos, sin


def rotate(x, cos, sin):  # x [B, H, S, D] as D/2 (even, odd) pairs
    x = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = x[..., 0], x[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)


class Block(nn.Module):
    def __init__(self, d, h, f, eps):
        super().__init__()
        self.h = h
        self.attention_norm, self.ffn_norm = RMSNorm(d, eps), RMSNorm(d, eps)
        self.wqkv, self.wo = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.w1, self.w3, self.w2 = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False)

    def forward(self, x, cos, sin):
        B, S, D = x.shape
        q, k, v = self.wqkv(self.attention_norm(x)).split(D, -1)
        q, k, v = (t.view(B, S, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # every prompt token is real
        x = x + self.wo(y.transpose(1, 2).reshape(B, S, D))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Gpt(nn.Module):
    def __init__(self, g, prefix):
        super().__init__()
        d = g["dim"]
        self.cap_proj = nn.Sequential(nn.Linear(g["caption_dim"], d, bias=False), nn.GELU(approximate="tanh"),
                                      nn.Linear(d, d, bias=False))
        self.tok_embeddings = nn.Embedding(g["vocab_size"], d)
        f = ffn_hidden(d, g["multiple_of"])
        self.layers = nn.ModuleList(Block(d, g["n_head"], f, g["norm_eps"]) for _ in range(g["n_layer"]))
        self.norm, self.output = RMSNorm(d, g["norm_eps"]), nn.Linear(d, g["vocab_size"], bias=False)
        grid = int(math.isqrt(g["block_size"]))
        self.cos, self.sin = rope_table(prefix, grid, d // g["n_head"])
        self.prefix = prefix

    def forward(self, caption, codes):
        x = torch.cat([self.cap_proj(caption), self.tok_embeddings(codes[:, :-1])], 1)
        S = x.shape[1]
        cos, sin = self.cos[:S], self.sin[:S]
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.output(self.norm(x))[:, self.prefix - 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))


class Mentor(nn.Module):
    def __init__(self, c, prompt):
        super().__init__()
        v, t, e = c["encoder"]["vision_config"], c["encoder"]["text_config"], c["encoder"]
        self.vision = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
            num_hidden_layers=v["num_hidden_layers"], num_attention_heads=v["num_attention_heads"],
            image_size=v["image_size"], patch_size=v["patch_size"], hidden_act=v["hidden_act"],
            layer_norm_eps=v["layer_norm_eps"]))
        self.vision.requires_grad_(False)  # stage 2: only the vision tower is frozen
        self.select_layer = e["mm_vision_select_layer"]
        self.projector = nn.Sequential(nn.Linear(v["hidden_size"], t["d_model"]), nn.GELU(),
                                       nn.Linear(t["d_model"], t["d_model"]))
        self.text = T5EncoderModel(T5Config(
            vocab_size=t["vocab_size"], d_model=t["d_model"], d_kv=t["d_kv"], d_ff=t["d_ff"],
            num_layers=t["num_layers"], num_heads=t["num_heads"],
            relative_attention_num_buckets=t["relative_attention_num_buckets"],
            relative_attention_max_distance=t["relative_attention_max_distance"],
            feed_forward_proj=t["feed_forward_proj"], layer_norm_epsilon=t["layer_norm_epsilon"],
            dropout_rate=0.0))
        self.image_token_id = e["image_token_id"]
        self.gpt = Gpt(c["gpt"], prompt)

    def forward(self, ids, mask, images, codes):
        hidden = self.vision(pixel_values=images, output_hidden_states=True).hidden_states[self.select_layer]
        patches = self.projector(hidden[:, 1:])  # [N, P, d_model]
        embeds = self.text.get_input_embeddings()(ids)
        embeds = embeds.masked_scatter((ids == self.image_token_id).unsqueeze(-1), patches.reshape(-1, patches.shape[-1]))
        caption = self.text(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return self.gpt(caption, codes)


def main():
    here = pathlib.Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--config", default=str(here / "docs/model/mentor.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    c = json.load(open(a.config))
    batch, prompt = 16, 48
    v = c["encoder"]["vision_config"]
    patches = (v["image_size"] // v["patch_size"]) ** 2
    tokens = c["gpt"]["block_size"]
    m = Mentor(c, prompt)
    m.train()
    params = [q for q in m.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    ids = torch.tensor([[c["encoder"]["image_token_id"] if t < patches else 3 + (b * 7 + t * 13) % 300
                         for t in range(prompt)] for b in range(batch)])
    mask = torch.ones(batch, prompt, dtype=torch.long)
    images = torch.rand(batch, 3, v["image_size"], v["image_size"]) * 2 - 1
    codes = torch.randint(0, c["gpt"]["vocab_size"], (batch, tokens))

    def step():
        loss = m(ids, mask, images, codes); loss.backward(); opt.step(); opt.zero_grad(); return loss
    for _ in range(2): step()
    t0 = time.perf_counter()
    for _ in range(a.steps): step()
    dt = (time.perf_counter() - t0) / a.steps
    positions = batch * (prompt + tokens - 1)
    print(json.dumps(dict(sec="cpu_mentor_stage2_step", torch=torch.__version__, threads=a.threads,
                          trainable_M=sum(q.numel() for q in params) / 1e6, batch=batch, ms=dt * 1e3,
                          tokens_per_s=positions / dt,
                          peak_rss_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)), flush=True)


if __name__ == "__main__":
    main()
