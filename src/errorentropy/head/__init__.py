"""The output head: from a model's final hidden states (or its logits) to the rank and the
log-probability of every ground-truth token.

Three paths give the same numbers: :mod:`.chunked` (torch, vocabulary tiles, never full logits),
:mod:`.fused` (one Triton kernel on CUDA) and :mod:`.full` (logits the model already produced).
:mod:`.logits` holds what they share; :mod:`.select` picks one for a model.
"""
