"""Model logic served by the Triton model repository; each model.py there is a thin adapter over this."""
