"""Which output head scores a model: find its linear head, verify it against the model's own
logits, and choose the chunked, fused or full-logits path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from errorentropy.errors import ArgumentError
from errorentropy.head import fused
from errorentropy.head.chunked import score_hidden
from errorentropy.head.fused import available
from errorentropy.head.logits import NON_FINITE_MESSAGE, LogitMap, TokenScores
from errorentropy.models.loading import input_device
from errorentropy.options import DEFAULT_VOCAB_CHUNK, HeadMode


@dataclass
class OutputHead:
    """The model's final linear map from hidden states to logits, applied by us in chunks."""

    body: torch.nn.Module
    weight: torch.Tensor
    logit_map: LogitMap
    fused: bool = False  # apply it with the fused Triton kernel (head/fused.py), not torch chunks
    note: str | None = None  # why the fused kernel was not used where it could have been

    def score(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        *,
        vocab_chunk: int = DEFAULT_VOCAB_CHUNK,
        chunk_elements: int | None = None,
        topk: int = 0,
    ) -> TokenScores:
        """Rank and log-probability of ``targets [T]`` from final hidden states ``[T, H]``."""
        m = self.logit_map
        if self.fused:
            return fused.score_hidden_fused(
                hidden, self.weight, targets, bias=m.bias, softcap=m.softcap
            )
        return score_hidden(
            hidden,
            self.weight,
            targets,
            bias=m.bias,
            softcap=m.softcap,
            logit_scale=m.logit_scale,
            logit_divisor=m.logit_divisor,
            vocab_chunk=vocab_chunk,
            chunk_elements=chunk_elements,
            topk=topk,
        )


def find_head(model: torch.nn.Module) -> OutputHead | None:
    """The model's body and linear output head, or None where the layout is not the usual one."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    body = getattr(model, "base_model", None)
    if not isinstance(head, torch.nn.Linear) or body is None or body is model:
        return None
    config = model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)
    divisor = getattr(config, "logits_scaling", None)
    logit_map = LogitMap(
        head.bias, float(softcap) if softcap else None, _factor(scale), _factor(divisor)
    )
    return OutputHead(body, head.weight, logit_map)


def _factor(x: object) -> float | None:
    """A config's logit scale as a float, or None where it is absent or changes nothing."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) and x not in (0, 1):
        return float(x)
    return None


@torch.no_grad()
def verify_head(model: torch.nn.Module, head: OutputHead, input_ids: torch.Tensor) -> bool:
    """True when body + head reproduce the model's own logits on ``input_ids`` ``[1, L]``."""
    reference = model(input_ids=input_ids, use_cache=False).logits[0].float()
    if not bool(torch.isfinite(reference).all()):
        raise ArgumentError(
            NON_FINITE_MESSAGE, "dtype"
        )  # the same answer whichever head would have been used
    hidden = head.body(input_ids=input_ids, use_cache=False).last_hidden_state[0].float()
    ours = head.logit_map.apply(hidden @ head.weight.float().T)  # as score_hidden applies it
    if ours.shape != reference.shape:
        return False
    dtype = next(model.parameters()).dtype
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    scale = max(1.0, float(reference.abs().max()))
    return bool((ours.to(reference.device) - reference).abs().max() <= tolerance * scale)


FUSED_CHECK_TOKENS = 160  # more than two token blocks of the kernel (64 rows each)


@torch.no_grad()
def check_fused(head: OutputHead, input_ids: torch.Tensor) -> str | None:
    """None when the fused kernel agrees with float32 logits computed by torch on ``input_ids``
    ``[1, L]``; else what went wrong, for a note (the chunked head is used then).

    Agreement: log-probs within 1e-5; each rank at least the count of rivals above the target
    logit by more than both logits' float32 error bound (``32 u sum|h_i w_i|``, plus the soft-cap's
    and bias's rounding) and at most the count of rivals not below it by more than that; ties no
    more than the rivals within it; and the kernel's safety net rescoring under 1% of tokens (more
    would make it slower than the chunked head).
    """
    hidden = (
        head.body(input_ids=input_ids, use_cache=False)
        .last_hidden_state[0, :-1]
        .to(head.weight.device)
    )
    targets = input_ids[0, 1:].to(head.weight.device)
    stats: dict[str, int] = {}
    try:
        scores = fused.score_hidden_fused(
            hidden,
            head.weight,
            targets,
            bias=head.logit_map.bias,
            softcap=head.logit_map.softcap,
            stats=stats,
        )
    except Exception as exc:  # noqa: BLE001 - a kernel that fails to compile or run is not used
        return (
            f"the fused head failed ({type(exc).__name__}: {str(exc).strip()[:120]}); used "
            "the chunked head"
        )
    unit = 2.0**-24
    h = hidden.float()
    logits, bound = [], []
    bias, softcap = head.logit_map.bias, head.logit_map.softcap
    for v0 in range(0, head.weight.shape[0], 16384):  # float32 copies of the head, by slices
        w = head.weight[v0 : v0 + 16384].float()
        z = head.logit_map.apply(h @ w.T, slice(v0, v0 + 16384))
        e = 32 * unit * (h.abs() @ w.abs().T)  # float32 error bound of each logit
        if bias is not None:
            e = e + unit * bias[v0 : v0 + 16384].float().abs()
        if softcap:
            e = e + 8 * unit * softcap
        logits.append(z)
        bound.append(e)
    z, e = torch.cat(logits, dim=1), torch.cat(bound, dim=1)
    t, et = z.gather(1, targets[:, None]), e.gather(1, targets[:, None])
    gap, slack = z - t, e + et
    above = (gap > slack).sum(1)
    near = (gap.abs() <= slack).sum(1) - 1  # the target itself is not a rival
    logprob = t[:, 0].double() - torch.logsumexp(z.double(), dim=1)
    if stats["rescored"] > 0.01 * stats["tokens"]:
        return (
            "the fused kernel's target logits differed from its tiles' on "
            f"{stats['rescored']} of {stats['tokens']} check tokens; used the chunked head"
        )
    rank_ok = (scores.rank >= above) & (scores.rank <= above + near) & (scores.tied <= near)
    if not bool(rank_ok.all()) or float((scores.logprob - logprob).abs().max()) > 1e-5:
        return (
            "the fused head disagreed with torch's logits on the check sample; used the "
            "chunked head"
        )
    return None


def choose_head(
    model: torch.nn.Module, mode: HeadMode, sample_ids: Sequence[int], *, profile: bool = False
) -> OutputHead | None:
    """The output head to apply ourselves, or None for the model's full logits.

    ``auto``: the chunked head when it reproduces the model's logits on a sample, run by the
    fused kernel where that can run (CUDA and Triton, no ``profile``) and agrees with it.
    ``chunked`` and ``fused`` force a path; ``full`` always reads the model's logits.
    """
    if mode == "full":
        return None
    head = find_head(model)
    if head is None:
        if mode in ("chunked", "fused"):
            raise ArgumentError(
                f"head='{mode}': cannot find a linear output layer on "
                f"{type(model).__name__}; use head='full'",
                "head",
            )
        return None
    scaled = head.logit_map.scaled
    if mode == "fused":
        reason = available(head.weight.device)
        if reason is not None:
            raise ArgumentError(f"head='fused': {reason}; use head='chunked'", "head")
        if scaled:
            raise ArgumentError(
                "head='fused' does not apply a logit scale after the output layer (this model has "
                "one); use head='chunked'",
                "head",
            )
        if profile:
            raise ArgumentError(
                "head='fused' does not compute the top log-probabilities profile=True needs; "
                "use head='chunked'",
                "head",
                "profile",
            )
    ids = torch.tensor([list(sample_ids[:32])], dtype=torch.long, device=input_device(model))
    if not verify_head(model, head, ids):
        if mode in ("chunked", "fused"):  # forcing a head never buys wrong numbers
            raise ArgumentError(
                f"head='{mode}': the output layer found on {type(model).__name__} does not "
                "reproduce the model's own logits (a scaling or other step after it?); "
                "use head='auto' or head='full'",
                "head",
            )
        return None
    if mode == "fused":
        return replace(head, fused=True)
    if mode == "chunked":
        return head
    if profile or head.weight.device.type != "cuda" or available(head.weight.device) is not None:
        return head
    if scaled:
        return replace(
            head,
            note="the fused kernel does not apply a logit scale after the head; used the "
            "chunked head",
        )
    note = check_fused(
        head,
        torch.tensor([list(sample_ids[:FUSED_CHECK_TOKENS])], dtype=torch.long, device=ids.device),
    )
    return replace(head, fused=note is None, note=note)
