# Sourced on the GPU machine from the project root (after gpu-pack.sh and pack-models.py filled .gpu/):
# the webgpu package stub, Node and dawn.node (.gpu/setup.sh), models to /tmp/models, token ids to
# /tmp/data/{test,calib}.i32 and .json (the CLI takes .json ids; the Llama ids of .gpu/data-llama to /tmp/data-llama), BENCH_COMMIT from .gpu/commit.
mkdir -p node_modules/webgpu && cp .gpu/nm/index.js .gpu/nm/package.json node_modules/webgpu/
source .gpu/setup.sh
python3 bench/pack-models.py unpack .gpu/models /tmp/models >/dev/null
mkdir -p /tmp/data /tmp/data-llama /tmp/runs && python3 -c "
import glob, json, lzma, os
import numpy as np
for src, dst in [('.gpu/data', '/tmp/data'), ('.gpu/data-llama', '/tmp/data-llama')]:
    for f in glob.glob(src + '/*.i32.xz'):
        n = os.path.basename(f)[:-7]
        open('%s/%s.i32' % (dst, n), 'wb').write(lzma.open(f).read())
        json.dump(np.fromfile('%s/%s.i32' % (dst, n), dtype='<i4').tolist(), open('%s/%s.json' % (dst, n), 'w'))
"
export BENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
