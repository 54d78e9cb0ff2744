"""Language-specific copies of a sublayer: every sentence goes through its own language's copy.

A routing plan (:data:`Routes`) groups a batch's rows by language index (``src_lang_id``,
one per sentence).  xlint's tasks put one language in every batch, which takes a single
fast path (all rows through one copy, no gather or scatter); a mixed batch is split by
language and put back together in the original row order.

Parameter naming: the copies live in ``per_language.<lang>``, so every language-specific
parameter name contains ``.per_language.<lang>.`` (the rule that
``XlmAdapterModel.language_parameters`` and the meta-learning split rely on).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

#: a routing plan: (language index, row indices of the batch or None for "all rows")
Routes = List[Tuple[int, Optional[torch.Tensor]]]


class LanguageRouted(nn.Module):
    """One copy of a sublayer per language; each sentence goes through its language's copy.

    Sublayers take ``(x: T x B x C, padding_mask: B x T or None)``.
    """

    def __init__(self, make_sublayer: Callable[[], nn.Module], languages: Sequence[str]):
        super().__init__()
        self.languages = list(languages)
        self.per_language = nn.ModuleDict({lang: make_sublayer() for lang in self.languages})

    def forward(
        self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], routes: Routes
    ) -> torch.Tensor:
        if len(routes) == 1 and routes[0][1] is None:  # one language in the batch
            return self.per_language[self.languages[routes[0][0]]](x, padding_mask)
        out = torch.empty_like(x)
        for lang_index, rows in routes:
            sub_mask = None if padding_mask is None else padding_mask.index_select(0, rows)
            sub_out = self.per_language[self.languages[lang_index]](x.index_select(1, rows), sub_mask)
            out.index_copy_(1, rows, sub_out)
        return out


def run_sublayer(
    module: nn.Module, x: torch.Tensor, padding_mask: Optional[torch.Tensor], routes: Routes
) -> torch.Tensor:
    """``module(x, padding_mask)``, routed by language if ``module`` is :class:`LanguageRouted`."""
    if isinstance(module, LanguageRouted):
        return module(x, padding_mask, routes)
    return module(x, padding_mask)


def routes_for(src_lang_id: Optional[torch.Tensor], batch_size: int, batch_lang_id: Optional[int] = None) -> Routes:
    """Group a batch's rows by language; a single-language batch routes all rows at once.

    ``batch_lang_id`` (a Python int that collaters of single-language batches may add to
    ``net_input``) skips inspecting ``src_lang_id``, which would wait for the GPU.
    """
    if batch_lang_id is not None and batch_lang_id >= 0:
        return [(int(batch_lang_id), None)]
    if src_lang_id is None:
        raise ValueError("xlm_adapter needs net_input['src_lang_id'] (one language index per sentence)")
    present = torch.unique(src_lang_id).tolist()
    if len(present) == 1:
        return [(int(present[0]), None)]
    return [(int(lang), (src_lang_id == lang).nonzero(as_tuple=True)[0]) for lang in present]
