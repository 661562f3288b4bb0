"""fimlsp: local fill-in-the-middle code completion over the Language Server Protocol.

One process-wide setting is made here, before anything imports torch: OpenMP threads that
wait for work *sleep* instead of spinning (`OMP_WAIT_POLICY=PASSIVE`), unless the user set a
wait policy or a spin count. torch's default spin-waiting assumes the cores are the model's
alone; on a developer's machine the editor, its other language servers and a build share them,
and a decode step whose two threads spin against those processes measured 40-60× slower than
with passive waiting (docs/benchmarks.md, "OpenMP threads that wait"). libgomp reads this when it
is loaded, so it has to happen before the first `import torch`.
"""

import os

WAIT_POLICY_SET_BY_USER = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
if not WAIT_POLICY_SET_BY_USER:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"
