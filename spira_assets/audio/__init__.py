"""Audio decoding and quality assessment (soundfile + numpy). No Dagster."""

TARGET_RATE = 16_000  # the one sample rate stored, featurized and scored (Hz)
