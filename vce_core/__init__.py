"""vce_core: images, generators, losses, training, synthesis and evaluation for dose-reduction MRI.

No Gradio and no database here (the layout and its rules: ``docs/architecture.md``).
"""

__version__ = "0.1.0"
