"""The studio's tabs, each mounted by its own module, and the logic behind them.

* ``explorer_tab`` / ``upload_tab``: Gradio layout, events and handlers (plain methods tests can call);
* ``explorer``, ``cases``, ``generators``, ``figures``, ``upload``: what the tabs show, without Gradio;
* ``errors``: the one error policy of every handler; ``wiring``: start-up and the reader-study tabs;
  ``demo``: the demo phantom cases of ``python app.py``.

Images go through :mod:`vce_core.display`. Nothing here is imported by ``vce_core`` or ``reader_study``.
"""
