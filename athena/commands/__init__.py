"""Sub-commands of ``athena`` beyond ``serve``: each module defines ``register(subparsers)``."""
