"""Parameter averages (`use_averages = true`) for torch weights in a shim.

thinc's optimizer keeps the moving average of a torch weight under the key
`(shim.id, name)`, the key PyTorchShim.finish_update hands it, but
PyTorchShim.use_params only reads keys of the form "pytorch_{id}_{name}", so
`nlp.use_params(optimizer.averages)` (which spacy train wraps around every
evaluation and every saved model) leaves the torch weights as they are: the
averages are computed and never used. `average_torch_weights` gives every
PyTorchShim of a model a subclass of its class whose `use_params` also swaps in
the weights kept under the optimizer's own keys, so the setting does what
spaCy's docs say it does. The builders of models with trainable torch weights
(the marked transformer, the kernel head's attention, AMNRE) call it.
"""
import contextlib
from functools import lru_cache
from typing import Any, Dict, Iterator, Type

from thinc.api import Model
from thinc.shims import PyTorchShim


def average_torch_weights(model: Model) -> Model:
    """`model`, each of whose PyTorchShims now reads the optimizer's averages (in place)."""
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, PyTorchShim) and not getattr(shim, "reads_optimizer_keys", False):
                shim.__class__ = averaged_shim(type(shim))
    return model


@lru_cache(maxsize=None)
def averaged_shim(base: Type) -> Type:
    """`base` (a PyTorchShim class) whose use_params reads the optimizer's keys."""

    class AveragedShim(base):  # type: ignore[valid-type, misc]
        reads_optimizer_keys = True

        @contextlib.contextmanager
        def use_params(self, params: Dict[Any, Any]) -> Iterator[None]:
            with base.use_params(self, params), use_torch_averages(self, params):
                yield

    AveragedShim.__name__ = AveragedShim.__qualname__ = f"Averaged{base.__name__}"
    return AveragedShim


@contextlib.contextmanager
def use_torch_averages(shim: Any, params: Dict[Any, Any]) -> Iterator[None]:
    """Within the block, the shim's torch parameters that have an entry
    `(shim.id, name)` in `params` hold those values; restored after."""
    import torch
    from thinc.api import xp2torch

    model = shim._model
    named = dict(model.named_parameters())
    swap = {name: params[(shim.id, name)] for name in named if (shim.id, name) in params}
    if not swap:
        yield
        return
    backup = {name: named[name].detach().clone() for name in swap}
    with torch.no_grad():
        for name, value in swap.items():
            named[name].copy_(xp2torch(value, device=named[name].device).reshape(named[name].shape))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in backup.items():
                named[name].copy_(value)
