"""The board-game self-play loop: OpenSpiel games -> MCTS self-play -> NPZ exports -> combined,
memory-mapped training set -> policy/value net -> gauntlet -> promotion.

Modules: ``games`` (board configs, state encoding), ``mcts`` (rollout MCTS, batched PUCT),
``selfplay`` (playing shards), ``npz`` (the one schema module), ``npzfile`` (reading an untrusted
``.npz`` within bounds), ``exports`` (validating, scanning and loading exports), ``combine``, ``net``,
``learner``, ``gauntlet``, ``promotion``, ``curriculum`` (weights and game budget across runs),
``settings`` (the run's settings, parsed once), ``stages`` (one function per step), ``run`` (what the
pipeline's components call), ``cli`` (``tuneloop npz``).
Nothing here imports kfp; torch is imported only by ``net``/``learner`` and inside the stages using them.
"""
