"""Waveforms at 16 kHz, spectrogram features, windowing and augmentation (torch/torchaudio).
No Dagster."""
