"""Times the benchmark cases with PyTorch on CUDA (cuBLAS / cuSOLVER, TF32 off) for side-by-side ratios.
Reads a JSON list of {kernel, shape[, opts]} on stdin, prints one JSON line {ms: [...], info: {...}}.
Matmul (shape [M, N, K], opts transA / transB / bias / accumulate as in our matmul): operands stored as
ours ([K, M] / [N, K] when transposed) and passed as transposed views, which cuBLAS takes without a copy;
into a preallocated C: torch.mm, torch.addmm(bias, ...) (bias in cuBLASLt's epilogue where torch uses it),
C.addmm_ for accumulate, C.addmm_ then C.add_(bias) for both (F.linear + residual add costs the same).
Attention (shape [B, T, H, hd], fp32, causal): torch.nn.functional.scaled_dot_product_attention with
is_causal=True on q, k, v laid out as ours ([B, T, H, hd] storage, viewed as [B, H, T, hd]); backward via
autograd (torch.autograd.grad, so no .grad accumulation). 'attention_fwd' / 'attention_fwdbwd' use
SDPA's default backend choice (flash needs fp16/bf16, so for fp32 on CUDA this should be the
memory-efficient kernel; info.sdpa_fp32_backend records the first backend that accepts the call),
'..._math' forces the math backend (materialises the T×T scores)."""
import contextlib, json, sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f'torch_kernels.py: PyTorch is not importable here ({e}); install torch with CUDA for the torch columns')
if not torch.cuda.is_available():
    sys.exit(f'torch_kernels.py: torch {torch.__version__} sees no CUDA device; the torch columns need one')

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = 'cuda'


def timed(fn, reps):
    fn(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / reps


def case_ms(kernel, shape, opts):
    g = torch.Generator(device=dev).manual_seed(0)
    if kernel == 'matmul':
        m, n, k = shape
        ta, tb, acc = opts.get('transA'), opts.get('transB'), opts.get('accumulate')
        a = torch.randn(*((k, m) if ta else (m, k)), device=dev, generator=g)
        b = torch.randn(*((n, k) if tb else (k, n)), device=dev, generator=g)
        A, B = (a.T if ta else a), (b.T if tb else b)
        bias = torch.randn(n, device=dev, generator=g) if opts.get('bias') else None
        c = torch.zeros(m, n, device=dev)
        if acc:
            fn = (lambda: c.addmm_(A, B)) if bias is None else (lambda: c.addmm_(A, B).add_(bias))
        elif bias is not None:
            fn = lambda: torch.addmm(bias, A, B, out=c)
        else:
            fn = lambda: torch.mm(A, B, out=c)
        return timed(fn, 20)
    if kernel == 'gram':
        d, t = shape
        x = torch.randn(t, d, device=dev, generator=g)
        return timed(lambda: x.T @ x, 5)
    if kernel in ('cholinv', 'cholinv_f64'):
        n = shape[0]
        dt = torch.float64 if kernel == 'cholinv_f64' else torch.float32
        x = torch.randn(n, 2 * n, device=dev, generator=g, dtype=dt)
        m = x @ x.T / (2 * n) + 0.01 * torch.eye(n, device=dev, dtype=dt)
        return timed(lambda: torch.cholesky_inverse(torch.linalg.cholesky(m)), 5)
    if kernel.startswith('attention_'):
        b, t, h, hd = shape
        mode = kernel[len('attention_'):]
        math = mode.endswith('_math')
        bwd = mode.startswith('fwdbwd')
        q, k, v, gr = (torch.randn(b, t, h, hd, device=dev, generator=g).transpose(1, 2) for _ in range(4))
        if bwd:
            q, k, v = (x.detach().requires_grad_() for x in (q, k, v))

        def run():
            with sdpa_math() if math else contextlib.nullcontext():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                if bwd:
                    torch.autograd.grad(o, (q, k, v), gr)
        return timed(run, 10)
    return None


def sdpa_math():
    """Context that allows only SDPA's math backend (torch >= 2.3 API, older fallback)."""
    try:
        from torch.nn.attention import sdpa_kernel, SDPBackend
        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False)


def sdpa_backends():
    """Enabled SDPA backends, and the first of flash / mem-efficient / math (the default priority) that takes a
    causal fp32 [B, H, T, hd] call with our strides: the backend the default-backend timings ran on."""
    b = torch.backends.cuda
    info = {'flash': b.flash_sdp_enabled(), 'mem_efficient': b.mem_efficient_sdp_enabled(), 'math': b.math_sdp_enabled()}
    try:
        from torch.nn.attention import sdpa_kernel, SDPBackend
    except ImportError:
        return info
    x = torch.randn(2, 128, 4, 64, device=dev).transpose(1, 2)
    for name in ('FLASH_ATTENTION', 'EFFICIENT_ATTENTION', 'MATH'):
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                F.scaled_dot_product_attention(x, x, x, is_causal=True)
            info['fp32_first_usable'] = name
            break
        except RuntimeError:
            continue
    return info


cases = json.load(sys.stdin)
ms = [case_ms(c['kernel'], c['shape'], c.get('opts', {})) for c in cases]
info = {'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0), 'tf32': False}
if any(c['kernel'].startswith('attention_') for c in cases):
    info['sdpa_fp32_backend'] = sdpa_backends()
print(json.dumps({'ms': ms, 'info': info}))
