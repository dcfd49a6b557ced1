"""PyTorch side of bench/model.ts (same GPU, same data): dense perplexity per ALGORITHM §10, K-FAC factors
through module hooks (for the 1e-4 check), and the timed K-FAC pass with peak memory.
Reads a JSON list of tasks on stdin; prints one JSON line {"results": [...], "info": {...}}."""
import json, math, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = 'cuda'
PRUNABLE = ('q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


def load(spec):
    if spec.get('random'):
        cfg = OPTConfig(**spec['random'])
        torch.manual_seed(0)
        return OPTForCausalLM(cfg).to(dev, torch.float32).eval()
    return AutoModelForCausalLM.from_pretrained(spec['model'], dtype=torch.float32).to(dev).eval()  # the class config.json names


def ids_of(spec):
    if 'ids' in spec:
        return np.fromfile(spec['ids'], dtype=np.int32)
    return None


@torch.no_grad()
def ppl(spec):
    model = load(spec)
    ids = torch.from_numpy(ids_of(spec).astype(np.int64)).to(dev)
    T = spec['seqlen']
    n = ids.numel() // T
    if spec.get('windows'):
        n = min(n, spec['windows'])
    nll = []
    for i in range(n):
        x = ids[i * T:(i + 1) * T][None]
        logits = model(x).logits[0, :-1].float()
        nll.append(F.cross_entropy(logits, x[0, 1:]).item())
    return {'ppl': math.exp(sum(nll) / len(nll)), 'windows': n}


def prunable_modules(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split('.')[-1] in PRUNABLE]


def kfac(model, seqs, batch):
    """A = Σ a'a'ᵀ / N (ones column only for a linear with bias), G = Σ g gᵀ / N with g = ∂(per-sequence mean CE)/∂y; per ALGORITHM §2."""
    mods = prunable_modules(model)
    A, G, hooks = {}, {}, []
    for name, m in mods:
        C, R = m.in_features, m.out_features
        ones = m.bias is not None
        A[name] = torch.zeros(C + ones, C + ones, device=dev)
        G[name] = torch.zeros(R, R, device=dev)

        def fwd(mod, inp, out, name=name, ones=ones):
            a = inp[0].detach().reshape(-1, inp[0].shape[-1])
            if ones:
                a = torch.cat([a, torch.ones(a.shape[0], 1, device=dev)], 1)
            A[name] += a.T @ a

        def bwd(mod, gin, gout, name=name):
            g = gout[0].detach().reshape(-1, gout[0].shape[-1])
            G[name] += g.T @ g
        hooks += [m.register_forward_hook(fwd), m.register_full_backward_hook(bwd)]
    N = 0
    for i in range(0, len(seqs), batch):
        x = seqs[i:i + batch]
        B, T = x.shape
        logits = model(x).logits[:, :-1].float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction='none').view(B, T - 1)
        ce.mean(1).sum().backward()
        model.zero_grad(set_to_none=True)
        N += B * T
    for h in hooks:
        h.remove()
    for k in A:
        A[k] /= N
        G[k] /= N
    return mods, A, G


def kfac_dump(spec):
    model = load(spec)
    ids = torch.from_numpy(ids_of(spec).astype(np.int64)).to(dev)
    T, n = spec['seqlen'], spec['nseq']
    seqs = torch.stack([ids[i * T:(i + 1) * T] for i in range(n)])
    mods, A, G = kfac(model, seqs, spec.get('batch', n))
    index, blobs, off = [], [], 0
    for name, _ in mods:
        for kind, M in (('A', A[name]), ('G', G[name])):
            b = M.double().cpu().numpy().astype(np.float64).tobytes()
            index.append({'name': name, 'kind': kind, 'n': M.shape[0], 'offset': off})
            blobs.append(b)
            off += len(b)
    with open(spec['out'], 'wb') as fh:
        fh.write(b''.join(blobs))
    return {'index': index}


def kfac_time(spec):
    model = load(spec)
    T, n = spec['seqlen'], spec['nseq']
    if spec.get('ids'):
        ids = torch.from_numpy(ids_of(spec).astype(np.int64)).to(dev).view(-1, T)[:n]
    else:
        g = torch.Generator(device=dev).manual_seed(1)
        ids = torch.randint(0, model.config.vocab_size, (n, T), device=dev, generator=g)
    # One batch first, untimed (cuBLAS/cuDNN set-up), as the WebGPU side does for pipeline compilation.
    kfac(model, ids[:spec.get('batch', 2)], spec.get('batch', 2))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    kfac(model, ids, spec.get('batch', 2))
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return {'seconds': secs, 'peak_bytes': torch.cuda.max_memory_allocated() - base, 'model_bytes': base}


tasks = json.load(sys.stdin)
out = []
for t in tasks:
    try:
        out.append({'task': t.get('name'), **globals()[t['kind']](t)})
    except Exception as e:  # report, keep going: one failure must not hide the other measurements
        out.append({'task': t.get('name'), 'error': repr(e)})
print(json.dumps({'results': out, 'info': {'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0)}}))
