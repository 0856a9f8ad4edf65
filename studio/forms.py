"""Handlers that take a form's controls as one typed object.

Gradio passes the value of each input component as its own positional argument, so handlers over the
same controls (the explorer's view on screen; the upload form) would each spell out the same parameter
list, and each pass it on piece by piece. A *form* is a dataclass whose fields are those controls, in the
order of the components in the event's ``inputs``. :func:`form_handler` lets a handler take it as one
argument::

    @dataclass(frozen=True)
    class ViewControls:
        case_id: str
        dose_pct: float

    class Tab:
        @handler("updating the images")
        @form_handler(ViewControls)
        def on_view(self, controls: ViewControls, request: gr.Request = None) -> str: ...

``on_view`` is then seen (by Gradio, by ``inspect.signature`` and by callers) as
``on_view(self, case_id, dose_pct, request=None)``: events, public API endpoints and direct calls pass the
values as before, and the ``gr.Request`` / ``gr.Progress`` / ``gr.EventData`` parameters after the form
are still injected (Gradio finds them by the exposed signature's annotations and defaults). A generator
handler (several updates per event) stays a generator function. Adding a control to a form is one field
and one component in the wiring.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def form_handler(form: type[Any]) -> Callable[[F], F]:
    """Decorate ``fn(self, <form>, *rest)`` so that it takes ``form``'s fields in place of the form.

    ``form`` is a dataclass; ``rest`` must be plain parameters (no ``*args`` / ``**kwargs``). The exposed
    parameters carry the resolved annotations of the form's fields and of ``rest`` (Gradio needs the
    real ``gr.Request`` class, not the string a ``from __future__ import annotations`` module leaves).
    """
    if not dataclasses.is_dataclass(form):
        raise TypeError(f"form_handler needs a dataclass, not {form!r}")
    form_fields = [f.name for f in dataclasses.fields(form)]
    form_hints = typing.get_type_hints(form)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        first, taken, *rest = signature.parameters.values()
        if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in rest):
            raise TypeError(f"{fn.__qualname__}: a form handler takes plain parameters after the form")
        hints = typing.get_type_hints(fn)
        exposed = signature.replace(
            parameters=[
                first,
                *(
                    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=form_hints[n])
                    for n in form_fields
                ),
                *(p.replace(annotation=hints.get(p.name, p.annotation)) for p in rest),
            ]
        )

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            """The exposed call's arguments → ``fn``'s: ``(self, form), {rest}``."""
            bound = exposed.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            controls = form(**{n: values.pop(n) for n in form_fields})
            return (values.pop(first.name), controls), values

        if inspect.isgeneratorfunction(fn):

            def adapted(*args: Any, **kwargs: Any) -> Iterator[Any]:
                fn_args, fn_kwargs = call(args, kwargs)
                yield from fn(*fn_args, **fn_kwargs)

        else:

            def adapted(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                fn_args, fn_kwargs = call(args, kwargs)
                return fn(*fn_args, **fn_kwargs)

        functools.update_wrapper(adapted, fn)
        del adapted.__wrapped__  # the exposed signature, not fn's, is the one to read
        adapted.__signature__ = exposed  # type: ignore[attr-defined]
        adapted.__annotations__ = {
            p.name: p.annotation for p in exposed.parameters.values() if p.annotation is not p.empty
        } | ({"return": hints["return"]} if "return" in hints else {})
        return adapted  # type: ignore[return-value]

    return decorate
