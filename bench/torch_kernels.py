"""Times the benchmark cases with PyTorch on CUDA (cuBLAS / cuSOLVER, TF32 off) for side-by-side ratios.
Reads a JSON list of {kernel, shape} on stdin, prints one JSON line {ms: [...], info: {...}}."""
import json, sys
import torch

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


def case_ms(kernel, shape):
    g = torch.Generator(device=dev).manual_seed(0)
    if kernel == 'matmul':
        m, n, k = shape
        a = torch.randn(m, k, device=dev, generator=g); b = torch.randn(k, n, device=dev, generator=g)
        return timed(lambda: a @ b, 20)
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
    return None


cases = json.load(sys.stdin)
ms = [case_ms(c['kernel'], c['shape']) for c in cases]
print(json.dumps({'ms': ms, 'info': {'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0), 'tf32': False}}))
