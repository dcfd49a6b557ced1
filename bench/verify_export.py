#!/usr/bin/env python3
"""Check a folder written by `llm-surgeon prune` with a real client (PyTorch + transformers).

Loads the pruned folder with AutoModelForCausalLM.from_pretrained (float32 compute, TF32 off; the class
config.json names: OPTForCausalLM, LlamaForCausalLM, …) and checks it is that class, computes the
perplexity per ALGORITHM.md §10 on the same windows as report.json (its perplexity.seqlen and .windows),
counts the exact zeros of every prunable layer's W' = [W | b], and compares both with report.json:
  - perplexity within --rtol (default 1e-4 relative) of report.perplexity.pruned,
  - zeros per layer equal to report.layers[i].zeros, parameter counts R·(C+1) (R·C without bias) equal, achieved sparsity equal,
  - for an n:m structure, at least n zeros in every group of m consecutive input columns.
Optionally (--dense MODEL) the same perplexity of the source model against report.perplexity.dense.
A compact folder (`prune --compact`, report.json has `compaction`) holds smaller shapes, so instead of
the zeros per layer: config.json has no compact_layers when the report says it is stock (the folder
must load as the stock class: --uniform), every decoder layer's FFN width and q/k/v rows are the
report's compaction.layers, the parameters are compaction.params.after, and the perplexity is also
checked against compaction.perplexity (the compact model in our runtime). Per-layer (compact_layers)
folders do not load with from_pretrained: check those with bench/compact_loader.py.

  python3 bench/verify_export.py --folder OUT --text wiki.test.raw [--dense opt-mini] [--device cuda] [--json out.json]

--text: the evaluation text given to --eval (rows joined per §10 unless the run used --raw), or a .json
array of token ids. Prints a summary and exits 1 when any check fails.
"""
import argparse
import json
import math
import re
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PRUNABLE = re.compile(r"^model\.(decoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)|layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj))$")


def join_rows(raw):
    """ALGORITHM.md §10: rows = lines; non-blank → line + "\\n", blank → ""; joined with "\\n\\n"."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "\n\n".join(l + "\n" if l.strip() else "" for l in lines)


def token_ids(path, tokenizer, raw):
    if path.endswith(".json"):
        with open(path) as f:
            return torch.tensor(json.load(f), dtype=torch.long)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return tokenizer(text if raw else join_rows(text), return_tensors="pt").input_ids[0]


def load(folder, device):
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    with open(f"{folder}/config.json") as f:
        want = json.load(f)["architectures"][0]
    if type(model).__name__ != want:
        raise SystemExit(f"{folder}: loaded as {type(model).__name__}, config.json names {want}")
    return model.to(device).eval()


@torch.no_grad()
def perplexity(model, ids, seqlen, windows, device):
    """Mean cross-entropy of positions 1..seqlen-1 per window; exp of the mean over windows (float64)."""
    nll = []
    for w in range(windows):
        x = ids[w * seqlen:(w + 1) * seqlen].unsqueeze(0).to(device)
        logits = model(x).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="mean")
        nll.append(loss.double().item())
    return math.exp(sum(nll) / len(nll))


def zero_counts(model, nm):
    out = {}
    for name, mod in model.named_modules():
        if not PRUNABLE.match(name):
            continue
        w = mod.weight.detach()
        b = mod.bias.detach() if mod.bias is not None else None  # Llama: no bias column
        entry = {"params": w.shape[0] * (w.shape[1] + (1 if b is not None else 0)),
                 "zeros": int((w == 0).sum() + (0 if b is None else (b == 0).sum()))}
        if nm:
            n, m = nm
            groups = (w == 0).reshape(w.shape[0], w.shape[1] // m, m).sum(-1)
            entry["nm_bad_groups"] = int((groups < n).sum())
        out[name] = entry
    return out


LAYER = re.compile(r"^model\.(decoder\.)?layers\.(\d+)\.(self_attn\.(q_proj|k_proj)|fc1|mlp\.gate_proj)$")


def check_compaction(model, folder, comp, failures):
    """Shapes and parameters of a compact folder against report.json's compaction."""
    with open(f"{folder}/config.json") as f:
        cfg = json.load(f)
    if comp["stockConfig"] and "compact_layers" in cfg:
        failures.append("report.json says stock config, config.json has compact_layers")
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    got = {}
    for name, mod in model.named_modules():
        m = LAYER.match(name)
        if m:
            kind = m.group(3).split(".")[-1]
            got[(int(m.group(2)), "ffn" if kind in ("fc1", "gate_proj") else kind)] = mod.out_features
    for l in comp["layers"]:
        want = {"ffn": l["ffnDim"]["after"], "q_proj": l["numHeads"]["after"] * hd, "k_proj": l["numKvHeads"]["after"] * hd}
        for k, v in want.items():
            if got.get((l["layer"], k)) != v:
                failures.append(f"layer {l['layer']} {k}: {got.get((l['layer'], k))} outputs in the folder, report.json compaction implies {v}")
    params = sum(p.numel() for p in model.parameters())  # a tied head counted once, as the file holds it
    if params != comp["params"]["after"]:
        failures.append(f"{params} parameters in the folder, report.json compaction says {comp['params']['after']}")
    return {"stock_config": "compact_layers" not in cfg, "params": params, "layers": len(comp["layers"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True, help="output folder of llm-surgeon prune")
    ap.add_argument("--text", required=True, help="evaluation text (as given to --eval) or .json token ids")
    ap.add_argument("--report", help="report.json (default: FOLDER/report.json)")
    ap.add_argument("--dense", help="source model folder: also check report.perplexity.dense")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(args.report or f"{args.folder}/report.json") as f:
        report = json.load(f)
    structure = report["options"]["structure"]
    nm = tuple(int(v) for v in structure.split(":")) if re.match(r"^\d+:\d+$", structure) else None
    raw = "--raw" in report["tool"]["command"]
    failures = []
    result = {"folder": args.folder, "device": args.device, "torch": torch.__version__}
    import transformers
    result["transformers"] = transformers.__version__

    t0 = time.time()
    model = load(args.folder, args.device)
    comp = report.get("compaction")
    if comp:  # the zeros per layer are the zeroed model's; the folder's layers are smaller
        result["compaction"] = check_compaction(model, args.folder, comp, failures)
    else:
        verify_zeros(report, zero_counts(model, nm), nm, failures, result)
    check_perplexity(args, model, report.get("perplexity"), comp, raw, failures, result)
    result["seconds"] = time.time() - t0
    result["failures"] = failures
    result["ok"] = not failures

    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if not failures else 1)


def verify_zeros(report, counts, nm, failures, result):
    """Zeros and parameters per prunable layer, and the achieved sparsity, against report.json."""
    by_name = {l["name"]: l for l in report["layers"]}
    if set(counts) != set(by_name):
        failures.append(f"prunable layers differ: model {sorted(set(counts) ^ set(by_name))}")
    for name, c in counts.items():
        r = by_name.get(name)
        if r and (c["zeros"] != r["zeros"] or c["params"] != r["params"]):
            failures.append(f"{name}: zeros/params {c['zeros']}/{c['params']} in the folder, {r['zeros']}/{r['params']} in report.json")
        if c.get("nm_bad_groups"):
            failures.append(f"{name}: {c['nm_bad_groups']} groups of {nm[1]} with fewer than {nm[0]} zeros")
    zeros = sum(c["zeros"] for c in counts.values())
    params = sum(c["params"] for c in counts.values())
    result["zeros"], result["params"], result["achieved_sparsity"] = zeros, params, zeros / params
    if zeros / params != report["achievedSparsity"]:
        failures.append(f"achieved sparsity {zeros / params} vs report.json {report['achievedSparsity']}")


def check_perplexity(args, model, pp, comp, raw, failures, result):
    """Perplexity of the folder (and with --dense of the source) against report.json's."""
    if not pp:
        result["pruned"] = None
        print("report.json has no perplexity (run prune with --eval); only the weights checked", file=sys.stderr)
        return
    # .json ids need no tokenizer (transformers would need sentencepiece for a slow Llama tokenizer)
    tok = None if args.text.endswith(".json") else AutoTokenizer.from_pretrained(args.folder)
    ids = token_ids(args.text, tok, raw)
    seqlen, windows = pp["seqlen"], pp["windows"]
    if ids.numel() // seqlen < windows:
        failures.append(f"{args.text}: {ids.numel()} tokens hold fewer than {windows} windows of {seqlen}")
        return
    ppl = perplexity(model, ids, seqlen, windows, args.device)
    ours = {"pruned": pp["pruned"]}
    if comp and comp.get("perplexity") is not None:
        ours["compact"] = comp["perplexity"]
    for k, v in ours.items():
        rel = abs(ppl - v) / v
        result[k] = {"torch": ppl, "report": v, "rel": rel}
        if rel > args.rtol:
            failures.append(f"{k} perplexity {ppl:.6f} (torch) vs {v:.6f} (report.json): rel {rel:.2e} > {args.rtol}")
    if args.dense:
        del model
        dense = perplexity(load(args.dense, args.device), ids, seqlen, windows, args.device)
        rel = abs(dense - pp["dense"]) / pp["dense"]
        result["dense"] = {"torch": dense, "report": pp["dense"], "rel": rel}
        if rel > args.rtol:
            failures.append(f"dense perplexity {dense:.6f} (torch) vs {pp['dense']:.6f} (report.json): rel {rel:.2e} > {args.rtol}")


if __name__ == "__main__":
    main()
