"""The decomposition inside other people's training loops.

Each submodule adapts errorentropy to one framework and imports that framework only when it is
itself imported, so ``import errorentropy.integrations`` stays as light as ``import errorentropy``:

- :mod:`errorentropy.integrations.common`: what they all share, framework-neutral (the logged
  fields, ``score_texts``, ``write_step_cell``, ``float32_logits``, ``all_reduce_histogram``).
- :mod:`errorentropy.integrations.transformers`: the Hugging Face ``Trainer``
  (``decomposition_metrics`` for ``trainer.evaluate()``, ``DecompositionCallback`` for held-out
  scoring on a schedule during training).
- :mod:`errorentropy.integrations.torchmetrics`: ``CrossEntropyDecomposition``, a ``Metric``.
- :mod:`errorentropy.integrations.lightning`: ``DecompositionMonitor``, a ``Callback``.
"""
