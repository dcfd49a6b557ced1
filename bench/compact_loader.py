#!/usr/bin/env python3
"""Load a compact folder (export with `compact: true`) into transformers' own modules and compute perplexity.

A compact folder is a Hugging Face folder whose config.json carries `compact_layers`: one
{"ffn_dim", "num_attention_heads", "num_key_value_heads"} per decoder layer, the widths that layer's
tensors really have (ffn_dim / intermediate_size / num_attention_heads / num_key_value_heads stay the
maxima). Stock from_pretrained cannot load it (the shapes differ per layer), so this script:
  1. builds the standard class (OPTForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)
     from the config at the maximum widths,
  2. replaces each layer's linears by nn.Linear of that layer's sizes (same bias flags) and sets the
     attention module's head-count attributes its forward reads: Llama-family `num_key_value_groups`
     (eager and sdpa attention repeat kv heads by it; q/k/v are viewed as (-1, head_dim), so the head
     count follows the shapes), plus `num_heads` / `num_key_value_heads` where older versions keep them;
     OPT `num_heads` and `embed_dim` (older versions reshape the output to embed_dim),
  3. loads model.safetensors (strict: only a tied lm_head and RoPE buffers may be absent) and
  4. computes perplexity per ALGORITHM.md §10 on token ids (a .json list): windows of --seqlen tokens,
     mean cross-entropy of positions 1..seqlen-1 per window, exp of the mean over windows (float64).
With --zeroed FOLDER it also loads the zeroed (non-compact) export with from_pretrained and reports
both perplexities and their relative difference (the compact model should match within 1e-5).
With --report (report.json of `llm-surgeon prune --compact`, default FOLDER/report.json when present)
the windows are the report's (perplexity.seqlen / .windows unless given) and the perplexity is checked
against ours: report.perplexity.pruned (the zeroed model) and report.compaction.perplexity (the compact
one) within --rtol (default 1e-4); exit 1 when either differs more.

  python3 bench/compact_loader.py --folder COMPACT --ids ids.json [--seqlen 128] [--windows 8] [--zeroed DENSE] [--report R] [--json out.json]
  python3 bench/compact_loader.py --selftest      # needs only torch

Float32 compute with TF32 off; the stock load and the perplexity are bench/verify_export.py's.
"""
import argparse
import json
import math
import os
import sys

import torch
from torch import nn

KEYS = ("ffn_dim", "num_attention_heads", "num_key_value_heads")


def parse_compact_layers(cfg):
    """compact_layers validated as src/arch/parse.ts does (same rules, so a bad folder fails here too)."""
    layers = cfg.get("compact_layers")
    if layers is None:
        return None
    n = cfg["num_hidden_layers"]
    f_max = cfg.get("ffn_dim", cfg.get("intermediate_size"))
    h_max = cfg["num_attention_heads"]
    opt = cfg.get("model_type") == "opt"
    k_max = h_max if opt else (cfg.get("num_key_value_heads") or h_max)
    if not isinstance(layers, list) or len(layers) != n:
        raise ValueError(f"compact_layers must be a list of {n} entries (num_hidden_layers)")
    out = []
    for l, e in enumerate(layers):
        if not isinstance(e, dict) or set(e) != set(KEYS):
            raise ValueError(f"compact_layers[{l}] must have exactly the keys {KEYS}")
        for k, hi in zip(KEYS, (f_max, h_max, k_max)):
            v = e[k]
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ValueError(f"compact_layers[{l}].{k} must be an integer in 1..{hi}, got {v!r}")
        f, h, k = (e[k] for k in KEYS)
        if h % k or (opt and h != k):
            raise ValueError(f"compact_layers[{l}]: {h} heads do not fit {k} kv heads")
        out.append((f, h, k))
    return out


def linear(old, n_in, n_out):
    """A fresh nn.Linear of the compact sizes with the old module's bias flag, dtype and device (weights loaded later)."""
    return nn.Linear(n_in, n_out, bias=old.bias is not None, dtype=old.weight.dtype, device=old.weight.device)


def set_if_present(mod, name, value):
    if hasattr(mod, name):
        setattr(mod, name, value)


def shrink(model, cfg, dims):
    """Give every decoder layer its compact widths (module replacement + the attributes forward reads)."""
    d = cfg["hidden_size"]
    if cfg["model_type"] == "opt":
        for layer, (f, h, _k) in zip(model.model.decoder.layers, dims):
            a = layer.self_attn
            hd = d // cfg["num_attention_heads"]  # head_dim never changes (neither does q's scaling)
            for p in ("q_proj", "k_proj", "v_proj"):
                setattr(a, p, linear(getattr(a, p), d, h * hd))
            a.out_proj = linear(a.out_proj, h * hd, d)
            set_if_present(a, "num_heads", h)
            set_if_present(a, "embed_dim", h * hd)
            layer.fc1 = linear(layer.fc1, d, f)
            layer.fc2 = linear(layer.fc2, f, d)
        return
    for layer, (f, h, k) in zip(model.model.layers, dims):
        a, m = layer.self_attn, layer.mlp
        hd = a.head_dim
        a.q_proj = linear(a.q_proj, d, h * hd)
        a.k_proj = linear(a.k_proj, d, k * hd)
        a.v_proj = linear(a.v_proj, d, k * hd)
        a.o_proj = linear(a.o_proj, h * hd, d)
        a.num_key_value_groups = h // k
        set_if_present(a, "num_heads", h)
        set_if_present(a, "num_key_value_heads", k)
        set_if_present(a, "hidden_size", h * hd)  # old versions reshape the output to hidden_size
        m.gate_proj = linear(m.gate_proj, d, f)
        m.up_proj = linear(m.up_proj, d, f)
        m.down_proj = linear(m.down_proj, f, d)
        set_if_present(m, "intermediate_size", f)


def load_compact(folder, device):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    with open(f"{folder}/config.json") as fh:
        cfg = json.load(fh)
    dims = parse_compact_layers(cfg)
    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    if dims is not None:
        shrink(model, cfg, dims)
    sd = load_file(f"{folder}/model.safetensors")
    sd = {k: v.to(torch.float32) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = cfg.get("tie_word_embeddings", cfg["model_type"] == "opt")
    allowed = {"lm_head.weight"} if tied else set()
    bad = [k for k in missing if k not in allowed and not k.endswith("rotary_emb.inv_freq")]
    if bad or unexpected:
        raise SystemExit(f"{folder}: missing {bad[:5]}, unexpected {list(unexpected)[:5]}")
    if tied:  # the head is the embedding (not in the file); tie by hand, the same in every version
        model.lm_head.weight = model.get_input_embeddings().weight
    return model.to(device).eval(), dims


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# ---- selftest (torch only): the layout rules the loader relies on ----

def _rope(x, pos, hd):
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos[:, None].double() * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def _attn_mlp(x, w, h, k, hd):
    """One Llama-style layer body (no norms) in float64: q/k/v rows per head, query head i reads kv head i // (h/k)."""
    T = x.shape[0]
    pos = torch.arange(T)
    q = _rope((x @ w["q"].T).view(T, h, hd).transpose(0, 1), pos, hd)
    kk = _rope((x @ w["k"].T).view(T, k, hd).transpose(0, 1), pos, hd)
    v = (x @ w["v"].T + w["vb"]).view(T, k, hd).transpose(0, 1)
    kk, v = kk.repeat_interleave(h // k, 0), v.repeat_interleave(h // k, 0)
    s = q @ kk.transpose(1, 2) / math.sqrt(hd) + torch.triu(torch.full((T, T), -math.inf, dtype=x.dtype), 1)
    att = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, h * hd)
    y = att @ w["o"].T
    g = x @ w["gate"].T
    return y + (nn.functional.silu(g) * (x @ w["up"].T)) @ w["down"].T


def selftest():
    # parse_compact_layers accepts a good list and refuses bad ones
    base = {"model_type": "llama", "num_hidden_layers": 2, "intermediate_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2}
    ok = dict(base, compact_layers=[dict(zip(KEYS, (20, 2, 1))), dict(zip(KEYS, (32, 4, 2)))])
    assert parse_compact_layers(ok) == [(20, 2, 1), (32, 4, 2)]
    for bad in ([dict(zip(KEYS, (20, 2, 1)))], [dict(zip(KEYS, (0, 2, 1)))] * 2, [dict(zip(KEYS, (8, 3, 2)))] * 2, [dict(zip(KEYS, (8, 4, 4)))] * 2):
        try:
            parse_compact_layers(dict(base, compact_layers=bad))
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
    # A layer with kv group 1 dead (o columns of its query heads zero) and FFN neurons dead equals its compact slice.
    torch.manual_seed(0)
    d, h, k, hd, f, T = 16, 4, 2, 4, 32, 7
    G = h // k
    w = {n: torch.randn(*s, dtype=torch.float64) for n, s in
         {"q": (h * hd, d), "k": (k * hd, d), "v": (k * hd, d), "vb": (k * hd,), "o": (d, h * hd), "gate": (f, d), "up": (f, d), "down": (d, f)}.items()}
    dead_group, dead_neurons = 1, [3, 17]
    w["o"][:, dead_group * G * hd:(dead_group + 1) * G * hd] = 0
    w["gate"][dead_neurons[0]] = 0
    w["down"][:, dead_neurons[1]] = 0
    heads = [i for i in range(h) if i // G != dead_group]
    qrows = [i * hd + j for i in heads for j in range(hd)]
    kvrows = [g * hd + j for g in range(k) if g != dead_group for j in range(hd)]
    keep = [i for i in range(f) if i not in dead_neurons]
    c = {"q": w["q"][qrows], "k": w["k"][kvrows], "v": w["v"][kvrows], "vb": w["vb"][kvrows], "o": w["o"][:, qrows],
         "gate": w["gate"][keep], "up": w["up"][keep], "down": w["down"][:, keep]}
    x = torch.randn(T, d, dtype=torch.float64)
    a, b = _attn_mlp(x, w, h, k, hd), _attn_mlp(x, c, len(heads), k - 1, hd)
    err = (a - b).abs().max().item()
    assert err < 1e-12, f"compact slice differs from the zeroed layer by {err}"
    print(f"selftest ok (max |zeroed - compact| = {err:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", help="compact folder (config.json with compact_layers + model.safetensors)")
    ap.add_argument("--ids", help=".json list of token ids")
    ap.add_argument("--seqlen", type=int, help="default: the report's perplexity.seqlen, else 128")
    ap.add_argument("--windows", type=int, help="default: all whole windows")
    ap.add_argument("--zeroed", help="the same model exported without compaction (loaded with from_pretrained)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--report", help="report.json of the prune (default FOLDER/report.json when present)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance against the report's perplexities")
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--selftest", action="store_true", help="check the layout rules with torch only, then exit")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if not (args.folder and args.ids):
        ap.error("--folder and --ids are required (or --selftest)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report = None
    rpath = args.report or f"{args.folder}/report.json"
    if args.report or os.path.exists(rpath):
        with open(rpath) as fh:
            report = json.load(fh)
    pp = (report or {}).get("perplexity") or {}
    args.seqlen = args.seqlen or pp.get("seqlen") or 128
    args.windows = args.windows or pp.get("windows")
    with open(args.ids) as fh:
        ids = torch.tensor(json.load(fh), dtype=torch.long)
    windows = args.windows or ids.numel() // args.seqlen
    if windows < 1 or ids.numel() < windows * args.seqlen:
        raise SystemExit(f"{args.ids}: {ids.numel()} tokens hold fewer than {windows} windows of {args.seqlen}")
    import transformers
    from verify_export import load, perplexity  # transformers needed from here on (not by --selftest)
    model, dims = load_compact(args.folder, args.device)
    res = {"folder": args.folder, "transformers": transformers.__version__, "torch": torch.__version__, "seqlen": args.seqlen, "windows": windows,
           "compact_layers": dims, "params": count_params(model), "ppl_compact": perplexity(model, ids, args.seqlen, windows, args.device)}
    del model
    if args.zeroed:
        z = load(args.zeroed, args.device)
        res["params_zeroed"] = count_params(z)
        res["ppl_zeroed"] = perplexity(z, ids, args.seqlen, windows, args.device)
        res["rel_diff"] = abs(res["ppl_compact"] - res["ppl_zeroed"]) / res["ppl_zeroed"]
    failures = []
    if args.zeroed and res["rel_diff"] > 1e-5:
        failures.append(f"compact vs zeroed (torch) rel {res['rel_diff']:.2e} > 1e-5")
    if report is not None:
        ours = {"pruned": pp.get("pruned"), "compact": ((report.get("compaction") or {}).get("perplexity"))}
        res["ours"] = ours
        for k, v in ours.items():
            if v is None:
                continue
            rel = abs(res["ppl_compact"] - v) / v
            res[f"rel_vs_ours_{k}"] = rel
            if rel > args.rtol:
                failures.append(f"perplexity {res['ppl_compact']:.6f} (torch, compact folder) vs ours ({k}) {v:.6f}: rel {rel:.2e} > {args.rtol}")
    res["failures"], res["ok"] = failures, not failures
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
