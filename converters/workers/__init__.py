"""Scripts the converters run inside other Python environments (see converters.envs).

Each one imports only numpy and its tool, never Edgewise: it runs under the side environment's
own interpreter, which has no Edgewise installed.
"""
