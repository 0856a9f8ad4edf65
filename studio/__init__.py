"""Gradio-side helpers of the review studio (``app.py``): rendering, the dose explorer and uploads.

Nothing here is imported by ``vce_core`` or ``reader_study``; image and generator logic stays in
``vce_core`` and these modules only arrange it for display.
"""
