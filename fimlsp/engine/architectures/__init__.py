"""Model definitions for checkpoints whose architecture transformers lacks, so that their custom
code never runs: `refact` (GPT-Refact, registered with transformers' Auto classes on import) and
`santacoder` (the original SantaCoder, converted to GPTBigCode on load).

These are the models themselves, as transformers builds and runs them (the reference path).
Our fast forward steps over a loaded model, one per family, are `fimlsp.engine.lean`: its
`lean/refact.py` runs *over* the modules that `architectures/refact.py` defines.
"""
