#!/usr/bin/env python3
"""Rows of bench/results/h200-compact.json from `llm-surgeon prune --compact` runs (bench/h200-uniform.sh).

  python3 bench/compact_collect.py collect --runs /tmp/uniform --checks OUT --out OUT/h200-uniform.json
  python3 bench/compact_collect.py merge OUT1/h200-uniform.json [OUT2/…] --into bench/results/h200-compact.json

collect (on the GPU machine): one row per run folder RUNS/NAME (its report.json and config.json) in the
issue's schema — model, structure, sparsity, bytes_dense, bytes_compact, flop_ratio, decode_speedup,
prefill_speedup, ppl_zeroed, ppl_compact, uniform, transformers_ok — plus what explains them:
  - ppl_zeroed: our perplexity of the pruned model as exported (report.perplexity.pruned), ppl_compact:
    of the compact model in our runtime (report.compaction.perplexity); the same windows;
  - bytes_dense / bytes_compact: tensor data bytes of model.safetensors without and with compaction
    (report.compaction.bytes, the export dtype; the ~10 kB header left out of both);
  - flop_ratio: dense / compact multiply-adds per token in the decoder linears and the LM head
    (2·out·in each; attention scores excluded), from the per-layer widths;
  - decode_speedup / prefill_speedup: null (bench/compact-speed.ts measures them);
  - transformers_ok: OUT/check-NAME.json of bench/verify_export.py (AutoModelForCausalLM.from_pretrained
    on a stock folder, our perplexity within 1e-4); null for per-layer (compact_layers) folders, which
    stock transformers cannot load by design: their bench/compact_loader.py result is compact_loader_ok.
and `uniformity_cost`: per model and sparsity, the uniform run's perplexity against the free run's.
merge: the collected rows into an existing results file, replacing rows of the same job and source and
keeping every other row and key (bench/compact-speed.ts writes the speed rows of the same file).
"""
import argparse
import json
import os

SOURCE = "h200-uniform.sh"


def flops_per_token(cfg, dims):
    """2·out·in summed over the decoder linears of these per-layer widths, plus the LM head."""
    d, opt = cfg["hidden_size"], cfg["model_type"] == "opt"
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    total = 2 * cfg["vocab_size"] * d
    for f, h, k in dims:
        attn = d * h * hd * 2 + d * k * hd * 2  # q and o; k and v
        total += 2 * (attn + (2 if opt else 3) * d * f)
    return total


def row(name, folder, checks):
    with open(f"{folder}/report.json") as fh:
        rep = json.load(fh)
    with open(f"{folder}/config.json") as fh:
        cfg = json.load(fh)
    comp, opts, pp = rep["compaction"], rep["options"], rep["perplexity"] or {}
    layers = comp["layers"]
    before = [(l["ffnDim"]["before"], l["numHeads"]["before"], l["numKvHeads"]["before"]) for l in layers]
    after = [(l["ffnDim"]["after"], l["numHeads"]["after"], l["numKvHeads"]["after"]) for l in layers]
    # the source's config for the dense count: the compact one with the original widths (vocab, d, head_dim are kept)
    dense_cfg = dict(cfg, num_attention_heads=rep["model"]["numHeads"], head_dim=rep["model"]["headDim"])
    check = None
    cpath = os.path.join(checks, f"check-{name}.json")
    if os.path.exists(cpath):
        with open(cpath) as fh:
            check = json.load(fh)
    stock = comp["stockConfig"]
    torch_ppl = None
    if check:
        torch_ppl = (check.get("pruned") or {}).get("torch") if stock else check.get("ppl_compact")
    return {
        "job": name, "source": SOURCE, "model": os.path.basename(rep["model"]["source"].rstrip("/")), "structure": opts["structure"],
        "sparsity": rep["target"], "achieved": rep["achievedSparsity"],
        "bytes_dense": comp["bytes"]["before"], "bytes_compact": comp["bytes"]["after"],
        "params_dense": comp["params"]["before"], "params_compact": comp["params"]["after"],
        "flop_ratio": flops_per_token(dense_cfg, before) / flops_per_token(cfg, after),
        "decode_speedup": None, "prefill_speedup": None,
        "ppl_dense": pp.get("dense"), "ppl_zeroed": pp.get("pruned"), "ppl_compact": comp.get("perplexity"),
        "ppl_windows": f"{pp.get('windows')}x{pp.get('seqlen')}" if pp else None,
        "uniform": opts["uniform"], "uniform_heads": opts.get("uniformHeads", False), "stock_config": stock,
        "transformers_ok": (check["ok"] if check else None) if stock else None,
        "compact_loader_ok": None if stock else (check["ok"] if check else None),
        "ppl_transformers": torch_ppl,
        "compact_layers": [dict(zip(("ffn_dim", "num_attention_heads", "num_key_value_heads"), a)) for a in after],
        "shots": opts["shots"], "nsamples": rep["calibration"]["nsamples"], "seqlen": rep["calibration"]["seqlen"],
        "prune_seconds": rep["seconds"].get("prune"), "dtype": rep["export"]["dtype"],
        "commit": os.environ.get("BENCH_COMMIT"), "date": rep["date"], "adapter": rep["adapter"].get("description"),
    }


def uniformity_cost(rows):
    """Per model and sparsity: the uniform runs' perplexity relative to the free run's (ppl_zeroed, ours)."""
    out = []
    free = {(r["model"], r["sparsity"]): r for r in rows if not r["uniform"]}
    for r in rows:
        f = free.get((r["model"], r["sparsity"]))
        if not r["uniform"] or not f or r["ppl_zeroed"] is None or f["ppl_zeroed"] is None:
            continue
        out.append({"model": r["model"], "sparsity": r["sparsity"], "uniform_heads": r["uniform_heads"],
                    "ppl_free": f["ppl_zeroed"], "ppl_uniform": r["ppl_zeroed"], "cost_rel": r["ppl_zeroed"] / f["ppl_zeroed"] - 1,
                    "kept_params_free": f["params_compact"] / f["params_dense"], "kept_params_uniform": r["params_compact"] / r["params_dense"]})
    return sorted(out, key=lambda x: (x["model"], x["sparsity"], x["uniform_heads"]))


def collect(a):
    rows = []
    for name in sorted(os.listdir(a.runs)):
        folder = os.path.join(a.runs, name)
        if os.path.isdir(folder) and os.path.exists(f"{folder}/report.json"):
            rows.append(row(name, folder, a.checks))
    doc = {"protocol": "llm-surgeon prune --compact, FIXTURES protocol: 128 calibration windows (seed 100) of 2048 (OPT) / "
                       "4096 (Llama) tokens, 40 shots, WikiText-2 test perplexity at that length (bench/jobs/uniform.txt)",
           "runs": rows, "uniformity_cost": uniformity_cost(rows)}
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    for r in doc["uniformity_cost"]:
        print(f"{r['model']} {r['sparsity']:.0%}{' heads' if r['uniform_heads'] else ''}: free {r['ppl_free']:.3f}, "
              f"uniform {r['ppl_uniform']:.3f} ({r['cost_rel']:+.2%}); kept params {r['kept_params_free']:.3f} / {r['kept_params_uniform']:.3f}")
    for r in rows:
        print(f"{r['job']}: ppl {r['ppl_zeroed']} zeroed, {r['ppl_compact']} compact, torch {r['ppl_transformers']}; "
              f"stock {r['stock_config']}, transformers_ok {r['transformers_ok']}, compact_loader_ok {r['compact_loader_ok']}")


def merge(a):
    doc = {"runs": []}
    if os.path.exists(a.into):
        with open(a.into) as fh:
            doc = json.load(fh)
    new = []
    for p in a.parts:
        with open(p) as fh:
            new += json.load(fh)["runs"]
    jobs = {r["job"] for r in new}
    doc["runs"] = [r for r in doc.get("runs", []) if not (r.get("source") == SOURCE and r.get("job") in jobs)] + new
    ours = [r for r in doc["runs"] if r.get("source") == SOURCE]
    doc["uniformity_cost"] = uniformity_cost(ours)
    with open(a.into, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(f"{a.into}: {len(doc['runs'])} runs ({len(new)} from {len(a.parts)} file(s)), {len(doc['uniformity_cost'])} uniformity comparisons")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--runs", required=True)
    c.add_argument("--checks", required=True)
    c.add_argument("--out", required=True)
    m = sub.add_parser("merge")
    m.add_argument("parts", nargs="+")
    m.add_argument("--into", required=True)
    a = ap.parse_args()
    collect(a) if a.cmd == "collect" else merge(a)


if __name__ == "__main__":
    main()
