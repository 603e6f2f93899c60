"""The board-game self-play loop: OpenSpiel games -> MCTS self-play -> NPZ exports -> combined,
memory-mapped training set -> policy/value net -> gauntlet -> promotion.

Modules: ``games`` (board configs, state encoding), ``mcts`` (rollout MCTS, batched PUCT),
``selfplay`` (playing shards), ``npz`` (the one schema module), ``combine``, ``net``, ``learner``,
``gauntlet``, ``promotion``, ``stages`` (one function per pipeline component), ``cli`` (``tuneloop npz``).
Nothing here imports kfp; torch is imported only by ``net``/``learner`` and inside the stages using them.
"""
