# Sourced on the GPU machine from the project root (after gpu-pack.sh and pack-models.py filled .gpu/):
# the webgpu package stub, Node and dawn.node (.gpu/setup.sh), models to /tmp/models, token ids to
# /tmp/data/{test,calib}.i32 and .json (the CLI takes .json ids), BENCH_COMMIT from .gpu/commit.
mkdir -p node_modules/webgpu && cp .gpu/nm/index.js .gpu/nm/package.json node_modules/webgpu/
source .gpu/setup.sh
python3 bench/pack-models.py unpack .gpu/models /tmp/models >/dev/null
mkdir -p /tmp/data /tmp/runs && python3 -c "
import glob, json, lzma, os
import numpy as np
for f in glob.glob('.gpu/data/*.i32.xz'):
    n = os.path.basename(f)[:-7]
    open('/tmp/data/%s.i32' % n, 'wb').write(lzma.open(f).read())
    json.dump(np.fromfile('/tmp/data/%s.i32' % n, dtype='<i4').tolist(), open('/tmp/data/%s.json' % n, 'w'))
"
export BENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
